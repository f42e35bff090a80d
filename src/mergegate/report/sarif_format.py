"""SARIF 2.1.0 for GitHub code scanning (and any other SARIF viewer).

GitHub reads a subset of SARIF; every mapping below is chosen for what it does there:

- **One run per check**, ``tool.driver.name`` ``mergegate``, with
  ``automationDetails.id`` ``mergegate/check/``: the category GitHub uses to tell this
  analysis from others (CodeQL, ...), so a new upload replaces the previous one.
- **Rule ids are** ``<agent>/<rule>``: agents' own rule ids collide (ruff's ``B101`` is
  a bugbear check, bandit's ``B101`` is ``assert``), and GitHub keys alerts on the id.
- **Levels**: critical/high -> ``error``, medium -> ``warning``, low/info -> ``note``.
- **Security findings** get the ``security`` tag and a numeric-string
  ``security-severity`` on their rule (GitHub reads it only on rules tagged
  ``security``; its bands are critical >= 9.0, high 7.0-8.9, medium 4.0-6.9,
  low 0.1-3.9). CWE ids become ``external/cwe/cwe-N`` tags.
- **precision** (very-high/high/medium/low) comes from the findings' confidence.
- **partialFingerprints** carry our own fingerprint, which survives lines moving (it is
  never a line number), so an alert keeps its identity across pushes.
- **Locations** are repository-relative URIs under ``%SRCROOT%``, with a region only
  when the finding has a line. GitHub accepts a result without a location but shows it
  nowhere, so a change-level finding (no path) is attached, file-level, to the first
  file of the change and says so in its properties.
- **Fail closed is visible**: ``invocations[0].executionSuccessful`` is false when any
  agent errored or timed out, with one ``toolExecutionNotification`` per agent that did
  not finish (skipped agents are ``note`` notifications). The decision itself goes in
  ``run.properties`` rather than becoming an alert: a verdict is not a code location.
- GitHub rejects a run with more than 25,000 results; beyond that the least severe are
  dropped and a notification says how many.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from mergegate import __version__
from mergegate.core.finding import Finding
from mergegate.core.policy import POLICY_FILE
from mergegate.core.results import AgentStatus
from mergegate.core.severity import Severity
from mergegate.report.json_format import as_dict
from mergegate.service.check import CheckReport

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
INFORMATION_URI = "https://pypi.org/project/mergegate/"
AUTOMATION_ID = "mergegate/check/"
FINGERPRINT_KEY = "mergegateFingerprint/v1"
SRCROOT = "%SRCROOT%"
#: GitHub's hard limit on results per run (larger files are rejected whole).
MAX_RESULTS = 25_000

LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}

#: Mid-band values, so GitHub's critical/high/medium/low matches our severity.
SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "2.0",
    Severity.INFO: "0.1",
}

_CWE = re.compile(r"(\d+)")


def precision(confidence: float) -> str:
    """GitHub's precision scale from a finding confidence (0..1)."""
    if confidence >= 0.9:
        return "very-high"
    if confidence >= 0.75:
        return "high"
    if confidence >= 0.5:
        return "medium"
    return "low"


def rule_id(f: Finding) -> str:
    return f"{f.agent}/{f.rule}"


def cwe_tag(cwe: str | None) -> str | None:
    """``CWE-89``, ``89`` or ``cwe-89`` -> ``external/cwe/cwe-89`` (GitHub's convention)."""
    match = _CWE.search(cwe or "")
    return f"external/cwe/cwe-{int(match.group(1))}" if match else None


def artifact_uri(path: str) -> str:
    """A repository-relative path as a URI reference (forward slashes, percent-encoded)."""
    clean = path.replace("\\", "/").removeprefix("./").lstrip("/")
    return quote(clean, safe="/")


@dataclass
class _Rule:
    """A rule as seen across all of its findings in this check."""

    id: str
    agent: str
    rule: str
    worst: Severity
    confidence: float
    security: bool
    categories: set[str] = field(default_factory=set)
    cwes: set[str] = field(default_factory=set)

    def add(self, f: Finding) -> None:
        self.worst = max(self.worst, f.severity, key=lambda s: s.rank)
        self.confidence = max(self.confidence, f.confidence)
        self.security = self.security or f.is_security
        self.categories.add(f.category.value)
        if tag := cwe_tag(f.cwe):
            self.cwes.add(tag)

    def descriptor(self) -> dict[str, Any]:
        tags = sorted(self.categories | ({"security"} if self.security else set()))
        tags += sorted(self.cwes)
        props: dict[str, Any] = {"tags": tags[:20], "precision": precision(self.confidence), "agent": self.agent}
        if self.security:
            props["security-severity"] = SECURITY_SEVERITY[self.worst]
        return {
            "id": self.id,
            "name": self.rule,
            "shortDescription": {"text": f"{self.agent}: {self.rule}"},
            "defaultConfiguration": {"level": LEVEL[self.worst]},
            "properties": props,
        }


