"""Push intents: a push is recorded before git moves its refs, so none lands unrecorded.

- ``record`` (pre-receive): an ``events`` row of kind ``push.intent`` (pusher, repository,
  ``[{ref, old, new}]`` and the request's push id), pending but held out of the
  dispatcher's reach. If it cannot be stored, the hook refuses the push: nothing lands.
- ``confirm`` (post-receive): the intent becomes the ``push`` event, in one transaction
  with its ``push.accepted`` audit entry.
- ``settle``: whatever happened in between (the hook or the whole server killed, git
  refusing a ref after pre-receive, the client gone), the refs decide. An update whose
  ref is at its ``new`` commit landed: the intent is confirmed with those updates,
  attributed to the recorded pusher. An intent none of whose refs moved is dropped,
  audited. The server settles a push's intent when its request ends, and every
  unsettled intent at start. Settling twice is harmless: a settled intent is no longer
  pending, and the push handler recognises work it already did.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mergegate.forge.local.repos import BareRepo, Forge, ForgeError
from mergegate.store import audit_db, events
from mergegate.store.db import Database
from mergegate.store.models import EventRow, utcnow

PUSH = "push"
INTENT = "push.intent"
#: An intent's ``available_at``: never due, so the dispatcher never claims it.
HELD = datetime(9999, 1, 1, tzinfo=UTC)
ZERO = "0" * 40


def payload(repo: str, pusher: str, updates: list[dict[str, str]], push_id: str) -> dict[str, Any]:
    return {"repo": repo, "pusher": pusher, "updates": updates, "push_id": push_id}


def record(db: Database, intent: dict[str, Any]) -> int:
    """Store the intent (waiting out a busy database); raises if it cannot."""

    def hold(session: Session, row: EventRow) -> None:
        row.available_at = HELD
        session.flush()

    return events.store_first(db, INTENT, intent, also=hold)


def confirm(db: Database, push: dict[str, Any]) -> int:
    """The push event for ``push`` (what post-receive saw land): its intent confirmed,
    the event a settle already made of it, or, with no intent left, a new event (as
    before intents: the refs have moved, so the push must be stored). Returns its id."""

    def work(session: Session) -> int:
        row = _intent(session, push["push_id"])
        if row is None:
            done = _confirmed(session, push["push_id"])
            if done is not None:
                return done.id
            row = events.enqueue(session, PUSH, push)
        else:
            _promote(row, push)
        _accepted(session, row, push)
        return row.id

    return events.retry_write(db, work)


def settle(db: Database, forge: Forge, push_id: str | None = None) -> list[tuple[int, str]]:
    """Settle the unsettled intent of ``push_id`` (every one when None) from the refs.
    Returns ``(event, "confirmed" | "dropped")`` per intent settled."""
    with db.read() as session:  # usually none: post-receive confirmed it (no write lock taken)
        ids = [r.id for r in held(session) if push_id is None or events.payload(r).get("push_id") == push_id]
    if not ids:
        return []
    settled = []
    with db.write() as session:
        for event_id in ids:
            row = events.lock(session, event_id)
            if row is None or row.kind != INTENT or row.status != "pending":
                continue  # settled meanwhile
            settled.append((row.id, _settle(session, forge, row)))
    return settled


def _settle(session: Session, forge: Forge, row: EventRow) -> str:
    intent = events.payload(row)
    try:
        bare = forge.open(intent["repo"])
    except ForgeError:
        return _drop(session, row, intent, "its repository is gone")
    landed = [u for u in intent["updates"] if _landed(bare, u)]
    if not landed:
        return _drop(session, row, intent, "none of its refs moved: git refused or failed after pre-receive")
    push = {**intent, "updates": landed}
    _promote(row, push)
    _accepted(session, row, push, recovered="its refs moved but the post-receive hook did not record it")
    return "confirmed"


def _landed(bare: BareRepo, update: dict[str, str]) -> bool:
    tip = bare.resolve(update["ref"])
    return tip is None if update["new"] == ZERO else tip == update["new"]


def held(session: Session) -> list[EventRow]:
    """The intents not settled yet, oldest first."""
    query = select(EventRow).where(EventRow.status == "pending", EventRow.kind == INTENT).order_by(EventRow.id)
    return list(session.execute(query).scalars())


def _intent(session: Session, push_id: str) -> EventRow | None:
    for row in held(session):
        if events.payload(row).get("push_id") == push_id:
            return events.lock(session, row.id)
    return None


def _confirmed(session: Session, push_id: str) -> EventRow | None:
    # Rare (a settle raced post-receive), so a scan of push events is fine here.
    query = select(EventRow).where(EventRow.kind == PUSH, EventRow.payload.contains(json.dumps(push_id)))
    return session.execute(query.limit(1)).scalar_one_or_none()


def _promote(row: EventRow, push: dict[str, Any]) -> None:
    row.kind = PUSH
    row.payload = json.dumps(push, sort_keys=True)
    row.available_at = row.updated_at = utcnow()


def _accepted(session: Session, row: EventRow, push: dict[str, Any], recovered: str | None = None) -> None:
    session.flush()
    details = {**push, "event": row.id} | ({"recovered": recovered} if recovered else {})
    audit_db.append(session, action="push.accepted", outcome="accepted", agent_id=push["pusher"], details=details)


def _drop(session: Session, row: EventRow, intent: dict[str, Any], why: str) -> str:
    events.finish(session, row, {"dropped": why}, count_attempt=False)
    details = {**intent, "event": row.id, "reason": why}
    audit_db.append(session, action="push.dropped", outcome="dropped", agent_id=intent["pusher"], details=details)
    return "dropped"
