"""Principals and their tokens."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, status

from mergegate.service import accounts
from mergegate.web.auth import CurrentActor
from mergegate.web.schemas import IssuedTokenOut, TokenIn, TokenOut, UserIn, UserOut

router = APIRouter(prefix="/api", tags=["principals"])


def _db(request: Request):
    return request.app.state.server.db


@router.get("/me", response_model=UserOut)
def me(request: Request, actor: CurrentActor):
    """The principal the token belongs to."""
    return accounts.get_principal(_db(request), actor, actor.name)


@router.get("/users", response_model=list[UserOut])
def list_users(request: Request, actor: CurrentActor):
    """Every principal. Needs ``manage_principals`` (human admins only)."""
    return accounts.list_principals(_db(request), actor)


@router.post("/users", response_model=UserOut, status_code=status.HTTP_201_CREATED)
def create_user(body: UserIn, request: Request, actor: CurrentActor):
    """Create a human or agent principal. Needs ``manage_principals``."""
    return accounts.create_principal(
        _db(request), actor, name=body.name, kind=body.kind, role=body.role, email=body.email
    )


@router.get("/users/{name}", response_model=UserOut)
def get_user(name: str, request: Request, actor: CurrentActor):
    return accounts.get_principal(_db(request), actor, name)


@router.patch("/users/{name}", response_model=UserOut)
def update_user(
    name: str,
    request: Request,
    actor: CurrentActor,
    changes: Annotated[dict[str, Any], Body(examples=[{"role": "maintainer"}])],
):
    """Change ``role`` or ``email``. ``kind`` can never change: asking is refused (403) and audited."""
    return accounts.update_principal(_db(request), actor, name, changes)


@router.get("/users/{name}/tokens", response_model=list[TokenOut])
def list_tokens(name: str, request: Request, actor: CurrentActor):
    return accounts.list_tokens(_db(request), actor, name)


@router.post("/users/{name}/tokens", response_model=IssuedTokenOut, status_code=status.HTTP_201_CREATED)
def create_token(name: str, request: Request, actor: CurrentActor, body: TokenIn | None = None):
    """Mint a token (shown once). A human may mint its own; otherwise ``manage_principals``."""
    return accounts.issue_token(_db(request), actor, name, label=body.label if body else "")


@router.delete("/tokens/{token_id}", response_model=TokenOut)
def revoke_token(token_id: int, request: Request, actor: CurrentActor):
    """Revoke a token: its owner, or ``manage_principals``."""
    return accounts.revoke_token(_db(request), actor, token_id)
