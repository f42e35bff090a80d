"""Repositories."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from mergegate.core.principals import Permission
from mergegate.service import changes, repos
from mergegate.service.authz import require
from mergegate.service.errors import Invalid
from mergegate.web.auth import CurrentActor
from mergegate.web.schemas import ChangeOut, RepoIn, RepoOut

router = APIRouter(prefix="/api/repos", tags=["repositories"])


@router.get("", response_model=list[RepoOut])
def list_repos(request: Request, actor: CurrentActor):
    server = request.app.state.server
    return repos.list_repos(server.db, server.settings.url)


@router.post("", response_model=RepoOut, status_code=status.HTTP_201_CREATED)
def create_repo(body: RepoIn, request: Request, actor: CurrentActor):
    """Create a bare repository (optionally a clone of ``source``). Admins only (``change_policy``)."""
    server = request.app.state.server
    return repos.create_repo(
        server.db,
        server.forge,
        actor,
        name=body.name,
        source=body.source,
        default_branch=body.default_branch,
        base_url=server.settings.url,
    )


@router.get("/{name}", response_model=RepoOut)
def get_repo(name: str, request: Request, actor: CurrentActor):
    server = request.app.state.server
    return repos.get_repo(server.db, name, server.settings.url)


@router.get("/{name}/changes", response_model=list[ChangeOut])
def repo_changes(name: str, request: Request, actor: CurrentActor, state: str | None = None):
    return changes.list_changes(request.app.state.server.db, repo=name, state=state)


@router.api_route("/{name}", methods=["PUT", "PATCH"], include_in_schema=False)
@router.api_route("/{name}/policy", methods=["POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
def change_repo_policy(name: str, request: Request, actor: CurrentActor):
    """No API changes a repository's rules: they are ``.mergegate.yml`` and CODEOWNERS on the
    protected branch. Agents are refused (and audited) as for any policy change; anyone
    else is told where the policy lives."""
    require(
        request.app.state.server.db,
        actor,
        Permission.CHANGE_POLICY,
        action="repo.policy",
        details={"repo": name, "request": f"{request.method} {request.url.path}"},
    )
    raise Invalid(
        f"{name}: a repository's policy is .mergegate.yml and CODEOWNERS on its protected branch; "
        "change them through a change their owners approve"
    )
