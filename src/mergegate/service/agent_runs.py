"""Server-hosted agent runs: started by a human, run in the background, paused durably.

``start`` (``POST /api/agent-runs``; human maintainers and admins) runs a runtime agent
declared in the **base branch's** ``.mergegate.yml`` on an open change, as an *agent
principal* (default: the principal named like the agent), with either

- a ``prompt``: a model run through ``runtime.llm_agent`` (the model from the policy's
  ``models:`` or ``MERGEGATE_MODEL``; without one the run ends ``skipped``, never faked),
- or ``calls``: a scripted list in the ``agent replay`` trajectory format (policy tests).

The workspace is a checkout of the change's head under
``<data>/agent-runs/<id>/work``, kept for the run's lifetime, so a resumed run sees the
files it left (it is removed when the run ends). Every call goes through ``ToolRunner`` with ``DbApprovals`` as its gate
and the database audit chain as its log.

``AgentRunWorker`` advances runs from ``agent_run`` events of the durable inbox, leased
like checks (``service.leased``: a run is too long for one transaction): claim and lease,
run outside any transaction, finish. A run that raises ends in ``error``; when its
outcome cannot be stored (or a run's own progress or finish transaction fails and even
its ``error`` cannot be), the event is given back at once and the run continues from its
last saved state; a run claimed more than ``leased.MAX_ATTEMPTS`` times ends in ``error`` (fail
closed). A call that needs approval persists the run's state and marks it
``paused``; the event is done. A decision (or an expiry) enqueues a new event and the
run continues from its state: the scripted position, or the pydantic-ai conversation
with the paused calls resumed through pydantic-ai's deferred tools. Turns, tokens and
dollars are restored from the row, so the budget holds across pauses and restarts.

A server killed mid-run leaves the event leased; the lease is renewed only while the run
is alive, so it runs out within ``LEASE_S`` (on SQLite the next start releases it at once),
and the run continues from the last state it saved (for a scripted run, the call after the last
one recorded; for a model run, its last pause or its start — model requests after it
are asked again). Approved ``PostComment`` and ``OpenChange`` calls are carried out by
``service.run_delivery`` as the agent principal, exactly once (a call run again after a
crash finds its delivery recorded), and listed in the run's ``outbox``.

A run's results (call outputs included) are read by humans and by the run's own agent
principal; another agent asking is refused (403, audited).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mergegate.core.policy import PolicyError
from mergegate.core.principals import PrincipalKind, Role
from mergegate.forge.local.bare_git import BareGitRepo
from mergegate.forge.local.repos import ForgeError
from mergegate.runtime.budget import Spend
from mergegate.runtime.replay import TrajectoryError, parse_trajectory
from mergegate.runtime.runner import CallResult, Status, ToolRunner
from mergegate.runtime.workspace import Workspace
from mergegate.service import approvals, run_delivery
from mergegate.service.authz import Actor, refuse
from mergegate.service.errors import Conflict, Invalid, NotFound
from mergegate.service.events import describe
from mergegate.service.leased import LEASE_S, Claimed, LeasedWorker
from mergegate.service.policy_source import load_policy
from mergegate.service.runtime_agents import UnknownAgent, build_runner, find_agent
from mergegate.store import audit_db, principals
from mergegate.store import changes as change_store
from mergegate.store import events as event_store
from mergegate.store.db import Database
from mergegate.store.models import AgentRunRow, ChangeRow, CheckRunRow, RepoRow, utcnow

log = logging.getLogger("mergegate.agent_runs")

RUN_KIND = approvals.RUN_KIND
END_STATES = ("done", "error", "skipped", "budget_exceeded", "refused")
MAX_CALLS = 1000
MAX_PROMPT = 65_536
#: An approval request waits this long for a human unless the server or the run says otherwise.
DEFAULT_APPROVAL_TIMEOUT_S = 86_400
MAX_APPROVAL_TIMEOUT_S = 30 * 86_400
INSTRUCTIONS = (
    "You are the agent {agent} working on change {change} of repository {repo} (its head is checked out "
    "in your workspace). Use only the tools you are given. Calls that act outside the workspace pause "
    "until a human approves them; if a call is refused or denied, the result says why. Answer with a "
    "short summary of what you did."
)


def workspace_dir(data_dir: Path, run_id: int) -> Path:
    return data_dir / "agent-runs" / str(run_id) / "work"


# -- views -----------------------------------------------------------------------------------


def view(session: Session, row: AgentRunRow) -> dict[str, Any]:
    repo = session.get(RepoRow, row.repo_id)
    agent_principal = principals.get_by_id(session, row.principal_id)
    state = json.loads(row.state or "{}")
    return {
        "id": row.id,
        "repo": repo.name if repo else None,
        "change": row.change_id,
        "agent": row.agent,
        "principal": agent_principal.name if agent_principal else None,
        "started_by": row.started_by,
        "kind": row.kind,
        "status": row.status,
        "reason": row.reason,
        "head_sha": row.head_sha,
        "base_sha": row.base_sha,
        "policy_applied": row.policy_applied,
        "approval_timeout_s": row.approval_timeout_s,
        "turns": row.turns,
        "requests": row.requests,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "cost_usd": row.cost_usd,
        "results": state.get("results", []),
        "output": state.get("output"),
        "outbox": [_opened(session, item) for item in state.get("outbox", [])],
        "pending_approvals": [r.id for r in approvals.pending_of_run(session, row.id)],
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
    }


def _opened(session: Session, item: dict[str, Any]) -> dict[str, Any]:
    """A proposed change's outbox entry, with the change its push opened once handled."""
    if "event" not in item or "ref" not in item:
        return item
    patchset = change_store.patchset_for(session, item["event"], item["ref"])
    return {**item, "change": patchset.change_id if patchset else None}


