"""Principals and API tokens: rows in, ``core.principals.Principal`` out.

Tokens look like ``mgt_<public id>_<secret>``: 48 random bits of public id to find the
row, 256 random bits of secret. Only SHA-256 of the whole token is stored (a fast hash
is right here: the input is a random 256-bit value, not a password, so there is nothing
to brute-force), and the comparison is constant-time. A leaked database therefore
yields no usable token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mergegate.core.principals import Principal, PrincipalKind, Role
from mergegate.store.models import PrincipalRow, TokenRow, utcnow

TOKEN_PREFIX = "mgt"


@dataclass(frozen=True)
class IssuedToken:
    """A freshly minted token. ``token`` exists only here; it is never stored."""

    id: int
    token: str
    label: str
    principal: str


def to_principal(row: PrincipalRow) -> Principal:
    return Principal(name=row.name, kind=PrincipalKind(row.kind), role=Role(row.role), email=row.email)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _split(token: str) -> str | None:
    """The public id of a well-formed token, else None."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1] or len(parts[2]) < 32:
        return None
    return parts[1]


def get(session: Session, name: str) -> PrincipalRow | None:
    return session.execute(select(PrincipalRow).where(PrincipalRow.name == name)).scalar_one_or_none()


def get_by_id(session: Session, principal_id: int) -> PrincipalRow | None:
    return session.get(PrincipalRow, principal_id)


def by_email(session: Session, email: str) -> PrincipalRow | None:
    return session.execute(select(PrincipalRow).where(PrincipalRow.email_key == email.casefold())).scalar_one_or_none()


def list_all(session: Session) -> list[PrincipalRow]:
    return list(session.execute(select(PrincipalRow).order_by(PrincipalRow.name)).scalars())


def human_admins(session: Session) -> list[PrincipalRow]:
    query = select(PrincipalRow).where(PrincipalRow.kind == "human", PrincipalRow.role == "admin")
    return list(session.execute(query.order_by(PrincipalRow.id)).scalars())


def create(
    session: Session,
    *,
    name: str,
    kind: PrincipalKind,
    role: Role,
    email: str | None,
    created_by: str | None,
) -> PrincipalRow:
    row = PrincipalRow(
        name=name,
        kind=kind.value,
        role=role.value,
        email=email,
        email_key=email.casefold() if email else None,
        created_by=created_by,
    )
    session.add(row)
    session.flush()
    return row


def update(session: Session, row: PrincipalRow, *, role: Role | None = None, email: str | None = None) -> PrincipalRow:
    """Change what may change. There is deliberately no ``kind`` parameter."""
    if role is not None:
        row.role = role.value
    if email is not None:
        row.email = email or None
        row.email_key = email.casefold() if email else None
    session.flush()
    return row


def issue_token(session: Session, principal: PrincipalRow, *, label: str, created_by: str | None) -> IssuedToken:
    public_id = secrets.token_hex(6)
    token = f"{TOKEN_PREFIX}_{public_id}_{secrets.token_urlsafe(32)}"
    row = TokenRow(
        public_id=public_id,
        principal_id=principal.id,
        secret_hash=hash_token(token),
        label=label,
        created_by=created_by,
    )
    session.add(row)
    session.flush()
    return IssuedToken(id=row.id, token=token, label=label, principal=principal.name)


_DUMMY_HASH = hash_token("mgt_000000000000_" + "0" * 43)


def resolve_token(session: Session, token: str) -> tuple[PrincipalRow, TokenRow] | None:
    """The principal a live token belongs to, or None (unknown, malformed or revoked)."""
    public_id = _split(token)
    row = None
    if public_id is not None:
        row = session.execute(select(TokenRow).where(TokenRow.public_id == public_id)).scalar_one_or_none()
    # Compare even when nothing was found so the answer takes the same time either way.
    matches = hmac.compare_digest(hash_token(token), row.secret_hash if row else _DUMMY_HASH)
    if row is None or not matches or row.revoked_at is not None:
        return None
    principal = session.get(PrincipalRow, row.principal_id)
    return (principal, row) if principal is not None else None


def tokens_of(session: Session, principal: PrincipalRow) -> list[TokenRow]:
    query = select(TokenRow).where(TokenRow.principal_id == principal.id).order_by(TokenRow.id)
    return list(session.execute(query).scalars())


def get_token(session: Session, token_id: int) -> TokenRow | None:
    return session.get(TokenRow, token_id)


def revoke(session: Session, token: TokenRow, *, by: str, when: datetime | None = None) -> None:
    if token.revoked_at is None:
        token.revoked_at = when or utcnow()
        token.revoked_by = by
        session.flush()
