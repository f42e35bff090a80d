"""The server-side receive hooks: ``python -m mergegate.forge.local.hooks pre-receive|post-receive``.

git runs these inside ``git receive-pack``, which ``git http-backend`` runs for the
server's git bridge. Everything the hooks need comes through that CGI environment
(``MERGEGATE_HOOK_*``, set by the server after it authenticated the pusher), so a push
that does not come through the server (say ``git push /data/repos/x.git`` on the
machine) finds no environment and is refused: the hook fails closed.

- ``pre-receive`` judges every ref update with ``refrules.judge``; one refusal refuses
  the whole push (git's pre-receive is all or nothing). Refusals are audited. An
  accepted push is recorded as a push intent (``intents``) *before* git moves a ref; if
  it cannot be, the push is refused: nothing lands unrecorded.
- ``post-receive`` confirms the intent as the ``push`` event (plus an audit entry)
  before anything acts on it, moves ``refs/for/*`` out of the way, then waits briefly
  for the server's worker to handle the event so the pusher sees the change number. If
  it never gets that far, the server settles the intent from the refs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from mergegate.forge.local.refrules import DEFAULT_PROTECTED, Protection, RefUpdate, judge, protection
from mergegate.forge.local.repos import INCOMING_PREFIX, BareRepo, ForgeError

HOOK_NAMES = ("pre-receive", "post-receive")

#: The names of the environment variables the server passes to its hooks.
ENV_DATABASE = "MERGEGATE_HOOK_DATABASE_URL"
ENV_REPO = "MERGEGATE_HOOK_REPO"
ENV_PUSHER = "MERGEGATE_HOOK_PUSHER"
ENV_KIND = "MERGEGATE_HOOK_PUSHER_KIND"
ENV_ROLE = "MERGEGATE_HOOK_PUSHER_ROLE"
ENV_PROTECTED = "MERGEGATE_HOOK_PROTECTED"
ENV_PUBLIC_URL = "MERGEGATE_HOOK_PUBLIC_URL"
ENV_WAIT = "MERGEGATE_HOOK_WAIT"
ENV_PUSH_ID = "MERGEGATE_HOOK_PUSH_ID"
#: ``service.run_delivery``'s crash points, passed on to the hooks (tests only).
CRASH_ENV = "MERGEGATE_TEST_CRASH_AT"

#: git variables a hook must keep: in pre-receive the pushed objects are still in quarantine.
_QUARANTINE_VARS = ("GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_QUARANTINE_PATH")


@dataclass(frozen=True)
class HookContext:
    database_url: str
    repo: str
    pusher: str
    kind: str
    role: str
    protected: tuple[str, ...]
    public_url: str
    wait_s: float
    #: One per push request: how post-receive and the server find pre-receive's intent.
    push_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def environ(self) -> dict[str, str]:
        crash = {CRASH_ENV: os.environ[CRASH_ENV]} if CRASH_ENV in os.environ else {}
        return crash | {
            ENV_DATABASE: self.database_url,
            ENV_REPO: self.repo,
            ENV_PUSHER: self.pusher,
            ENV_KIND: self.kind,
            ENV_ROLE: self.role,
            ENV_PROTECTED: json.dumps(list(self.protected)),
            ENV_PUBLIC_URL: self.public_url,
            ENV_WAIT: str(self.wait_s),
            ENV_PUSH_ID: self.push_id,
        }

    @classmethod
    def from_environ(cls, env: dict[str, str]) -> HookContext | None:
        try:
            return cls(
                database_url=env[ENV_DATABASE],
                repo=env[ENV_REPO],
                pusher=env[ENV_PUSHER],
                kind=env[ENV_KIND],
                role=env[ENV_ROLE],
                protected=tuple(json.loads(env[ENV_PROTECTED])),
                public_url=env.get(ENV_PUBLIC_URL, ""),
                wait_s=float(env.get(ENV_WAIT, "10")),
                push_id=env[ENV_PUSH_ID],
            )
        except (KeyError, ValueError, TypeError):
            return None


def install(hooks_dir: Path, python: str | None = None) -> None:
    """Write the hook scripts (atomically; rewritten at every server start)."""
    python = python or sys.executable
    hooks_dir.mkdir(parents=True, exist_ok=True)
    for name in HOOK_NAMES:
        script = f"#!/bin/sh\nexec '{python}' -m mergegate.forge.local.hooks {name}\n"
        target = hooks_dir / name
        tmp = hooks_dir / f".{name}.tmp"
        tmp.write_text(script)
        tmp.chmod(0o755)
        tmp.replace(target)


def installed(hooks_dir: Path) -> bool:
    return all(os.access(hooks_dir / name, os.X_OK) for name in HOOK_NAMES)


def read_updates(stream) -> list[RefUpdate]:
    updates = []
    for line in stream.read().splitlines():
        parts = line.split()
        if len(parts) == 3:
            updates.append(RefUpdate(ref=parts[2], old=parts[0], new=parts[1]))
    return updates


def say(message: str) -> None:
    # git relays a hook's stderr to the pusher as "remote: ..." lines.
    for line in message.splitlines() or [""]:
        print(f"mergegate: {line}", file=sys.stderr, flush=True)


def _repo() -> BareRepo:
    git_dir = Path(os.environ.get("GIT_DIR", ".")).resolve()
    keep = {k: os.environ[k] for k in _QUARANTINE_VARS if k in os.environ}
    return BareRepo(git_dir, extra_env=keep)


def load_protection(repo: BareRepo, server_patterns: tuple[str, ...]) -> Protection:
    """Server patterns plus the default branch's ``gate.protected_branches``; fail closed."""
    from mergegate.core.policy import POLICY_FILE, PolicyError, parse_policy

    try:
        branch = repo.default_branch()
        source = f"{branch}:{POLICY_FILE}"
        exists, text = repo.read_blob(f"refs/heads/{branch}", POLICY_FILE)
        policy = parse_policy(text if exists else None, source)
    except PolicyError as exc:
        first = exc.problems[0] if exc.problems else "invalid"
        return protection(server_patterns + DEFAULT_PROTECTED, None, "", f"{exc.source} is invalid: {first}")
    except ForgeError as exc:
        return protection(server_patterns + DEFAULT_PROTECTED, None, "", f"cannot read the policy: {exc}")
    return protection(server_patterns, policy.gate, source if exists else "built-in defaults", None)


