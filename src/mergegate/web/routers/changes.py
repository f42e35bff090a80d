"""Changes (numbers are global across repositories)."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from mergegate.service import changes
from mergegate.web.auth import CurrentActor
from mergegate.web.schemas import ChangeDetailOut, ChangeOut, CommentIn, CommentOut

router = APIRouter(prefix="/api/changes", tags=["changes"])


@router.get("", response_model=list[ChangeOut])
def list_changes(request: Request, actor: CurrentActor, repo: str | None = None, state: str | None = None):
    return changes.list_changes(request.app.state.server.db, repo=repo, state=state)


@router.get("/{number}", response_model=ChangeDetailOut)
def get_change(number: int, request: Request, actor: CurrentActor):
    return changes.get_change(request.app.state.server.db, number)


@router.post("/{number}/comments", response_model=CommentOut, status_code=status.HTTP_201_CREATED)
def add_comment(number: int, body: CommentIn, request: Request, actor: CurrentActor):
    """Comment on a change. Needs ``comment`` (agents have it)."""
    return changes.comment(request.app.state.server.db, actor, number, body.body)
