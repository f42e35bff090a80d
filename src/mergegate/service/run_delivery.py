"""A hosted run's approved external effects, carried out by the gate exactly once.

A run's ``PostComment`` and ``OpenChange`` calls only queue an item in the tool
context's outbox; ``deliver`` turns one into the real effect, as the run's agent
principal:

- a **comment** is posted on the run's change (``service.changes``, the API's own path);
- a **change** is proposed the way a ``git push`` to ``refs/for/<base>`` would: the
  workspace's files become one commit on top of the change head the run checked out
  (author and committer: the agent principal), the push is judged by the receive hook's
  rules (``forge.local.refrules``) and stored as a ``push`` event with its
  ``push.accepted`` audit entry, so the push handler opens the change and the gate
  checks it like any other. Its base is the run's change's target branch; no branch ref
  is written, protected or not. A ``Change-Id`` trailer of the gate's making comes last
  in the message, so the commit always opens a new change (a trailer the agent wrote in
  its body cannot add a patchset to someone else's change).

Exactly once: the effect and an ``agent_run_deliveries`` row keyed by (run, call index,
digest of the item) commit in one transaction. A server killed after that but before the
run saved its progress runs the approved call again at restart; its delivery finds the
row and returns what was done the first time. A commit made before a crash that never
reached that transaction is an unreferenced object, never a change.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mergegate.forge.local.hooks import load_protection
from mergegate.forge.local.refrules import RefUpdate, judge
from mergegate.forge.local.repos import BareRepo, ForgeError
from mergegate.service.authz import Actor
from mergegate.service.errors import Invalid, NotFound, Refused
from mergegate.store import audit_db, principals
from mergegate.store import events as event_store
from mergegate.store.db import Database
from mergegate.store.models import AgentRunDeliveryRow

ZERO = "0" * 40
#: Tests set this to a crash point's name to have the server SIGKILL itself there.
CRASH_ENV = "MERGEGATE_TEST_CRASH_AT"
DELIVERED = "agent_run.delivered"


def crash_point(name: str) -> None:
    """Die like kill -9 here when ``MERGEGATE_TEST_CRASH_AT`` names this point (tests only)."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class Run:
    """What a delivery needs to know about its run."""

    id: int
    principal_id: int
    change: int | None
    repo: str
    #: The change head the workspace was checked out at, and the change's target branch.
    head_sha: str
    target: str
    workspace: Path


def digest(item: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(item, sort_keys=True).encode()).hexdigest()


def _recorded(session: Session, run_id: int, index: int, key: str) -> AgentRunDeliveryRow | None:
    query = select(AgentRunDeliveryRow).where(
        AgentRunDeliveryRow.run_id == run_id,
        AgentRunDeliveryRow.call_index == index,
        AgentRunDeliveryRow.digest == key,
    )
    return session.execute(query).scalar_one_or_none()


def deliver(db: Database, forge: Any, run: Run, index: int, item: dict[str, Any]) -> dict[str, Any]:
    """Carry out ``item`` (queued by call ``index``) once; returns what was done, which
    is the first delivery's record when this call was delivered before."""
    key = digest(item)
    with db.read() as session:
        done = _recorded(session, run.id, index, key)
        actor = Actor.of(principals.get_by_id(session, run.principal_id))
    if done is not None:
        return json.loads(done.outcome)
    if item.get("kind") == "comment":
        effect = _comment(db, actor, run, item)
    elif item.get("kind") == "change":
        effect = _change(db, forge, actor, run, item)
    else:
        effect = _declined(f"unknown outbox item {item.get('kind')!r}")
    with db.write() as session:
        outcome = effect(session)
        session.add(
            AgentRunDeliveryRow(
                run_id=run.id, call_index=index, digest=key, kind=str(item.get("kind")), outcome=json.dumps(outcome)
            )
        )
        session.flush()  # a second delivery of this call fails here, and its effect rolls back
    crash_point(DELIVERED)
    return outcome


def _declined(why: str):
    return lambda session: {"delivered": False, "why": why}


