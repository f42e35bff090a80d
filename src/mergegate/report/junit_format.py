"""JUnit XML for CI test UIs (GitLab, Jenkins, Azure DevOps, GitHub test reporters).

CI systems already know how to show a red test with a message; this maps a check onto
that vocabulary so a blocked change reads like a failed test, in the place people look.

Mapping (decided here, tested in ``tests/report/test_junit.py``):

- ``<testsuites name="mergegate check">`` holds one ``<testsuite>`` for the **decision**
  (first, so it is what a UI shows first) and one ``<testsuite>`` per **agent**.
- The decision suite has one testcase, ``decision``. It *fails* when the action is
  ``block_security``, ``reject`` or ``error`` (``type`` is the action, the message its
  first reason); ``auto_approve`` and ``human_review`` pass, with the reasons in
  ``<system-out>``. The verdict is reported the same in advisory mode, as the other
  formats do: the mode only changes the exit code (it is a suite property).
- Each **finding** is a testcase, classname the agent, name ``<path>:<line> <rule>``.
  It *fails* when its severity is medium or worse, or when it is a security finding:
  what a reviewer must look at. Low and info findings *pass* and carry the finding in
  ``<system-out>``: visible, but not red (they do not block a change either).
- An agent that errored or timed out has a testcase ``<agent>: run`` with an
  ``<error>`` (``type`` error or timeout): the change was not fully examined, which CI
  UIs show as broken rather than failed. A skipped agent's run testcase is
  ``<skipped>`` with the reason. An agent that ran and found nothing gets one passing
  ``<agent>: run`` testcase, so every suite shows what was checked.

XML is built with ElementTree, which escapes markup; characters XML 1.0 cannot carry at
all (control characters, lone surrogates) are replaced by ``\\xNN`` / ``\\uNNNN`` text.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from mergegate import __version__
from mergegate.core.finding import Finding
from mergegate.core.results import AgentResult, AgentStatus
from mergegate.core.routing import Action
from mergegate.core.severity import Severity
from mergegate.service.check import CheckReport

FAILING_ACTIONS = (Action.BLOCK_SECURITY, Action.REJECT, Action.ERROR)
FAILING_SEVERITY = Severity.MEDIUM
DECISION_SUITE = "mergegate.decision"

_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def clean(text: object) -> str:
    """Text that XML 1.0 can carry (it has no escape for control characters)."""

    def sub(m: re.Match[str]) -> str:
        c = ord(m.group())
        return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"

    return _INVALID_XML.sub(sub, str(text))


def fails(f: Finding) -> bool:
    return f.severity >= FAILING_SEVERITY or f.is_security


def _el(parent: ET.Element, tag: str, text: str | None = None, **attrs: object) -> ET.Element:
    el = ET.SubElement(parent, tag, {k: clean(v) for k, v in attrs.items() if v is not None})
    if text is not None:
        el.text = clean(text)
    return el


def _where(f: Finding) -> str:
    if not f.path:
        return "(change)"
    if f.line and f.end_line and f.end_line > f.line:
        return f"{f.path}:{f.line}-{f.end_line}"
    return f"{f.path}:{f.line}" if f.line else f.path


def _details(f: Finding) -> str:
    lines = [
        f"severity: {f.severity.value}",
        f"confidence: {f.confidence:.2f}",
        f"category: {f.category.value}",
        f"agent: {f.agent}",
        f"rule: {f.rule}",
        f"location: {_where(f)}",
    ]
    if f.cwe:
        lines.append(f"cwe: {f.cwe}")
    lines.append(f"fingerprint: {f.fingerprint}")
    lines += [f"{k}: {v}" for k, v in sorted(f.properties.items())]
    return "\n".join(lines) + "\n\n" + f.message + "\n"


def _suite(parent: ET.Element, name: str, time: float) -> ET.Element:
    return _el(parent, "testsuite", name=name, time=f"{time:.3f}")


def _count(suite: ET.Element) -> dict[str, int]:
    cases = suite.findall("testcase")
    counts = {
        "tests": len(cases),
        "failures": sum(1 for c in cases if c.find("failure") is not None),
        "errors": sum(1 for c in cases if c.find("error") is not None),
        "skipped": sum(1 for c in cases if c.find("skipped") is not None),
    }
    for key, value in counts.items():
        suite.set(key, str(value))
    return counts


def _decision_suite(root: ET.Element, report: CheckReport) -> None:
    d, c = report.decision, report.change
    suite = _suite(root, DECISION_SUITE, report.duration_s)
    props = _el(suite, "properties")
    for name, value in (
        ("action", d.action.value),
        ("confidence", f"{d.confidence:.6g}"),
        ("risk", d.risk.value),
        ("mode", d.mode.value),
        ("base", c.base),
        ("head", c.head),
        ("merge_base", c.merge_base),
        ("policy", f"{report.policy.source}@{report.policy.digest}"),
        ("mergegate_version", __version__),
    ):
        _el(props, "property", name=name, value=value)
    case = _el(suite, "testcase", classname=DECISION_SUITE, name="decision", time=f"{report.duration_s:.3f}")
    summary = f"{d.action.value} (confidence {d.confidence:.2f}, risk {d.risk.value}, {d.mode.value} mode)\n" + "".join(
        f"- {r}\n" for r in d.reasons
    )
    if d.action in FAILING_ACTIONS:
        first = d.reasons[0] if d.reasons else d.action.value
        _el(case, "failure", summary, message=f"{d.action.value}: {first}", type=d.action.value)
    else:
        _el(case, "system-out", summary)


def _agent_suite(root: ET.Element, r: AgentResult) -> None:
    suite = _suite(root, r.name, r.duration_s)
    props = _el(suite, "properties")
    _el(props, "property", name="status", value=r.status.value)
    _el(props, "property", name="confidence", value=f"{r.confidence:.6g}")
    for i, note in enumerate(r.notes):
        _el(props, "property", name=f"note.{i + 1}", value=note)

    if r.status is not AgentStatus.OK or not r.findings:
        run = _el(suite, "testcase", classname=r.name, name=f"{r.name}: run", time=f"{r.duration_s:.3f}")
        if r.status.failed:
            what = "timed out" if r.status is AgentStatus.TIMEOUT else "failed"
            message = f"agent {r.name} {what}: {r.detail or 'no detail'}; the change was not fully examined"
            _el(run, "error", message + " (fail closed)\n", message=message, type=r.status.value)
        elif r.status is AgentStatus.SKIPPED:
            _el(run, "skipped", message=r.detail or "skipped")
        elif r.notes:
            _el(run, "system-out", "".join(f"{n}\n" for n in r.notes))

    seen: dict[str, int] = {}
    for f in r.findings:
        name = f"{_where(f)} {f.rule}"
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:  # CI UIs merge testcases with equal names
            name += f" #{seen[name]}"
        case = _el(
            suite,
            "testcase",
            classname=r.name,
            name=name,
            file=f.path,
            line=f.line if f.line and f.line > 0 else None,
            time="0",
        )
        if fails(f):
            _el(case, "failure", _details(f), message=f.message, type=f.severity.value)
        else:
            _el(case, "system-out", _details(f))


def as_element(report: CheckReport) -> ET.Element:
    root = ET.Element("testsuites", {"name": "mergegate check", "time": f"{report.duration_s:.3f}"})
    _decision_suite(root, report)
    for r in report.results:
        _agent_suite(root, r)
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in root.findall("testsuite"):
        for key, value in _count(suite).items():
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    return root


def render(report: CheckReport) -> str:
    root = as_element(report)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
