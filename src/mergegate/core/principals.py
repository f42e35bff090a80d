"""Principals (who acts) and what each may do.

Two axes, deliberately independent:

- ``kind`` (human or agent) is fixed when the principal is created and is the axis
  invariant 1 hangs on: an agent can never approve, block, merge, change policy, dismiss
  a review or manage principals, *whatever its role says*. A role is configuration, and
  configuration can be wrong or tampered with; the kind check comes first so that an
  ``admin`` agent gets exactly what any agent gets.
- ``role`` (admin, maintainer, contributor) grades what a human may do.

Nobody may push to a protected branch, admins included: only the gate moves those refs,
by compare-and-swap after evaluating every rule. ``authorize`` is pure so that the
server's HTTP layer, the receive hook and the CLI all ask one function the same question.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PrincipalKind(StrEnum):
    HUMAN = "human"
    AGENT = "agent"


class Role(StrEnum):
    ADMIN = "admin"
    MAINTAINER = "maintainer"
    CONTRIBUTOR = "contributor"


class Permission(StrEnum):
    PUSH_BRANCH = "push_branch"
    OPEN_CHANGE = "open_change"
    UPDATE_CHANGE = "update_change"
    COMMENT = "comment"
    POST_FINDINGS = "post_findings"
    APPROVE = "approve"
    REQUEST_CHANGES = "request_changes"
    MERGE = "merge"
    SET_MERGE_WHEN_READY = "set_merge_when_ready"
    CHANGE_POLICY = "change_policy"
    DISMISS_REVIEW = "dismiss_review"
    MANAGE_PRINCIPALS = "manage_principals"
    PUSH_PROTECTED = "push_protected"


@dataclass(frozen=True)
class Principal:
    """A human or an agent known to the server. ``name`` is unique and case-sensitive.

    ``groups`` are server-defined group names (``security``, ``org/team``) that
    CODEOWNERS can name as ``@security`` or ``@org/team``.
    """

    name: str
    kind: PrincipalKind
    role: Role = Role.CONTRIBUTOR
    email: str | None = None
    groups: frozenset[str] = frozenset()

    @property
    def is_human(self) -> bool:
        return self.kind is PrincipalKind.HUMAN

    @property
    def is_agent(self) -> bool:
        return self.kind is PrincipalKind.AGENT

    def describe(self) -> str:
        return f"{self.name} ({self.kind}, {self.role})"


@dataclass(frozen=True)
class Authorization:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


#: Everything an agent may ever do, whatever its role. Nothing here can land code,
#: clear a blocker or change the rules: agents propose, humans and the gate dispose.
AGENT_PERMISSIONS = frozenset(
    {
        Permission.PUSH_BRANCH,
        Permission.OPEN_CHANGE,
        Permission.UPDATE_CHANGE,
        Permission.COMMENT,
        Permission.POST_FINDINGS,
    }
)

_CONTRIBUTOR = AGENT_PERMISSIONS | {Permission.APPROVE, Permission.REQUEST_CHANGES}
_MAINTAINER = _CONTRIBUTOR | {Permission.MERGE, Permission.SET_MERGE_WHEN_READY, Permission.DISMISS_REVIEW}
_ADMIN = _MAINTAINER | {Permission.CHANGE_POLICY, Permission.MANAGE_PRINCIPALS}

#: What a *human* of each role may do. ``PUSH_PROTECTED`` is in none of them.
HUMAN_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.CONTRIBUTOR: frozenset(_CONTRIBUTOR),
    Role.MAINTAINER: frozenset(_MAINTAINER),
    Role.ADMIN: frozenset(_ADMIN),
}

#: Why an agent is refused each permission it lacks, in words a user can act on.
_AGENT_REFUSALS = {
    Permission.APPROVE: "agents can never approve: only humans' approvals count",
    Permission.REQUEST_CHANGES: (
        "agents can never request changes: a request for changes blocks a merge until a human clears it; "
        "an agent objects by posting findings, which the policy weighs"
    ),
    Permission.MERGE: "agents can never merge: only the gate lands changes, on a human's request",
    Permission.SET_MERGE_WHEN_READY: "agents can never set merge-when-ready: only a human may ask the gate to merge",
    Permission.CHANGE_POLICY: "agents can never change policy: the rules that judge agents are not theirs to edit",
    Permission.DISMISS_REVIEW: "agents can never dismiss a review: that would clear a human's objection",
    Permission.MANAGE_PRINCIPALS: "agents can never manage principals: they could mint themselves new rights",
}

_PUSH_PROTECTED_REFUSAL = (
    "nobody pushes to a protected branch, admins included: only the gate writes it, "
    "after every rule is satisfied; push to another branch or refs/for/<branch> to open a change"
)

_ROLE_FLOOR = {
    Permission.APPROVE: Role.CONTRIBUTOR,
    Permission.REQUEST_CHANGES: Role.CONTRIBUTOR,
    Permission.MERGE: Role.MAINTAINER,
    Permission.SET_MERGE_WHEN_READY: Role.MAINTAINER,
    Permission.DISMISS_REVIEW: Role.MAINTAINER,
    Permission.CHANGE_POLICY: Role.ADMIN,
    Permission.MANAGE_PRINCIPALS: Role.ADMIN,
}


def authorize(principal: Principal | None, permission: Permission) -> Authorization:
    """May ``principal`` do ``permission``? Always answers with a reason in words.

    Order matters: protected pushes are refused to everyone first, then the *kind* is
    checked before the role, so no role can lift an agent's limits.
    """
    if principal is None:
        return Authorization(False, f"{permission} refused: unknown principal (no valid token)")
    if permission is Permission.PUSH_PROTECTED:
        return Authorization(False, _PUSH_PROTECTED_REFUSAL)
    who = principal.describe()
    if principal.is_agent:
        if permission in AGENT_PERMISSIONS:
            return Authorization(True, f"{who} may {permission}: agents may propose and comment")
        refusal = _AGENT_REFUSALS.get(permission, f"agents can never {permission}")
        role_note = (
            f" (its role {principal.role} does not change that)" if principal.role is not Role.CONTRIBUTOR else ""
        )
        return Authorization(False, f"{principal.name} is an agent; {refusal}{role_note}")
    if permission in HUMAN_PERMISSIONS[principal.role]:
        return Authorization(True, f"{who} may {permission}")
    floor = _ROLE_FLOOR.get(permission, Role.ADMIN)
    return Authorization(False, f"{who} may not {permission}: it needs the {floor} role or higher")


def may_dismiss_reviews(principal: Principal | None) -> bool:
    """Whether a dismissal recorded by ``principal`` clears a request for changes."""
    return authorize(principal, Permission.DISMISS_REVIEW).allowed


@dataclass(frozen=True)
class Directory:
    """The principals the server knows, looked up by name or email.

    Email lookup is case-insensitive (addresses are, in practice); names are not, so
    ``@Alice`` and ``@alice`` are different principals and nothing matches by accident.
    """

    principals: tuple[Principal, ...] = ()

    def __post_init__(self) -> None:
        names = [p.name for p in self.principals]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"principal names must be unique: {', '.join(duplicates)}")

    def get(self, name: str | None) -> Principal | None:
        if not name:
            return None
        return next((p for p in self.principals if p.name == name), None)

    def by_email(self, email: str) -> Principal | None:
        wanted = email.casefold()
        matches = [p for p in self.principals if p.email and p.email.casefold() == wanted]
        # Two principals claiming one address is ambiguous: resolve to nobody (fail closed).
        return matches[0] if len(matches) == 1 else None

    def in_group(self, group: str) -> tuple[Principal, ...]:
        return tuple(p for p in self.principals if group in p.groups)

    def admins(self) -> tuple[Principal, ...]:
        return tuple(p for p in self.principals if p.role is Role.ADMIN and p.is_human)
