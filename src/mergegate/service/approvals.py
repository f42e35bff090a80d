"""Durable approval pauses: ``DbApprovals`` (the runtime's ``ApprovalGate`` on the database)
and the humans' decisions (``mergegate approvals …``, ``/api/approvals``).

The contract is ``runtime.approvals``' (docs/runtime.md, "Approvals"), kept on the
``approval_requests`` table:

- a call that needs approval becomes a **pending request** keyed by (run, call index,
  fingerprint of agent + tool + exact arguments); asking again finds the same row, so a
  resumed run gets the decision that was taken about *that* call;
- only an authenticated **human** decides (``core.principals.authorize``: an agent is
  refused ``approve`` whatever its role, HTTP 403, audited), never the run's own agent
  principal, and, when the run acts on a change, never that change's author (403,
  audited): an agent's author approving its agent's comment is self-approval by proxy;
- a request nobody decided by ``expires_at`` **expires**, which is a denial: the
  agent gets the reason as its tool result. The expiry is the run's
  ``approval_timeout_s`` (the start request's value, else ``approval_timeout_s`` in
  ``server.toml``, default 24 hours);
- every request, approval, denial and expiry is appended to the audit chain in the
  transaction that records it. A decision on a decided request is a 409 that says who
  decided what; a late approval of an expired request is a 409 too (and the expiry is
  recorded first).

A decision that leaves the run with no pending request enqueues an ``agent_run`` event:
the run worker (``service.agent_runs``) resumes it, and the runner asks this gate again.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from mergegate.core.principals import Permission, PrincipalKind
from mergegate.runtime.approvals import ApprovalDecision, ApprovalRequest, Verdict
from mergegate.service.authz import Actor, refuse, require
from mergegate.service.errors import Conflict, Invalid, NotFound
from mergegate.store import audit_db
from mergegate.store import events as event_store
from mergegate.store.db import Database
from mergegate.store.models import AgentRunRow, ApprovalRequestRow, ChangeRow, RepoRow, utcnow

#: The event that advances (starts or resumes) a hosted run.
RUN_KIND = "agent_run"
STATES = ("pending", "approved", "denied", "expired")
EXPIRED = "the approval expired: nobody decided in time (an approval that times out is a denial)"
MAX_REASON = 4000


# -- the gate the runner asks -------------------------------------------------------------


class DbApprovals:
    """``ApprovalGate`` for one hosted run (``run`` is its ``agent_runs.id``)."""

    def __init__(self, db: Database, run: int, timeout_s: int):
        self.db = db
        self.run = run
        self.timeout_s = timeout_s

    def decide(self, request: ApprovalRequest) -> ApprovalDecision:
        if request.index is None:
            raise ValueError("a durable approval needs the call's index in its run")
        with self.db.write() as session:
            row = session.execute(
                select(ApprovalRequestRow)
                .where(
                    ApprovalRequestRow.run_id == self.run,
                    ApprovalRequestRow.call_index == request.index,
                    ApprovalRequestRow.fingerprint == request.fingerprint,
                )
                .with_for_update()
            ).scalar_one_or_none()
            if row is None:
                row = _add(session, self.run, request, self.timeout_s)
            elif row.status == "pending" and row.expires_at <= utcnow():
                _expire(session, row)
        if row.status == "approved":
            return ApprovalDecision(Verdict.ALLOW, row.decided_by, row.reason or "")
        if row.status == "denied":
            return ApprovalDecision(Verdict.DENY, row.decided_by, row.reason or "denied")
        if row.status == "expired":
            return ApprovalDecision(Verdict.DENY, None, row.reason or EXPIRED)
        return ApprovalDecision(
            Verdict.PAUSE,
            reason=f"waiting for a human: approval request {row.id} (`mergegate approvals approve {row.id}`), "
            f"expires {row.expires_at.isoformat(timespec='seconds')}",
        )


def _add(session: Session, run: int, request: ApprovalRequest, timeout_s: int) -> ApprovalRequestRow:
    now = utcnow()
    row = ApprovalRequestRow(
        run_id=run,
        call_index=request.index,
        fingerprint=request.fingerprint,
        agent=request.agent,
        tool=request.tool,
        args=json.dumps(request.args, sort_keys=True),
        why=request.why,
        status="pending",
        requested_at=now,
        expires_at=now + timedelta(seconds=timeout_s),
    )
    session.add(row)
    session.flush()
    _audit(session, row, "approval.requested", "pending")
    return row


def _audit(session: Session, row: ApprovalRequestRow, action: str, outcome: str, by: str | None = None) -> None:
    audit_db.append(
        session,
        action=action,
        outcome=outcome,
        agent_id=f"agent:{row.agent}",
        human_reviewer=by,
        details={
            "request": row.id,
            "run": row.run_id,
            "call_index": row.call_index,
            "tool": row.tool,
            "args": json.loads(row.args),
            "fingerprint": row.fingerprint,
            "why": row.why,
            "expires_at": row.expires_at.isoformat(),
            **({"reason": row.reason} if row.reason else {}),
        },
    )


def _expire(session: Session, row: ApprovalRequestRow) -> None:
    row.status, row.reason, row.decided_at = "expired", EXPIRED, utcnow()
    session.flush()
    _audit(session, row, "approval.expired", "expired")
    _resume_if_decided(session, row.run_id)


def _resume_if_decided(session: Session, run_id: int) -> None:
    """Once none of the run's requests is pending, queue the run to continue."""
    waiting = session.execute(
        select(ApprovalRequestRow.id).where(ApprovalRequestRow.run_id == run_id, ApprovalRequestRow.status == "pending")
    ).first()
    run = session.get(AgentRunRow, run_id)
    if waiting is None and run is not None and run.status == "paused":
        resume(session, run)


