"""Bring a data directory to a runnable state: directories, schema, hooks, first admin.

Idempotent, and run at every start: migrations are applied, the hook scripts are
rewritten (they embed this Python's path) and every repository's config is reapplied,
so neither an upgrade nor a hand-edited repository config can leave the guard off.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mergegate.forge.local import hooks, intents
from mergegate.forge.local.repos import Forge, ForgeError
from mergegate.service.accounts import AdminBootstrap, ensure_admin
from mergegate.service.settings import ServerSettings
from mergegate.store import changes as change_store
from mergegate.store import migrate
from mergegate.store import repos as repo_store
from mergegate.store.db import Database
from mergegate.store.models import RepoRow

log = logging.getLogger("mergegate.server")


@dataclass
class Server:
    settings: ServerSettings
    db: Database
    forge: Forge
    admin: AdminBootstrap
    #: Repositories whose directory is missing (reported at start, refused when used).
    missing_repos: list[str]


def prepare(settings: ServerSettings) -> Server:
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings.repos_dir.mkdir(exist_ok=True)
    db = Database(settings.database_url)
    migrate.upgrade(db)
    hooks.install(settings.hooks_dir)
    forge = Forge(settings.repos_dir, settings.hooks_dir)
    admin = ensure_admin(db, settings.admin_name)
    missing = []
    with db.read() as session:
        names = [r.name for r in repo_store.list_all(session)]
    for name in names:
        try:
            bare = forge.open(name)
            forge.configure(bare)
            # A git killed with the server (kill -9 mid-merge) leaves ref locks behind.
            for lock in bare.remove_stale_locks():
                log.warning("repository %s: removed %s left by a git process that did not finish", name, lock)
        except ForgeError:
            missing.append(name)
            log.error("repository %s is in the database but has no directory under %s", name, settings.repos_dir)
    # Pushes whose refs moved while nothing recorded them (a kill -9 mid-push) become
    # push events now; intents whose refs did not move are dropped (audited).
    for event_id, outcome in intents.settle(db, forge):
        log.warning("push intent %s left by a push cut short: %s", event_id, outcome)
    reconcile_merges(db, forge)
    return Server(settings, db, forge, admin, missing)


def reconcile_merges(db: Database, forge: Forge) -> list[int]:
    """Record merges git did but the database never committed (a crash between the two).

    The gate moves a protected branch by compare-and-swap *before* its transaction
    commits; a kill -9 in between leaves the branch at the landing commit and the change
    open. Only the gate writes protected branches, so a landing commit found on its
    target branch did land: mark the change merged, audited as a gate reconciliation.
    """
    from mergegate.service.merge import reconcile  # the handlers load only when needed
    from mergegate.service.refresh import BASE_MOVED
    from mergegate.store import events as event_store

    done: list[int] = []
    with db.write() as session:
        for change in change_store.list_changes(session, state="open"):
            if not change.landing_sha:
                continue
            repo = session.get(RepoRow, change.repo_id)
            try:
                bare = forge.open(repo.name)
            except ForgeError:
                continue
            tip = bare.resolve(f"refs/heads/{change.target_branch}")
            if reconcile(session, bare, change, tip):
                log.warning("change %s had landed on %s before a crash; recorded it as merged", change.id, tip)
                done.append(change.id)
                # The other open changes into that branch now re-land on its new tip.
                event_store.enqueue(session, BASE_MOVED, {"repo": repo.name, "branch": change.target_branch})
    return done
