"""Bring a data directory to a runnable state: directories, schema, hooks, first admin.

Idempotent, and run at every start: migrations are applied, the hook scripts are
rewritten (they embed this Python's path) and every repository's config is reapplied,
so neither an upgrade nor a hand-edited repository config can leave the guard off.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mergegate.forge.local import hooks
from mergegate.forge.local.repos import Forge, ForgeError
from mergegate.service.accounts import AdminBootstrap, ensure_admin
from mergegate.service.settings import ServerSettings
from mergegate.store import migrate
from mergegate.store import repos as repo_store
from mergegate.store.db import Database

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
            forge.configure(forge.open(name))
        except ForgeError:
            missing.append(name)
            log.error("repository %s is in the database but has no directory under %s", name, settings.repos_dir)
    return Server(settings, db, forge, admin, missing)