def _comment(db: Database, actor: Actor, run: Run, item: dict[str, Any]):
    from mergegate.service import changes  # the push handlers; loaded only when needed

    if run.change is None:
        return _declined("the run acts on no change to comment on")
    try:
        changes.check_comment(db, actor, run.change, item["body"])
    except (Invalid, NotFound, Refused) as exc:
        return _declined(str(exc))

    def post(session: Session) -> dict[str, Any]:
        posted = changes.add_comment(session, actor, run.change, item["body"])
        return {"delivered": True, "comment": posted["id"]}

    return post


def _change(db: Database, forge: Any, actor: Actor, run: Run, item: dict[str, Any]):
    bare = forge.open(run.repo)
    try:
        commit = _commit_workspace(bare, run, actor, item)
    except ForgeError as exc:
        return _declined(f"the workspace could not be committed: {exc}")
    if commit is None:
        return _declined(f"nothing to propose: the workspace has no changes from {run.head_sha[:12]}")
    update = RefUpdate(f"refs/for/{run.target}", ZERO, commit)
    verdict = judge(
        update,
        actor.principal,
        load_protection(bare, ()),
        branch_exists=lambda b: bare.resolve(f"refs/heads/{b}") is not None,
        already_on=lambda sha, b: bare.is_ancestor(sha, f"refs/heads/{b}"),
    )
    payload = {"repo": run.repo, "pusher": actor.name, "updates": [{"ref": update.ref, "old": ZERO, "new": commit}]}
    details = {**payload, "run": run.id, "via": "agent run"}

    def push(session: Session) -> dict[str, Any]:
        if not verdict.allowed:  # audited like the receive hook's refusals
            audit_db.append(
                session,
                action="push.refused",
                outcome="refused",
                agent_id=actor.name,
                details={**details, "message": verdict.message, "reason": verdict.reason or verdict.message},
            )
            return {"delivered": False, "why": verdict.message, "commit": commit}
        event = event_store.enqueue(session, "push", payload)
        audit_db.append(
            session,
            action="push.accepted",
            outcome="accepted",
            agent_id=actor.name,
            details={**details, "event": event.id},
        )
        return {"delivered": True, "event": event.id, "ref": update.ref, "commit": commit}

    return push


def _commit_workspace(bare: BareRepo, run: Run, actor: Actor, item: dict[str, Any]) -> str | None:
    """The workspace's files as one commit on the change head, written into the bare
    repository with a throwaway index (the workspace's own ``.git`` is the agent's and is
    never used). None when the files are the head's."""
    email = actor.principal.email or f"{actor.name}@agents.mergegate.invalid"
    who = {"NAME": actor.name, "EMAIL": email}
    with tempfile.TemporaryDirectory(prefix="mergegate-delivery-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        env |= {f"GIT_{role}_{k}": v for role in ("AUTHOR", "COMMITTER") for k, v in who.items()}
        git = BareRepo(bare.path, extra_env=env).git
        safe = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "core.autocrlf=false")
        git(*safe, "read-tree", run.head_sha)
        git(*safe, "-C", str(run.workspace), "--work-tree", str(run.workspace), "add", "-A", "--", ".")
        tree = git(*safe, "write-tree").strip()
        if tree == git("rev-parse", f"{run.head_sha}^{{tree}}").strip():
            return None
        return git(
            *safe, "commit-tree", tree, "-p", run.head_sha, "-F", "-", input=_message(run, item).encode()
        ).strip()


def _message(run: Run, item: dict[str, Any]) -> str:
    title = " ".join(str(item.get("title", "")).split()) or f"Changes from agent run {run.id}"
    body = str(item.get("body") or "").strip()
    # Last, so it is the trailer git and the push handler read: a new change, always.
    change_id = "I" + hashlib.sha256(f"agent-run-{run.id}-{digest(item)}".encode()).hexdigest()[:40]
    return f"{title}\n\n" + (f"{body}\n\n" if body else "") + f"Change-Id: {change_id}\n"