def resume(session: Session, run: AgentRunRow) -> None:
    run.status, run.reason, run.updated_at = "queued", "resuming: every paused call was decided", utcnow()
    run.event_id = event_store.enqueue(session, RUN_KIND, {"run": run.id}).id
    session.flush()


def expire_due(db: Database) -> int:
    """Expire every pending request past its ``expires_at``; returns how many."""
    with db.read() as session:
        due = session.execute(
            select(ApprovalRequestRow.id).where(
                ApprovalRequestRow.status == "pending", ApprovalRequestRow.expires_at <= utcnow()
            )
        ).first()
    if due is None:  # the common case costs a read, not SQLite's write lock
        return 0
    count = 0
    with db.write() as session:
        rows = session.execute(
            select(ApprovalRequestRow)
            .where(ApprovalRequestRow.status == "pending", ApprovalRequestRow.expires_at <= utcnow())
            .with_for_update()
        ).scalars()
        for row in list(rows):
            _expire(session, row)
            count += 1
    return count


# -- reading ---------------------------------------------------------------------------------


def view(session: Session, row: ApprovalRequestRow) -> dict[str, Any]:
    run = session.get(AgentRunRow, row.run_id)
    repo = session.get(RepoRow, run.repo_id) if run else None
    return {
        "id": row.id,
        "run": row.run_id,
        "repo": repo.name if repo else None,
        "change": run.change_id if run else None,
        "agent": row.agent,
        "call_index": row.call_index,
        "tool": row.tool,
        "args": json.loads(row.args),
        "why": row.why,
        "fingerprint": row.fingerprint,
        "status": row.status,
        "requested_at": row.requested_at.isoformat(),
        "expires_at": row.expires_at.isoformat(),
        "decided_by": row.decided_by,
        "decided_at": row.decided_at.isoformat() if row.decided_at else None,
        "reason": row.reason,
    }


def why_not_read(actor: Actor, run: AgentRunRow) -> str | None:
    """Runs and their paused calls carry what the agent read and wrote (file contents,
    command output, comment text): humans read them, and so does the agent principal the
    run acts as; other agents do not."""
    if actor.principal.kind is PrincipalKind.HUMAN or actor.principal_id == run.principal_id:
        return None
    return f"{actor.name} is an agent and run {run.id} acts as another principal: an agent reads only its own runs"


def readable(query: Select, actor: Actor) -> Select:
    """``query`` (over ``AgentRunRow``, or joined to it) narrowed to what ``actor`` may read."""
    if actor.principal.kind is PrincipalKind.HUMAN:
        return query
    return query.where(AgentRunRow.principal_id == actor.principal_id)


