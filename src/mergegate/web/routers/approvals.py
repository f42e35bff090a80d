"""Durable approval pauses: the calls agents wait on, and the humans' decisions.

Deciding needs a human who is not the run's agent principal and not the author of the
change the run acts on (403, audited); a decided or expired request is a 409; an
unknown id a 404.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from mergegate.service import approvals
from mergegate.web.auth import CurrentActor

router = APIRouter(prefix="/api/approvals", tags=["approvals"])


class ApprovalOut(BaseModel):
    id: int
    run: int
    repo: str | None
    change: int | None
    agent: str
    call_index: int
    tool: str
    args: dict[str, Any]
    why: str
    fingerprint: str
    status: str = Field(description="pending, approved, denied or expired (a timed-out approval is a denial)")
    requested_at: str
    expires_at: str
    decided_by: str | None
    decided_at: str | None
    reason: str | None


class ApproveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=approvals.MAX_REASON)


class DenyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(..., min_length=1, max_length=approvals.MAX_REASON, description="Given to the agent.")


def _wake(request: Request) -> None:
    worker = getattr(request.app.state, "agent_worker", None)
    if worker is not None:
        worker.wake()


@router.get("", response_model=list[ApprovalOut])
def list_approvals(request: Request, actor: CurrentActor, state: str | None = None, run: int | None = None):
    """Approval requests, oldest first (``state=pending`` for what waits on a human).

    Humans see every request; an agent sees only its own runs' requests.
    """
    return approvals.list_requests(request.app.state.server.db, actor, state, run)


@router.get("/{request_id}", response_model=ApprovalOut)
def get_approval(request_id: int, request: Request, actor: CurrentActor):
    return approvals.get_request(request.app.state.server.db, actor, request_id)


@router.post("/{request_id}/approve", response_model=ApprovalOut)
def approve(request_id: int, request: Request, actor: CurrentActor, body: ApproveIn | None = None):
    """Let the paused call run; the run resumes."""
    result = approvals.decide(
        request.app.state.server.db, actor, request_id, approve=True, reason=body.reason if body else ""
    )
    _wake(request)
    return result


@router.post("/{request_id}/deny", response_model=ApprovalOut)
def deny(request_id: int, body: DenyIn, request: Request, actor: CurrentActor):
    """Refuse the paused call; the agent receives the reason as the call's result."""
    result = approvals.decide(request.app.state.server.db, actor, request_id, approve=False, reason=body.reason)
    _wake(request)
    return result
