"""Server-hosted agent runs: start one on a change (human maintainers and admins), read them
(humans, and the agent principal a run acts as)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, ConfigDict, Field

from mergegate.service import agent_runs
from mergegate.web.auth import CurrentActor

router = APIRouter(prefix="/api/agent-runs", tags=["agent runs"])


class AgentRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    change: int
    agent: str = Field(..., min_length=1, max_length=100, description="A runtime agent of the base policy.")
    principal: str | None = Field(None, description="The agent principal it acts as (default: the agent's name).")
    prompt: str | None = Field(None, description="A model run: what to do.")
    calls: list[Any] | None = Field(None, description='A scripted run: [{"tool": …, "args": {…}}, …].')
    approval_timeout_s: int | None = Field(None, description="How long its paused calls wait (default: server's).")


class AgentRunOut(BaseModel):
    id: int
    repo: str | None
    change: int | None
    agent: str
    principal: str | None
    started_by: str
    kind: str
    status: str
    reason: str
    head_sha: str | None
    base_sha: str | None
    policy_applied: str | None
    approval_timeout_s: int
    turns: int
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: str
    results: list[dict[str, Any]]
    output: str | None
    outbox: list[dict[str, Any]]
    pending_approvals: list[int]
    created_at: str
    updated_at: str
    finished_at: str | None


@router.post("", response_model=AgentRunOut, status_code=status.HTTP_201_CREATED)
def start_run(body: AgentRunIn, request: Request, actor: CurrentActor):
    """Start an agent on a change, in the background (201 with the queued run)."""
    server = request.app.state.server
    run = agent_runs.start(
        server.db,
        server.forge,
        server.settings.data_dir,
        server.settings.approval_timeout_s,
        actor,
        agent_runs.StartRequest(**body.model_dump()),
    )
    worker = getattr(request.app.state, "agent_worker", None)
    if worker is not None:
        worker.wake()
    return run


@router.get("", response_model=list[AgentRunOut])
def list_runs(request: Request, actor: CurrentActor, change: int | None = None, status: str | None = None):
    """Every run for a human; for an agent, only the runs that act as it."""
    return agent_runs.list_runs(request.app.state.server.db, actor, change=change, status=status)


@router.get("/{run_id}", response_model=AgentRunOut)
def get_run(run_id: int, request: Request, actor: CurrentActor):
    """A run with its calls' results: 403 (audited) for an agent the run does not act as."""
    return agent_runs.get_run(request.app.state.server.db, actor, run_id)
