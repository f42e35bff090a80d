"""Server-defined groups (CODEOWNERS' ``@group``). Managing them: human admins."""

from __future__ import annotations

from fastapi import APIRouter, Request

from mergegate.service import groups
from mergegate.web.auth import CurrentActor
from mergegate.web.schemas import GroupMembersIn, GroupOut

router = APIRouter(prefix="/api/groups", tags=["groups"])


@router.get("", response_model=list[GroupOut])
def list_groups(request: Request, actor: CurrentActor):
    return groups.list_groups(request.app.state.server.db, actor)


@router.post("/{name:path}/members", response_model=GroupOut)
def add_members(name: str, body: GroupMembersIn, request: Request, actor: CurrentActor):
    """Create the group if needed and add members (``manage_principals``)."""
    return groups.add_members(request.app.state.server.db, actor, name, body.members)


@router.delete("/{name:path}/members/{member}", response_model=GroupOut)
def remove_member(name: str, member: str, request: Request, actor: CurrentActor):
    return groups.remove_member(request.app.state.server.db, actor, name, member)