def list_requests(db: Database, actor: Actor, state: str | None = None, run: int | None = None) -> list[dict[str, Any]]:
    """The requests ``actor`` may read: all for a human, its own runs' for an agent."""
    if state is not None and state not in STATES:
        raise Invalid(f"invalid state {state!r}: one of {', '.join(STATES)}")
    expire_due(db)  # a list never shows as pending what can no longer be approved
    with db.read() as session:
        query = select(ApprovalRequestRow).join(AgentRunRow, AgentRunRow.id == ApprovalRequestRow.run_id)
        query = readable(query.order_by(ApprovalRequestRow.id), actor)
        if state is not None:
            query = query.where(ApprovalRequestRow.status == state)
        if run is not None:
            query = query.where(ApprovalRequestRow.run_id == run)
        return [view(session, r) for r in session.execute(query).scalars()]


def get_request(db: Database, actor: Actor, request_id: int) -> dict[str, Any]:
    expire_due(db)
    with db.read() as session:
        row = session.get(ApprovalRequestRow, request_id)
        if row is None:
            raise NotFound(f"no approval request {request_id}")
        run = session.get(AgentRunRow, row.run_id)
        refusal = why_not_read(actor, run) if run is not None else None
        if refusal is None:
            return view(session, row)
    raise refuse(db, actor.name, "approval.read", refusal, {"request": request_id})


# -- deciding --------------------------------------------------------------------------------


def decide(db: Database, actor: Actor, request_id: int, *, approve: bool, reason: str = "") -> dict[str, Any]:
    """Approve or deny a pending request, as a human who is neither the agent nor the
    author of the change the run acts on."""
    action = "approval.approve" if approve else "approval.deny"
    require(db, actor, Permission.APPROVE, action=action, details={"request": request_id})
    if actor.principal_id is None:
        raise Invalid("the local operator cannot decide approvals; use a principal's token")
    reason = reason.strip()
    if not approve and not reason:
        raise Invalid("a denial needs a reason: the agent receives it as the call's result")
    if len(reason) > MAX_REASON:
        raise Invalid(f"the reason is longer than {MAX_REASON} characters")
    refusal = late = None
    with db.write() as session:
        row = session.execute(
            select(ApprovalRequestRow).where(ApprovalRequestRow.id == request_id).with_for_update()
        ).scalar_one_or_none()
        if row is None:
            raise NotFound(f"no approval request {request_id}")
        run = session.get(AgentRunRow, row.run_id)
        refusal = _why_not(session, run, actor)
        if refusal is None:
            if row.status != "pending":
                raise Conflict(_already(row))
            if row.expires_at <= utcnow():
                _expire(session, row)  # committed: the expiry stands whatever happens next
                late = f"approval request {request_id} expired at {row.expires_at.isoformat(timespec='seconds')}"
            else:
                row.status = "approved" if approve else "denied"
                row.decided_by, row.decided_at, row.reason = actor.name, utcnow(), reason or None
                session.flush()
                _audit(session, row, f"approval.{row.status}", row.status, by=actor.name)
                _resume_if_decided(session, row.run_id)
                result = view(session, row)
    if refusal is not None:
        raise refuse(db, actor.name, action, refusal, {"request": request_id})
    if late is not None:
        raise Conflict(f"{late} before anyone decided; an approval that times out is a denial")
    return result


def _why_not(session: Session, run: AgentRunRow | None, actor: Actor) -> str | None:
    if run is None:
        return None
    if actor.principal_id == run.principal_id:
        return f"{actor.name} is the agent principal of run {run.id}: agents cannot approve their own pauses"
    if run.change_id is not None:
        change = session.get(ChangeRow, run.change_id)
        if change is not None and change.author_id == actor.principal_id:
            return (
                f"{actor.name} is the author of change {change.id}, which run {run.id} acts on; "
                "someone else must decide its paused calls"
            )
    return None


def _already(row: ApprovalRequestRow) -> str:
    when = row.decided_at.isoformat(timespec="seconds") if row.decided_at else "?"
    if row.status == "expired":
        return f"approval request {row.id} already expired at {when}; an approval that times out is a denial"
    return f"approval request {row.id} was already {row.status} by {row.decided_by} at {when}"


def pending_of_run(session: Session, run_id: int) -> list[ApprovalRequestRow]:
    query = select(ApprovalRequestRow).where(
        ApprovalRequestRow.run_id == run_id, ApprovalRequestRow.status == "pending"
    )
    return list(session.execute(query).scalars())
