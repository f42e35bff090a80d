"""What the gate does when a change's content or its base moves.

After every push that sets a change's head (``after_push``, called by the push
handler in its transaction):

1. the push takes a gate sequence number (approvals must come after it);
2. the review fingerprint (patch-id of merge-base..head plus the merge base) is
   recomputed, and approvals given for other content are dismissed **by the gate**
   (audited with the gate as actor: the pusher did not dismiss anyone);
3. the landing commit is remade for the current base tip (``service.landing``);
4. checks are queued for the landing commit (the one that counts) and the head
   (informational): events for ``service.checks.CheckWorker``, never run here.

When a target branch moves (a merge by the gate: the ``base_moved`` event; or a push
to a non-protected target), every open change into it gets a new landing commit and a
new landing check: results on the old landing commit say nothing about the new one,
so they are stale by construction (a different commit), never "carried over".

All of this is git object writes plus rows in the caller's transaction; the refs it
sets (``refs/changes/<N>/landing``) are safe to set again if the transaction is
retried.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mergegate.forge.local.bare_git import BareGitRepo
from mergegate.forge.local.repos import BareRepo
from mergegate.service import checks, landing, reviews
from mergegate.service.events import HandlerContext, handles
from mergegate.store import audit_db, repos, sequence
from mergegate.store.models import ChangeRow, EventRow, PatchsetRow, PrincipalRow, RepoRow
from mergegate.vcs.git import GitError

BASE_MOVED = "base_moved"


def method_of(change: ChangeRow, default: str) -> str:
    return change.merge_method or default


def _fingerprint(bare: BareRepo, base_tip: str | None, head: str) -> tuple[str | None, str | None]:
    """(merge base, review fingerprint); ``None`` where git cannot say (fail closed)."""
    if base_tip is None:
        return None, None
    repo = BareGitRepo(bare.path)
    try:
        merge_base = repo.merge_base(base_tip, head)
        return merge_base, repo.review_fingerprint(merge_base, head)
    except GitError:
        return None, None


def after_push(
    session: Session,
    ctx: HandlerContext,
    bare: BareRepo,
    repo: RepoRow,
    change: ChangeRow,
    patchset: PatchsetRow | None,
    pusher: PrincipalRow,
    event: EventRow,
) -> list[str]:
    """Sequence, fingerprint, stale approvals, landing commit, checks. Returns messages
    for the pusher."""
    seq = sequence.next_value(session)
    change.last_push_seq = seq
    if patchset is not None:
        patchset.sequence = seq
    base_tip = bare.resolve(f"refs/heads/{change.target_branch}")
    _update_fingerprint(session, bare, change, base_tip, cause={"push_event": event.id, "pusher": pusher.name})
    result = refresh_landing(session, ctx, bare, repo, change, base_tip=base_tip, reason="push")
    if base_tip is not None:
        checks.schedule(session, repo, change, commit=change.head_sha, base=base_tip, role="head")
    if result.commit:
        return [
            f"change {change.id}: the gate checks {result.commit[:12]}, the commit that would land "
            f"({result.method} into {change.target_branch})"
        ]
    return [f"change {change.id}: blocked: {result.problem}"]


def _update_fingerprint(
    session: Session, bare: BareRepo, change: ChangeRow, base_tip: str | None, *, cause: dict[str, Any]
) -> None:
    merge_base, fingerprint = _fingerprint(bare, base_tip, change.head_sha)
    change.merge_base_sha = merge_base
    change.fingerprint = fingerprint
    reviews.dismiss_stale_for(session, change, fingerprint, cause=cause)


def refresh_landing(
    session: Session,
    ctx: HandlerContext,
    bare: BareRepo,
    repo: RepoRow,
    change: ChangeRow,
    *,
    base_tip: str | None = None,
    reason: str,
) -> landing.Landing:
    """Make (or keep) the landing commit for the current base tip and queue its check."""
    base_tip = base_tip or bare.resolve(f"refs/heads/{change.target_branch}")
    method = method_of(change, ctx.merge_method)
    if base_tip is None:
        made = landing.Landing(
            method, "", change.head_sha, None, problem=f"the target branch {change.target_branch} does not exist"
        )
    elif (
        change.landing_sha
        and change.landing_base_sha == base_tip
        and change.landing_head_sha == change.head_sha
        and change.landing_method == method
    ):
        return landing.Landing(method, base_tip, change.head_sha, change.landing_sha)  # already made
    else:
        made = landing.make(
            bare, base=base_tip, head=change.head_sha, method=method, number=change.id, subject=change.subject
        )
    change.landing_sha = made.commit
    change.landing_base_sha = made.base or None
    change.landing_head_sha = made.head
    change.landing_method = method
    change.landing_problem = made.problem
    landing.store_ref(bare, change.id, made)
    audit_db.append(
        session,
        action="change.landing",
        outcome="made" if made.commit else "conflict",
        agent_id=checks.GATE,
        details={
            "change": change.id,
            "repo": repo.name,
            "reason": reason,
            "method": method,
            "base": made.base,
            "head": made.head,
            "landing": made.commit,
            "tree": made.tree,
            "problem": made.problem,
        },
    )
    if made.commit and not checks.already_checked(session, repo, made.commit, made.base):
        checks.schedule(session, repo, change, commit=made.commit, base=made.base, role="landing")
    return made


def open_into(session: Session, repo: RepoRow, branch: str, *, lock: bool = True) -> list[ChangeRow]:
    query = (
        select(ChangeRow)
        .where(ChangeRow.repo_id == repo.id, ChangeRow.target_branch == branch, ChangeRow.state == "open")
        .order_by(ChangeRow.id)
    )
    if lock:
        query = query.with_for_update()
    return list(session.execute(query).scalars())


def base_moved(session: Session, ctx: HandlerContext, bare: BareRepo, repo: RepoRow, branch: str) -> list[int]:
    """Re-land every open change into ``branch`` on its new tip; returns their numbers.

    A change whose landing commit is already on the branch was merged by a transaction
    that did not commit (see ``service.merge``); it is recorded as merged instead.
    """
    from mergegate.service.merge import reconcile  # merge imports this module

    tip = bare.resolve(f"refs/heads/{branch}")
    refreshed = []
    for change in open_into(session, repo, branch):
        if change.landing_base_sha == tip and change.landing_sha:
            continue
        if reconcile(session, bare, change, tip):
            continue
        _update_fingerprint(session, bare, change, tip, cause={"base_moved": branch, "tip": tip})
        moved = f"{branch} moved to {tip[:12] if tip else 'nothing'}"
        refresh_landing(session, ctx, bare, repo, change, base_tip=tip, reason=moved)
        refreshed.append(change.id)
    return refreshed


@handles(BASE_MOVED)
def on_base_moved(session: Session, event: EventRow, payload: dict[str, Any], ctx: HandlerContext) -> dict[str, Any]:
    repo = repos.get(session, payload["repo"])
    if repo is None:
        return {"refreshed": [], "note": "the repository no longer exists"}
    bare = ctx.forge.open(repo.name)
    return {"refreshed": base_moved(session, ctx, bare, repo, payload["branch"])}


def recompute(session: Session, ctx: HandlerContext, change: ChangeRow, *, reason: str) -> landing.Landing:
    """Remake ``change``'s landing commit now (a new merge method, a moved base)."""
    repo = session.get(RepoRow, change.repo_id)
    bare = ctx.forge.open(repo.name)
    tip = bare.resolve(f"refs/heads/{change.target_branch}")
    if change.landing_base_sha != tip:
        _update_fingerprint(session, bare, change, tip, cause={"recompute": reason})
    return refresh_landing(session, ctx, bare, repo, change, base_tip=tip, reason=reason)