def _rules(findings: Iterable[Finding]) -> dict[str, _Rule]:
    rules: dict[str, _Rule] = {}
    for f in findings:
        rid = rule_id(f)
        if rid not in rules:
            rules[rid] = _Rule(rid, f.agent, f.rule, f.severity, f.confidence, f.is_security)
        rules[rid].add(f)
    return rules


def fallback_path(report: CheckReport) -> str:
    """Where a change-level finding is shown: the first file the change keeps (or touches)."""
    files = sorted(report.change.files, key=lambda f: f.path)
    present = [f.path for f in files if f.exists_at_head]
    return (present or [f.path for f in files] or [POLICY_FILE])[0]


def _location(f: Finding, fallback: str) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": {"uri": artifact_uri(f.path or fallback), "uriBaseId": SRCROOT}}
    if f.path and f.line is not None and f.line >= 1:
        region: dict[str, Any] = {"startLine": f.line}
        if f.end_line is not None and f.end_line >= f.line:
            region["endLine"] = f.end_line
        physical["region"] = region
    return {"physicalLocation": physical}


def _result(f: Finding, index: int, fallback: str) -> dict[str, Any]:
    props: dict[str, Any] = {
        "agent": f.agent,
        "rule": f.rule,
        "severity": f.severity.value,
        "confidence": f.confidence,
        "category": f.category.value,
    }
    if f.cwe:
        props["cwe"] = f.cwe
    if f.properties:
        props["details"] = dict(f.properties)
    if not f.path:
        props["attachedTo"] = "change"
    return {
        "ruleId": rule_id(f),
        "ruleIndex": index,
        "level": LEVEL[f.severity],
        "message": {"text": f.message or rule_id(f)},
        "locations": [_location(f, fallback)],
        "partialFingerprints": {FINGERPRINT_KEY: f.fingerprint},
        "properties": props,
    }


def _notifications(report: CheckReport, dropped: int) -> list[dict[str, Any]]:
    out = []
    for r in report.results:
        if r.status.failed:
            what = "timed out" if r.status is AgentStatus.TIMEOUT else "failed"
            text = f"agent {r.name} {what}: {r.detail or 'no detail'}; the change was not fully examined (fail closed)"
            level = "error"
        elif r.status is AgentStatus.SKIPPED:
            text = f"agent {r.name} skipped: {r.detail or 'no reason given'}"
            level = "note"
        else:
            continue
        out.append(
            {
                "level": level,
                "message": {"text": text},
                "descriptor": {"id": r.name},
                "properties": {"status": r.status.value, "duration_s": r.duration_s},
            }
        )
    if dropped:
        out.append(
            {
                "level": "warning",
                "message": {
                    "text": f"{dropped} least severe finding(s) left out: GitHub accepts at most {MAX_RESULTS} per run"
                },
            }
        )
    return out


def as_sarif(report: CheckReport) -> dict[str, Any]:
    findings = [f for r in report.results for f in r.findings]
    dropped = max(0, len(findings) - MAX_RESULTS)
    if dropped:
        keep = sorted(findings, key=lambda f: -f.severity.rank)[:MAX_RESULTS]
        kept = {id(f) for f in keep}
        findings = [f for f in findings if id(f) in kept]
    rules = _rules(findings)
    index = {rid: i for i, rid in enumerate(rules)}
    fallback = fallback_path(report)
    summary = as_dict(report)
    notifications = _notifications(report, dropped)
    invocation: dict[str, Any] = {
        "executionSuccessful": not any(r.status.failed for r in report.results),
        "properties": {"agents": summary["agents"]},
    }
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    run = {
        "tool": {
            "driver": {
                "name": "mergegate",
                "version": __version__,
                "semanticVersion": __version__,
                "informationUri": INFORMATION_URI,
                "rules": [r.descriptor() for r in rules.values()],
            }
        },
        "automationDetails": {"id": AUTOMATION_ID},
        "invocations": [invocation],
        "results": [_result(f, index[rule_id(f)], fallback) for f in findings],
        "columnKind": "unicodeCodePoints",
        "properties": {
            "decision": summary["decision"],
            "change": {k: summary["change"][k] for k in ("base", "head", "merge_base", "base_ref", "head_ref")},
            "policy": summary["policy"],
        },
    }
    return {"$schema": SCHEMA_URI, "version": SARIF_VERSION, "runs": [run]}


def render(report: CheckReport) -> str:
    return json.dumps(as_sarif(report), indent=2) + "\n"
