"""Server-defined groups (CODEOWNERS' ``@group``) and the principals directory with them."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from mergegate.core.principals import Directory
from mergegate.store.models import GroupMemberRow, GroupRow, PrincipalRow
from mergegate.store.principals import to_principal


def get(session: Session, name: str) -> GroupRow | None:
    return session.execute(select(GroupRow).where(GroupRow.name == name)).scalar_one_or_none()


def create(session: Session, name: str, *, created_by: str | None) -> GroupRow:
    row = GroupRow(name=name, created_by=created_by)
    session.add(row)
    session.flush()
    return row


def list_all(session: Session) -> list[GroupRow]:
    return list(session.execute(select(GroupRow).order_by(GroupRow.name)).scalars())


def members(session: Session, group: GroupRow) -> list[str]:
    query = (
        select(PrincipalRow.name)
        .join(GroupMemberRow, GroupMemberRow.principal_id == PrincipalRow.id)
        .where(GroupMemberRow.group_id == group.id)
        .order_by(PrincipalRow.name)
    )
    return list(session.execute(query).scalars())


def is_member(session: Session, group: GroupRow, principal: PrincipalRow) -> bool:
    return session.get(GroupMemberRow, (group.id, principal.id)) is not None


def add_member(session: Session, group: GroupRow, principal: PrincipalRow, *, created_by: str | None) -> bool:
    """Add ``principal``; False when it already was a member."""
    if is_member(session, group, principal):
        return False
    session.add(GroupMemberRow(group_id=group.id, principal_id=principal.id, created_by=created_by))
    session.flush()
    return True


def remove_member(session: Session, group: GroupRow, principal: PrincipalRow) -> bool:
    row = session.get(GroupMemberRow, (group.id, principal.id))
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True


def directory(session: Session) -> Directory:
    """Every principal, with the groups it belongs to: what the gate resolves owners against."""
    memberships: dict[int, set[str]] = {}
    query = select(GroupMemberRow.principal_id, GroupRow.name).join(GroupRow, GroupRow.id == GroupMemberRow.group_id)
    for principal_id, group in session.execute(query):
        memberships.setdefault(principal_id, set()).add(group)
    rows = session.execute(select(PrincipalRow).order_by(PrincipalRow.id)).scalars()
    return Directory(tuple(replace(to_principal(r), groups=frozenset(memberships.get(r.id, ()))) for r in rows))
