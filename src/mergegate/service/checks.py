"""Check runs: the gate's own (``mergegate/check``, produced by the gate) and posted ones.

The gate checks two commits of every patchset: the change's head (informational) and
the landing commit (``service.landing``), which is the one that counts. Each is a
``check`` event and a ``pending`` row in ``check_runs``, written in the push's
transaction; the push handler itself never runs a check (post-receive waits for it).

``CheckWorker`` runs them in a small pool of threads, apart from the event dispatcher,
so a slow check never holds up pushes, reviews or merges. A check is too long to run
inside a database transaction (on SQLite that would hold the write lock for its whole
run), so a check event is *leased* (``service.leased``): claimed and leased in one short
transaction, ``service.check.run_check`` run on the exact commit outside any transaction
while the lease is renewed, then the result stored, audited and the event marked done
in one short transaction, retried with back-off and else given back at once (run again
within seconds). A live worker's lease never runs out, however long its check; a dead
server's does within ``LEASE_S`` (on SQLite a start releases it at once), and its check
runs again. Fail closed: a check that raises is ``error``; a check claimed
``MAX_ATTEMPTS`` times without a recorded result is ``error``; and if even that result
cannot be stored, the event is parked as ``failed`` (audited) and the run stays
``pending``, which blocks the merge.

The gate's check is ``success`` only when the check decision passes (``auto_approve``
or ``human_review``: the AI gate is green, a human still approves the merge, design
invariant 7); ``reject`` and ``block_security`` are ``failure``, ``error`` is ``error``.

Anyone with ``post_findings`` (agents included) may post a result under their own
name as producer. It is stored and shown and never counts: ``core.gate`` counts only
results produced by the gate on the landing commit, and nobody can post as the gate
(its name is reserved, and the producer of a posted result is always the poster).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from mergegate.core.principals import Permission
from mergegate.core.routing import Action
from mergegate.forge.local.bare_git import BareGitRepo
from mergegate.forge.local.repos import Forge
from mergegate.service import leased
from mergegate.service.accounts import SERVER_ACTOR
from mergegate.service.authz import Actor, require
from mergegate.service.errors import Invalid, NotFound
from mergegate.service.events import describe
from mergegate.service.leased import Claimed, LeasedWorker, Limits
from mergegate.store import audit_db
from mergegate.store import changes as change_store
from mergegate.store import checks as store
from mergegate.store import events as event_store
from mergegate.store.db import Database
from mergegate.store.models import ChangeRow, CheckRunRow, RepoRow

log = logging.getLogger("mergegate.checks")

#: The gate's identity: the producer of the checks that count, the actor of gate events.
GATE = SERVER_ACTOR
CHECK_NAME = "mergegate/check"
CHECK_KIND = "check"
#: The lease, the attempts cap and the record retries (``service.leased``), here so that
#: they can be tuned (and shortened in tests) for checks alone.
LEASE_S = leased.LEASE_S
MAX_ATTEMPTS = leased.MAX_ATTEMPTS
RECORD_TRIES = leased.RECORD_TRIES
RECORD_BACKOFF_S = leased.RECORD_BACKOFF_S
RELEASE_BACKOFF_S = leased.RELEASE_BACKOFF_S

_STATUS_OF = {
    Action.AUTO_APPROVE: "success",
    Action.HUMAN_REVIEW: "success",
    Action.REJECT: "failure",
    Action.BLOCK_SECURITY: "failure",
    Action.ERROR: "error",
}
POSTED_STATUSES = ("success", "failure", "error", "skipped", "pending")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


# -- scheduling -------------------------------------------------------------------------


def schedule(session: Session, repo: RepoRow, change: ChangeRow, *, commit: str, base: str, role: str) -> CheckRunRow:
    """A pending gate check of ``commit`` (against ``base``) and the event that runs it."""
    run = store.add(
        session,
        repo_id=repo.id,
        change_id=change.id,
        commit=commit,
        name=CHECK_NAME,
        producer=GATE,
        status="pending",
        role=role,
        base_sha=base,
        summary="queued",
    )
    payload = {"run": run.id, "repo": repo.name, "change": change.id, "commit": commit, "base": base, "role": role}
    run.event_id = event_store.enqueue(session, CHECK_KIND, payload).id
    session.flush()
    return run


def already_checked(session: Session, repo: RepoRow, commit: str, base: str) -> bool:
    """Whether the gate has a result (or one on its way) for ``commit`` against ``base``.

    An errored run does not count as checked: a recomputation is a chance to run again.
    """
    return any(
        r.producer == GATE and r.base_sha == base and r.status != "error" and r.role != "posted"
        for r in store.on_commits(session, repo.id, [commit])
    )


# -- the worker ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Result:
    status: str
    summary: str
    decision: str | None = None
    blocking_findings: int | None = None
    agent_runs: tuple[dict[str, Any], ...] = ()
    policy: str | None = None
    confidence: float | None = None


class CheckWorker(LeasedWorker[_Result]):
    """``workers`` threads that claim, run and record check events (``service.leased``)."""

    kind = CHECK_KIND
    noun = "check"

    def __init__(self, db: Database, forge: Forge, *, workers: int = 2, poll_s: float = 0.2, lease_s: float = LEASE_S):
        super().__init__(db, log, workers=workers, poll_s=poll_s, lease_s=lease_s)
        self.forge = forge

    def limits(self) -> Limits:
        # Read at each use: this module's names are the ones tests shorten.
        return Limits(MAX_ATTEMPTS, RECORD_TRIES, RECORD_BACKOFF_S, RELEASE_BACKOFF_S)

    def work(self, claimed: Claimed) -> _Result:
        return self._execute(claimed)

    def record(self, claimed: Claimed, outcome: _Result) -> None:
        self._record(claimed, outcome)

    def _execute(self, claimed: Claimed) -> _Result:
        p = claimed.payload
        with self.db.read() as session:
            run = store.get(session, p["run"])
            change = change_store.get(session, p["change"]) if p.get("change") else None
            if run is None or run.status != "pending":
                return _Result("skipped", "nothing to do: the run is gone or already has a result")
            superseded = _superseded(change, p)
        if superseded:
            return _Result("skipped", superseded)
        if claimed.attempts > MAX_ATTEMPTS:
            last = f"; last: {claimed.last_error}" if claimed.last_error else ""
            return _Result(
                "error",
                f"the check was started {claimed.attempts - 1} times without a recorded result (its worker "
                f"stopped, or storing its result failed{last}); fail closed"[:4000],
            )
        try:
            return _run_check(self.forge, p["repo"], p["base"], p["commit"])
        except Exception as exc:  # any failure of the pipeline: fail closed, say what happened
            log.warning("check of %s failed: %s", p["commit"][:12], exc)
            return _Result("error", f"the check could not run: {describe(exc)}"[:4000])

    def _record(self, claimed: Claimed, result: _Result) -> None:
        from mergegate.service import merge  # the auto-merge trigger; imported late (it imports us)

        p = claimed.payload
        with self.db.write() as session:
            event = event_store.lock(session, claimed.event_id)
            if event is None or event.status != "pending":
                return  # another worker finished it after our lease ran out
            run = store.get(session, p["run"], lock=True)
            if run is not None and run.status == "pending":
                store.finish(
                    session,
                    run,
                    status=result.status,
                    summary=result.summary,
                    decision=result.decision,
                    blocking_findings=result.blocking_findings,
                )
                _audit(session, run, result, p)
            event_store.finish(
                session, event, {"status": result.status, "summary": result.summary}, count_attempt=False
            )
            change = change_store.get(session, p["change"]) if p.get("change") else None
            if change is not None and p["role"] == "landing":
                merge.request_auto_merge(session, change, reason=f"check {result.status}")


def _superseded(change: ChangeRow | None, p: dict[str, Any]) -> str | None:
    if change is None:
        return None
    if change.state != "open":
        return f"not run: the change is {change.state}"
    if p["role"] == "landing" and change.landing_sha != p["commit"]:
        return "not run: the change has a newer landing commit (a new push, or the base moved)"
    if p["role"] == "head" and change.head_sha != p["commit"]:
        return "not run: the change has a newer patchset"
    return None


def _run_check(forge: Forge, repo_name: str, base: str, commit: str) -> _Result:
    from mergegate.report.json_format import as_dict
    from mergegate.service.check import run_check

    repo = BareGitRepo(forge.open(repo_name).path)
    report = asyncio.run(run_check(repo, base, commit))
    decision = report.decision
    policy = report.policy.policy
    blocking = sum(
        1 for r in report.results for f in r.findings if f.is_security and f.severity >= policy.blocking_severity
    )
    status = _STATUS_OF.get(decision.action, "error")
    summary = f"{decision.action.value} (confidence {decision.confidence:.2f})"
    if decision.reasons:
        summary += ": " + "; ".join(decision.reasons)
    agent_runs = tuple(
        {"agent": r.name, "status": r.status.value, "confidence": r.confidence, "findings": len(r.findings)}
        for r in report.results
    )
    return _Result(
        status,
        summary[:4000],
        json.dumps(as_dict(report), sort_keys=True),
        blocking,
        agent_runs,
        f"{report.policy.source}@{report.policy.digest}",
        decision.confidence,
    )


def _audit(session: Session, run: CheckRunRow, result: _Result, p: dict[str, Any]) -> None:
    subject = f"{p['base'][:12]}..{p['commit'][:12]}"
    for agent in result.agent_runs:
        audit_db.append(
            session,
            action="agent_run",
            outcome=agent["status"],
            agent_id=f"mergegate/{agent['agent']}",
            confidence_score=agent["confidence"],
            policy_applied=result.policy,
            details={"change": p.get("change"), "subject": subject, "findings": agent["findings"], "run": run.id},
        )
    audit_db.append(
        session,
        action="check.completed",
        outcome=result.status,
        agent_id=GATE,
        confidence_score=result.confidence,
        policy_applied=result.policy,
        details={
            "change": p.get("change"),
            "repo": p["repo"],
            "run": run.id,
            "name": run.name,
            "role": run.role,
            "commit": run.commit_sha,
            "base": run.base_sha,
            "summary": result.summary[:1000],
            "blocking_findings": result.blocking_findings,
        },
    )


# -- posted results and listing -------------------------------------------------------------


def view(run: CheckRunRow, *, landing: str | None = None) -> dict[str, Any]:
    return {
        "id": run.id,
        "name": run.name,
        "producer": run.producer,
        "commit": run.commit_sha,
        "base": run.base_sha,
        "role": run.role,
        "status": run.status,
        "summary": run.summary,
        "sequence": run.sequence,
        "blocking_findings": run.blocking_findings,
        "counts": run.producer == GATE and run.role != "posted" and run.commit_sha == landing and landing is not None,
        "created_at": run.created_at.isoformat(),
        "updated_at": run.updated_at.isoformat(),
    }


def post(db: Database, actor: Actor, number: int, body: dict[str, Any]) -> dict[str, Any]:
    """A result posted by a principal: stored with the poster as producer; never counted."""
    require(db, actor, Permission.POST_FINDINGS, action="check.post", details={"change": number})
    if actor.principal_id is None:
        raise Invalid("the local operator cannot post check results; use a principal's token")
    name = str(body.get("name") or "").strip()
    status = str(body.get("status") or "")
    if not name or len(name) > 100:
        raise Invalid("name: 1-100 characters")
    if status not in POSTED_STATUSES:
        raise Invalid(f"status: one of {', '.join(POSTED_STATUSES)}")
    summary = str(body.get("summary") or "")[:4000]
    with db.write() as session:
        change = change_store.get(session, number)
        if change is None:
            raise NotFound(f"no change {number}")
        commit = str(body.get("commit") or change.landing_sha or change.head_sha)
        if not _SHA.fullmatch(commit):
            raise Invalid("commit: a full commit id (40 or 64 hexadecimal digits)")
        row = store.add(
            session,
            repo_id=change.repo_id,
            change_id=change.id,
            commit=commit,
            name=name,
            producer=actor.name,
            status=status,
            role="posted",
            summary=summary,
        )
        audit_db.append(
            session,
            action="check.posted",
            outcome=status,
            agent_id=actor.name,
            details={
                "change": number,
                "run": row.id,
                "name": name,
                "commit": commit,
                "counts": False,
                "why": f"only checks produced by the gate ({GATE}) count",
            },
        )
        return view(row, landing=change.landing_sha)


def list_for_change(db: Database, number: int) -> list[dict[str, Any]]:
    with db.read() as session:
        change = change_store.get(session, number)
        if change is None:
            raise NotFound(f"no change {number}")
        repo = session.get(RepoRow, change.repo_id)
        rows = {r.id: r for r in store.of_change(session, change.id)}
        if repo is not None:
            rows |= {r.id: r for r in store.on_commits(session, repo.id, [change.landing_sha, change.head_sha])}
        return [view(r, landing=change.landing_sha) for r in sorted(rows.values(), key=lambda r: r.sequence)]
