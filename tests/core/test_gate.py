"""The gate's rules, one test per rule satisfied and unsatisfied, then every attack an
agent would try. The baseline is a mergeable change written and pushed by an agent and
approved by a human; each test breaks exactly one thing."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mergegate.core.codeowners import CODEOWNERS_LOCATIONS, load_codeowners, parse_codeowners
from mergegate.core.gate import CheckRun, CheckStatus, GateInput, GateRule, approval_problems, evaluate
from mergegate.core.policy import GateRules, Mode, PolicyError, parse_policy
from mergegate.core.principals import Directory, Principal, PrincipalKind, Role
from mergegate.core.reviews import (
    Dismissal,
    Review,
    ReviewState,
    dismiss_stale,
    latest_decisive,
    outstanding_change_requests,
    stale_approvals,
)

GATE = "mergegate"
CHECK = "mergegate/check"
LAND = "3f2a1c" + "0" * 34  # the speculative merge of base tip + change
HEAD = "b" * 40
FP = "f" * 64
NEW_FP = "e" * 64
PUSH = 10  # sequence of the last push

DIRECTORY = Directory(
    (
        Principal("alice", PrincipalKind.HUMAN, Role.MAINTAINER, "alice@example.com"),
        Principal("bob", PrincipalKind.HUMAN, Role.CONTRIBUTOR, "bob@example.com"),
        Principal("carol", PrincipalKind.HUMAN, Role.ADMIN, "carol@example.com"),
        Principal("sam", PrincipalKind.HUMAN, Role.CONTRIBUTOR, groups=frozenset({"security"})),
        Principal("agent", PrincipalKind.AGENT, Role.CONTRIBUTOR),
        Principal("root-agent", PrincipalKind.AGENT, Role.ADMIN, groups=frozenset({"security"})),
    )
)

BASE_CODEOWNERS = "* @alice @bob\n/src/auth/ @security\n"


def approve(who: str, seq: int = PUSH + 1, fp: str = FP, **kw) -> Review:
    return Review(who, ReviewState.APPROVE, fp, seq, **kw)


def request_changes(who: str, seq: int = PUSH + 1, **kw) -> Review:
    return Review(who, ReviewState.REQUEST_CHANGES, FP, seq, **kw)


def ok_check(name: str = CHECK, commit: str = LAND, producer: str = GATE, **kw) -> CheckRun:
    return CheckRun(name, producer, commit, kw.pop("status", CheckStatus.SUCCESS), **kw)


def baseline(**overrides) -> GateInput:
    gate = GateInput(
        author="agent",
        last_pusher="agent",
        last_push_sequence=PUSH,
        fingerprint=FP,
        target_branch="main",
        head=HEAD,
        landing_commit=LAND,
        changed_paths=frozenset({"src/app.py"}),
        reviews=(approve("alice"),),
        directory=DIRECTORY,
        checks=(ok_check(sequence=12),),
        gate_identity=GATE,
        blocking_findings=0,
        codeowners=parse_codeowners(BASE_CODEOWNERS, ".github/CODEOWNERS"),
    )
    return replace(gate, **overrides)


def rule(gate: GateInput, which: GateRule):
    return evaluate(gate).rule(which)


def blocked_by(gate: GateInput, which: GateRule) -> str:
    verdict = evaluate(gate)
    assert not verdict.mergeable
    r = verdict.rule(which)
    assert not r.satisfied, r
    assert r.reason.startswith("blocked: ")
    return r.reason


def test_the_baseline_is_mergeable_and_reports_every_rule():
    verdict = evaluate(baseline())
    assert verdict.mergeable, verdict.summary()
    assert [r.rule for r in verdict.rules] == list(GateRule)
    assert all(r.satisfied and r.reason for r in verdict.rules)
    assert verdict.summary().startswith("mergeable: every rule is satisfied (merging into main)")


def test_every_failing_rule_is_reported_not_only_the_first():
    verdict = evaluate(baseline(reviews=(), checks=(), blocking_findings=3))
    assert {r.rule for r in verdict.blockers} == {
        GateRule.CHECKS,
        GateRule.APPROVALS,
        GateRule.CODE_OWNERS,
        GateRule.FINDINGS,
    }
    assert verdict.summary().startswith("blocked: 4 of 5 rules are not satisfied (merging into main)")
    assert "  [ ] checks: blocked: required check 'mergegate/check' has no result" in verdict.summary()
    assert "  [x] change_requests: no outstanding request for changes" in verdict.summary()


# -- checks ------------------------------------------------------------------------------


def test_checks_satisfied_names_the_commit():
    r = rule(baseline(), GateRule.CHECKS)
    assert r.satisfied and "3f2a1c" in r.reason and "the commit that would land" in r.reason


def test_missing_check_is_blocked_in_words():
    reason = blocked_by(baseline(checks=()), GateRule.CHECKS)
    assert "required check 'mergegate/check' has no result on 3f2a1c" in reason
    assert "(the commit that would land)" in reason


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (CheckStatus.FAILURE, "failed"),
        (CheckStatus.ERROR, "errored"),
        (CheckStatus.SKIPPED, "was skipped"),
        (CheckStatus.PENDING, "is still pending"),
    ],
)
def test_anything_but_success_is_blocked(status, words):
    reason = blocked_by(baseline(checks=(ok_check(status=status),)), GateRule.CHECKS)
    assert f"'mergegate/check' {words}" in reason


def test_an_unknown_status_is_blocked():
    reason = blocked_by(baseline(checks=(ok_check(status="neutral"),)), GateRule.CHECKS)  # type: ignore[arg-type]
    assert "unknown status" in reason


def test_a_stale_check_is_blocked():
    reason = blocked_by(baseline(checks=(ok_check(stale=True),)), GateRule.CHECKS)
    assert "is stale" in reason


def test_unknown_landing_commit_is_blocked():
    reason = blocked_by(baseline(landing_commit=None), GateRule.CHECKS)
    assert "not known yet" in reason


def test_every_required_check_must_pass():
    gate = baseline(rules=GateRules(required_checks=(CHECK, "mergegate/tests")))
    reason = blocked_by(gate, GateRule.CHECKS)
    assert "'mergegate/tests' has no result" in reason
    gate = replace(gate, checks=(ok_check(), ok_check("mergegate/tests")))
    assert evaluate(gate).mergeable


def test_required_checks_on_the_input_override_the_rules():
    gate = baseline(required_checks=("other",))
    assert "'other' has no result" in blocked_by(gate, GateRule.CHECKS)


def test_no_required_checks_is_a_blocked_gate_not_an_open_one():
    r = rule(baseline(required_checks=(), checks=()), GateRule.CHECKS)
    assert not r.satisfied and r.reason == "blocked: no required checks are configured"
    with pytest.raises(ValidationError, match="at least 1 item"):
        GateRules(required_checks=())


def test_the_latest_rerun_counts():
    fail_then_pass = (ok_check(status=CheckStatus.FAILURE, sequence=1), ok_check(sequence=2))
    assert rule(baseline(checks=fail_then_pass), GateRule.CHECKS).satisfied
    pass_then_fail = (ok_check(sequence=1), ok_check(status=CheckStatus.FAILURE, sequence=2))
    assert not rule(baseline(checks=pass_then_fail), GateRule.CHECKS).satisfied


def test_a_tie_between_runs_is_resolved_against_merging():
    tie = (ok_check(sequence=5), ok_check(status=CheckStatus.FAILURE, sequence=5))
    assert not rule(baseline(checks=tie), GateRule.CHECKS).satisfied
    assert not rule(baseline(checks=tuple(reversed(tie))), GateRule.CHECKS).satisfied


def test_checks_on_the_head_alone_never_count_and_strict_cannot_be_turned_off():
    gate = baseline(checks=(ok_check(commit=HEAD),))
    assert not rule(gate, GateRule.CHECKS).satisfied
    assert rule(replace(gate, checks=(ok_check(),)), GateRule.CHECKS).satisfied
    with pytest.raises(ValidationError, match="cannot be turned off"):
        GateRules(strict=False)


# -- attacks on checks -------------------------------------------------------------------------


def test_attack_check_posted_by_another_producer():
    forged = ok_check(producer="agent")
    reason = blocked_by(baseline(checks=(forged,)), GateRule.CHECKS)
    assert "results posted by agent do not count: only checks produced by mergegate do" in reason


def test_attack_check_green_on_head_but_not_on_the_merge_commit():
    reason = blocked_by(baseline(checks=(ok_check(commit=HEAD),)), GateRule.CHECKS)
    assert "no result on 3f2a1c" in reason
    assert "the change's head" in reason and "different commit" in reason


def test_attack_green_forgery_does_not_mask_our_own_failure():
    checks = (ok_check(status=CheckStatus.FAILURE), ok_check(producer="agent", sequence=99))
    assert "failed" in blocked_by(baseline(checks=checks), GateRule.CHECKS)


def test_attack_check_with_a_lookalike_producer_name():
    for producer in ("Mergegate", "mergegate ", "mergegate[bot]"):
        blocked_by(baseline(checks=(ok_check(producer=producer),)), GateRule.CHECKS)


# -- approvals ---------------------------------------------------------------------------------


def test_approvals_satisfied():
    r = rule(baseline(), GateRule.APPROVALS)
    assert r.satisfied and r.reason == "1 of 1 required approvals: alice"


def test_no_approvals():
    reason = blocked_by(baseline(reviews=()), GateRule.APPROVALS)
    assert "no approvals yet" in reason


def test_required_approvals_count_distinct_people():
    gate = baseline(rules=GateRules(required_approvals=2))
    assert "1 of 2 required approvals (alice)" in blocked_by(gate, GateRule.APPROVALS)
    twice = replace(gate, reviews=(approve("alice"), approve("alice", seq=PUSH + 2)))
    assert "1 of 2" in blocked_by(twice, GateRule.APPROVALS)
    two = replace(gate, reviews=(approve("alice"), approve("bob")))
    assert evaluate(two).mergeable


def test_a_comment_is_not_an_approval():
    gate = baseline(reviews=(Review("alice", ReviewState.COMMENT, FP, PUSH + 1),))
    blocked_by(gate, GateRule.APPROVALS)


def test_attack_agent_approves():
    reason = blocked_by(baseline(reviews=(approve("root-agent"),)), GateRule.APPROVALS)
    assert "the only approval is from an agent (root-agent): agents can never approve" in reason


def test_attack_author_approves_own_change():
    gate = baseline(author="bob", last_pusher="bob", reviews=(approve("bob"),))
    reason = blocked_by(gate, GateRule.APPROVALS)
    assert "is from the change's author (bob)" in reason


def test_attack_last_pusher_approves():
    # Bob pushes onto the agent's change, then approves it himself.
    gate = baseline(last_pusher="bob", reviews=(approve("bob"),))
    reason = blocked_by(gate, GateRule.APPROVALS)
    assert reason == "blocked: the only approval is from the last pusher (bob)"


def test_attack_approve_then_push_more_code():
    # The new push changes the content (new fingerprint) and comes after the approval.
    gate = baseline(fingerprint=NEW_FP, last_push_sequence=PUSH + 5)
    reason = blocked_by(gate, GateRule.APPROVALS)
    assert "is stale: it was given for content ffffffffff…, the change is now eeeeeeeeee…" in reason
    assert "was given before the last push" in reason


def test_attack_push_identical_content_after_approval_still_needs_a_new_approval():
    # Same fingerprint (e.g. a rebase onto the same merge base) but a push after the approval.
    gate = baseline(last_push_sequence=PUSH + 5)
    assert "before the last push" in blocked_by(gate, GateRule.APPROVALS)
    with pytest.raises(ValidationError, match="cannot be turned off"):
        GateRules(approvals_after_last_push=False)


def test_stale_fingerprint_alone_blocks():
    gate = baseline(reviews=(approve("alice", fp=NEW_FP),))
    assert "is stale" in blocked_by(gate, GateRule.APPROVALS)
    with pytest.raises(ValidationError, match="cannot be turned off"):
        GateRules(bind_approvals_to_fingerprint=False)


def test_unknown_fingerprint_blocks():
    assert "fingerprint is unknown" in blocked_by(baseline(fingerprint=None), GateRule.APPROVALS)


def test_unknown_last_push_blocks():
    assert "after the last push" in blocked_by(baseline(last_push_sequence=None), GateRule.APPROVALS)
    assert "who pushed last is unknown" in blocked_by(baseline(last_pusher=None), GateRule.APPROVALS)


def test_attack_approval_from_an_unknown_or_lookalike_name():
    for who in ("Alice", "alice ", "mallory"):
        reason = blocked_by(baseline(reviews=(approve(who),)), GateRule.APPROVALS)
        assert "not a known principal" in reason


def test_a_dismissed_approval_does_not_count():
    dismissal = Dismissal(GATE, True, "stale", PUSH + 2)
    reason = blocked_by(baseline(reviews=(approve("alice", dismissal=dismissal),)), GateRule.APPROVALS)
    assert "was dismissed (stale)" in reason


def test_an_approval_followed_by_a_request_for_changes_does_not_count():
    reviews = (approve("alice"), request_changes("alice", seq=PUSH + 2))
    reason = blocked_by(baseline(reviews=reviews), GateRule.APPROVALS)
    assert "followed by a request for changes" in reason


def test_author_and_last_pusher_exclusions_cannot_be_turned_off():
    gate = baseline(author="bob", last_pusher="bob", reviews=(approve("bob"),))
    assert not evaluate(gate).mergeable
    for key in ("exclude_author", "exclude_last_pusher"):
        with pytest.raises(ValidationError, match="cannot be turned off"):
            GateRules(**{key: False})


def test_several_rejected_approvals_are_each_explained():
    reviews = (approve("agent"), approve("alice", fp=NEW_FP), approve("mallory"))
    reason = blocked_by(baseline(reviews=reviews), GateRule.APPROVALS)
    assert reason.startswith("blocked: 0 of 1 required approvals; not counted: ")
    for who in ("agent's approval", "alice's approval", "mallory's approval"):
        assert who in reason


# -- requests for changes ----------------------------------------------------------------------------


def test_no_change_requests():
    assert rule(baseline(), GateRule.CHANGE_REQUESTS).satisfied


def test_attack_request_changes_then_a_different_reviewer_approves():
    reviews = (request_changes("bob", seq=PUSH + 1), approve("alice", seq=PUSH + 2))
    reason = blocked_by(baseline(reviews=reviews), GateRule.CHANGE_REQUESTS)
    assert "bob requested changes; that stands until bob approves or a maintainer dismisses it" in reason
    assert rule(baseline(reviews=reviews), GateRule.APPROVALS).satisfied  # the approval itself is fine


def test_request_changes_cleared_by_the_same_reviewer_approving():
    reviews = (request_changes("bob", seq=PUSH + 1), approve("bob", seq=PUSH + 2))
    assert evaluate(baseline(reviews=reviews)).mergeable


def test_request_changes_cleared_by_a_maintainer_dismissal():
    dismissal = Dismissal("alice", False, "addressed in a follow-up", PUSH + 3)
    reviews = (request_changes("bob", dismissal=dismissal), approve("alice", seq=PUSH + 2))
    assert evaluate(baseline(reviews=reviews)).mergeable


@pytest.mark.parametrize(
    ("by", "by_gate", "why"),
    [
        ("root-agent", False, "may not dismiss reviews"),  # an admin agent
        ("agent", False, "may not dismiss reviews"),
        ("sam", False, "may not dismiss reviews"),  # a contributor
        ("mallory", False, "not a known principal"),
        (GATE, True, "only a maintainer can clear"),
    ],
)
def test_attack_dismissal_by_someone_who_may_not(by, by_gate, why):
    dismissal = Dismissal(by, by_gate, "go away", PUSH + 3)
    reviews = (request_changes("bob", dismissal=dismissal), approve("alice", seq=PUSH + 2))
    reason = blocked_by(baseline(reviews=reviews), GateRule.CHANGE_REQUESTS)
    assert why in reason


def test_request_changes_do_not_go_stale_with_new_code():
    gate = baseline(
        reviews=(request_changes("bob", seq=3), approve("alice", seq=PUSH + 1, fp=NEW_FP)), fingerprint=NEW_FP
    )
    assert "bob requested changes" in blocked_by(gate, GateRule.CHANGE_REQUESTS)


def test_a_dismissed_stale_approval_does_not_revive_an_earlier_request():
    stale = Dismissal(GATE, True, "stale", PUSH + 4)
    reviews = (request_changes("bob", seq=3), approve("bob", seq=5, dismissal=stale), approve("alice"))
    assert rule(baseline(reviews=reviews), GateRule.CHANGE_REQUESTS).satisfied


def test_request_changes_can_be_made_advisory_by_policy():
    gate = baseline(rules=GateRules(request_changes_blocks=False), reviews=(request_changes("bob"), approve("alice")))
    r = rule(gate, GateRule.CHANGE_REQUESTS)
    assert r.satisfied and "do not block under this policy" in r.reason


# -- code owners ------------------------------------------------------------------------------------------


def test_code_owner_approval_satisfies():
    r = rule(baseline(), GateRule.CODE_OWNERS)
    assert r.satisfied and "src/app.py (@alice @bob: alice)" in r.reason


def test_owned_path_without_owner_approval():
    gate = baseline(changed_paths=frozenset({"src/auth/login.py"}))
    reason = blocked_by(gate, GateRule.CODE_OWNERS)
    assert reason == "blocked: src/auth/login.py is owned by @security; no approval from them"
    assert evaluate(replace(gate, reviews=(approve("alice"), approve("sam")))).mergeable


def test_one_owner_approval_per_owned_path():
    gate = baseline(changed_paths=frozenset({"src/auth/login.py", "src/auth/token.py", "README.md"}))
    reason = blocked_by(gate, GateRule.CODE_OWNERS)
    assert "src/auth/login.py, src/auth/token.py are owned by @security" in reason
    assert "README.md" not in reason


def test_a_rename_out_of_an_owned_directory_needs_its_owners():
    # Base and head paths are both given: moving src/auth/login.py to src/login.py
    # touches a @security path.
    gate = baseline(changed_paths=frozenset({"src/auth/login.py", "src/login.py"}))
    assert "src/auth/login.py is owned by @security" in blocked_by(gate, GateRule.CODE_OWNERS)


def test_code_owner_approval_must_itself_qualify():
    # sam owns src/auth/ but pushed last: the approval counts for nothing.
    gate = baseline(
        changed_paths=frozenset({"src/auth/login.py"}), last_pusher="sam", reviews=(approve("alice"), approve("sam"))
    )
    reason = blocked_by(gate, GateRule.CODE_OWNERS)
    assert "owned by @security; no approval from them (sam's approval is from the last pusher (sam))" in reason


def test_attack_agent_in_the_owning_group_approves():
    gate = baseline(changed_paths=frozenset({"src/auth/login.py"}), reviews=(approve("alice"), approve("root-agent")))
    reason = blocked_by(gate, GateRule.CODE_OWNERS)
    assert "root-agent's approval is from an agent" in reason


def test_unowned_paths_need_no_owner():
    co = parse_codeowners("* @alice\n/vendor/\n")
    gate = baseline(codeowners=co, changed_paths=frozenset({"vendor/lib.c"}), reviews=(approve("bob"),))
    r = rule(gate, GateRule.CODE_OWNERS)
    assert r.satisfied and "no changed path needs" in r.reason


def test_unknown_owner_is_explained():
    co = parse_codeowners("* @ghosts\n")
    reason = blocked_by(baseline(codeowners=co), GateRule.CODE_OWNERS)
    assert "@ghosts is not a known principal or group" in reason


def test_owners_by_email_and_custom_resolver():
    co = parse_codeowners("* bob@example.com\n")
    assert evaluate(baseline(codeowners=co, reviews=(approve("bob"),))).mergeable
    gate = baseline(codeowners=co, owner_resolver=lambda owner: frozenset({"alice"}))
    assert evaluate(gate).mergeable


def test_attack_invalid_codeowners_line_fails_closed_with_line_number():
    co = parse_codeowners("* @alice\n/src/auth/ @security security-team\n", ".github/CODEOWNERS")
    gate = baseline(codeowners=co, changed_paths=frozenset({"src/auth/login.py", "src/app.py"}))
    reason = blocked_by(gate, GateRule.CODE_OWNERS)
    assert "src/auth/login.py could be decided by an invalid CODEOWNERS line" in reason
    assert ".github/CODEOWNERS line 2" in reason
    assert "src/app.py" not in reason  # paths the bad line cannot cover are judged normally


def test_attack_editing_codeowners_in_the_change_is_judged_by_the_base():
    """The change rewrites CODEOWNERS to '* @agent'. The gate is given the base's text;
    the new file is itself an always-owned path, so the base owners must approve it."""
    base = {".github/CODEOWNERS": None, "CODEOWNERS": "/src/auth/ @security\n", "docs/CODEOWNERS": None}
    changed = frozenset({"CODEOWNERS", "src/auth/login.py"})
    gate = baseline(codeowners=load_codeowners(base), changed_paths=changed, reviews=(approve("alice"),))
    reason = blocked_by(gate, GateRule.CODE_OWNERS)
    assert "CODEOWNERS is owned by the admins; no approval from them" in reason
    assert "src/auth/login.py is owned by @security" in reason
    # The change's version would have made this mergeable; passing it changes the answer,
    # which is why the caller must pass the base's texts.
    changes_copy = load_codeowners({**base, "CODEOWNERS": "* @alice\n"})
    assert evaluate(replace(gate, codeowners=changes_copy)).mergeable


def test_attack_adding_a_higher_priority_codeowners_file():
    """The change adds .github/CODEOWNERS, which would shadow the root file from then on.
    No base rule covers that path, so it belongs to the admins."""
    base = dict.fromkeys(CODEOWNERS_LOCATIONS)
    base["CODEOWNERS"] = "/src/ @alice\n"
    gate = baseline(codeowners=load_codeowners(base), changed_paths=frozenset({".github/CODEOWNERS", "src/app.py"}))
    reason = blocked_by(gate, GateRule.CODE_OWNERS)
    assert reason == "blocked: .github/CODEOWNERS is owned by the admins; no approval from them"
    assert evaluate(replace(gate, reviews=(approve("alice"), approve("carol")))).mergeable


def test_policy_file_needs_the_admins_when_no_rule_owns_it():
    co = parse_codeowners("/src/auth/ @security\n")
    gate = baseline(codeowners=co, changed_paths=frozenset({".mergegate.yml"}))
    reason = blocked_by(gate, GateRule.CODE_OWNERS)
    assert reason == "blocked: .mergegate.yml is owned by the admins; no approval from them"
    assert evaluate(replace(gate, reviews=(approve("carol"),))).mergeable
    with pytest.raises(ValidationError, match="cannot be turned off"):
        GateRules(require_code_owner_review=False)


# -- findings ----------------------------------------------------------------------------------------------


def test_no_blocking_findings():
    assert rule(baseline(), GateRule.FINDINGS).reason == "no blocking findings"


def test_blocking_findings_block_in_enforce_mode():
    assert blocked_by(baseline(blocking_findings=2), GateRule.FINDINGS) == "blocked: 2 blocking findings (enforce mode)"


def test_unknown_findings_block():
    assert "unknown" in blocked_by(baseline(blocking_findings=None), GateRule.FINDINGS)


def test_advisory_mode_reports_but_does_not_block():
    r = rule(baseline(blocking_findings=2, mode=Mode.ADVISORY), GateRule.FINDINGS)
    assert r.satisfied and "advisory mode: 2 blocking findings" in r.reason


# -- reviews: staleness is a gate event ------------------------------------------------------------------------


def test_stale_approvals_are_dismissed_by_the_gate_not_the_pusher():
    reviews = (approve("alice", seq=3), approve("bob", seq=4, fp=NEW_FP), request_changes("sam", seq=5))
    assert [r.reviewer for r in stale_approvals(reviews, NEW_FP)] == ["alice"]
    updated, dismissed = dismiss_stale(reviews, NEW_FP, gate=GATE, sequence=9)
    assert [r.reviewer for r in dismissed] == ["alice"]
    d = dismissed[0].dismissal
    assert d is not None and d.by == GATE and d.by_gate and d.sequence == 9
    assert "dismissed by the gate" in d.reason and "agent" not in d.reason
    assert updated[2].dismissal is None  # a request for changes is never dismissed as stale
    assert outstanding_change_requests(updated, DIRECTORY)[0].reviewer == "sam"
    assert dismiss_stale(updated, NEW_FP, gate=GATE, sequence=10)[1] == ()  # idempotent


def test_unknown_fingerprint_makes_every_approval_stale():
    assert len(stale_approvals((approve("alice"),), None)) == 1


def test_latest_decisive_ignores_comments():
    reviews = (request_changes("bob", seq=1), Review("bob", ReviewState.COMMENT, FP, 2))
    assert latest_decisive(reviews)["bob"].state is ReviewState.REQUEST_CHANGES


def test_approval_problems_empty_for_a_good_approval():
    assert approval_problems(baseline(), approve("alice")) == []
    gate = baseline(reviews=(approve("alice"), approve("alice", seq=PUSH + 3)))
    assert approval_problems(gate, approve("alice")) == ["was replaced by a later approval of the same reviewer"]


# -- policy: the gate section --------------------------------------------------------------------------------


def test_gate_rules_defaults_match_issue_4():
    rules = parse_policy(None).gate
    assert rules.required_approvals == 1
    assert rules.human_approvals_only is True
    assert rules.bind_approvals_to_fingerprint and rules.approvals_after_last_push
    assert rules.exclude_last_pusher and rules.exclude_author and rules.request_changes_blocks
    assert rules.require_code_owner_review and rules.strict
    assert rules.protected_branches == ("main", "master", "release/*")
    assert rules.required_checks == ("mergegate/check",)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "gate:\n  human_approvals_only: false\n",
            "line 2: gate.human_approvals_only: Value error, cannot be turned off",
        ),
        ("gate:\n  exclude_author: false\n", "line 2: gate.exclude_author: Value error, cannot be turned off"),
        ("gate:\n  strict: false\n", "line 2: gate.strict: Value error, cannot be turned off"),
        ("gate:\n  required_checks: []\n", "line 2: gate.required_checks"),
        ("gate:\n  required_approvals: 0\n", "line 2: gate.required_approvals"),
        ("gate:\n  stirct: true\n", "line 2: gate.stirct: unknown key"),
    ],
)
def test_gate_rules_that_would_let_an_agent_through_are_rejected(text, expected):
    with pytest.raises(PolicyError) as exc:
        parse_policy(text)
    assert expected in str(exc.value)


@pytest.mark.parametrize(
    ("branch", "protected"),
    [
        ("main", True),
        ("refs/heads/main", True),
        ("master", True),
        ("release/1.0", True),
        ("release/1.0/hotfix", False),
        ("feature/main", False),
        ("mainline", False),
        ("agent/fix-123", False),
    ],
)
def test_protected_branch_patterns(branch, protected):
    assert GateRules().protects(branch) is protected


def test_protected_branch_double_star():
    assert GateRules(protected_branches=("release/**",)).protects("release/1.0/hotfix")


# -- properties --------------------------------------------------------------------------------------------------

NON_QUALIFYING = st.one_of(
    st.builds(lambda s: approve("agent", seq=s), st.integers(PUSH + 1, 100)),  # an agent
    st.builds(lambda s: approve("root-agent", seq=s), st.integers(PUSH + 1, 100)),  # an admin agent
    st.builds(lambda s: approve("bob", seq=s), st.integers(0, PUSH)),  # before the last push
    st.builds(lambda s: approve("carol", seq=s, fp=NEW_FP), st.integers(PUSH + 1, 100)),  # stale
    st.builds(lambda s: approve("mallory", seq=s), st.integers(PUSH + 1, 100)),  # unknown
    st.builds(
        lambda s: approve("sam", seq=s, dismissal=Dismissal(GATE, True, "stale", s + 1)),
        st.integers(PUSH + 1, 100),
    ),
)

BLOCKED_STARTS = st.sampled_from(
    [
        dict(reviews=()),
        dict(checks=()),
        dict(checks=(ok_check(producer="agent"),)),
        dict(checks=(ok_check(commit=HEAD),)),
        dict(blocking_findings=1),
        dict(changed_paths=frozenset({"src/auth/login.py"})),
        dict(reviews=(approve("alice"), request_changes("bob"))),
        dict(fingerprint=NEW_FP),
    ]
)


@settings(max_examples=200)
@given(BLOCKED_STARTS, st.lists(NON_QUALIFYING, max_size=6))
def test_adding_non_qualifying_approvals_never_unblocks(start, extra):
    gate = baseline(**start)
    assert not evaluate(gate).mergeable
    more = replace(gate, reviews=gate.reviews + tuple(extra))
    assert not evaluate(more).mergeable


@settings(max_examples=200)
@given(
    st.lists(
        st.builds(
            CheckRun,
            name=st.sampled_from([CHECK, "other"]),
            producer=st.sampled_from(["agent", "Mergegate", "ci"]),
            commit=st.sampled_from([LAND, HEAD]),
            status=st.sampled_from(list(CheckStatus)),
            sequence=st.integers(0, 1000),
        ),
        max_size=6,
    )
)
def test_checks_from_other_producers_never_change_the_verdict(foreign):
    for start in (baseline(), baseline(checks=()), baseline(checks=(ok_check(status=CheckStatus.FAILURE),))):
        before = evaluate(start)
        after = evaluate(replace(start, checks=start.checks + tuple(foreign)))
        assert after.mergeable is before.mergeable


def _oracle_allows(gate: GateInput) -> bool:
    """Invariant 2 restated independently and literally, for the default rules."""
    check = [c for c in gate.checks if c.name == CHECK and c.producer == GATE and c.commit == gate.landing_commit]
    if not check or max(check, key=lambda c: c.sequence).status != CheckStatus.SUCCESS:
        return False
    good = set()
    for r in gate.reviews:
        p = gate.directory.get(r.reviewer)
        if (
            r.state is ReviewState.APPROVE
            and p is not None
            and p.kind is PrincipalKind.HUMAN
            and r.fingerprint == gate.fingerprint
            and r.sequence > gate.last_push_sequence
            and r.reviewer not in (gate.author, gate.last_pusher)
            and r.dismissal is None
        ):
            good.add(r.reviewer)
    return len(good) >= 1 and gate.blocking_findings == 0


@settings(max_examples=300)
@given(
    reviews=st.lists(
        st.builds(
            Review,
            reviewer=st.sampled_from(["alice", "bob", "carol", "agent", "root-agent", "mallory"]),
            state=st.sampled_from(list(ReviewState)),
            fingerprint=st.sampled_from([FP, NEW_FP]),
            sequence=st.integers(0, 20),
        ),
        max_size=5,
    ),
    pusher=st.sampled_from(["agent", "alice", "bob"]),
    author=st.sampled_from(["agent", "carol"]),
    status=st.sampled_from(list(CheckStatus)),
    commit=st.sampled_from([LAND, HEAD]),
    findings=st.sampled_from([0, 1, None]),
)
def test_mergeable_implies_invariant_two(reviews, pusher, author, status, commit, findings):
    gate = baseline(
        reviews=tuple(reviews),
        last_pusher=pusher,
        author=author,
        checks=(ok_check(commit=commit, status=status),),
        blocking_findings=findings,
    )
    if evaluate(gate).mergeable:
        assert _oracle_allows(gate)


@given(st.permutations([approve("alice"), request_changes("bob", seq=PUSH + 2), approve("bob", seq=PUSH + 3)]))
def test_the_verdict_does_not_depend_on_the_order_reviews_arrive_in(reviews):
    verdict = evaluate(baseline(reviews=tuple(reviews)))
    assert verdict.mergeable
