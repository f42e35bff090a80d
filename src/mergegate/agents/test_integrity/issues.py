"""The rules test-integrity reports, and the issue record every comparison produces.

Severity follows what the edit does to the test's power to fail: a clear weakening is
``high`` (it routes the change by confidence, never as a security block), an edit that
may be a legitimate specification change is ``medium`` and asked as a question, and a
fact worth seeing that is usually fine is ``low`` or ``info``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mergegate.core.severity import Severity

#: rule id → what it means (shown by docs and tests; keep in sync with compare/analysis).
RULES: dict[str, str] = {
    "assertion-removed": "checks removed from a test (its assertion count went down)",
    "assertion-weakened": "a check replaced by a weaker one, or its numeric bound relaxed",
    "tolerance-widened": "pytest.approx / isclose / assertAlmostEqual tolerance raised",
    "expected-value-changed": "an expected literal edited (a question: specification change or bent test?)",
    "param-case-removed": "cases removed from a parametrize table",
    "skip-added": "skip/skipif marker or unittest.skip added",
    "xfail-added": "xfail / expectedFailure marker added",
    "flaky-added": "flaky/rerun marker added",
    "skip-condition-changed": "the condition of an existing skipif edited (low: usually a supported-version bump)",
    "skip-call-added": "pytest.skip()/pytest.xfail()/self.skipTest() call added to a test",
    "early-return": "a return added before the test's checks",
    "assertion-swallowed": "checks wrapped in try/except that swallows the failure",
    "raises-removed": "an expected exception (pytest.raises/assertRaises) removed",
    "raises-broadened": "an expected exception broadened (to Exception or a base class)",
    "raises-match-removed": "the match= pattern of an expected exception removed",
    "test-deleted": "a test function deleted",
    "test-file-deleted": "a test file deleted with its tests",
    "test-not-collected": "a test renamed so pytest no longer collects it",
    "test-file-not-collected": "a test file renamed so pytest no longer collects it",
    "test-shadowed": "a test redefined under the same name, so the first one never runs",
    "pytest-hook-changed": "a pytest hook in conftest.py added or changed (high when it can drop or skip tests)",
    "collect-ignore-added": "paths added to collect_ignore: the tests there stop running",
    "pytest-config-changed": "pytest config now deselects tests, or its collection rules changed",
    "unit-mocked": "the function a test is about replaced by a mock in that test",
    "new-test-skipped": "a new test that is skipped or expected to fail",
    "production-untested": "production code changed with no test touched",
}


@dataclass(frozen=True)
class Issue:
    rule: str
    severity: Severity
    confidence: float
    message: str
    path: str
    line: int | None
    #: What identifies the issue besides its place, for the finding's fingerprint.
    basis: str
    #: Issues with the same group (e.g. one module-level skip seen by every test) merge into one.
    group: str | None = None

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown test-integrity rule {self.rule!r}")


def code(text: str, limit: int = 240) -> str:
    """An expression for a message: in backticks, shortened only when very long."""
    text = " ".join(text.split())
    return f"`{text if len(text) <= limit else text[: limit - 1] + '…'}`"
