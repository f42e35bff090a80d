"""The gate's answers about a change: its verdict, its checks, and merging it."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from mergegate.service import checks, merge, verdict
from mergegate.web.auth import CurrentActor
from mergegate.web.schemas import CheckIn, CheckOut, MergeIn, MergeOut, StatusOut, WhenReadyOut

router = APIRouter(prefix="/api/changes", tags=["gate"])


@router.get("/{number}/status", response_model=StatusOut)
def change_status(number: int, request: Request, actor: CurrentActor):
    """Every rule of the gate, satisfied or not, with the reason in words."""
    server = request.app.state.server
    return verdict.status(server.db, server.forge, number)


@router.get("/{number}/checks", response_model=list[CheckOut])
def list_checks(number: int, request: Request, actor: CurrentActor):
    return checks.list_for_change(request.app.state.server.db, number)


@router.post("/{number}/checks", response_model=CheckOut, status_code=status.HTTP_201_CREATED)
def post_check(number: int, body: CheckIn, request: Request, actor: CurrentActor):
    """Post a check result as yourself (``post_findings``; agents may). It is shown and
    never counts: only the gate's own checks on the landing commit do."""
    return checks.post(request.app.state.server.db, actor, number, body.model_dump())


@router.post("/{number}/merge", response_model=MergeOut)
def merge_change(number: int, request: Request, actor: CurrentActor, body: MergeIn | None = None):
    """Land the change now (``merge``: human maintainers and admins). 409 ``blocked``
    with every reason when a rule is not satisfied, or when the base moved (the gate then
    re-tests the new landing commit; merge again once it passes)."""
    method = body.method if body else None
    return merge.merge(request.app.state.server.db, request.app.state.context, actor, number, method)


@router.post("/{number}/merge-when-ready", response_model=WhenReadyOut)
def merge_when_ready(number: int, request: Request, actor: CurrentActor, body: MergeIn | None = None):
    """Ask the gate to merge as soon as every rule holds (``set_merge_when_ready``)."""
    method = body.method if body else None
    return merge.set_when_ready(request.app.state.server.db, request.app.state.context, actor, number, method=method)


@router.delete("/{number}/merge-when-ready", response_model=WhenReadyOut)
def cancel_merge_when_ready(number: int, request: Request, actor: CurrentActor):
    return merge.set_when_ready(request.app.state.server.db, request.app.state.context, actor, number, enabled=False)
