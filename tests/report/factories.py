"""Check reports built from the core dataclasses, routed by the real ``route``.

Unit tests of the formats need exact, hand-picked findings (a CWE, a path with a space,
a finding without a line, an agent that timed out) that no real tool produces on demand;
the decision is still computed by the real routing so the reports are consistent.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import jsonschema

from mergegate.core.change import Change, ChangedFile, FileStatus
from mergegate.core.finding import Category, Finding
from mergegate.core.policy import Policy
from mergegate.core.results import AgentResult, AgentStatus
from mergegate.core.routing import route
from mergegate.core.severity import Severity
from mergegate.service.check import CheckReport
from mergegate.service.policy_source import LoadedPolicy

SARIF_SCHEMA = Path(__file__).resolve().parent.parent / "data" / "sarif" / "sarif-schema-2.1.0.json"

BASE, HEAD, MERGE_BASE = "b" * 40, "c" * 40, "a" * 40


@cache
def sarif_validator() -> jsonschema.Validator:
    """A validator for the vendored SARIF 2.1.0 schema (see tests/data/sarif/README.md)."""
    schema = json.loads(SARIF_SCHEMA.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def finding(
    agent: str = "code-quality",
    rule: str = "F821",
    severity: Severity = Severity.MEDIUM,
    message: str = "Undefined name `x`",
    *,
    category: Category = Category.QUALITY,
    path: str | None = "src/app.py",
    line: int | None = 3,
    end_line: int | None = None,
    confidence: float = 0.9,
    cwe: str | None = None,
    properties: dict[str, str] | None = None,
    fingerprint: str = "",
) -> Finding:
    return Finding(
        agent=agent,
        rule=rule,
        severity=severity,
        confidence=confidence,
        message=message,
        category=category,
        path=path,
        line=line,
        end_line=end_line,
        cwe=cwe,
        properties=properties or {},
        fingerprint=fingerprint,
    )


def sqli(**kw) -> Finding:
    """A bandit-style SQL injection finding; keyword arguments override any field."""
    args = {
        "agent": "security-scan",
        "rule": "B608",
        "severity": Severity.HIGH,
        "message": "Possible SQL injection vector through string-based query",
        "category": Category.SECURITY,
        "path": "src/db.py",
        "line": 12,
        "end_line": 13,
        "cwe": "CWE-89",
        "confidence": 0.8,
    }
    args.update(kw)
    return finding(**args)


def ok(name: str, *findings: Finding, confidence: float = 1.0, duration: float = 0.5) -> AgentResult:
    return AgentResult(name, AgentStatus.OK, tuple(findings), confidence, duration)


def failed(name: str, status: AgentStatus = AgentStatus.ERROR, detail: str = "boom") -> AgentResult:
    return AgentResult(name, status, confidence=0.0, duration_s=1.0, detail=detail)


def skipped(name: str, detail: str = "no Python files changed") -> AgentResult:
    return AgentResult(name, AgentStatus.SKIPPED, detail=detail)


def changed(*paths: str, status: FileStatus = FileStatus.MODIFIED) -> tuple[ChangedFile, ...]:
    return tuple(ChangedFile(p, status, p if status is not FileStatus.ADDED else None, frozenset({1})) for p in paths)


def make_report(
    *results: AgentResult,
    files: tuple[ChangedFile, ...] | None = None,
    policy: Policy | None = None,
) -> CheckReport:
    policy = policy or Policy()
    if files is None:
        paths = sorted({f.path for r in results for f in r.findings if f.path}) or ["src/app.py"]
        files = changed(*paths)
    change = Change(BASE, HEAD, MERGE_BASE, files, "coding-agent[bot]", "main", "change")
    loaded = LoadedPolicy(policy, "main:.mergegate.yml", "0123456789abcdef")
    return CheckReport(change, loaded, tuple(results), route(change, results, policy), 1.25)
