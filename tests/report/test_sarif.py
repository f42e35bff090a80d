"""SARIF output: valid against the SARIF 2.1.0 schema, and shaped for GitHub code scanning."""

from __future__ import annotations

import json
import re

import pytest

from mergegate.core.change import FileStatus
from mergegate.core.finding import Category
from mergegate.core.results import AgentStatus
from mergegate.core.severity import Severity
from mergegate.report import renderer, sarif_format
from mergegate.report.sarif_format import FINGERPRINT_KEY, as_sarif, cwe_tag
from tests.report.factories import (
    SARIF_SCHEMA,
    changed,
    failed,
    finding,
    make_report,
    ok,
    sarif_validator,
    skipped,
    sqli,
)


def valid_sarif(report) -> dict:
    """Render through the public renderer, parse, and validate against the schema."""
    doc = json.loads(renderer("sarif")(report))
    errors = sorted(sarif_validator().iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    # jsonschema does not check ``format: uri-reference`` without extra packages: check
    # that every artifact URI is a relative RFC 3986 reference by hand.
    for run in doc["runs"]:
        for result in run["results"]:
            for loc in result["locations"]:
                uri = loc["physicalLocation"]["artifactLocation"]["uri"]
                assert _URI_REF.fullmatch(uri), uri
                assert not uri.startswith("/") and ":" not in uri.split("/")[0], uri
    return doc


_URI_REF = re.compile(r"[A-Za-z0-9\-._~/!$&'()*+,;=:@]*(%[0-9A-F]{2}[A-Za-z0-9\-._~/!$&'()*+,;=:@]*)*")


def test_vendored_schema_is_the_sarif_2_1_0_schema():
    schema = json.loads(SARIF_SCHEMA.read_text(encoding="utf-8"))
    assert schema["title"] == "Static Analysis Results Format (SARIF) Version 2.1.0 JSON Schema"
    assert schema["properties"]["version"]["enum"] == ["2.1.0"]
    # The schema really constrains: an invalid level is rejected.
    bad = {
        "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "x"}}, "results": [{"message": {"text": "m"}, "level": "fatal"}]}],
    }
    assert not sarif_validator().is_valid(bad)


def test_clean_change_is_one_successful_run_without_results():
    doc = valid_sarif(make_report(ok("code-quality")))
    assert doc["version"] == "2.1.0"
    assert doc["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    (run,) = doc["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "mergegate"
    assert driver["version"] == sarif_format.__version__
    assert driver["informationUri"].startswith("https://")
    assert driver["rules"] == []
    assert run["results"] == []
    assert run["automationDetails"] == {"id": "mergegate/check/"}
    (inv,) = run["invocations"]
    assert inv["executionSuccessful"] is True
    assert "toolExecutionNotifications" not in inv
    assert run["properties"]["decision"]["action"] == "auto_approve"
    assert run["properties"]["change"]["head"] == "c" * 40


def test_security_finding_maps_to_github_fields():
    doc = valid_sarif(make_report(ok("security-scan", sqli())))
    (run,) = doc["runs"]
    (rule,) = run["tool"]["driver"]["rules"]
    assert rule["id"] == "security-scan/B608"
    assert rule["shortDescription"]["text"] == "security-scan: B608"
    assert rule["defaultConfiguration"] == {"level": "error"}
    assert rule["properties"]["tags"] == ["security", "external/cwe/cwe-89"]
    assert rule["properties"]["precision"] == "high"
    assert rule["properties"]["security-severity"] == "8.0"
    assert 7.0 <= float(rule["properties"]["security-severity"]) <= 8.9  # GitHub's "high" band

    (result,) = run["results"]
    assert result["ruleId"] == "security-scan/B608"
    assert result["ruleIndex"] == 0
    assert result["level"] == "error"
    assert result["message"] == {"text": "Possible SQL injection vector through string-based query"}
    assert result["locations"] == [
        {
            "physicalLocation": {
                "artifactLocation": {"uri": "src/db.py", "uriBaseId": "%SRCROOT%"},
                "region": {"startLine": 12, "endLine": 13},
            }
        }
    ]
    assert result["partialFingerprints"] == {FINGERPRINT_KEY: sqli().fingerprint}
    assert result["properties"] == {
        "agent": "security-scan",
        "rule": "B608",
        "severity": "high",
        "confidence": 0.8,
        "category": "security",
        "cwe": "CWE-89",
    }
    assert run["properties"]["decision"]["action"] == "block_security"


@pytest.mark.parametrize(
    ("severity", "level", "score_band"),
    [
        (Severity.CRITICAL, "error", (9.0, 10.0)),
        (Severity.HIGH, "error", (7.0, 8.9)),
        (Severity.MEDIUM, "warning", (4.0, 6.9)),
        (Severity.LOW, "note", (0.1, 3.9)),
        (Severity.INFO, "note", (0.1, 3.9)),
    ],
)
def test_severity_to_level_and_security_severity_band(severity, level, score_band):
    doc = valid_sarif(make_report(ok("security-scan", sqli(severity=severity))))
    (run,) = doc["runs"]
    assert run["results"][0]["level"] == level
    rule = run["tool"]["driver"]["rules"][0]
    assert rule["defaultConfiguration"]["level"] == level
    lo, hi = score_band
    assert lo <= float(rule["properties"]["security-severity"]) <= hi


def test_non_security_rules_have_no_security_severity():
    doc = valid_sarif(make_report(ok("code-quality", finding(severity=Severity.LOW, confidence=0.4))))
    (rule,) = doc["runs"][0]["tool"]["driver"]["rules"]
    assert "security-severity" not in rule["properties"]
    assert rule["properties"]["tags"] == ["quality"]
    assert rule["properties"]["precision"] == "low"
    assert doc["runs"][0]["results"][0]["level"] == "note"


def test_rule_ids_are_namespaced_by_agent_and_indexed():
    # ruff's B101 and bandit's B101 are different rules; they must not share an id.
    ruff_b101 = finding("code-quality", "B101", Severity.LOW, "Do not call assert False", line=4)
    bandit_b101 = finding(
        "security-scan", "B101", Severity.LOW, "Use of assert detected", category=Category.SECURITY, line=5
    )
    again = finding("code-quality", "B101", Severity.MEDIUM, "Do not call assert False", line=9)
    doc = valid_sarif(make_report(ok("code-quality", ruff_b101, again), ok("security-scan", bandit_b101)))
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == ["code-quality/B101", "security-scan/B101"]
    # The rule's default level is its worst instance; each result keeps its own level.
    assert rules[0]["defaultConfiguration"]["level"] == "warning"
    assert [(r["ruleId"], r["ruleIndex"], r["level"]) for r in run["results"]] == [
        ("code-quality/B101", 0, "note"),
        ("code-quality/B101", 0, "warning"),
        ("security-scan/B101", 1, "note"),
    ]
    for r in run["results"]:
        assert rules[r["ruleIndex"]]["id"] == r["ruleId"]


def test_locations_without_line_without_path_and_odd_paths():
    no_line = finding(rule="X1", path="docs/read me.md", line=None)
    no_path = finding("test-integrity", "tests-deleted", Severity.MEDIUM, "2 test files deleted", path=None, line=None)
    bad_end = finding(rule="X2", line=7, end_line=3)
    report = make_report(
        ok("code-quality", no_line, bad_end),
        ok("test-integrity", no_path),
        files=changed("src/app.py", "docs/read me.md") + changed("a_deleted.py", status=FileStatus.DELETED),
    )
    results = valid_sarif(report)["runs"][0]["results"]
    by_rule = {r["ruleId"]: r for r in results}

    loc = by_rule["code-quality/X1"]["locations"][0]["physicalLocation"]
    assert loc == {"artifactLocation": {"uri": "docs/read%20me.md", "uriBaseId": "%SRCROOT%"}}

    # GitHub shows nothing for a result without a location: attach to the first kept file.
    attached = by_rule["test-integrity/tests-deleted"]
    assert attached["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "docs/read%20me.md", "uriBaseId": "%SRCROOT%"}
    }
    assert attached["properties"]["attachedTo"] == "change"

    # An end line before the start line is dropped rather than emitted invalid.
    assert by_rule["code-quality/X2"]["locations"][0]["physicalLocation"]["region"] == {"startLine": 7}


def test_cwe_tag_forms():
    assert cwe_tag("CWE-89") == "external/cwe/cwe-89"
    assert cwe_tag("cwe-079") == "external/cwe/cwe-79"
    assert cwe_tag("798") == "external/cwe/cwe-798"
    assert cwe_tag(None) is None
    assert cwe_tag("n/a") is None


def test_failed_agents_make_execution_unsuccessful_with_notifications():
    report = make_report(
        ok("code-quality", finding()),
        failed("security-scan", detail="bandit crashed: exit 2"),
        failed("test-coverage", AgentStatus.TIMEOUT, "did not finish within 900s"),
        skipped("secrets", "nothing to scan"),
    )
    doc = valid_sarif(report)
    (inv,) = doc["runs"][0]["invocations"]
    assert inv["executionSuccessful"] is False
    notes = inv["toolExecutionNotifications"]
    assert [(n["descriptor"]["id"], n["level"], n["properties"]["status"]) for n in notes] == [
        ("security-scan", "error", "error"),
        ("test-coverage", "error", "timeout"),
        ("secrets", "note", "skipped"),
    ]
    assert notes[0]["message"]["text"] == (
        "agent security-scan failed: bandit crashed: exit 2; the change was not fully examined (fail closed)"
    )
    assert notes[1]["message"]["text"].startswith("agent test-coverage timed out: did not finish within 900s")
    assert doc["runs"][0]["properties"]["decision"]["action"] == "error"
    assert [a["status"] for a in inv["properties"]["agents"]] == ["ok", "error", "timeout", "skipped"]


def test_messages_with_code_and_unicode_survive_round_trip():
    msg = 'query = "SELECT * FROM t WHERE id=" + uid  # <script>alert(1)</script> ✓'
    doc = valid_sarif(make_report(ok("security-scan", sqli(message=msg, properties={"preview": "AKIA****"}))))
    result = doc["runs"][0]["results"][0]
    assert result["message"]["text"] == msg
    assert result["properties"]["details"] == {"preview": "AKIA****"}


def test_results_beyond_githubs_limit_drop_the_least_severe(monkeypatch):
    monkeypatch.setattr(sarif_format, "MAX_RESULTS", 2)
    low = finding(rule="L", severity=Severity.LOW, line=1)
    crit = finding(rule="C", severity=Severity.CRITICAL, line=2)
    med = finding(rule="M", severity=Severity.MEDIUM, line=3)
    doc = as_sarif(make_report(ok("code-quality", low, crit, med)))
    run = doc["runs"][0]
    assert [r["ruleId"] for r in run["results"]] == ["code-quality/C", "code-quality/M"]
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == ["code-quality/C", "code-quality/M"]
    (note,) = run["invocations"][0]["toolExecutionNotifications"]
    assert note["level"] == "warning"
    assert note["message"]["text"].startswith("1 least severe finding(s) left out")


def test_real_check_on_a_git_repo_produces_valid_sarif(repo):
    report = (
        repo.base({"src/app.py": "def f():\n    return 1\n"})
        .change({"src/app.py": "def f():\n    return 1\n\n\ndef g():\n    return undefined_name\n"})
        .check(["code-quality"])
    )
    doc = valid_sarif(report)
    (result,) = doc["runs"][0]["results"]
    assert result["ruleId"] == "code-quality/F821"
    assert result["level"] == "warning"
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "src/app.py"
    assert result["locations"][0]["physicalLocation"]["region"]["startLine"] == 6
    assert len(result["partialFingerprints"][FINGERPRINT_KEY]) == 32
    assert doc["runs"][0]["properties"]["change"]["merge_base"] == report.change.merge_base