def list_runs(
    db: Database, actor: Actor, *, change: int | None = None, status: str | None = None
) -> list[dict[str, Any]]:
    """The runs ``actor`` may read: every run for a human, its own for an agent."""
    with db.read() as session:
        query = select(AgentRunRow).order_by(AgentRunRow.id)
        if change is not None:
            query = query.where(AgentRunRow.change_id == change)
        if status is not None:
            query = query.where(AgentRunRow.status == status)
        return [view(session, r) for r in session.execute(approvals.readable(query, actor)).scalars()]


def get_run(db: Database, actor: Actor, run_id: int) -> dict[str, Any]:
    with db.read() as session:
        row = session.get(AgentRunRow, run_id)
        if row is None:
            raise NotFound(f"no agent run {run_id}")
        refusal = approvals.why_not_read(actor, row)
        if refusal is None:
            return view(session, row)
    raise refuse(db, actor.name, "agent_run.read", refusal, {"run": run_id})


#: The llm-review agent's note in a check report: "spent N requests, … tokens, $C (run …)".
_CHECK_SPEND = re.compile(r"spent \d+ requests, \d+ input \+ \d+ output tokens, \$([0-9.]+)")


def change_cost(session: Session, change_id: int) -> dict[str, Any]:
    """What models cost for a change: its hosted agent runs plus the gate checks' LLM review
    (read from the spend note llm-review leaves in each check report that ran it)."""
    costs = session.execute(select(AgentRunRow.cost_usd).where(AgentRunRow.change_id == change_id)).scalars().all()
    runs = sum((Decimal(c) for c in costs), Decimal(0))
    reports = session.execute(
        select(CheckRunRow.decision).where(CheckRunRow.change_id == change_id, CheckRunRow.decision.is_not(None))
    ).scalars()
    checks = Decimal(0)
    for report in reports:
        for agent in json.loads(report).get("agents", []):
            for note in agent.get("notes", []):
                if found := _CHECK_SPEND.search(note):
                    checks += Decimal(found.group(1))
    return {
        "agent_runs": len(costs),
        "agent_runs_usd": str(runs),
        "checks_usd": str(checks),
        "total_usd": str(runs + checks),
    }


# -- starting --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartRequest:
    change: int
    agent: str
    principal: str | None = None
    prompt: str | None = None
    calls: list[Any] | None = None
    approval_timeout_s: int | None = None


