"""Findings: what an agent reports, in one model shared by every agent and output."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum

from mergegate.core.severity import Severity


class Category(StrEnum):
    """What kind of problem a finding is. ``security`` findings can block outright."""

    SECURITY = "security"
    QUALITY = "quality"
    TESTS = "tests"
    COVERAGE = "coverage"


def make_fingerprint(agent: str, rule: str, path: str | None, basis: str) -> str:
    """A stable id for a finding that survives unrelated edits moving it up or down.

    ``basis`` is what identifies the finding besides its place: usually the normalised
    source line, never a line number (lines move) and never a secret value.
    """
    normalised = " ".join(basis.split())
    raw = "\x1f".join([agent, rule, path or "", normalised])
    # surrogatepass: text decoded from odd bytes must still fingerprint, never crash.
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True)
class Finding:
    agent: str
    rule: str
    severity: Severity
    confidence: float
    message: str
    category: Category
    path: str | None = None
    line: int | None = None
    end_line: int | None = None
    cwe: str | None = None
    fingerprint: str = ""
    #: Extra machine-readable facts (e.g. a masked secret preview). Never secret values.
    properties: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"finding confidence must be within 0..1, got {self.confidence}")
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", make_fingerprint(self.agent, self.rule, self.path, self.message))

    @property
    def is_security(self) -> bool:
        return self.category is Category.SECURITY
