"""Who is acting, and the one way a use case says no: audited, then refused.

Every permission decision goes through ``core.principals.authorize``; ``require``
turns a "no" into an audit entry plus a ``Refused`` carrying authorize's reason.
"""

from __future__ import annotations

import getpass
import logging
from dataclasses import dataclass
from typing import Any

from mergegate.core.principals import Permission, Principal, PrincipalKind, Role, authorize
from mergegate.service.errors import Refused
from mergegate.store import audit_db
from mergegate.store.db import Database
from mergegate.store.models import PrincipalRow
from mergegate.store.principals import to_principal

log = logging.getLogger("mergegate.authz")


@dataclass(frozen=True)
class Actor:
    """A principal acting through the API, or the local operator (``principal_id`` None).

    The local operator is whoever can read the data directory and so could edit the
    database anyway; it acts as a human admin and is audited as ``local:<os user>``.
    """

    principal: Principal
    principal_id: int | None

    @property
    def name(self) -> str:
        return self.principal.name

    @classmethod
    def of(cls, row: PrincipalRow) -> Actor:
        return cls(to_principal(row), row.id)

    @classmethod
    def local_operator(cls) -> Actor:
        try:
            user = getpass.getuser()
        except Exception:
            user = "unknown"
        return cls(Principal(name=f"local:{user}", kind=PrincipalKind.HUMAN, role=Role.ADMIN), None)


def refuse(db: Database, actor_name: str | None, action: str, reason: str, details: dict[str, Any] | None = None):
    """Audit a refusal and return the ``Refused`` to raise. The refusal stands even if
    the audit write fails (fail closed); that failure is logged."""
    try:
        with db.write() as session:
            audit_db.append(
                session,
                action=action,
                outcome="refused",
                agent_id=actor_name,
                details={**(details or {}), "reason": reason},
            )
    except Exception:
        log.exception("could not audit the refusal of %s to %s", actor_name, action)
    return Refused(reason)


def require(
    db: Database, actor: Actor, permission: Permission, *, action: str, details: dict[str, Any] | None = None
) -> None:
    auth = authorize(actor.principal, permission)
    if not auth:
        raise refuse(db, actor.name, action, auth.reason, {**(details or {}), "permission": str(permission)})
