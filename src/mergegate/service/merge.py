"""Merging: the only way code reaches a protected branch.

``merge`` (a human with the ``merge`` permission; agents get a 403, audited) and the
``auto_merge`` event (merge-when-ready, set by such a human) both run ``_attempt``
inside one database transaction that holds, in this order:

1. the change's row (``SELECT … FOR UPDATE``; SQLite's ``BEGIN IMMEDIATE`` write lock);
2. the target branch's row in ``merge_locks``, so merges into one branch line up even
   across server processes on PostgreSQL.

Under those locks the gate asks ``service.verdict.assess`` again (every rule, from
fresh facts), requires the landing commit to have been made on the branch's current
tip, and moves the branch by **compare-and-swap** from that tip to the landing commit
(``BareRepo.compare_and_swap``: git refuses if the ref moved). So the commit that
lands is exactly the commit whose checks passed: same id, same tree.

If the base moved (the landing commit was made on an older tip, or the swap lost a
race), nothing is merged: the landing commit is re-made on the new tip, its check is
queued, and the answer is HTTP 409 "base moved; re-testing". Never an untested merge.

After a merge a ``base_moved`` event re-lands every other open change into the branch
(``service.refresh``). Should the database transaction fail after git moved the ref,
that event is still written in a transaction of its own, and its handler finds the
change's landing commit on the branch and records the merge (``reconcile``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mergegate.core.principals import Permission, authorize
from mergegate.forge.local.repos import BareRepo
from mergegate.service import landing, refresh, verdict
from mergegate.service.authz import Actor, require
from mergegate.service.checks import GATE
from mergegate.service.errors import Blocked, Invalid, NotFound
from mergegate.service.events import HandlerContext, handles
from mergegate.store import audit_db, principals
from mergegate.store import changes as change_store
from mergegate.store import events as event_store
from mergegate.store.db import Database
from mergegate.store.models import ChangeRow, EventRow, MergeLockRow, RepoRow, utcnow
from mergegate.store.principals import to_principal

log = logging.getLogger("mergegate.merge")

AUTO_MERGE = "auto_merge"


@dataclass
class Outcome:
    status: str  # merged | blocked | retesting
    reason: str
    data: dict[str, Any] = field(default_factory=dict)
    #: Set once git moved the branch (so a failed commit can still be reconciled).
    moved: tuple[str, str] | None = None


def _lock_branch(session: Session, repo: RepoRow, branch: str) -> MergeLockRow:
    def find() -> MergeLockRow | None:
        query = select(MergeLockRow).where(MergeLockRow.repo_id == repo.id, MergeLockRow.branch == branch)
        return session.execute(query.with_for_update()).scalar_one_or_none()

    row = find()
    if row is None:
        try:
            with session.begin_nested():
                session.add(MergeLockRow(repo_id=repo.id, branch=branch))
                session.flush()
        except IntegrityError:
            pass  # another merge created it first; its lock is taken below
        row = find()
    return row


def _method(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return landing.validate_method(value)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def _retest(session: Session, ctx: HandlerContext, change: ChangeRow, why: str) -> Outcome:
    made = refresh.recompute(session, ctx, change, reason=why)
    if made.commit:
        reason = (
            f"{why}; re-testing: the new commit that would land is {made.commit[:12]} "
            f"({made.method} onto {made.base[:12]}), and its checks must pass first"
        )
    else:
        reason = f"{why}; and now no commit can land: {made.problem}"
    return Outcome("retesting", reason, {"landing": made.commit, "base": made.base, "method": made.method})


def _attempt(
    session: Session,
    ctx: HandlerContext,
    change: ChangeRow,
    *,
    actor: str,
    requested_by: str,
    method: str | None = None,
) -> Outcome:
    """Re-evaluate and, if every rule holds, land ``change`` by compare-and-swap."""
    if change.state != "open":
        return Outcome("blocked", f"change {change.id} is {change.state}")
    repo = session.get(RepoRow, change.repo_id)
    lock = _lock_branch(session, repo, change.target_branch)
    bare = ctx.forge.open(repo.name)
    current = refresh.method_of(change, ctx.merge_method)
    if method is not None and method != current:
        change.merge_method = method
        return _retest(session, ctx, change, f"the merge method changed from {current} to {method}")
    branch_ref = f"refs/heads/{change.target_branch}"
    tip = bare.resolve(branch_ref)
    if tip is None:
        return Outcome("blocked", f"the target branch {change.target_branch} does not exist")
    if change.landing_base_sha != tip or change.landing_head_sha != change.head_sha:
        return _retest(session, ctx, change, f"base moved: {change.target_branch} is now at {tip[:12]}")
    a = verdict.assess(session, ctx.forge, change, base_tip=tip)
    if not a.mergeable:
        return Outcome("blocked", "; ".join(a.blockers()), {"rules": a.rules()})
    landed = change.landing_sha
    if not bare.compare_and_swap(branch_ref, landed, tip):
        return _retest(session, ctx, change, f"base moved: {change.target_branch} changed while merging")
    outcome = Outcome("merged", "", moved=(repo.name, change.target_branch))
    tree = bare.git("rev-parse", f"{landed}^{{tree}}").strip()
    change_store.close(session, change, "merged")
    change.merged_sha = landed
    change.merged_by = actor
    change.merged_at = utcnow()
    lock.tip = landed
    lock.updated_at = utcnow()
    approvers = sorted(a.approvers)
    audit_db.append(
        session,
        action="change.merged",
        outcome="merged",
        agent_id=actor,
        policy_applied=a.policy_applied,
        human_reviewer=", ".join(approvers) or None,
        details={
            "change": change.id,
            "repo": repo.name,
            "branch": change.target_branch,
            "old": tip,
            "new": landed,
            "tree": tree,
            "method": change.landing_method,
            "approvers": approvers,
            "requested_by": requested_by,
            "rules": [r["reason"] for r in a.rules()],
        },
    )
    event_store.enqueue(session, refresh.BASE_MOVED, {"repo": repo.name, "branch": change.target_branch})
    outcome.data = {
        "change": change.id,
        "merged": True,
        "branch": change.target_branch,
        "commit": landed,
        "tree": tree,
        "old": tip,
        "method": change.landing_method,
        "approvers": approvers,
        "merged_by": actor,
        "requested_by": requested_by,
    }
    return outcome


def _after_failed_commit(db: Database, moved: tuple[str, str] | None) -> None:
    """git moved the branch but the transaction did not commit: let ``base_moved`` record it."""
    if moved is None:
        return
    try:
        with db.write() as session:
            event_store.enqueue(session, refresh.BASE_MOVED, {"repo": moved[0], "branch": moved[1]})
    except Exception:
        log.exception("could not queue the reconciliation of %s:%s", *moved)


def merge(db: Database, ctx: HandlerContext, actor: Actor, number: int, method: str | None = None) -> dict[str, Any]:
    """``POST /api/changes/{n}/merge``: a human with ``merge`` asks the gate to land it now."""
    require(db, actor, Permission.MERGE, action="change.merge", details={"change": number})
    method = _method(method)
    outcome: Outcome | None = None
    try:
        with db.write() as session:
            change = change_store.get(session, number, lock=True)
            if change is None:
                raise NotFound(f"no change {number}")
            outcome = _attempt(session, ctx, change, actor=actor.name, requested_by=actor.name, method=method)
            if outcome.status != "merged":
                audit_db.append(
                    session,
                    action="change.merge",
                    outcome=outcome.status,
                    agent_id=actor.name,
                    details={"change": number, "reason": outcome.reason[:2000]},
                )
    except Exception:
        _after_failed_commit(db, outcome.moved if outcome else None)
        raise
    if outcome.status != "merged":
        raise Blocked(f"{outcome.status}: {outcome.reason}")
    return outcome.data


def set_when_ready(
    db: Database, ctx: HandlerContext, actor: Actor, number: int, *, enabled: bool = True, method: str | None = None
) -> dict[str, Any]:
    """A human asks the gate to merge as soon as every rule holds (or withdraws that)."""
    require(db, actor, Permission.SET_MERGE_WHEN_READY, action="change.merge_when_ready", details={"change": number})
    method = _method(method)
    with db.write() as session:
        change = change_store.get(session, number, lock=True)
        if change is None:
            raise NotFound(f"no change {number}")
        if change.state != "open":
            raise Blocked(f"change {number} is {change.state}")
        change.merge_when_ready_by = actor.name if enabled else None
        retest = None
        current = refresh.method_of(change, ctx.merge_method)
        if enabled and method is not None and method != current:
            change.merge_method = method
            retest = _retest(session, ctx, change, f"the merge method changed from {current} to {method}")
        audit_db.append(
            session,
            action="change.merge_when_ready",
            outcome="set" if enabled else "cleared",
            agent_id=actor.name,
            details={"change": number, "method": refresh.method_of(change, ctx.merge_method)},
        )
        if enabled:
            request_auto_merge(session, change, reason="merge-when-ready set")
        return {
            "change": number,
            "merge_when_ready_by": change.merge_when_ready_by,
            "method": refresh.method_of(change, ctx.merge_method),
            "note": retest.reason if retest else None,
        }


def request_auto_merge(session: Session, change: ChangeRow, *, reason: str) -> None:
    """After a check, review or dismissal: if a human asked for it, let the gate try."""
    if change.state == "open" and change.merge_when_ready_by:
        event_store.enqueue(session, AUTO_MERGE, {"change": change.id, "reason": reason})


@handles(AUTO_MERGE)
def on_auto_merge(session: Session, event: EventRow, payload: dict[str, Any], ctx: HandlerContext) -> dict[str, Any]:
    change = change_store.get(session, payload["change"], lock=True)
    if change is None or change.state != "open" or not change.merge_when_ready_by:
        return {"status": "nothing to do"}
    requester = principals.get(session, change.merge_when_ready_by)
    auth = authorize(to_principal(requester) if requester else None, Permission.MERGE)
    if not auth:
        # The human who asked may no longer merge (role changed): the request lapses.
        change.merge_when_ready_by = None
        audit_db.append(
            session,
            action="change.merge_when_ready",
            outcome="cleared",
            agent_id=GATE,
            details={"change": change.id, "reason": f"the requester may no longer merge: {auth.reason}"},
        )
        return {"status": "cleared", "reason": auth.reason}
    outcome = _attempt(session, ctx, change, actor=GATE, requested_by=requester.name)
    return {"status": outcome.status, "reason": outcome.reason, **outcome.data}


def reconcile(session: Session, bare: BareRepo, change: ChangeRow, tip: str | None) -> bool:
    """Record a merge git already did (the landing commit is on the branch)."""
    if not (tip and change.landing_sha and bare.is_ancestor(change.landing_sha, tip)):
        return False
    change_store.close(session, change, "merged")
    change.merged_sha = change.landing_sha
    change.merged_by = GATE
    change.merged_at = utcnow()
    audit_db.append(
        session,
        action="change.merged",
        outcome="reconciled",
        agent_id=GATE,
        details={"change": change.id, "commit": change.landing_sha, "branch": change.target_branch, "tip": tip},
    )
    return True
