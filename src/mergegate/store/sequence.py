"""The gate's one sequence counter: pushes, reviews, dismissals and check results.

``next_value`` locks the single counter row (``FOR UPDATE`` on PostgreSQL; SQLite's
``BEGIN IMMEDIATE`` write lock) and increments it inside the caller's transaction.
Two transactions that both take a number are therefore serialised, and the numbers
follow commit order: a review that got a higher number than a push really was
committed after it. A rolled-back transaction gives its number back.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mergegate.store.db import is_write_session
from mergegate.store.models import GateCounterRow


def next_value(session: Session) -> int:
    if not is_write_session(session):
        raise RuntimeError("sequence numbers are taken inside Database.write() transactions only")
    row = session.execute(select(GateCounterRow).where(GateCounterRow.id == 1).with_for_update()).scalar_one()
    row.value += 1
    session.flush()
    return row.value


def current(session: Session) -> int:
    return session.execute(select(GateCounterRow.value).where(GateCounterRow.id == 1)).scalar_one()
