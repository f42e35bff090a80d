"""Principals and tokens as use cases: validate, authorize, store, audit, in one place.

The HTTP API and the CLI's local mode both call these, so a rule (say, "a human may
mint a token for itself, anything else needs ``manage_principals``") exists once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from mergegate.core.principals import Permission, PrincipalKind, Role, authorize
from mergegate.service.authz import Actor, refuse, require
from mergegate.service.errors import Conflict, Invalid, NotFound
from mergegate.store import audit_db
from mergegate.store import principals as store
from mergegate.store.db import Database
from mergegate.store.models import PrincipalRow, TokenRow

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")
#: Names that would let a principal pass for the server itself in the audit log.
RESERVED = frozenset({"mergegate", "gate", "anonymous", "system"})
SERVER_ACTOR = "mergegate"


@dataclass(frozen=True)
class PrincipalView:
    name: str
    kind: str
    role: str
    email: str | None
    created_at: str
    created_by: str | None

    @classmethod
    def of(cls, row: PrincipalRow) -> PrincipalView:
        return cls(row.name, row.kind, row.role, row.email, row.created_at.isoformat(), row.created_by)


@dataclass(frozen=True)
class TokenView:
    id: int
    principal: str
    label: str
    prefix: str
    created_at: str
    created_by: str | None
    revoked_at: str | None

    @classmethod
    def of(cls, row: TokenRow, principal: str) -> TokenView:
        return cls(
            row.id,
            principal,
            row.label,
            f"mgt_{row.public_id}_…",
            row.created_at.isoformat(),
            row.created_by,
            row.revoked_at.isoformat() if row.revoked_at else None,
        )


def validate_name(name: str) -> str:
    if not NAME.fullmatch(name or ""):
        raise Invalid(
            f"invalid principal name {name!r}: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    if name.casefold() in RESERVED:
        raise Invalid(f"the name {name!r} is reserved for the server itself")
    return name


def _kind(value: str) -> PrincipalKind:
    try:
        return PrincipalKind(value)
    except ValueError:
        raise Invalid(f"invalid kind {value!r}: human or agent") from None


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise Invalid(f"invalid role {value!r}: admin, maintainer or contributor") from None


def _email(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if len(value) > 254 or not EMAIL.fullmatch(value):
        raise Invalid(f"invalid email address {value!r}")
    return value


def authenticate(db: Database, token: str) -> Actor | None:
    with db.read() as session:
        found = store.resolve_token(session, token)
        return Actor.of(found[0]) if found else None


def create_principal(
    db: Database, actor: Actor, *, name: str, kind: str, role: str = "contributor", email: str | None = None
) -> PrincipalView:
    details = {"target": name, "kind": kind, "role": role}
    require(db, actor, Permission.MANAGE_PRINCIPALS, action="principal.create", details=details)
    name, kind_, role_, email = validate_name(name), _kind(kind), _role(role), _email(email)
    try:
        with db.write() as session:
            if store.get(session, name) is not None:
                raise Conflict(f"a principal named {name!r} already exists")
            if email and store.by_email(session, email) is not None:
                raise Conflict(f"another principal already has the email address {email!r}")
            row = store.create(session, name=name, kind=kind_, role=role_, email=email, created_by=actor.name)
            audit_db.append(session, action="principal.create", outcome="ok", agent_id=actor.name, details=details)
            return PrincipalView.of(row)
    except IntegrityError:
        raise Conflict(f"a principal named {name!r} (or with that email) already exists") from None


def _find(session, name: str) -> PrincipalRow:
    row = store.get(session, name)
    if row is None:
        raise NotFound(f"no principal named {name!r}")
    return row


def list_principals(db: Database, actor: Actor) -> list[PrincipalView]:
    require(db, actor, Permission.MANAGE_PRINCIPALS, action="principal.list")
    with db.read() as session:
        return [PrincipalView.of(r) for r in store.list_all(session)]


def _self_or_manager(db: Database, actor: Actor, name: str, action: str) -> None:
    if actor.name != name:
        require(db, actor, Permission.MANAGE_PRINCIPALS, action=action, details={"target": name})


def get_principal(db: Database, actor: Actor, name: str) -> PrincipalView:
    _self_or_manager(db, actor, name, "principal.read")
    with db.read() as session:
        return PrincipalView.of(_find(session, name))


def update_principal(db: Database, actor: Actor, name: str, changes: dict) -> PrincipalView:
    """Change a principal's role or email. A ``kind`` in ``changes`` is refused (and audited)."""
    details = {"target": name, "changes": {k: v for k, v in changes.items() if k != "email"}}
    if "kind" in changes:
        raise refuse(
            db,
            actor.name,
            "principal.update",
            "a principal's kind is fixed at creation and can never change: create a new principal instead",
            details,
        )
    require(db, actor, Permission.MANAGE_PRINCIPALS, action="principal.update", details=details)
    unknown = sorted(set(changes) - {"role", "email"})
    if unknown:
        raise Invalid(f"cannot change {', '.join(unknown)}: only role and email can change")
    role = _role(changes["role"]) if changes.get("role") is not None else None
    email = _email(changes["email"]) if "email" in changes else None
    with db.write() as session:
        row = _find(session, name)
        demoting = role is not None and role is not Role.ADMIN and row.role == "admin" and row.kind == "human"
        if demoting and [a.id for a in store.human_admins(session)] == [row.id]:
            raise Conflict(f"{name} is the only human admin; make someone else admin first")
        if "email" in changes and email:
            other = store.by_email(session, email)
            if other is not None and other.id != row.id:
                raise Conflict(f"another principal already has the email address {email!r}")
        store.update(session, row, role=role, email=(email or "") if "email" in changes else None)
        audit_db.append(session, action="principal.update", outcome="ok", agent_id=actor.name, details=details)
        return PrincipalView.of(row)