def pre_receive(ctx: HookContext, updates: list[RefUpdate]) -> int:
    from mergegate.core.principals import Principal, PrincipalKind, Role

    try:
        principal = Principal(name=ctx.pusher, kind=PrincipalKind(ctx.kind), role=Role(ctx.role))
    except ValueError:
        say("refused: the pusher's identity is malformed")
        return 1
    repo = _repo()
    prot = load_protection(repo, ctx.protected)
    verdicts = [
        judge(
            update,
            principal,
            prot,
            branch_exists=lambda b: repo.resolve(f"refs/heads/{b}") is not None,
            already_on=lambda sha, b: repo.is_ancestor(sha, f"refs/heads/{b}"),
        )
        for update in updates
    ]
    refused = [v for v in verdicts if not v.allowed]
    if not refused:
        return _record_intent(ctx, updates)
    for verdict in refused:
        say(verdict.message)
    if len(refused) < len(verdicts):
        say("the whole push was refused: a push lands all its refs or none")
    try:
        _audit_refusals(ctx, prot, refused)
    except Exception as exc:  # the refusal stands either way (fail closed)
        say(f"(the refusal could not be written to the audit log: {type(exc).__name__})")
    return 1


def _push(ctx: HookContext, updates: list[RefUpdate]) -> dict:
    from mergegate.forge.local import intents

    moved = [{"ref": u.ref, "old": u.old, "new": u.new} for u in updates]
    return intents.payload(ctx.repo, ctx.pusher, moved, ctx.push_id)


def _record_intent(ctx: HookContext, updates: list[RefUpdate]) -> int:
    """Record the push before git moves a ref; refuse it (fail closed) if that fails."""
    from mergegate.forge.local import intents
    from mergegate.store.db import Database

    if not updates:
        return 0
    db = Database(ctx.database_url, pooled=False)
    try:
        intents.record(db, _push(ctx, updates))
        return 0
    except Exception as exc:
        say(f"refused: the push could not be recorded ({type(exc).__name__}); nothing landed, push again later")
        return 1
    finally:
        db.dispose()


