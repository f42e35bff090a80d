"""The audit chain: every entry carries the hash of the one before it.

Editing, deleting, inserting or reordering an entry breaks the chain at that entry or
the next one. Truncating the tail, or rewriting the whole file, can only be detected
against a recorded head hash (``verify_chain(expect_head=...)``), which is why the
gate keeps the head elsewhere too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

GENESIS_HASH = "0" * 64

#: The fields every audit entry has (design invariant 4), besides prev_hash and hash.
AUDIT_FIELDS = (
    "event_id",
    "timestamp",
    "agent_id",
    "action",
    "confidence_score",
    "policy_applied",
    "human_reviewer",
    "outcome",
)


def canonical(entry: dict[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(entry_without_hash: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(entry_without_hash).encode()).hexdigest()


def seal(fields: dict[str, Any], prev_hash: str) -> dict[str, Any]:
    """Return the entry to append after an entry whose hash is ``prev_hash``."""
    missing = [k for k in AUDIT_FIELDS if k not in fields]
    if missing:
        raise ValueError(f"audit entry lacks {', '.join(missing)}")
    if "hash" in fields or "prev_hash" in fields:
        raise ValueError("audit fields must not carry their own hashes")
    entry = {**fields, "prev_hash": prev_hash}
    entry["hash"] = entry_hash(entry)
    return entry


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries: int
    head: str
    bad_line: int | None = None
    reason: str = ""


def verify_chain(lines: Iterable[str], expect_head: str | None = None) -> ChainReport:
    """Check a JSON-lines audit log. ``bad_line`` is 1-based."""
    prev = GENESIS_HASH
    count = 0
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            return ChainReport(False, count, prev, number, "blank line inside the log")
        try:
            entry = json.loads(raw)
        except json.JSONDecodeError as exc:
            return ChainReport(False, count, prev, number, f"not valid JSON ({exc.msg})")
        if not isinstance(entry, dict) or "hash" not in entry or "prev_hash" not in entry:
            return ChainReport(False, count, prev, number, "not an audit entry (no hash/prev_hash)")
        if entry["prev_hash"] != prev:
            return ChainReport(
                False,
                count,
                prev,
                number,
                "prev_hash does not match the previous entry: an entry was deleted, inserted or moved",
            )
        claimed = entry.pop("hash")
        if entry_hash(entry) != claimed:
            return ChainReport(False, count, prev, number, "hash does not match the content: the entry was edited")
        missing = [k for k in AUDIT_FIELDS if k not in entry]
        if missing:
            return ChainReport(False, count, prev, number, f"entry lacks {', '.join(missing)}")
        prev = claimed
        count += 1
    if expect_head is not None and prev != expect_head:
        return ChainReport(
            False,
            count,
            prev,
            None,
            f"the last entry's hash is {prev[:12]}…, expected {expect_head[:12]}…: "
            "entries were removed from the end or the log was rewritten",
        )
    return ChainReport(True, count, prev)
