"""Server-defined groups: what ``@security`` or ``@org/team`` means in CODEOWNERS.

Managing them is ``manage_principals`` (human admins): a group decides who may
approve for the paths it owns, so changing one is as sensitive as minting a token.
Agents may be members (membership is a fact about the world), but an agent's
approval never counts anyway: ``core.gate`` only counts humans' approvals.
"""

from __future__ import annotations

import re
from typing import Any

from mergegate.core.principals import Permission
from mergegate.service.authz import Actor, require
from mergegate.service.errors import Invalid, NotFound
from mergegate.store import audit_db, principals
from mergegate.store import groups as store
from mergegate.store.db import Database

_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9_])?"
NAME = re.compile(rf"{_PART}(?:/{_PART})?")


def validate_name(name: str) -> str:
    name = name.removeprefix("@")
    if not NAME.fullmatch(name):
        raise Invalid(f"invalid group name {name!r}: like CODEOWNERS' @name or @org/team")
    return name


def _view(session, group) -> dict[str, Any]:
    return {"name": group.name, "members": store.members(session, group), "created_by": group.created_by}


def list_groups(db: Database, actor: Actor) -> list[dict[str, Any]]:
    with db.read() as session:
        return [_view(session, g) for g in store.list_all(session)]


def add_members(db: Database, actor: Actor, name: str, members: list[str]) -> dict[str, Any]:
    """Create the group if needed and add ``members`` (principal names)."""
    require(db, actor, Permission.MANAGE_PRINCIPALS, action="group.add", details={"group": name})
    name = validate_name(name)
    with db.write() as session:
        rows = []
        for member in members:
            row = principals.get(session, member)
            if row is None:
                raise NotFound(f"no principal named {member!r}")
            rows.append(row)
        group = store.get(session, name)
        created = group is None
        if group is None:
            group = store.create(session, name, created_by=actor.name)
        added = [r.name for r in rows if store.add_member(session, group, r, created_by=actor.name)]
        audit_db.append(
            session,
            action="group.add",
            outcome="ok",
            agent_id=actor.name,
            details={"group": name, "created": created, "added": added},
        )
        return _view(session, group)


def remove_member(db: Database, actor: Actor, name: str, member: str) -> dict[str, Any]:
    require(db, actor, Permission.MANAGE_PRINCIPALS, action="group.remove", details={"group": name})
    name = validate_name(name)
    with db.write() as session:
        group = store.get(session, name)
        row = principals.get(session, member)
        if group is None or row is None or not store.remove_member(session, group, row):
            raise NotFound(f"{member!r} is not a member of group {name!r}")
        audit_db.append(
            session, action="group.remove", outcome="ok", agent_id=actor.name, details={"group": name, "member": member}
        )
        return _view(session, group)
