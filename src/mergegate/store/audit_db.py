"""The audit hash chain in the database (the server's log; the CLI keeps a JSON-lines one).

The chain logic is ``mergegate.core.audit`` (``seal`` / ``verify_chain``); this module
only stores entries. An append locks the single ``audit_head`` row (``FOR UPDATE`` on
PostgreSQL; the ``BEGIN IMMEDIATE`` write lock on SQLite), so concurrent appends from
the server's threads and from git hooks in other processes line up one behind another
and can never fork the chain. ``prev_hash`` is unique as a second, independent guard.

Appends happen inside the caller's transaction: the audited act and its entry commit
together or not at all.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mergegate.core.audit import AUDIT_FIELDS, ChainReport, canonical, seal, verify_chain
from mergegate.store.db import is_write_session
from mergegate.store.models import AuditHeadRow, AuditRow


def append(
    session: Session,
    *,
    action: str,
    outcome: str,
    agent_id: str | None,
    policy_applied: str | None = None,
    human_reviewer: str | None = None,
    confidence_score: float | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Seal and store one entry after the current head; returns the sealed entry."""
    if not is_write_session(session):
        raise RuntimeError("audit entries are appended inside Database.write() transactions only")
    head = session.execute(select(AuditHeadRow).where(AuditHeadRow.id == 1).with_for_update()).scalar_one()
    fields = {
        "event_id": str(uuid.uuid4()),
        "timestamp": datetime.now(UTC).isoformat(timespec="microseconds"),
        "agent_id": agent_id,
        "action": action,
        "confidence_score": confidence_score,
        "policy_applied": policy_applied,
        "human_reviewer": human_reviewer,
        "outcome": outcome,
        # Round-trip through JSON now so what is hashed is exactly what is read back.
        "details": json.loads(canonical(details or {})),
    }
    entry = seal(fields, head.hash)
    session.add(
        AuditRow(
            seq=head.seq + 1,
            **{k: entry[k] for k in AUDIT_FIELDS},
            details=canonical(entry["details"]),
            prev_hash=entry["prev_hash"],
            hash=entry["hash"],
        )
    )
    head.seq += 1
    head.hash = entry["hash"]
    session.flush()
    return entry


def _entry(row: AuditRow) -> dict[str, Any]:
    entry: dict[str, Any] = {k: getattr(row, k) for k in AUDIT_FIELDS}
    entry["details"] = json.loads(row.details)
    entry["prev_hash"] = row.prev_hash
    entry["hash"] = row.hash
    return entry


def entries(session: Session, *, up_to: int | None = None, batch: int = 500) -> Iterator[dict[str, Any]]:
    query = select(AuditRow).order_by(AuditRow.seq)
    if up_to is not None:
        query = query.where(AuditRow.seq <= up_to)
    for row in session.execute(query.execution_options(yield_per=batch)).scalars():
        yield _entry(row)


def head(session: Session) -> tuple[int, str]:
    row = session.execute(select(AuditHeadRow).where(AuditHeadRow.id == 1)).scalar_one()
    return row.seq, row.hash


def verify(session: Session) -> ChainReport:
    """Verify every entry up to the recorded head (so concurrent appends do not matter).

    Truncating the tail is caught because the head row still names the lost entry.
    """
    seq, head_hash = head(session)
    lines = (canonical(e) for e in entries(session, up_to=seq))
    return verify_chain(lines, expect_head=head_hash)


def recent(session: Session, *, action: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    query = select(AuditRow).order_by(AuditRow.seq.desc()).limit(limit)
    if action:
        query = query.where(AuditRow.action == action)
    return [_entry(r) for r in session.execute(query).scalars()]
