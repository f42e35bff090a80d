"""The durable event inbox: store first, act later, mark done with the effects.

``claim`` locks the oldest due pending event (``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
so several server processes can share the inbox; SQLite's write lock serialises).
Handlers run inside the claiming transaction and ``finish`` marks the event done in it,
so an event's database effects and its ``done`` status commit together: a crash at
any point leaves it pending, and it is simply handled again.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from mergegate.store.db import Database
from mergegate.store.models import EventRow, utcnow

#: How long ``store_first`` keeps trying. Its events must not be lost: a push has moved
#: its ref already. SQLite's write lock is not fair (waiters poll it), so in a burst of
#: writers one can wait past its busy timeout; PostgreSQL can drop a connection.
STORE_DEADLINE_S = 300.0

T = TypeVar("T")


def enqueue(session: Session, kind: str, payload: dict[str, Any]) -> EventRow:
    row = EventRow(kind=kind, payload=json.dumps(payload, sort_keys=True), status="pending", attempts=0)
    session.add(row)
    session.flush()
    return row


def store_first(
    db: Database,
    kind: str,
    payload: dict[str, Any],
    *,
    also: Callable[[Session, EventRow], None] | None = None,
    deadline_s: float = STORE_DEADLINE_S,
) -> int:
    """Enqueue an event in a write transaction of its own (with ``also(session, event)``
    in it), tried again while the database is busy or unreachable, until it commits or
    ``deadline_s`` has passed. Returns the event's id."""

    def store(session: Session) -> int:
        event = enqueue(session, kind, payload)
        if also is not None:
            also(session, event)
        return event.id

    return retry_write(db, store, deadline_s=deadline_s)


def retry_write(db: Database, work: Callable[[Session], T], *, deadline_s: float = STORE_DEADLINE_S) -> T:
    """``work(session)`` in a write transaction of its own, run again while the database
    is busy or unreachable, until it commits or ``deadline_s`` has passed."""
    deadline = time.monotonic() + deadline_s
    pause = 0.05
    while True:
        try:
            with db.write() as session:
                return work(session)
        except OperationalError:  # "database is locked", a lost connection: not a bad event
            if time.monotonic() + pause > deadline:
                raise
            time.sleep(pause * random.uniform(0.5, 1.5))  # jitter: waiters should not retry in step
            pause = min(pause * 2, 2.0)


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


def renew(session: Session, event_id: int, attempts: int, seconds: float) -> bool:
    """Extend a lease its holder still has: the event is pending and nobody claimed it
    since (``attempts`` is still the holder's claim). False when it is no longer held."""
    row = lock(session, event_id)
    if row is None or row.status != "pending" or row.attempts != attempts:
        return False
    row.available_at = utcnow() + timedelta(seconds=seconds)
    session.flush()
    return True


def release(session: Session, row: EventRow, error: str, *, delay_s: float) -> None:
    """Give a leased event back before its lease runs out: its worker could not finish
    it (e.g. the result transaction kept failing). It is due again after ``delay_s``;
    the claim already counted the attempt."""
    row.available_at = utcnow() + timedelta(seconds=delay_s)
    row.last_error = error[:4000]
    row.updated_at = utcnow()
    session.flush()


def release_leases(session: Session, kinds: tuple[str, ...]) -> int:
    """Make leased events of ``kinds`` due now (at start: their worker was this server,
    and it is gone). Returns how many.

    Leases carry no owner, so this is only right when one server uses the database: on
    a shared PostgreSQL database it would take back a live peer's leases ("only leases
    whose time has passed" would not help: those are due already)."""
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
    gave_up = row.attempts >= max_attempts
    if gave_up:
        fail(session, row, error)
    else:
        release(session, row, error, delay_s=backoff_s * 2 ** (row.attempts - 1))
    return gave_up


def fail(session: Session, row: EventRow, error: str) -> None:
    """Park an event for good (``failed``, with why): nothing will act on it again."""
    row.status = "failed"
    row.last_error = error[:4000]
    row.updated_at = utcnow()
    session.flush()


def get(session: Session, event_id: int) -> EventRow | None:
    return session.get(EventRow, event_id)


def pending_count(session: Session) -> int:
    return len(session.execute(select(EventRow.id).where(EventRow.status == "pending")).all())
