"""Routing: from agent results and the policy to one decision, with reasons in words.

``auto_approve`` means only that the AI gate is green. It never merges anything: a
human approval is still required (design invariant 7).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from mergegate.core.change import Change
from mergegate.core.confidence import aggregate_confidence
from mergegate.core.globs import match_any
from mergegate.core.policy import Mode, Policy
from mergegate.core.results import AgentResult, AgentStatus
from mergegate.core.severity import Severity


class Action(StrEnum):
    AUTO_APPROVE = "auto_approve"
    HUMAN_REVIEW = "human_review"
    REJECT = "reject"
    BLOCK_SECURITY = "block_security"
    ERROR = "error"


class Risk(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class ActionTier(StrEnum):
    """Risk tier of an autonomous agent *action* (not of a change)."""

    LOW = "low"  # comments, tagging
    MEDIUM = "medium"  # running tests, staging deploy
    HIGH = "high"  # production deploy, infrastructure


@dataclass(frozen=True)
class Decision:
    action: Action
    confidence: float
    risk: Risk
    mode: Mode
    reasons: tuple[str, ...]

    @property
    def passes(self) -> bool:
        """Whether the AI gate is green for this change (a human must still approve)."""
        return self.action in (Action.AUTO_APPROVE, Action.HUMAN_REVIEW)


def may_act(policy: Policy, tier: ActionTier, confidence: float) -> bool:
    """Whether an agent at ``confidence`` may take an action of ``tier`` without a human."""
    return confidence >= getattr(policy.action_thresholds, tier.value)


def sensitive_paths_touched(change: Change, policy: Policy) -> list[tuple[str, str]]:
    """(path, pattern) for every touched path that matches a sensitive pattern."""
    hits = []
    for path in sorted(change.touched_paths()):
        pattern = match_any(policy.sensitive_paths, path)
        if pattern:
            hits.append((path, pattern))
    return hits


def route(change: Change, results: Sequence[AgentResult], policy: Policy) -> Decision:
    confidence = aggregate_confidence(results)
    sensitive = sensitive_paths_touched(change, policy)
    findings = [f for r in results for f in r.findings]
    worst = max((f.severity for f in findings), default=None)

    risk = Risk.LOW
    if sensitive or (worst is not None and worst >= Severity.HIGH):
        risk = Risk.HIGH
    elif worst is not None and worst >= Severity.MEDIUM:
        risk = Risk.MEDIUM

    failed = [r for r in results if r.status.failed]
    if failed:
        reasons = tuple(
            f"agent {r.name} {'timed out' if r.status is AgentStatus.TIMEOUT else 'failed'}"
            f"{': ' + r.detail if r.detail else ''}; the change was not fully examined (fail closed)"
            for r in failed
        )
        return Decision(Action.ERROR, 0.0, Risk.HIGH, policy.mode, reasons)

    reasons: list[str] = []
    blocking = [f for f in findings if f.is_security and f.severity >= policy.blocking_severity]
    if blocking:
        for f in blocking:
            where = f"{f.path}:{f.line}" if f.path and f.line else (f.path or "the change")
            reasons.append(f"{f.severity} security finding {f.rule} at {where}: {f.message}")
        return Decision(Action.BLOCK_SECURITY, confidence, Risk.HIGH, policy.mode, tuple(reasons))

    t = policy.thresholds
    if confidence >= t.auto_approve:
        action = Action.AUTO_APPROVE
        reasons.append(f"confidence {confidence:.2f} >= auto_approve threshold {t.auto_approve:.2f}")
    elif confidence >= t.human_review:
        action = Action.HUMAN_REVIEW
        reasons.append(
            f"confidence {confidence:.2f} is below auto_approve {t.auto_approve:.2f} "
            f"but at least human_review {t.human_review:.2f}"
        )
    else:
        action = Action.REJECT
        reasons.append(f"confidence {confidence:.2f} is below human_review threshold {t.human_review:.2f}")

    if action is Action.AUTO_APPROVE and sensitive:
        action = Action.HUMAN_REVIEW
        shown = ", ".join(f"{p} (matches {pat})" for p, pat in sensitive[:5])
        more = f" and {len(sensitive) - 5} more" if len(sensitive) > 5 else ""
        reasons.append(f"touches sensitive paths, so at best human_review: {shown}{more}")

    for r in results:
        if r.status is AgentStatus.SKIPPED:
            reasons.append(f"agent {r.name} skipped: {r.detail or 'no reason given'}")
    if findings:
        counts: dict[Severity, int] = {}
        for f in findings:
            counts[f.severity] = counts.get(f.severity, 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: -kv[0].rank))
        reasons.append(f"findings: {summary}")
    return Decision(action, confidence, risk, policy.mode, tuple(reasons))
