"""The ``mergegate`` command as CI runs it: a subprocess on a real git repository.

Every test drives the real entry point (``python -m mergegate``) and checks what a CI
job sees: stdout, stderr, files written and the exit code. Only the ``code-quality``
agent (ruff) is used, so the tests depend on nothing but git and ruff.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
import yaml

from mergegate.report.markdown_format import MARKER
from tests.gitrepo import RepoBuilder
from tests.report.factories import sarif_validator

CLEAN = {"src/app.py": "def f():\n    return 1\n"}
UNDEFINED = {"src/app.py": "def f():\n    return missing\n"}
TWO_UNDEFINED = {"src/app.py": "def f():\n    return missing\n\n\ndef g():\n    return also_missing\n"}
HEX40 = re.compile(r"[0-9a-f]{40}")


def run(cmd: list[str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # A wide terminal so Rich never wraps a message mid-path on stderr.
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1"}
    return subprocess.run([*cmd, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def check(cmd, repo: RepoBuilder, *args: str) -> subprocess.CompletedProcess[str]:
    return run(cmd, "check", "--repo", str(repo.path), "--base", "main", "--agents", "code-quality", *args)


def one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def clean_repo(repo: RepoBuilder) -> RepoBuilder:
    return repo.base(CLEAN).change({"src/app.py": "def f():\n    return 2\n"})


@pytest.fixture
def finding_repo(repo: RepoBuilder) -> RepoBuilder:
    return repo.base(CLEAN).change(UNDEFINED)


# --- formats ---------------------------------------------------------------------------


def test_json_to_stdout_follows_the_contract(mergegate_cmd, finding_repo):
    proc = check(mergegate_cmd, finding_repo, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)

    assert doc["version"] == 1
    change = doc["change"]
    assert {"base", "head", "merge_base", "files"} <= change.keys()
    for key in ("base", "head", "merge_base"):
        assert HEX40.fullmatch(change[key]), key
    assert change["head"] == finding_repo.git("rev-parse", "change").strip()
    assert change["base"] == finding_repo.git("rev-parse", "main").strip()
    assert [f["path"] for f in change["files"]] == ["src/app.py"]

    (agent,) = doc["agents"]
    assert {"name", "status", "duration_s", "confidence", "findings"} <= agent.keys()
    assert agent["name"] == "code-quality"
    assert agent["status"] == "ok"
    assert isinstance(agent["duration_s"], int | float) and agent["duration_s"] >= 0
    assert isinstance(agent["confidence"], int | float) and 0 <= agent["confidence"] <= 1
    assert agent["findings"] == 1

    (finding,) = doc["findings"]
    keys = {"agent", "rule", "severity", "confidence", "path", "line", "end_line", "message", "cwe", "fingerprint"}
    assert keys <= finding.keys()
    assert finding["agent"] == "code-quality"
    assert finding["rule"] == "F821"
    assert finding["severity"] in {"info", "low", "medium", "high", "critical"}
    assert finding["severity"] == "medium"
    assert 0 <= finding["confidence"] <= 1
    assert finding["path"] == "src/app.py"
    assert finding["line"] == 2
    assert finding["end_line"] is None or isinstance(finding["end_line"], int)
    assert finding["message"] == "Undefined name `missing`"
    assert finding["cwe"] is None
    assert isinstance(finding["fingerprint"], str) and finding["fingerprint"]

    decision = doc["decision"]
    assert decision["action"] in {"auto_approve", "human_review", "reject", "block_security", "error"}
    assert decision["action"] == "human_review"
    assert 0 <= decision["confidence"] < 0.9
    assert decision["risk"] in {"low", "medium", "high"}
    assert decision["mode"] == "enforce"
    assert decision["reasons"] and all(isinstance(r, str) for r in decision["reasons"])


def test_text_to_stdout(mergegate_cmd, clean_repo):
    proc = check(mergegate_cmd, clean_repo)
    assert proc.returncode == 0, proc.stderr
    assert "mergegate check" in proc.stdout
    assert "AUTO-APPROVE" in proc.stdout
    assert "code-quality" in proc.stdout
    assert "\x1b[" not in proc.stdout  # a pipe gets no terminal escapes


def test_sarif_to_stdout_is_schema_valid(mergegate_cmd, finding_repo):
    proc = check(mergegate_cmd, finding_repo, "--format", "sarif")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert list(sarif_validator().iter_errors(doc)) == []
    (result,) = doc["runs"][0]["results"]
    assert result["ruleId"] == "code-quality/F821"


def test_markdown_to_stdout(mergegate_cmd, finding_repo):
    proc = check(mergegate_cmd, finding_repo, "--format", "markdown")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(MARKER + "\n## 👀 mergegate: Human review required")
    assert "`code-quality/F821`" in proc.stdout


def test_junit_to_stdout(mergegate_cmd, finding_repo):
    proc = check(mergegate_cmd, finding_repo, "--format", "junit")
    assert proc.returncode == 0, proc.stderr
    root = ET.fromstring(proc.stdout.encode())
    assert [s.get("name") for s in root.findall("testsuite")] == ["mergegate.decision", "code-quality"]
    assert root.get("failures") == "1"


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "markdown", "junit"])
def test_output_file_for_every_format(mergegate_cmd, finding_repo, tmp_path, fmt):
    out = tmp_path / "reports" / f"report.{fmt}"
    proc = check(mergegate_cmd, finding_repo, "--format", fmt, "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert f"wrote {fmt} report to {out} (decision: human_review)" in one_line(proc.stderr)
    text = out.read_text(encoding="utf-8")
    if fmt == "text":
        assert "HUMAN REVIEW required" in text and "F821" in text
    elif fmt == "json":
        assert json.loads(text)["decision"]["action"] == "human_review"
    elif fmt == "sarif":
        assert list(sarif_validator().iter_errors(json.loads(text))) == []
    elif fmt == "markdown":
        assert text.startswith(MARKER)
    else:
        assert ET.fromstring(text.encode()).tag == "testsuites"


# --- exit codes ------------------------------------------------------------------------


def test_clean_change_exits_0(mergegate_cmd, clean_repo):
    proc = check(mergegate_cmd, clean_repo, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["decision"]["action"] == "auto_approve"
    # ...and also under the strictest requirement.
    assert check(mergegate_cmd, clean_repo, "--require", "auto_approve", "-f", "json").returncode == 0


def test_require_auto_approve_exits_1_on_human_review(mergegate_cmd, repo):
    repo.base(CLEAN).change({"src/auth/x.py": "def login():\n    return True\n"})
    default = check(mergegate_cmd, repo, "--format", "json")
    assert default.returncode == 0, default.stderr
    decision = json.loads(default.stdout)["decision"]
    assert decision["action"] == "human_review"
    assert any("src/auth/x.py (matches **/auth/**)" in r for r in decision["reasons"])

    strict = check(mergegate_cmd, repo, "--format", "json", "--require", "auto_approve")
    assert strict.returncode == 1
    assert json.loads(strict.stdout)["decision"]["action"] == "human_review"


def test_rejected_change_exits_1_and_advisory_mode_exits_0(mergegate_cmd, repo):
    repo.base(CLEAN).change(TWO_UNDEFINED)
    proc = check(mergegate_cmd, repo, "--format", "json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["decision"]["action"] == "reject"

    advisory = RepoBuilder(repo.path.parent / "advisory")
    advisory.base({**CLEAN, ".mergegate.yml": "mode: advisory\n"}).change(TWO_UNDEFINED)
    proc = check(mergegate_cmd, advisory, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    decision = json.loads(proc.stdout)["decision"]
    assert (decision["action"], decision["mode"]) == ("reject", "advisory")


def test_unknown_agent_exits_2(mergegate_cmd, clean_repo):
    proc = run(mergegate_cmd, "check", "--repo", str(clean_repo.path), "--base", "main", "--agents", "no-such-agent")
    assert proc.returncode == 2
    assert "unknown agent(s): no-such-agent" in one_line(proc.stderr)
    assert "code-quality" in proc.stderr  # it lists the known ones
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_unknown_ref_exits_2(mergegate_cmd, clean_repo):
    proc = run(mergegate_cmd, "check", "--repo", str(clean_repo.path), "--base", "no-such-branch")
    assert proc.returncode == 2
    assert "no-such-branch" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_not_a_repository_exits_2(mergegate_cmd, tmp_path):
    proc = run(mergegate_cmd, "check", "--repo", str(tmp_path), "--base", "main")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_malformed_base_policy_exits_2_naming_key_and_line(mergegate_cmd, repo):
    policy = "mode: enforce\nthresholds:\n  auto_approve: 2.0\nbogus_key: 1\n"
    repo.base({**CLEAN, ".mergegate.yml": policy}).change(UNDEFINED)
    proc = check(mergegate_cmd, repo, "--format", "json")
    assert proc.returncode == 2
    err = one_line(proc.stderr)
    assert "invalid policy" in err
    assert "main:.mergegate.yml: line 3: thresholds.auto_approve:" in err
    assert "main:.mergegate.yml: line 4: bogus_key: unknown key" in err
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_invalid_yaml_in_base_policy_exits_2_with_line(mergegate_cmd, repo):
    repo.base({**CLEAN, ".mergegate.yml": "mode: enforce\nthresholds: [unclosed\n"}).change(UNDEFINED)
    proc = check(mergegate_cmd, repo)
    assert proc.returncode == 2
    assert re.search(r"line \d+, column \d+: invalid YAML", one_line(proc.stderr))
    assert "Traceback" not in proc.stderr


def test_unknown_format_is_a_usage_error(mergegate_cmd, clean_repo):
    proc = check(mergegate_cmd, clean_repo, "--format", "pdf")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


# --- config, init, audit ---------------------------------------------------------------


def test_config_schema_is_a_valid_json_schema(mergegate_cmd):
    proc = run(mergegate_cmd, "config", "schema")
    assert proc.returncode == 0, proc.stderr
    schema = json.loads(proc.stdout)
    jsonschema.validators.validator_for(schema).check_schema(schema)
    assert {"mode", "blocking_severity", "thresholds", "sensitive_paths", "sandbox", "tests", "agents"} <= set(
        schema["properties"]
    )
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert validator.is_valid({"mode": "advisory", "thresholds": {"auto_approve": 0.95, "human_review": 0.7}})
    assert not validator.is_valid({"mode": "yolo"})
    assert not validator.is_valid({"unknown_key": 1})


def test_init_writes_a_policy_that_validates(mergegate_cmd, tmp_path):
    proc = run(mergegate_cmd, "init", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    written = tmp_path / ".mergegate.yml"
    text = written.read_text(encoding="utf-8")
    assert text.lstrip().startswith("#")  # commented

    validated = run(mergegate_cmd, "config", "validate", str(written))
    assert validated.returncode == 0, validated.stderr

    schema = json.loads(run(mergegate_cmd, "config", "schema").stdout)
    data = yaml.safe_load(text)
    errors = list(jsonschema.validators.validator_for(schema)(schema).iter_errors(data))
    assert errors == []
    assert data["mode"] == "enforce"

    again = run(mergegate_cmd, "init", cwd=tmp_path)
    assert again.returncode == 2
    assert "already exists" in one_line(again.stderr)
    assert written.read_text(encoding="utf-8") == text


def test_audit_verify_intact_then_tampered(mergegate_cmd, finding_repo, tmp_path):
    log = tmp_path / "audit.jsonl"
    for _ in range(2):
        proc = check(mergegate_cmd, finding_repo, "--format", "json", "--audit-log", str(log))
        assert proc.returncode == 0, proc.stderr
    lines = log.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4  # per check: one agent run + one decision
    assert [json.loads(line)["action"] for line in lines] == ["agent_run", "decision", "agent_run", "decision"]

    ok = run(mergegate_cmd, "audit", "verify", str(log))
    assert ok.returncode == 0, ok.stderr
    assert "4 entries, chain intact" in one_line(ok.stderr)

    entry = json.loads(lines[2])
    entry["outcome"] = "skipped"  # rewrite history: the agent "never ran"
    lines[2] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    bad = run(mergegate_cmd, "audit", "verify", str(log))
    assert bad.returncode == 1
    assert "line 3" in one_line(bad.stderr)
    assert "Traceback" not in bad.stderr

    as_json = run(mergegate_cmd, "audit", "verify", "--json", str(log))
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["bad_line"] == 3


def test_check_writes_the_default_audit_log_in_the_repository(mergegate_cmd, clean_repo):
    assert check(mergegate_cmd, clean_repo, "-f", "json").returncode == 0
    proc = run(mergegate_cmd, "audit", "verify", "--repo", str(clean_repo.path))
    assert proc.returncode == 0, proc.stderr
    assert "2 entries, chain intact" in one_line(proc.stderr)


# --- help ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["check"],
        ["init"],
        ["agents"],
        ["demo"],
        ["audit"],
        ["audit", "verify"],
        ["config"],
        ["config", "schema"],
        ["config", "validate"],
    ],
    ids=lambda c: " ".join(c) or "mergegate",
)
def test_help_works_for_every_command(mergegate_cmd, command):
    proc = run(mergegate_cmd, *command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_check_help_documents_exit_codes_and_formats(mergegate_cmd):
    out = one_line(run(mergegate_cmd, "check", "--help").stdout)
    assert "Exit codes: 0 pass" in out
    for fmt in ("text", "json", "sarif", "markdown", "junit"):
        assert fmt in out
