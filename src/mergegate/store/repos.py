"""Repository rows (the bare repositories themselves live in ``forge.local``)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mergegate.store.models import RepoRow


def get(session: Session, name: str) -> RepoRow | None:
    return session.execute(select(RepoRow).where(RepoRow.name == name)).scalar_one_or_none()


def list_all(session: Session) -> list[RepoRow]:
    return list(session.execute(select(RepoRow).order_by(RepoRow.name)).scalars())


def create(session: Session, *, name: str, default_branch: str, created_by: str | None) -> RepoRow:
    row = RepoRow(name=name, default_branch=default_branch, created_by=created_by)
    session.add(row)
    session.flush()
    return row
