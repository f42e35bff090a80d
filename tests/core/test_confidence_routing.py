from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mergegate.core.change import Change, ChangedFile, FileStatus
from mergegate.core.confidence import aggregate_confidence
from mergegate.core.finding import Category, Finding
from mergegate.core.policy import Mode, Policy, Thresholds
from mergegate.core.results import AgentResult, AgentStatus
from mergegate.core.routing import Action, ActionTier, may_act, route
from mergegate.core.severity import Severity

severities = st.sampled_from(list(Severity))
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


def finding(severity=Severity.LOW, confidence=0.9, category=Category.QUALITY, path="a.py", rule="R1"):
    return Finding(
        agent="a",
        rule=rule,
        severity=severity,
        confidence=confidence,
        message="m",
        category=category,
        path=path,
        line=1,
    )


def change(*paths: str) -> Change:
    return Change(
        base="b" * 40,
        head="h" * 40,
        merge_base="m" * 40,
        files=tuple(ChangedFile(p, FileStatus.MODIFIED, p, frozenset({1})) for p in paths),
    )


def ok(*findings: Finding, confidence: float = 1.0, name: str = "a") -> AgentResult:
    return AgentResult(name, AgentStatus.OK, tuple(findings), confidence)


finding_st = st.builds(finding, severity=severities, confidence=unit)


@given(st.lists(finding_st, max_size=8), finding_st)
def test_another_finding_never_raises_confidence(findings, extra):
    before = aggregate_confidence([ok(*findings)])
    after = aggregate_confidence([ok(*findings, extra)])
    assert after <= before


@given(st.lists(finding_st, max_size=6), severities, severities, unit)
def test_worse_severity_never_raises_confidence(findings, s1, s2, conf):
    low, high = sorted([s1, s2], key=lambda s: s.rank)
    a = aggregate_confidence([ok(*findings, finding(low, conf))])
    b = aggregate_confidence([ok(*findings, finding(high, conf))])
    assert b <= a


@given(st.lists(finding_st, max_size=6), severities, unit, unit)
def test_more_certain_finding_never_raises_confidence(findings, sev, c1, c2):
    lo, hi = sorted([c1, c2])
    assert aggregate_confidence([ok(*findings, finding(sev, hi))]) <= aggregate_confidence(
        [ok(*findings, finding(sev, lo))]
    )


@given(st.lists(finding_st, max_size=6), unit, unit)
def test_less_sure_agent_never_raises_confidence(findings, c1, c2):
    lo, hi = sorted([c1, c2])
    assert aggregate_confidence([ok(*findings, confidence=lo)]) <= aggregate_confidence([ok(*findings, confidence=hi)])


def test_no_findings_full_confidence_is_one():
    assert aggregate_confidence([ok(), ok(name="b")]) == 1.0


def test_failed_agent_routes_to_error_even_without_findings():
    results = [ok(), AgentResult("slow", AgentStatus.TIMEOUT, detail="did not finish within 5s")]
    decision = route(change("a.py"), results, Policy())
    assert decision.action is Action.ERROR
    assert decision.confidence == 0.0
    assert "slow timed out" in decision.reasons[0]


def test_security_finding_at_blocking_severity_blocks():
    f = finding(Severity.HIGH, 0.5, Category.SECURITY, rule="B608")
    decision = route(change("a.py"), [ok(f)], Policy())
    assert decision.action is Action.BLOCK_SECURITY
    assert "B608" in decision.reasons[0] and "a.py:1" in decision.reasons[0]


def test_security_finding_below_blocking_severity_does_not_block():
    f = finding(Severity.MEDIUM, 0.5, Category.SECURITY)
    decision = route(change("a.py"), [ok(f)], Policy())
    assert decision.action is not Action.BLOCK_SECURITY


def test_high_quality_finding_is_not_a_security_block():
    decision = route(change("a.py"), [ok(finding(Severity.HIGH, 1.0))], Policy())
    assert decision.action is Action.REJECT  # 1 - 0.5 = 0.5 < 0.70


def test_thresholds_route_by_confidence():
    policy = Policy(thresholds=Thresholds(auto_approve=0.9, human_review=0.7))
    assert route(change("a.py"), [ok()], policy).action is Action.AUTO_APPROVE
    assert route(change("a.py"), [ok(confidence=0.8)], policy).action is Action.HUMAN_REVIEW
    assert route(change("a.py"), [ok(confidence=0.6)], policy).action is Action.REJECT


def test_sensitive_path_is_never_auto_approved():
    decision = route(change("src/auth/login.py"), [ok()], Policy())
    assert decision.action is Action.HUMAN_REVIEW
    assert any("src/auth/login.py" in r and "sensitive" in r for r in decision.reasons)
    assert decision.risk.value == "high"


def test_advisory_mode_reports_the_same_action():
    f = finding(Severity.CRITICAL, 1.0, Category.SECURITY)
    enforce = route(change("a.py"), [ok(f)], Policy(mode=Mode.ENFORCE))
    advisory = route(change("a.py"), [ok(f)], Policy(mode=Mode.ADVISORY))
    assert enforce.action is advisory.action is Action.BLOCK_SECURITY
    assert advisory.mode is Mode.ADVISORY


def test_action_tiers():
    policy = Policy()
    assert may_act(policy, ActionTier.LOW, 0.6)
    assert not may_act(policy, ActionTier.MEDIUM, 0.74)
    assert not may_act(policy, ActionTier.HIGH, 0.89)
    assert may_act(policy, ActionTier.HIGH, 0.9)