def _calls(raw: list[Any]) -> list[dict[str, Any]]:
    if not raw:
        raise Invalid("calls: give at least one call")
    if len(raw) > MAX_CALLS:
        raise Invalid(f"calls: at most {MAX_CALLS}")
    lines = [json.dumps(c) for c in raw]
    try:
        parsed = parse_trajectory(lines, "calls")
    except TrajectoryError as exc:
        raise Invalid(str(exc).replace("calls:", "calls line ", 1)) from None
    return [{"tool": c.tool, "args": c.args} for c in parsed]


def _why_not_start(actor: Actor) -> str | None:
    p = actor.principal
    if p.kind is not PrincipalKind.HUMAN:
        return f"{p.name} is an agent: agents cannot start agent runs (a human maintainer starts them)"
    if p.role not in (Role.MAINTAINER, Role.ADMIN):
        return f"starting an agent run needs the maintainer or admin role ({p.name} is a {p.role.value})"
    return None


def start(db: Database, forge: Any, data_dir: Path, default_timeout_s: int, actor: Actor, req: StartRequest):
    if (why := _why_not_start(actor)) is not None:
        raise refuse(db, actor.name, "agent_run.start", why, {"change": req.change, "agent": req.agent})
    if actor.principal_id is None:
        raise Invalid("the local operator cannot start agent runs; use a principal's token")
    if (req.prompt is None) == (req.calls is None):
        raise Invalid("give either prompt (a model run) or calls (a scripted run)")
    if req.prompt is not None and not (req.prompt.strip() and len(req.prompt) <= MAX_PROMPT):
        raise Invalid(f"prompt: between 1 and {MAX_PROMPT} characters")
    calls = _calls(req.calls) if req.calls is not None else None
    timeout = req.approval_timeout_s if req.approval_timeout_s is not None else default_timeout_s
    if not 1 <= timeout <= MAX_APPROVAL_TIMEOUT_S:
        raise Invalid(f"approval_timeout_s: between 1 and {MAX_APPROVAL_TIMEOUT_S} seconds")
    principal_name = req.principal or req.agent
    with db.read() as session:
        change = change_store.get(session, req.change)
        if change is None:
            raise NotFound(f"no change {req.change}")
        if change.state != "open":
            raise Conflict(f"change {req.change} is {change.state}; agents run on open changes")
        repo = session.get(RepoRow, change.repo_id)
        agent_row = principals.get(session, principal_name)
        head, target = change.head_sha, change.target_branch
    if agent_row is None or agent_row.kind != PrincipalKind.AGENT.value:
        what = f"no principal {principal_name!r}" if agent_row is None else f"{principal_name!r} is a human"
        raise Invalid(
            f"{what}, not an agent principal: a run acts as one "
            f"(create it: mergegate user add {principal_name} --kind agent; or pass principal)"
        )
    try:
        bare = forge.open(repo.name)
    except ForgeError as exc:
        raise Conflict(str(exc)) from None
    base = bare.resolve(f"refs/heads/{target}")
    if base is None:
        raise Conflict(f"the target branch {target} of change {req.change} does not exist")
    try:
        loaded = load_policy(BareGitRepo(bare.path), base, target)
        find_agent(loaded, req.agent)
    except (PolicyError, UnknownAgent) as exc:
        raise Invalid(str(exc)) from None
    state: dict[str, Any] = {"prompt": req.prompt} if calls is None else {"calls": calls, "next": 0}
    state["results"] = []
    with db.write() as session:
        row = AgentRunRow(
            repo_id=repo.id,
            change_id=req.change,
            agent=req.agent,
            principal_id=agent_row.id,
            started_by=actor.name,
            kind="scripted" if calls is not None else "model",
            status="queued",
            reason="",
            state=json.dumps(state),
            head_sha=head,
            base_sha=base,
            policy_applied=f"{loaded.source}@{loaded.digest}",
            approval_timeout_s=timeout,
            turns=0,
            requests=0,
            input_tokens=0,
            output_tokens=0,
            cost_usd="0",
        )
        session.add(row)
        session.flush()
        run_id = row.id
        audit_db.append(
            session,
            action="agent_run.started",
            outcome="queued",
            agent_id=f"agent:{req.agent}",
            human_reviewer=actor.name,
            policy_applied=row.policy_applied,
            details={"run": run_id, "change": req.change, "principal": principal_name, "kind": row.kind},
        )
    try:
        _checkout(bare.path, workspace_dir(data_dir, run_id), req.change, head)
    except Exception as exc:  # no workspace, no run: say why and keep the row as a record
        _finish(db, run_id, "error", f"the workspace could not be checked out: {exc}")
        raise Conflict(f"agent run {run_id}: the workspace could not be checked out: {exc}") from None
    with db.write() as session:
        row = session.get(AgentRunRow, run_id)
        row.event_id = event_store.enqueue(session, RUN_KIND, {"run": run_id}).id
        return view(session, row)


