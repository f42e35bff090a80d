"""The durable event inbox: store first, act later, mark done with the effects.

``claim`` locks the oldest due pending event (``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
so several server processes can share the inbox; SQLite's write lock serialises).
Handlers run inside the claiming transaction and ``finish`` marks the event done in it,
so an event's database effects and its ``done`` status commit together: a crash at
any point leaves it pending, and it is simply handled again.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mergegate.store.models import EventRow, utcnow


def enqueue(session: Session, kind: str, payload: dict[str, Any]) -> EventRow:
    row = EventRow(kind=kind, payload=json.dumps(payload, sort_keys=True), status="pending", attempts=0)
    session.add(row)
    session.flush()
    return row


def payload(row: EventRow) -> dict[str, Any]:
    return json.loads(row.payload)


def result(row: EventRow) -> dict[str, Any] | None:
    return json.loads(row.result) if row.result else None


def claim(session: Session, *, kinds: tuple[str, ...] | None = None, exclude: tuple[str, ...] = ()) -> EventRow | None:
    """Lock the oldest due pending event (of ``kinds``, not of ``exclude``)."""
    query = select(EventRow).where(EventRow.status == "pending", EventRow.available_at <= utcnow())
    if kinds is not None:
        query = query.where(EventRow.kind.in_(kinds))
    if exclude:
        query = query.where(EventRow.kind.not_in(exclude))
    query = query.order_by(EventRow.id).limit(1).with_for_update(skip_locked=True)
    return session.execute(query).scalar_one_or_none()


def due(session: Session, kind: str) -> bool:
    """Whether a pending event of ``kind`` is due (a cheap read before claiming)."""
    query = select(EventRow.id).where(
        EventRow.status == "pending", EventRow.kind == kind, EventRow.available_at <= utcnow()
    )
    return session.execute(query.limit(1)).first() is not None


def lease(session: Session, row: EventRow, seconds: float) -> None:
    """Keep a claimed event pending but out of reach for ``seconds`` while it is worked
    on outside a transaction (a check run). If the worker dies, the lease runs out and
    the event is claimed again: stored first, acted on until done."""
    row.attempts += 1
    row.available_at = utcnow() + timedelta(seconds=seconds)
    row.updated_at = utcnow()
    session.flush()


def release_leases(session: Session, kinds: tuple[str, ...]) -> int:
    """Make leased events of ``kinds`` due now (at start: their worker was this server,
    and it is gone). Returns how many."""
    query = select(EventRow).where(
        EventRow.status == "pending", EventRow.kind.in_(kinds), EventRow.available_at > utcnow()
    )
    rows = list(session.execute(query.with_for_update()).scalars())
    for row in rows:
        row.available_at = utcnow()
    session.flush()
    return len(rows)


def lock(session: Session, event_id: int) -> EventRow | None:
    return session.execute(select(EventRow).where(EventRow.id == event_id).with_for_update()).scalar_one_or_none()


def finish(session: Session, row: EventRow, outcome: dict[str, Any], *, count_attempt: bool = True) -> None:
    row.status = "done"
    if count_attempt:
        row.attempts += 1
    row.result = json.dumps(outcome, sort_keys=True)
    row.last_error = None
    row.updated_at = utcnow()
    session.flush()


def record_failure(session: Session, row: EventRow, error: str, *, max_attempts: int, backoff_s: float) -> bool:
    """Count a failed attempt; returns True when the event is now ``failed`` for good."""
    row.attempts += 1
    row.last_error = error[:4000]
    row.updated_at = utcnow()
    gave_up = row.attempts >= max_attempts
    if gave_up:
        row.status = "failed"
    else:
        row.available_at = utcnow() + timedelta(seconds=backoff_s * 2 ** (row.attempts - 1))
    session.flush()
    return gave_up


def get(session: Session, event_id: int) -> EventRow | None:
    return session.get(EventRow, event_id)


def pending_count(session: Session) -> int:
    return len(session.execute(select(EventRow.id).where(EventRow.status == "pending")).all())