def crash_point(name: str) -> None:
    """Tests only: ``<name>`` kills this hook like kill -9; ``<name>.server`` kills the
    server with it (the hooks run in the server's process group under test)."""
    where = os.environ.get(CRASH_ENV)
    if where == name:
        os.kill(os.getpid(), signal.SIGKILL)
    elif where == f"{name}.server":
        os.killpg(os.getpgrp(), signal.SIGKILL)


def _audit_refusals(ctx: HookContext, prot: Protection, refused) -> None:
    from mergegate.store import audit_db
    from mergegate.store.db import Database

    db = Database(ctx.database_url, pooled=False)
    try:
        with db.write() as session:
            for verdict in refused:
                u = verdict.update
                audit_db.append(
                    session,
                    action="push.refused",
                    outcome="refused",
                    agent_id=ctx.pusher,
                    policy_applied=f"protected branches from {prot.source}: {', '.join(prot.patterns)}",
                    details={
                        "repo": ctx.repo,
                        "ref": u.ref,
                        "old": u.old,
                        "new": u.new,
                        "message": verdict.message,
                        "reason": verdict.reason or verdict.message,
                        "pusher_kind": ctx.kind,
                        "pusher_role": ctx.role,
                    },
                )
    finally:
        db.dispose()


def post_receive(ctx: HookContext, updates: list[RefUpdate]) -> int:
    from mergegate.forge.local import intents
    from mergegate.store.db import Database

    if not updates:
        return 0
    crash_point("post-receive")
    # Pooled: the wait loop below reads many times, and this process is short-lived anyway.
    db = Database(ctx.database_url)
    try:
        # The refs have moved already: wait out a busy database rather than lose the push
        # (if this hook dies anyway, the server settles the intent from the refs).
        event_id = intents.confirm(db, _push(ctx, updates))
        _stage_magic_refs(event_id, updates)
        _report(db, ctx, event_id)
    except Exception as exc:
        say(f"warning: the push landed but its hook could not record it ({type(exc).__name__}: {exc})")
        say("the server records it from the refs when this push ends (or at its next start)")
        return 1
    finally:
        db.dispose()
    return 0


def _stage_magic_refs(event_id: int, updates: list[RefUpdate]) -> None:
    """Move ``refs/for/<branch>`` to a staging ref at once, so the next push there is a
    plain create again. If this fails, the event handler cleans up instead."""
    commands = []
    for index, u in enumerate(updates):
        if u.ref.startswith("refs/for/") and not u.is_delete:
            commands += [f"create {INCOMING_PREFIX}{event_id}/{index} {u.new}", f"delete {u.ref} {u.new}"]
    if commands:
        with contextlib.suppress(ForgeError):
            _repo().update_refs(commands)


def _report(db, ctx: HookContext, event_id: int) -> None:
    from mergegate.store import events

    deadline = time.monotonic() + max(ctx.wait_s, 0.0)
    while True:
        with db.read() as session:
            row = events.get(session, event_id)
            status, outcome = row.status, events.result(row)
        if status != "pending" or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    if status == "done" and outcome:
        for message in outcome.get("messages", []):
            say(message)
    elif status == "failed":
        say(f"the push was recorded (event {event_id}) but handling it failed; an admin can see why in the events log")
    else:
        say(f"the push was recorded (event {event_id}); its change appears shortly:")
        say(f"  mergegate change list --repo {ctx.repo}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] not in HOOK_NAMES:
        print(f"usage: python -m mergegate.forge.local.hooks {'|'.join(HOOK_NAMES)}", file=sys.stderr)
        return 2
    ctx = HookContext.from_environ(dict(os.environ))
    updates = read_updates(sys.stdin)
    if ctx is None:
        if argv[0] == "pre-receive":
            say("refused: this repository accepts pushes only through the mergegate server (git over HTTP)")
            return 1
        return 0
    if argv[0] == "pre-receive":
        return pre_receive(ctx, updates)
    return post_receive(ctx, updates)


if __name__ == "__main__":
    sys.exit(main())
