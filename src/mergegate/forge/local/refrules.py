"""Which ref updates a push may make: pure rules, no I/O (the hook supplies the facts).

The one rule that matters most: **no principal pushes to a protected branch**, admins
included; ``authorize(principal, PUSH_PROTECTED)`` refuses everyone and the gate moves
those refs itself, by compare-and-swap. Everything else is about keeping the ref
namespace honest:

- ``refs/heads/<branch>`` (not protected): create, update (also non-fast-forward) or
  delete; a push opens or updates the change for that branch.
- ``refs/for/<branch>``: Gerrit's magic ref, create only; it opens a change (or adds a
  patchset to the open change with the commit's ``Change-Id``). The target must exist
  and the commit must bring something new.
- ``refs/changes/…``, ``refs/mergegate/…``: written by the server only.
- tags and every other namespace: refused. A tag can trigger a release, and releases
  are cut from what the gate landed, so pushing tags is not a contributor's act here.

When the protected-branch list cannot be read (the default branch's ``.mergegate.yml``
is invalid), the rules fail closed: every direct branch push is refused, and
``refs/for`` stays open so the fix can be proposed as a change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mergegate.core.principals import Permission, Principal, authorize

if TYPE_CHECKING:
    from mergegate.core.policy import GateRules

DEFAULT_PROTECTED = ("main", "master", "release/*")


def _zero(sha: str) -> bool:
    return not sha.strip("0")


@dataclass(frozen=True)
class RefUpdate:
    ref: str
    old: str
    new: str

    @property
    def is_delete(self) -> bool:
        return _zero(self.new)

    @property
    def is_create(self) -> bool:
        return _zero(self.old)


@dataclass(frozen=True)
class Protection:
    """The protected-branch patterns in force for one repository."""

    patterns: tuple[str, ...]
    #: Where the patterns came from, for messages and the audit log.
    source: str
    #: Set when the repository's policy could not be read: branch pushes fail closed.
    problem: str | None = None

    def protects(self, branch: str) -> bool:
        # Imported here so the post-receive hook, which never asks, skips building the
        # policy models (a third of a second per push).
        from mergegate.core.policy import GateRules

        return GateRules(protected_branches=self.patterns).protects(branch)


@dataclass(frozen=True)
class RefVerdict:
    update: RefUpdate
    allowed: bool
    message: str = ""
    #: ``authorize``'s reason when the refusal is a permission decision.
    reason: str = ""


def protection(server_patterns: tuple[str, ...], policy: GateRules | None, policy_source: str, problem: str | None):
    """Server patterns plus policy patterns: a repository can add protection, never remove it."""
    patterns = list(dict.fromkeys(server_patterns))
    if policy is not None:
        patterns += [p for p in policy.protected_branches if p not in patterns]
    source = "server" + (f" + {policy_source}" if policy is not None else "")
    return Protection(tuple(patterns), source, problem)


def judge(
    update: RefUpdate,
    principal: Principal,
    prot: Protection,
    *,
    branch_exists: Callable[[str], bool],
    already_on: Callable[[str, str], bool],
) -> RefVerdict:
    """May ``principal`` make ``update``? ``already_on(sha, branch)``: is sha merged there."""
    ref = update.ref
    if ref.startswith("refs/heads/"):
        branch = ref.removeprefix("refs/heads/")
        if prot.protects(branch):
            auth = authorize(principal, Permission.PUSH_PROTECTED)
            if update.is_delete:
                message = f"{ref} is protected; it cannot be deleted. Only the gate writes it."
            else:
                message = (
                    f"{ref} is protected; only the gate merges into it. "
                    f"Push to refs/for/{branch} or a branch to open a change."
                )
            return RefVerdict(update, False, message, auth.reason)
        if prot.problem is not None:
            return RefVerdict(
                update,
                False,
                f"{ref}: the protected-branch list cannot be read ({prot.problem}), so direct branch pushes "
                "are refused until it is fixed. Push to refs/for/<branch> to propose the fix as a change.",
            )
        auth = authorize(principal, Permission.PUSH_BRANCH)
        if not auth:
            return RefVerdict(update, False, f"{ref}: {auth.reason}", auth.reason)
        return RefVerdict(update, True)
    if ref.startswith("refs/for/"):
        target = ref.removeprefix("refs/for/")
        if "%" in target:
            message = f"{ref}: push options after '%' are not supported; push to refs/for/<branch>"
            return RefVerdict(update, False, message)
        if update.is_delete or not update.is_create:
            return RefVerdict(update, False, f"{ref} is not a branch: push a new commit to it to open a change")
        if not target or not branch_exists(target):
            return RefVerdict(update, False, f"{ref}: there is no branch {target!r} to open a change against")
        auth = authorize(principal, Permission.OPEN_CHANGE)
        if not auth:
            return RefVerdict(update, False, f"{ref}: {auth.reason}", auth.reason)
        if already_on(update.new, target):
            return RefVerdict(update, False, f"{ref}: no new changes: {update.new[:12]} is already on {target}")
        return RefVerdict(update, True)
    if ref.startswith("refs/changes/"):
        return RefVerdict(
            update,
            False,
            f"{ref}: refs/changes/ is written by the server only. To update a change, push to "
            "refs/for/<branch> with the change's Change-Id trailer, or push its branch again.",
        )
    if ref.startswith("refs/tags/"):
        return RefVerdict(update, False, f"{ref}: tags cannot be pushed; releases are tagged from what the gate merged")
    if ref.startswith("refs/mergegate/"):
        return RefVerdict(update, False, f"{ref}: refs/mergegate/ is internal to the server")
    return RefVerdict(update, False, f"{ref}: only branches (refs/heads/...) and refs/for/<branch> may be pushed")
