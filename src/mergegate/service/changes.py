"""Changes: opened and updated by pushes (the ``push`` event handler), read and commented.

How a push becomes a change:

- ``refs/for/<target>`` (Gerrit style): a commit whose ``Change-Id:`` trailer matches an
  open change for the same repository and target adds a patchset to it; otherwise a
  new change opens. Its head is stored at ``refs/changes/<N>/head`` and the magic ref
  is removed.
- a non-protected branch ``feature/x``: opens the change ``feature/x → <default branch>``
  on the first push and adds a patchset on later ones (force-pushes included).
  Deleting the branch abandons its open change. A branch with nothing that is not
  already on the default branch opens nothing.

Change numbers are global across repositories, like Gerrit's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from mergegate.core.principals import Permission
from mergegate.forge.local.refrules import RefUpdate
from mergegate.forge.local.repos import INCOMING_PREFIX, BareRepo, CommitInfo
from mergegate.service import refresh
from mergegate.service.authz import Actor, require
from mergegate.service.errors import Invalid, NotFound
from mergegate.service.events import HandlerContext, handles
from mergegate.store import audit_db, principals, repos
from mergegate.store import changes as store
from mergegate.store.db import Database
from mergegate.store.models import ChangeRow, EventRow, PrincipalRow, RepoRow

MAX_COMMENT = 65_536


def head_ref(number: int) -> str:
    return f"refs/changes/{number}/head"


@dataclass
class _Outcome:
    changes: list[dict[str, Any]]
    messages: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"changes": self.changes, "messages": self.messages}


@handles("push")
def on_push(session: Session, event: EventRow, payload: dict[str, Any], ctx: HandlerContext) -> dict[str, Any]:
    outcome = _Outcome([], [])
    repo = repos.get(session, payload["repo"])
    pusher = principals.get(session, payload["pusher"])
    if repo is None or pusher is None:
        missing = "repository" if repo is None else "pusher"
        outcome.messages.append(f"nothing to do: the {missing} of this push no longer exists")
        return outcome.as_dict()
    bare = ctx.forge.open(repo.name)
    for index, raw in enumerate(payload["updates"]):
        update = RefUpdate(raw["ref"], raw["old"], raw["new"])
        if update.ref.startswith("refs/for/"):
            _for_push(session, event, repo, bare, pusher, update, index, ctx, outcome)
        elif update.ref.startswith("refs/heads/"):
            _branch_push(session, event, repo, bare, pusher, update, ctx, outcome)
    return outcome.as_dict()


def _summary(change: ChangeRow, action: str) -> dict[str, Any]:
    return {
        "number": change.id,
        "action": action,
        "patchset": change.patchset,
        "target": change.target_branch,
        "source": change.source_ref,
        "head": change.head_sha,
    }


def _record(
    session: Session,
    outcome: _Outcome,
    change: ChangeRow,
    action: str,
    pusher: PrincipalRow,
    event: EventRow,
    ctx: HandlerContext,
    repo: RepoRow,
) -> None:
    outcome.changes.append(_summary(change, action))
    url = f"{ctx.public_url}/api/changes/{change.id}"
    if action == "opened":
        outcome.messages.append(f"change {change.id} opened: {change.subject!r} → {change.target_branch}  {url}")
    elif action == "updated":
        outcome.messages.append(f"change {change.id} updated: patchset {change.patchset}  {url}")
    elif action == "abandoned":
        outcome.messages.append(f"change {change.id} abandoned: its branch was deleted")
    audit_db.append(
        session,
        action=f"change.{action}",
        outcome="ok",
        agent_id=pusher.name,
        details={
            "change": change.id,
            "repo": repo.name,
            "patchset": change.patchset,
            "head": change.head_sha,
            "target": change.target_branch,
            "source": change.source_ref,
            "event": event.id,
        },
    )


def _already_done(session: Session, event: EventRow, ref: str, outcome: _Outcome) -> bool:
    done = store.patchset_for(session, event.id, ref)
    if done is None:
        return False
    change = store.get(session, done.change_id)
    if change is not None:
        outcome.changes.append(_summary(change, "unchanged"))
    return True


def _for_push(
    session: Session,
    event: EventRow,
    repo: RepoRow,
    bare: BareRepo,
    pusher: PrincipalRow,
    update: RefUpdate,
    index: int,
    ctx: HandlerContext,
    outcome: _Outcome,
) -> None:
    staging = f"{INCOMING_PREFIX}{event.id}/{index}"
    if update.is_delete or _already_done(session, event, update.ref, outcome):
        _cleanup_magic(bare, update, staging)
        return
    target = update.ref.removeprefix("refs/for/")
    info = bare.commit_info(update.new)
    change = None
    if info.change_id:
        change = store.find_open(session, repo, store.change_id_key(target, info.change_id))
    if change is not None and change.head_sha == update.new:
        outcome.messages.append(f"change {change.id}: no new changes (patchset {change.patchset} is this commit)")
        outcome.changes.append(_summary(change, "unchanged"))
    elif change is not None:
        _new_patchset(session, event, repo, bare, pusher, update, change, info.subject, ctx, outcome)
    else:
        open_key = store.change_id_key(target, info.change_id) if info.change_id else None
        _open(session, event, repo, bare, pusher, update, target, open_key, info, ctx, outcome)
    _cleanup_magic(bare, update, staging)


def _cleanup_magic(bare: BareRepo, update: RefUpdate, staging: str) -> None:
    bare.delete_ref_if(staging, update.new)
    # post-receive normally moved it already; if it could not, do it here (only if unchanged).
    bare.delete_ref_if(update.ref, update.new)


def _branch_push(
    session: Session,
    event: EventRow,
    repo: RepoRow,
    bare: BareRepo,
    pusher: PrincipalRow,
    update: RefUpdate,
    ctx: HandlerContext,
    outcome: _Outcome,
) -> None:
    branch = update.ref.removeprefix("refs/heads/")
    if not update.is_delete:
        # A branch that open changes target moved (possible only if it is not protected):
        # their landing commits were made on the old tip.
        refresh.base_moved(session, ctx, bare, repo, branch)
    if branch == repo.default_branch:
        return  # only possible if the server does not protect it; nothing to propose
    change = store.find_open(session, repo, store.branch_key(update.ref))
    if update.is_delete:
        if change is not None:
            store.close(session, change, "abandoned")
            _record(session, outcome, change, "abandoned", pusher, event, ctx, repo)
        return
    if _already_done(session, event, update.ref, outcome):
        return
    info = bare.commit_info(update.new)
    if change is not None:
        if change.head_sha == update.new:
            outcome.changes.append(_summary(change, "unchanged"))
            return
        _new_patchset(session, event, repo, bare, pusher, update, change, info.subject, ctx, outcome)
        return
    target = repo.default_branch
    if bare.resolve(f"refs/heads/{target}") is None:
        outcome.messages.append(f"no change opened for {branch}: the default branch {target} does not exist")
        return
    if bare.is_ancestor(update.new, f"refs/heads/{target}"):
        outcome.messages.append(f"no change opened for {branch}: it has nothing that is not already on {target}")
        return
    _open(session, event, repo, bare, pusher, update, target, store.branch_key(update.ref), info, ctx, outcome)


def _open(
    session: Session,
    event: EventRow,
    repo: RepoRow,
    bare: BareRepo,
    pusher: PrincipalRow,
    update: RefUpdate,
    target: str,
    open_key: str | None,
    info: CommitInfo,
    ctx: HandlerContext,
    outcome: _Outcome,
) -> None:
    change = store.open_change(
        session,
        repo=repo,
        target_branch=target,
        source_ref=update.ref,
        open_key=open_key,
        change_key=info.change_id,
        subject=info.subject,
        head_sha=update.new,
        pusher_id=pusher.id,
        event_id=event.id,
        ref=update.ref,
    )
    _announce(session, event, repo, bare, pusher, update, change, "opened", ctx, outcome)


def _new_patchset(
    session: Session,
    event: EventRow,
    repo: RepoRow,
    bare: BareRepo,
    pusher: PrincipalRow,
    update: RefUpdate,
    change: ChangeRow,
    subject: str,
    ctx: HandlerContext,
    outcome: _Outcome,
) -> None:
    store.add_patchset(
        session, change, head_sha=update.new, subject=subject, pusher_id=pusher.id, event_id=event.id, ref=update.ref
    )
    _announce(session, event, repo, bare, pusher, update, change, "updated", ctx, outcome)


def _announce(
    session: Session,
    event: EventRow,
    repo: RepoRow,
    bare: BareRepo,
    pusher: PrincipalRow,
    update: RefUpdate,
    change: ChangeRow,
    action: str,
    ctx: HandlerContext,
    outcome: _Outcome,
) -> None:
    """A change was opened or got a new patchset: point its head ref at the push, record
    it, and let the gate judge the new content."""
    bare.set_ref(head_ref(change.id), update.new)
    _record(session, outcome, change, action, pusher, event, ctx, repo)
    _gate(session, event, repo, bare, pusher, update, change, ctx, outcome)


def _gate(
    session: Session,
    event: EventRow,
    repo: RepoRow,
    bare: BareRepo,
    pusher: PrincipalRow,
    update: RefUpdate,
    change: ChangeRow,
    ctx: HandlerContext,
    outcome: _Outcome,
) -> None:
    """The gate's part of a new patchset: fingerprint, stale approvals, landing commit,
    queued checks (``service.refresh``)."""
    patchset = store.patchset_for(session, event.id, update.ref)
    outcome.messages += refresh.after_push(session, ctx, bare, repo, change, patchset, pusher, event)


# -- reading and commenting ------------------------------------------------------------


def _names(session: Session, ids: set[int]) -> dict[int, str]:
    return {i: (p.name if (p := principals.get_by_id(session, i)) else f"#{i}") for i in ids}


def view(session: Session, change: ChangeRow, *, detail: bool = False) -> dict[str, Any]:
    repo = session.get(RepoRow, change.repo_id)
    ids = {change.author_id, change.last_pusher_id}
    data: dict[str, Any] = {
        "number": change.id,
        "repo": repo.name if repo else None,
        "target_branch": change.target_branch,
        "source_ref": change.source_ref,
        "change_id": change.change_key,
        "subject": change.subject,
        "head_sha": change.head_sha,
        "head_ref": head_ref(change.id),
        "patchset": change.patchset,
        "state": change.state,
        "created_at": change.created_at.isoformat(),
        "updated_at": change.updated_at.isoformat(),
    }
    if detail:
        patchsets = store.patchsets(session, change)
        comments = store.comments(session, change)
        ids |= {p.pusher_id for p in patchsets} | {c.author_id for c in comments}
    names = _names(session, ids)
    data["author"] = names[change.author_id]
    data["last_pusher"] = names[change.last_pusher_id]
    if detail:
        data["patchsets"] = [
            {
                "number": p.number,
                "commit": p.commit_sha,
                "pusher": names[p.pusher_id],
                "ref": p.ref,
                "created_at": p.created_at.isoformat(),
            }
            for p in patchsets
        ]
        data["comments"] = [
            {
                "id": c.id,
                "author": names[c.author_id],
                "patchset": c.patchset,
                "body": c.body,
                "created_at": c.created_at.isoformat(),
            }
            for c in comments
        ]
        from mergegate.service.agent_runs import change_cost  # hosted runs import this module

        data["cost"] = change_cost(session, change.id)
    return data


def list_changes(db: Database, *, repo: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
    if state is not None and state not in ("open", "merged", "abandoned"):
        raise Invalid(f"invalid state {state!r}: open, merged or abandoned")
    with db.read() as session:
        row = None
        if repo is not None:
            row = repos.get(session, repo)
            if row is None:
                raise NotFound(f"no repository named {repo!r}")
        return [view(session, c) for c in store.list_changes(session, repo=row, state=state)]


def get_change(db: Database, number: int) -> dict[str, Any]:
    with db.read() as session:
        change = store.get(session, number)
        if change is None:
            raise NotFound(f"no change {number}")
        return view(session, change, detail=True)


def comment(db: Database, actor: Actor, number: int, body: str) -> dict[str, Any]:
    check_comment(db, actor, number, body)
    with db.write() as session:
        return add_comment(session, actor, number, body)


def check_comment(db: Database, actor: Actor, number: int, body: str) -> None:
    """May ``actor`` post ``body`` on change ``number``? Raises why not (refusals audited)."""
    require(db, actor, Permission.COMMENT, action="change.comment", details={"change": number})
    if actor.principal_id is None:
        raise Invalid("the local operator cannot comment; use a principal's token")
    if not body.strip():
        raise Invalid("the comment is empty")
    if len(body) > MAX_COMMENT:
        raise Invalid(f"the comment is longer than {MAX_COMMENT} characters")


def add_comment(session: Session, actor: Actor, number: int, body: str) -> dict[str, Any]:
    """The comment and its audit entry, in the caller's transaction (after ``check_comment``;
    hosted runs record their delivery in the same transaction)."""
    change = store.get(session, number)
    if change is None:
        raise NotFound(f"no change {number}")
    row = store.add_comment(session, change, author_id=actor.principal_id, body=body)
    audit_db.append(
        session,
        action="change.comment",
        outcome="ok",
        agent_id=actor.name,
        details={"change": number, "comment": row.id, "patchset": row.patchset},
    )
    return {
        "id": row.id,
        "change": number,
        "author": actor.name,
        "patchset": row.patchset,
        "body": row.body,
        "created_at": row.created_at.isoformat(),
    }
