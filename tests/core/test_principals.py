"""Who may do what. The attacks: an agent whose role says admin, an admin pushing to main."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mergegate.core.principals import (
    AGENT_PERMISSIONS,
    Directory,
    Permission,
    Principal,
    PrincipalKind,
    Role,
    authorize,
    may_dismiss_reviews,
)

NEVER_FOR_AGENTS = [
    Permission.APPROVE,
    Permission.REQUEST_CHANGES,
    Permission.MERGE,
    Permission.SET_MERGE_WHEN_READY,
    Permission.CHANGE_POLICY,
    Permission.DISMISS_REVIEW,
    Permission.MANAGE_PRINCIPALS,
    Permission.PUSH_PROTECTED,
]


def agent(role: Role = Role.CONTRIBUTOR) -> Principal:
    return Principal("coding-agent", PrincipalKind.AGENT, role)


def human(role: Role = Role.CONTRIBUTOR, name: str = "dana") -> Principal:
    return Principal(name, PrincipalKind.HUMAN, role)


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("permission", NEVER_FOR_AGENTS)
def test_an_agent_is_refused_whatever_its_role(role, permission):
    result = authorize(agent(role), permission)
    assert not result.allowed
    assert not result
    assert result.reason


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("permission", sorted(AGENT_PERMISSIONS))
def test_an_agent_may_propose_and_comment(role, permission):
    assert authorize(agent(role), permission).allowed


def test_agent_refusals_are_in_words():
    reason = authorize(agent(Role.ADMIN), Permission.APPROVE).reason
    assert "agents can never approve: only humans' approvals count" in reason
    assert "its role admin does not change that" in reason
    assert "dismiss a review" in authorize(agent(), Permission.DISMISS_REVIEW).reason
    assert "policy" in authorize(agent(), Permission.CHANGE_POLICY).reason


@pytest.mark.parametrize("kind", list(PrincipalKind))
@pytest.mark.parametrize("role", list(Role))
def test_nobody_pushes_to_a_protected_branch_admins_included(kind, role):
    result = authorize(Principal("x", kind, role), Permission.PUSH_PROTECTED)
    assert not result.allowed
    assert "admins included" in result.reason and "only the gate" in result.reason


@pytest.mark.parametrize(
    ("role", "permission", "allowed"),
    [
        (Role.CONTRIBUTOR, Permission.APPROVE, True),
        (Role.CONTRIBUTOR, Permission.REQUEST_CHANGES, True),
        (Role.CONTRIBUTOR, Permission.MERGE, False),
        (Role.CONTRIBUTOR, Permission.SET_MERGE_WHEN_READY, False),
        (Role.CONTRIBUTOR, Permission.DISMISS_REVIEW, False),
        (Role.CONTRIBUTOR, Permission.CHANGE_POLICY, False),
        (Role.MAINTAINER, Permission.MERGE, True),
        (Role.MAINTAINER, Permission.SET_MERGE_WHEN_READY, True),
        (Role.MAINTAINER, Permission.DISMISS_REVIEW, True),
        (Role.MAINTAINER, Permission.CHANGE_POLICY, False),
        (Role.MAINTAINER, Permission.MANAGE_PRINCIPALS, False),
        (Role.ADMIN, Permission.CHANGE_POLICY, True),
        (Role.ADMIN, Permission.MANAGE_PRINCIPALS, True),
        (Role.ADMIN, Permission.PUSH_PROTECTED, False),
    ],
)
def test_human_roles(role, permission, allowed):
    assert authorize(human(role), permission).allowed is allowed


def test_role_refusal_names_the_role_needed():
    assert "needs the maintainer role" in authorize(human(), Permission.MERGE).reason
    assert "needs the admin role" in authorize(human(Role.MAINTAINER), Permission.MANAGE_PRINCIPALS).reason


def test_unknown_principal_is_refused_everything():
    for permission in Permission:
        assert not authorize(None, permission).allowed


@given(st.sampled_from(list(Role)), st.sampled_from(list(Permission)))
def test_an_agent_never_has_more_rights_than_the_agent_set(role, permission):
    if authorize(agent(role), permission).allowed:
        assert permission in AGENT_PERMISSIONS


@given(st.sampled_from(list(Role)), st.sampled_from(list(Permission)))
def test_an_agent_never_has_a_right_a_contributor_human_lacks(role, permission):
    if authorize(agent(role), permission).allowed:
        assert authorize(human(Role.CONTRIBUTOR), permission).allowed


def test_only_human_maintainers_and_admins_may_dismiss():
    assert may_dismiss_reviews(human(Role.MAINTAINER))
    assert may_dismiss_reviews(human(Role.ADMIN))
    assert not may_dismiss_reviews(human(Role.CONTRIBUTOR))
    assert not may_dismiss_reviews(agent(Role.ADMIN))
    assert not may_dismiss_reviews(None)


def test_directory_lookups():
    d = Directory(
        (
            Principal("alice", PrincipalKind.HUMAN, Role.ADMIN, "Alice@Example.com", frozenset({"security"})),
            Principal("bob", PrincipalKind.HUMAN, email="bob@example.com", groups=frozenset({"security"})),
            Principal("bot", PrincipalKind.AGENT, Role.ADMIN),
        )
    )
    assert d.get("alice").role is Role.ADMIN
    assert d.get("Alice") is None  # names are case-sensitive
    assert d.get(None) is None
    assert d.by_email("alice@example.COM").name == "alice"
    assert [p.name for p in d.in_group("security")] == ["alice", "bob"]
    assert [p.name for p in d.admins()] == ["alice"]  # an admin agent is not an admin for ownership


def test_directory_ambiguous_email_resolves_to_nobody():
    d = Directory(
        (
            Principal("a", PrincipalKind.HUMAN, email="x@example.com"),
            Principal("b", PrincipalKind.HUMAN, email="X@example.com"),
        )
    )
    assert d.by_email("x@example.com") is None


def test_directory_rejects_duplicate_names():
    with pytest.raises(ValueError, match="unique"):
        Directory((human(name="a"), human(name="a")))