def _git(*args: str, cwd: Path | None = None) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({"GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"})
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"git {args[0]}: {proc.stderr.strip() or proc.returncode}")


def _checkout(bare: Path, dest: Path, change: int, head: str) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    _git("init", "-q", str(dest))
    _git("fetch", "-q", "--no-tags", str(bare), f"+refs/changes/{change}/head:refs/mergegate/change", cwd=dest)
    _git("-c", "advice.detachedHead=false", "checkout", "-q", "--detach", head, cwd=dest)


# -- running ---------------------------------------------------------------------------------


#: A call's output is kept (shortened) with the run, for `mergegate agent runs ID`.
MAX_OUTPUT_CHARS = 4000


def _result(result: CallResult) -> dict[str, Any]:
    data = result.to_json()
    if len(data["output"]) > MAX_OUTPUT_CHARS:
        data["output"] = data["output"][:MAX_OUTPUT_CHARS] + f"… [{len(result.output)} characters]"
    return data


class DbAudit:
    """The runner's audit log on the server: each entry in its own write transaction."""

    def __init__(self, db: Database):
        self.db = db

    def append(self, **fields: Any) -> dict[str, Any]:
        known = {k: fields.pop(k, None) for k in ("agent_id", "action", "outcome", "policy_applied")}
        reviewer, score = fields.pop("human_reviewer", None), fields.pop("confidence_score", None)
        with self.db.write() as session:
            return audit_db.append(
                session,
                action=str(known["action"]),
                outcome=str(known["outcome"]),
                agent_id=known["agent_id"],
                policy_applied=known["policy_applied"],
                human_reviewer=reviewer,
                confidence_score=score,
                details=json.loads(json.dumps(fields, default=str)),
            )


