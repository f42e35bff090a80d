"""Repositories as use cases: create (bare repo + row, all or nothing) and list."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from mergegate.core.principals import Permission
from mergegate.forge.local.repos import Forge, ForgeError, validate_repo_name
from mergegate.service.authz import Actor, require
from mergegate.service.errors import Conflict, Invalid, NotFound
from mergegate.store import audit_db
from mergegate.store import repos as store
from mergegate.store.db import Database
from mergegate.store.models import RepoRow


@dataclass(frozen=True)
class RepoView:
    name: str
    default_branch: str
    clone_url: str
    created_at: str
    created_by: str | None

    @classmethod
    def of(cls, row: RepoRow, base_url: str) -> RepoView:
        clone_url = f"{base_url}/git/{row.name}.git"
        return cls(row.name, row.default_branch, clone_url, row.created_at.isoformat(), row.created_by)


def create_repo(
    db: Database,
    forge: Forge,
    actor: Actor,
    *,
    name: str,
    source: str | None = None,
    default_branch: str | None = None,
    base_url: str,
) -> RepoView:
    """Create a bare repository served by this server.

    Creating one is an admin act that brings a policy (``.mergegate.yml``) under the
    gate, so it needs ``change_policy`` (which no agent ever has).
    """
    details = {"repo": name, "from": source, "default_branch": default_branch}
    require(db, actor, Permission.CHANGE_POLICY, action="repo.create", details=details)
    try:
        name = validate_repo_name(name)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    created = None
    try:
        with db.write() as session:
            if store.get(session, name) is not None or forge.exists(name):
                raise Conflict(f"a repository named {name!r} already exists")
            try:
                created = forge.create(name, default_branch=default_branch, source=source)
            except (ValueError, ForgeError) as exc:
                raise Invalid(str(exc)) from None
            row = store.create(session, name=name, default_branch=created.default_branch(), created_by=actor.name)
            audit_db.append(
                session,
                action="repo.create",
                outcome="ok",
                agent_id=actor.name,
                details={**details, "default_branch": row.default_branch},
            )
            view = RepoView.of(row, base_url)
    except BaseException as exc:
        # The row and the directory exist together or not at all.
        if created is not None:
            shutil.rmtree(created.path, ignore_errors=True)
        if isinstance(exc, IntegrityError):
            raise Conflict(f"a repository named {name!r} already exists") from None
        raise
    return view


def list_repos(db: Database, base_url: str) -> list[RepoView]:
    with db.read() as session:
        return [RepoView.of(r, base_url) for r in store.list_all(session)]


def get_repo(db: Database, name: str, base_url: str) -> RepoView:
    with db.read() as session:
        row = store.get(session, name)
        if row is None:
            raise NotFound(f"no repository named {name!r}")
        return RepoView.of(row, base_url)
