"""How sure we are that a change is fine: one number in 0..1 from every agent's output.

The model (docs/confidence.md explains it for users):

* Each finding ``f`` is evidence of a defect. Its *risk* is
  ``r(f) = SEVERITY_WEIGHT[f.severity] * f.confidence``: how likely it is a real
  problem, scaled by how much a real one matters.
* Findings are treated as independent pieces of evidence, so the chance that none of
  them is a real problem is ``prod(1 - r(f))``.
* That is then scaled by how much of the change the agents could examine: the product
  of the agents' confidence in their own analysis (an agent that had to skip files
  reports less than 1.0).

``confidence = prod(agent.confidence) * prod(1 - r(f))``

Every factor is in [0, 1], so the result is monotone: another finding, a worse
severity, a higher finding confidence or a less sure agent can never raise it.
"""

from __future__ import annotations

from collections.abc import Iterable

from mergegate.core.finding import Finding
from mergegate.core.results import AgentResult
from mergegate.core.severity import Severity

SEVERITY_WEIGHT: dict[Severity, float] = {
    Severity.INFO: 0.01,
    Severity.LOW: 0.05,
    Severity.MEDIUM: 0.20,
    Severity.HIGH: 0.50,
    Severity.CRITICAL: 0.80,
}


def finding_risk(finding: Finding) -> float:
    return SEVERITY_WEIGHT[finding.severity] * finding.confidence


def aggregate_confidence(results: Iterable[AgentResult]) -> float:
    """Aggregate confidence in the change. A failed agent yields 0.0: nothing is known."""
    confidence = 1.0
    for result in results:
        if result.status.failed:
            return 0.0
        # A skipped agent says through its confidence what its absence costs
        # (e.g. no test command configured: coverage is unknown).
        confidence *= result.confidence
        for finding in result.findings:
            confidence *= 1.0 - finding_risk(finding)
    return round(confidence, 6)
