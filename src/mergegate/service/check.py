"""``mergegate check``: compute the change, run the agents concurrently, route, audit.

Every agent runs as its own asyncio task with its own timeout, so the slowest agent
bounds the wall time. Anything that stops an agent from finishing (an exception, a
timeout, a missing sandbox) becomes an ``error``/``timeout`` result, which routes the
change to ``error``: an unexamined change never passes.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Protocol

from mergegate.agents import Agent, AgentContext, AgentSkipped, registry
from mergegate.core.change import Change
from mergegate.core.results import AgentResult, AgentStatus
from mergegate.core.routing import Decision, route
from mergegate.runtime.sandbox import SandboxUnavailable, make_sandbox
from mergegate.service.policy_source import LoadedPolicy, load_policy
from mergegate.store.audit_log import AuditLog
from mergegate.vcs.git import GitRepo

CHECK_AGENT_ID = "mergegate/check"


class UsageError(ValueError):
    """The request cannot be run as given (unknown agent, bad ref): exit code 2."""


class Progress(Protocol):
    def agent_started(self, name: str) -> None: ...
    def agent_finished(self, result: AgentResult) -> None: ...


class _NoProgress:
    def agent_started(self, name: str) -> None:
        pass

    def agent_finished(self, result: AgentResult) -> None:
        pass


@dataclass(frozen=True)
class CheckReport:
    change: Change
    policy: LoadedPolicy
    results: tuple[AgentResult, ...]
    decision: Decision
    duration_s: float


def select_agents(loaded: LoadedPolicy, names: Sequence[str] | None) -> list[Agent]:
    agents = registry()
    if names:
        unknown = [n for n in names if n not in agents]
        if unknown:
            raise UsageError(f"unknown agent(s): {', '.join(unknown)} (known: {', '.join(agents)})")
        return [agents[n] for n in names]
    return [a for name, a in agents.items() if loaded.policy.agent(name).enabled]


def default_audit_path(repo: GitRepo) -> Path:
    return repo.git_dir / "mergegate" / "audit.jsonl"


def _materialise(repo: GitRepo, change: Change, scratch: Path) -> tuple[Path, Path]:
    """Write the changed files at the merge base and at head into scratch dirs."""
    base_dir, head_dir = scratch / "base", scratch / "head"
    for ref, directory, files in (
        (change.merge_base, base_dir, [f.base_path for f in change.files if f.exists_at_base]),
        (change.head, head_dir, [f.path for f in change.files if f.exists_at_head]),
    ):
        directory.mkdir(parents=True)
        for path, data in repo.read_blobs(ref, files).items():
            if data is None:
                continue
            target = directory / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    return base_dir, head_dir


async def run_agent(agent: Agent, ctx: AgentContext, timeout: float, progress: Progress) -> AgentResult:
    progress.agent_started(agent.name)
    started = time.monotonic()
    try:
        output = await asyncio.wait_for(agent.run(ctx), timeout)
        result = AgentResult(
            agent.name,
            AgentStatus.OK,
            tuple(output.findings),
            output.confidence,
            notes=tuple(output.notes),
        )
    except AgentSkipped as skip:
        result = AgentResult(agent.name, AgentStatus.SKIPPED, confidence=skip.confidence, detail=skip.reason)
    except TimeoutError as exc:
        # Either our own limit, or an agent reporting that a step it ran hung (its message).
        result = AgentResult(
            agent.name,
            AgentStatus.TIMEOUT,
            confidence=0.0,
            detail=str(exc) or f"did not finish within {timeout:g}s",
        )
    except SandboxUnavailable as exc:
        result = AgentResult(agent.name, AgentStatus.ERROR, confidence=0.0, detail=str(exc))
    except Exception as exc:  # any bug or tool failure: fail closed, say what happened
        result = AgentResult(agent.name, AgentStatus.ERROR, confidence=0.0, detail=f"{type(exc).__name__}: {exc}")
    result = AgentResult(
        result.name,
        result.status,
        result.findings,
        result.confidence,
        round(time.monotonic() - started, 3),
        result.detail,
        result.notes,
    )
    progress.agent_finished(result)
    return result


async def run_check(
    repo: GitRepo,
    base_ref: str,
    head_ref: str = "HEAD",
    agent_names: Sequence[str] | None = None,
    audit: AuditLog | None = None,
    progress: Progress | None = None,
) -> CheckReport:
    started = time.monotonic()
    progress = progress or _NoProgress()
    change = repo.change(base_ref, head_ref)
    loaded = load_policy(repo, change.base, base_ref)
    agents = select_agents(loaded, agent_names)
    sandbox_factory = cache(lambda: make_sandbox(loaded.policy.sandbox.value))

    scratch = Path(tempfile.mkdtemp(prefix="mergegate-check-"))
    try:
        base_dir, head_dir = await asyncio.to_thread(_materialise, repo, change, scratch)
        tasks = []
        for agent in agents:
            settings = loaded.policy.agent(agent.name)
            ctx = AgentContext(
                repo=repo,
                change=change,
                policy=loaded.policy,
                options=loaded.options[agent.name],
                base_dir=base_dir,
                head_dir=head_dir,
                scratch=scratch / f"agent-{agent.name}",
                sandbox_factory=sandbox_factory,
                audit=audit,
                policy_applied=policy_applied(loaded),
            )
            ctx.scratch.mkdir()
            timeout = settings.timeout or agent.default_timeout
            tasks.append(run_agent(agent, ctx, timeout, progress))
        results = tuple(await asyncio.gather(*tasks))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    decision = route(change, results, loaded.policy)
    report = CheckReport(change, loaded, results, decision, round(time.monotonic() - started, 3))
    if audit is not None:
        record(audit, report)
    return report


def policy_applied(loaded: LoadedPolicy) -> str:
    """How the audit log names the policy a decision was made under."""
    return f"{loaded.source}@{loaded.digest}"


def record(audit: AuditLog, report: CheckReport) -> None:
    """Append one entry per agent run and one for the decision."""
    applied = policy_applied(report.policy)
    subject = f"{report.change.merge_base[:12]}..{report.change.head[:12]}"
    for r in report.results:
        audit.append(
            agent_id=f"mergegate/{r.name}",
            action="agent_run",
            confidence_score=r.confidence,
            policy_applied=applied,
            outcome=r.status.value,
            subject=subject,
            findings=len(r.findings),
            detail=r.detail,
        )
    d = report.decision
    audit.append(
        agent_id=CHECK_AGENT_ID,
        action="decision",
        confidence_score=d.confidence,
        policy_applied=applied,
        outcome=d.action.value,
        subject=subject,
        mode=d.mode.value,
        reasons=list(d.reasons),
    )