def issue_token(db: Database, actor: Actor, name: str, *, label: str = "") -> store.IssuedToken:
    """Mint a token for ``name``. A human may mint its own; anything else needs
    ``manage_principals`` (so an agent can never mint tokens, not even for itself)."""
    details = {"target": name, "label": label}
    own = actor.name == name and actor.principal.is_human
    if not own:
        require(db, actor, Permission.MANAGE_PRINCIPALS, action="token.create", details=details)
    if len(label) > 100:
        raise Invalid("the token label is longer than 100 characters")
    with db.write() as session:
        target = _find(session, name)
        issued = store.issue_token(session, target, label=label, created_by=actor.name)
        audit_db.append(
            session, action="token.create", outcome="ok", agent_id=actor.name, details={**details, "token": issued.id}
        )
        return issued


def list_tokens(db: Database, actor: Actor, name: str) -> list[TokenView]:
    _self_or_manager(db, actor, name, "token.list")
    with db.read() as session:
        row = _find(session, name)
        return [TokenView.of(t, row.name) for t in store.tokens_of(session, row)]


def revoke_token(db: Database, actor: Actor, token_id: int) -> TokenView:
    """Revoke a token: its owner may, and so may anyone with ``manage_principals``."""
    with db.read() as session:
        token = store.get_token(session, token_id)
        owner = store.get_by_id(session, token.principal_id) if token else None
    if token is None or owner is None:
        raise NotFound(f"no token with id {token_id}")
    if owner.name != actor.name:
        require(db, actor, Permission.MANAGE_PRINCIPALS, action="token.revoke", details={"token": token_id})
    with db.write() as session:
        token = store.get_token(session, token_id)
        store.revoke(session, token, by=actor.name)
        audit_db.append(
            session,
            action="token.revoke",
            outcome="ok",
            agent_id=actor.name,
            details={"token": token_id, "target": owner.name},
        )
        return TokenView.of(token, owner.name)


@dataclass(frozen=True)
class AdminBootstrap:
    admin: str
    token: str | None
    created_at: str


def ensure_admin(db: Database, name: str) -> AdminBootstrap:
    """On first start create a human admin and return its token (the only time it is shown)."""
    validate_name(name)
    try:
        with db.write() as session:
            admins = store.human_admins(session)
            if admins:
                return AdminBootstrap(admins[0].name, None, admins[0].created_at.isoformat())
            if store.get(session, name) is not None:
                raise Conflict(f"{name!r} exists but is not a human admin; pick another admin name")
            row = store.create(
                session, name=name, kind=PrincipalKind.HUMAN, role=Role.ADMIN, email=None, created_by=SERVER_ACTOR
            )
            issued = store.issue_token(session, row, label="first-start admin token", created_by=SERVER_ACTOR)
            audit_db.append(
                session,
                action="principal.create",
                outcome="ok",
                agent_id=SERVER_ACTOR,
                details={"target": name, "kind": "human", "role": "admin", "why": "first start"},
            )
            return AdminBootstrap(name, issued.token, row.created_at.isoformat())
    except IntegrityError:  # another server created it at the same moment
        return ensure_admin(db, name)


def may(actor: Actor, permission: Permission) -> bool:
    return authorize(actor.principal, permission).allowed
