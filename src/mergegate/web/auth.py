"""Who is calling: ``Authorization: Bearer <token>`` (API) or Basic ``user:token`` (git).

A missing credential is a 401 without an audit entry (git always asks once without
credentials before it sends them); a wrong or revoked one is a 401 *with* an audit
entry, so guessing leaves a trail.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from mergegate.service import accounts
from mergegate.service.authz import Actor, refuse
from mergegate.service.errors import Unauthenticated
from mergegate.store.db import Database


@dataclass(frozen=True)
class Credentials:
    token: str
    #: The user name of a Basic credential; must be the token's principal.
    user: str | None = None


def parse_authorization(header: str | None) -> Credentials | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return Credentials(value)
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return Credentials("", None)
        user, sep, token = decoded.partition(":")
        return Credentials(token, user or None) if sep else Credentials("", user)
    return Credentials("", None)


def authenticate(db: Database, creds: Credentials | None, where: str) -> Actor:
    """The acting principal, or ``Unauthenticated`` (audited when credentials were wrong)."""
    if creds is None:
        raise Unauthenticated("authentication required: send 'Authorization: Bearer <token>' (git: user + token)")
    actor = accounts.authenticate(db, creds.token) if creds.token else None
    if actor is not None and (creds.user is None or creds.user == actor.name):
        return actor
    why = "the user name does not match the token" if actor is not None else "unknown, malformed or revoked token"
    refuse(db, creds.user, "auth.failed", why, {"where": where})
    raise Unauthenticated(f"invalid credentials: {why}")


def current_actor(request: Request) -> Actor:
    """FastAPI dependency: the authenticated caller of an API route."""
    db = request.app.state.server.db
    creds = parse_authorization(request.headers.get("authorization"))
    return authenticate(db, creds, f"{request.method} {request.url.path}")


#: Route parameter type for "the authenticated caller".
CurrentActor = Annotated[Actor, Depends(current_actor)]