class HostedRunner(ToolRunner):
    """A runner whose approved external effects are delivered by the gate, as the agent:
    ``deliver(call index, outbox item)`` right after the call that queued it."""

    def __init__(self, *args: Any, deliver: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._deliver = deliver

    async def call(self, tool_name: str, args: Any, index: int | None = None) -> CallResult:
        result = await super().call(tool_name, args, index)
        while self.ctx.outbox:
            self._deliver(result.index, self.ctx.outbox.pop(0))
        return result


def _finish(db: Database, run_id: int, status: str, reason: str, **updates: Any) -> None:
    with db.write() as session:
        _finish_in(session, session.get(AgentRunRow, run_id), status, reason, **updates)


def _finish_in(session: Session, row: AgentRunRow, status: str, reason: str, **updates: Any) -> None:
    _apply(row, status=status, reason=reason[:4000], **updates)
    if status == "paused" and not approvals.pending_of_run(session, row.id):
        # Every paused call was decided while the run was still saving: go on at once.
        approvals.resume(session, row)
    if status in END_STATES:
        row.finished_at = utcnow()
    audit_db.append(
        session,
        action="agent_run.finished" if status in END_STATES else f"agent_run.{status}",
        outcome=status,
        agent_id=f"agent:{row.agent}",
        policy_applied=row.policy_applied,
        details={"run": row.id, "change": row.change_id, "reason": row.reason, "cost_usd": row.cost_usd},
    )


def _apply(row: AgentRunRow, **updates: Any) -> None:
    for key, value in updates.items():
        if key == "state":
            value = json.dumps(value)
        setattr(row, key, value)
    row.updated_at = utcnow()


def _save(db: Database, run_id: int, **updates: Any) -> None:
    with db.write() as session:
        _apply(session.get(AgentRunRow, run_id), **updates)


@dataclass
class _Job:
    run_id: int
    agent: str
    kind: str
    change: int | None
    repo: str
    head_sha: str
    base_sha: str
    target: str
    principal_id: int
    timeout_s: int
    turns: int
    spend: Spend
    state: dict[str, Any]


@dataclass(frozen=True)
class _Outcome:
    summary: str
    #: Set when the run must end in error (it raised, or it failed too often): why.
    error: str | None = None


class AgentRunWorker(LeasedWorker[_Outcome]):
    """A background thread (``service.leased``) that expires overdue approvals and
    advances queued runs, one at a time."""

    kind = RUN_KIND
    noun = "agent run"

    def __init__(self, db: Database, forge: Any, data_dir: Path, *, poll_s: float = 0.2, lease_s: float = LEASE_S):
        super().__init__(db, log, workers=1, poll_s=poll_s, lease_s=lease_s)
        self.forge = forge
        self.data_dir = data_dir

    def before_claim(self) -> None:
        approvals.expire_due(self.db)

    def work(self, claimed: Claimed) -> _Outcome:
        run_id = claimed.payload["run"]
        if claimed.attempts > self.limits().max_attempts:  # it keeps failing: stop (fail closed)
            last = f"; last: {claimed.last_error}" if claimed.last_error else ""
            why = (
                f"the run was started {claimed.attempts - 1} times without finishing (its worker stopped, "
                f"or storing its outcome failed{last})"
            )
            return _Outcome(f"error: {why}"[:2000], why)
        try:
            return _Outcome(self.advance(run_id))
        except Exception as exc:  # fail closed: the run ends in error, and says why
            log.warning("agent run %s failed: %s", run_id, exc)
            return _Outcome(f"error: {describe(exc)}"[:2000], describe(exc))

    def record(self, claimed: Claimed, outcome: _Outcome) -> None:
        run_id = claimed.payload["run"]
        with self.db.write() as session:
            event = event_store.lock(session, claimed.event_id)
            if event is None or event.status != "pending":
                return  # another worker finished it after our lease ran out
            row = session.get(AgentRunRow, run_id, with_for_update=True)
            if outcome.error is not None and row is not None and row.status not in END_STATES:
                _finish_in(session, row, "error", f"error: {outcome.error}")
            event_store.finish(session, event, {"run": run_id, "outcome": outcome.summary}, count_attempt=False)

    def recorded(self, claimed: Claimed) -> None:
        run_id = claimed.payload["run"]
        with self.db.read() as session:
            ended = (run := session.get(AgentRunRow, run_id)) is not None and run.status in END_STATES
        if ended:  # the workspace lives as long as the run
            shutil.rmtree(workspace_dir(self.data_dir, run_id).parent, ignore_errors=True)

    def _take(self, run_id: int) -> _Job | None:
        """Mark the run running and load what it needs; None when there is nothing to do."""
        with self.db.write() as session:
            row = session.execute(
                select(AgentRunRow).where(AgentRunRow.id == run_id).with_for_update()
            ).scalar_one_or_none()
            if row is None or row.status in END_STATES:
                return None
            if row.status == "paused" and approvals.pending_of_run(session, row.id):
                return None
            change = session.get(ChangeRow, row.change_id) if row.change_id else None
            repo = session.get(RepoRow, row.repo_id)
            _apply(row, status="running", reason="")
            return _Job(
                run_id=row.id,
                agent=row.agent,
                kind=row.kind,
                change=row.change_id,
                repo=repo.name,
                head_sha=row.head_sha,
                base_sha=row.base_sha,
                target=change.target_branch if change else "",
                principal_id=row.principal_id,
                timeout_s=row.approval_timeout_s,
                turns=row.turns,
                spend=Spend(row.requests, row.input_tokens, row.output_tokens, Decimal(row.cost_usd)),
                state=json.loads(row.state),
            )

    def advance(self, run_id: int) -> str:
        job = self._take(run_id)
        if job is None:
            return "nothing to do"
        bare = self.forge.open(job.repo)
        loaded = load_policy(BareGitRepo(bare.path), job.base_sha, job.target)
        spec = find_agent(loaded, job.agent)
        runner = build_runner(
            loaded,
            job.agent,
            spec,
            Workspace(workspace_dir(self.data_dir, run_id)),
            DbAudit(self.db),
            approvals.DbApprovals(self.db, run_id, job.timeout_s),
            run_id=f"agent-run-{run_id}",
            cls=HostedRunner,
            deliver=lambda index, item: self._deliver(job, index, item),
        )
        if job.kind == "scripted":
            return asyncio.run(self._scripted(job, runner))
        return asyncio.run(self._model(job, runner, loaded, spec))

    def _deliver(self, job: _Job, index: int, item: dict[str, Any]) -> None:
        run = run_delivery.Run(
            id=job.run_id,
            principal_id=job.principal_id,
            change=job.change,
            repo=job.repo,
            head_sha=job.head_sha,
            target=job.target,
            workspace=workspace_dir(self.data_dir, job.run_id),
        )
        outcome = run_delivery.deliver(self.db, self.forge, run, index, item)
        job.state.setdefault("outbox", []).append({**item, "call_index": index, **outcome})

    async def _scripted(self, job: _Job, runner: ToolRunner) -> str:
        calls, state = job.state["calls"], job.state
        runner.turns = state["next"]
        for index in range(state["next"], len(calls)):
            result = await runner.call(calls[index]["tool"], calls[index]["args"], index=index)
            if result.status is Status.PAUSED:
                _finish(self.db, job.run_id, "paused", result.reason, state=state, turns=runner.turns - 1)
                return "paused"
            state["results"].append(_result(result))
            state["next"] = index + 1
            _save(self.db, job.run_id, state=state, turns=runner.turns)
        refused = sum(1 for r in state["results"] if r["status"] != "allowed")
        _finish(self.db, job.run_id, "done", f"{len(calls)} call(s), {refused} refused or denied", state=state)
        return "done"

    async def _model(self, job: _Job, runner: ToolRunner, loaded: Any, spec: Any) -> str:
        from mergegate.runtime.budget import UnknownPrice
        from mergegate.runtime.llm_agent import RunStatus, plan_run, run_llm_agent
        from mergegate.runtime.models import ModelConfigError

        try:
            plan = plan_run(loaded.policy.models, job.agent, spec)
        except (ModelConfigError, UnknownPrice) as exc:
            _finish(self.db, job.run_id, "error", str(exc))
            return "error"
        if plan is None:
            why = (
                "skipped: no model configured (set models.default in the base branch's .mergegate.yml, "
                "or MERGEGATE_MODEL on the server)"
            )
            _finish(self.db, job.run_id, "skipped", why)
            return "skipped"
        plan.budget.spent = job.spend
        state = job.state
        paused: dict[str, int] = state.get("paused") or {}
        runner.turns = job.turns - len(paused)
        history = state["messages"].encode() if state.get("messages") else None
        run = await run_llm_agent(
            runner=runner,
            plan=plan,
            output_type=str,
            instructions=INSTRUCTIONS.format(agent=job.agent, change=job.change, repo=job.repo),
            prompt=None if history else state["prompt"],
            pausable=True,
            message_history=history,
            resume=paused or None,
        )
        if run.messages is not None:
            state["messages"] = run.messages.decode()
        state["paused"] = dict(run.paused)
        state["results"] = state.get("results", []) + [_result(c) for c in run.calls]
        if run.output is not None:
            state["output"] = str(run.output)[:20_000]
        spend = run.spend
        status = {
            RunStatus.PAUSED: "paused",
            RunStatus.COMPLETED: "done",
            RunStatus.BUDGET_EXCEEDED: "budget_exceeded",
        }.get(run.status, "error")
        reason = run.reason or (str(run.output)[:2000] if run.output is not None else "")
        _finish(
            self.db,
            job.run_id,
            status,
            reason,
            state=state,
            turns=runner.turns,
            requests=spend.requests,
            input_tokens=spend.input_tokens,
            output_tokens=spend.output_tokens,
            cost_usd=str(spend.cost_usd),
        )
        return status
