"""The audit log as a JSON-lines file, appended under an exclusive lock.

The chain logic is in ``mergegate.core.audit``; this adapter only does the I/O.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mergegate.core.audit import GENESIS_HASH, ChainReport, canonical, seal, verify_chain


def _last_hash(fh) -> str:
    fh.seek(0, os.SEEK_END)
    end = fh.tell()
    if end == 0:
        return GENESIS_HASH
    # Read backwards just far enough to find the last complete line.
    block = 4096
    pos, tail = end, b""
    while pos > 0:
        step = min(block, pos)
        pos -= step
        fh.seek(pos)
        tail = fh.read(step) + tail
        if tail.rstrip(b"\n").count(b"\n") >= 1:
            break
    last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    return json.loads(last)["hash"]


class AuditLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def append(self, **fields: Any) -> dict[str, Any]:
        fields.setdefault("event_id", str(uuid.uuid4()))
        fields.setdefault("timestamp", datetime.now(UTC).isoformat(timespec="microseconds"))
        fields.setdefault("human_reviewer", None)
        fields.setdefault("confidence_score", None)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                entry = seal(fields, _last_hash(fh))
                fh.seek(0, os.SEEK_END)
                fh.write(canonical(entry).encode() + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return entry

    def verify(self, expect_head: str | None = None) -> ChainReport:
        with open(self.path, encoding="utf-8") as fh:
            return verify_chain((line.rstrip("\n") for line in fh), expect_head=expect_head)
