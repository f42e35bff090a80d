"""JUnit XML: one suite per agent plus the decision, failures/errors/skips as documented."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from xml.dom import minidom

import pytest

from mergegate.core.finding import Category
from mergegate.core.policy import Mode, Policy
from mergegate.core.results import AgentResult, AgentStatus
from mergegate.core.severity import Severity
from mergegate.report import renderer
from tests.report.factories import changed, failed, finding, make_report, ok, skipped, sqli


def parse(report) -> ET.Element:
    text = renderer("junit")(report)
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    minidom.parseString(text.encode("utf-8"))  # a second, independent well-formedness check
    root = ET.fromstring(text.encode("utf-8"))
    assert root.tag == "testsuites"
    # Every count attribute matches the elements, per suite and in total.
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for suite in root.findall("testsuite"):
        cases = suite.findall("testcase")
        counts = {
            "tests": len(cases),
            "failures": sum(c.find("failure") is not None for c in cases),
            "errors": sum(c.find("error") is not None for c in cases),
            "skipped": sum(c.find("skipped") is not None for c in cases),
        }
        assert {k: int(suite.get(k)) for k in counts} == counts, suite.get("name")
        for k, v in counts.items():
            totals[k] += v
    assert {k: int(root.get(k)) for k in totals} == totals
    return root


def suite(root: ET.Element, name: str) -> ET.Element:
    (found,) = [s for s in root.findall("testsuite") if s.get("name") == name]
    return found


def props(s: ET.Element) -> dict[str, str]:
    return {p.get("name"): p.get("value") for p in s.find("properties")}


def test_clean_change_passes_with_one_run_case_per_agent():
    root = parse(make_report(ok("code-quality", duration=0.25)))
    assert [s.get("name") for s in root.findall("testsuite")] == ["mergegate.decision", "code-quality"]
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == ("2", "0", "0", "0")
    decision = suite(root, "mergegate.decision")
    assert props(decision)["action"] == "auto_approve"
    assert props(decision)["mode"] == "enforce"
    assert props(decision)["head"] == "c" * 40
    (case,) = decision.findall("testcase")
    assert case.get("name") == "decision"
    assert case.find("failure") is None
    assert case.find("system-out").text.startswith("auto_approve (confidence 1.00, risk low, enforce mode)")
    agent = suite(root, "code-quality")
    assert agent.get("time") == "0.250"
    (run,) = agent.findall("testcase")
    assert run.get("name") == "code-quality: run"
    assert list(run) == []


def test_findings_fail_at_medium_or_security_and_pass_below():
    low = finding(rule="F401", severity=Severity.LOW, line=1, message="`os` imported but unused")
    medium = finding(rule="F821", severity=Severity.MEDIUM, line=3)
    low_security = sqli(severity=Severity.LOW, rule="B101", message="Use of assert detected", end_line=None)
    root = parse(make_report(ok("code-quality", low, medium), ok("security-scan", low_security)))
    quality = suite(root, "code-quality")
    cases = {c.get("name"): c for c in quality.findall("testcase")}
    assert set(cases) == {"src/app.py:1 F401", "src/app.py:3 F821"}  # no run case when findings exist
    passed = cases["src/app.py:1 F401"]
    assert passed.find("failure") is None
    assert "severity: low" in passed.find("system-out").text
    failing = cases["src/app.py:3 F821"]
    fail = failing.find("failure")
    assert fail.get("message") == "Undefined name `x`"
    assert fail.get("type") == "medium"
    assert failing.get("classname") == "code-quality"
    assert failing.get("file") == "src/app.py"
    assert failing.get("line") == "3"
    # Security findings fail whatever their severity.
    (sec,) = suite(root, "security-scan").findall("testcase")
    assert sec.get("name") == "src/db.py:12 B101"
    assert sec.find("failure").get("type") == "low"
    assert quality.get("failures") == "1"


def test_failure_body_carries_the_details():
    root = parse(make_report(ok("security-scan", sqli(properties={"snippet": "cursor.execute(q)"}))))
    (case,) = suite(root, "security-scan").findall("testcase")
    assert case.get("name") == "src/db.py:12-13 B608"
    body = case.find("failure").text
    assert body == (
        "severity: high\n"
        "confidence: 0.80\n"
        "category: security\n"
        "agent: security-scan\n"
        "rule: B608\n"
        "location: src/db.py:12-13\n"
        "cwe: CWE-89\n"
        f"fingerprint: {sqli().fingerprint}\n"
        "snippet: cursor.execute(q)\n"
        "\n"
        "Possible SQL injection vector through string-based query\n"
    )


@pytest.mark.parametrize(
    ("results", "files", "action"),
    [
        ((ok("security-scan", sqli()),), None, "block_security"),
        ((ok("code-quality", *(finding(rule=f"R{i}", line=i + 1) for i in range(3))),), None, "reject"),
        ((failed("security-scan"),), None, "error"),
    ],
)
def test_decision_fails_when_blocked_rejected_or_error(results, files, action):
    report = make_report(*results, files=files)
    root = parse(report)
    (case,) = suite(root, "mergegate.decision").findall("testcase")
    fail = case.find("failure")
    assert fail.get("type") == action
    assert fail.get("message") == f"{action}: {report.decision.reasons[0]}"
    for reason in report.decision.reasons:
        assert f"- {reason}\n" in fail.text


def test_human_review_passes_with_reasons():
    report = make_report(ok("code-quality"), files=changed("src/auth/x.py"))
    assert report.decision.action.value == "human_review"
    (case,) = suite(parse(report), "mergegate.decision").findall("testcase")
    assert case.find("failure") is None
    assert "touches sensitive paths" in case.find("system-out").text


def test_advisory_mode_reports_the_same_verdict():
    root = parse(make_report(ok("security-scan", sqli()), policy=Policy(mode=Mode.ADVISORY)))
    decision = suite(root, "mergegate.decision")
    assert props(decision)["mode"] == "advisory"
    assert decision.find("testcase/failure").get("type") == "block_security"


def test_agent_error_timeout_and_skip():
    root = parse(
        make_report(
            failed("security-scan", detail="bandit exited 2"),
            failed("test-coverage", AgentStatus.TIMEOUT, "did not finish within 900s"),
            skipped("secrets", "no files to scan"),
        )
    )
    err = suite(root, "security-scan").find("testcase/error")
    assert err.get("type") == "error"
    assert err.get("message") == "agent security-scan failed: bandit exited 2; the change was not fully examined"
    timeout = suite(root, "test-coverage").find("testcase/error")
    assert timeout.get("type") == "timeout"
    assert timeout.get("message").startswith("agent test-coverage timed out: did not finish within 900s")
    skip = suite(root, "secrets").find("testcase/skipped")
    assert skip.get("message") == "no files to scan"
    assert props(suite(root, "secrets"))["status"] == "skipped"
    assert (root.get("errors"), root.get("skipped"), root.get("failures")) == ("2", "1", "1")


def test_markup_control_characters_and_unicode_are_escaped():
    nasty = 'x = "<a>&</a>" ]]> \x00\x1b[31m bell\x07 \ud800 ✓\nline two'
    # (An explicit fingerprint: core's fingerprinting cannot hash a lone surrogate.)
    f = finding(message=nasty, path="src/we<ird>&.py", rule='R"1', fingerprint="f" * 32)
    root = parse(make_report(ok("code-quality", f)))
    (case,) = suite(root, "code-quality").findall("testcase")
    assert case.get("file") == "src/we<ird>&.py"
    assert case.get("name") == 'src/we<ird>&.py:3 R"1'
    fail = case.find("failure")
    expected = 'x = "<a>&</a>" ]]> \\x00\\x1b[31m bell\\x07 \\ud800 ✓\nline two'
    assert fail.get("message") == expected
    assert fail.text.endswith(expected + "\n")


def test_duplicate_names_are_made_unique():
    a = finding(rule="R", line=3, message="one")
    b = finding(rule="R", line=3, message="two")
    root = parse(make_report(ok("code-quality", a, b)))
    names = [c.get("name") for c in suite(root, "code-quality").findall("testcase")]
    assert names == ["src/app.py:3 R", "src/app.py:3 R #2"]


def test_change_level_finding_and_notes():
    f = finding("test-integrity", "tests-deleted", path=None, line=None, category=Category.TESTS, message="gone")
    noted = AgentResult("code-quality", AgentStatus.OK, (), 0.9, 0.1, "", ("2 files too large",))
    root = parse(make_report(ok("test-integrity", f), noted))
    (case,) = suite(root, "test-integrity").findall("testcase")
    assert case.get("name") == "(change) tests-deleted"
    assert case.get("file") is None and case.get("line") is None
    cq = suite(root, "code-quality")
    assert props(cq)["note.1"] == "2 files too large"
    assert cq.find("testcase/system-out").text == "2 files too large\n"


def test_real_check_junit(repo):
    report = (
        repo.base({"src/app.py": "def f():\n    return 1\n"})
        .change({"src/app.py": "def f():\n    return missing\n"})
        .check(["code-quality"])
    )
    root = parse(report)
    (case,) = suite(root, "code-quality").findall("testcase")
    assert case.get("name") == "src/app.py:2 F821"
    assert case.find("failure").get("message") == "Undefined name `missing`"
    assert props(suite(root, "mergegate.decision"))["action"] == report.decision.action.value
