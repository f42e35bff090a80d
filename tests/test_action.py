"""The GitHub Action (``action.yml``) cannot drift from the real CLI.

The action is YAML around shell, so nothing type-checks it. These tests parse it, check
the flags it passes against ``mergegate check --help`` of the real CLI, and run the
action's own shell scripts (taken verbatim from action.yml) against a real repository
with the real ``mergegate`` console script, the way the runner would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.gitrepo import RepoBuilder

ACTION = Path(__file__).resolve().parent.parent / "action.yml"


@pytest.fixture(scope="module")
def action() -> dict:
    return yaml.safe_load(ACTION.read_text(encoding="utf-8"))


def _step(action: dict, name: str) -> dict:
    steps = [s for s in action["runs"]["steps"] if s.get("name") == name]
    assert len(steps) == 1, f"expected one step named {name!r}"
    return steps[0]


def _check_help() -> str:
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}
    proc = subprocess.run(
        [sys.executable, "-m", "mergegate", "check", "--help"], capture_output=True, text=True, env=env, check=True
    )
    return proc.stdout


def _mergegate_args(script: str) -> list[str]:
    """The words of the ``args=(...)`` / ``args+=(...)`` arrays the check step passes to mergegate."""
    words: list[str] = []
    for body in re.findall(r"args\+?=\(([^)]*)\)", script, flags=re.DOTALL):
        words.extend(body.split())
    return words


def test_action_is_a_composite_action_with_shells_and_declared_inputs(action: dict) -> None:
    assert action["runs"]["using"] == "composite"
    declared = set(action["inputs"])
    text = ACTION.read_text(encoding="utf-8")
    used = set(re.findall(r"inputs\.([A-Za-z0-9_-]+)", text))
    assert used <= declared, f"undeclared inputs: {used - declared}"
    for step in action["runs"]["steps"]:
        if "run" in step:
            assert step.get("shell") == "bash", f"{step['name']}: composite run steps need a shell"
            # Inputs and event fields reach scripts only through env (no script injection).
            assert "${{" not in step["run"], f"{step['name']}: expression inside a script"


def test_action_uploads_sarif_and_fails_with_mergegates_exit_code(action: dict) -> None:
    uses = [s.get("uses", "") for s in action["runs"]["steps"]]
    assert any(u.startswith("actions/setup-python@") for u in uses)
    upload = _step(action, "Upload SARIF to code scanning")
    assert upload["uses"].startswith("github/codeql-action/upload-sarif@")
    assert "always()" in upload["if"]
    last = action["runs"]["steps"][-1]
    assert last["if"] == "always()"
    assert "steps.check.outputs.exit-code" in last["env"]["MG_EXIT"]
    assert 'exit "$code"' in last["run"]
    install = _step(action, "Install mergegate")
    assert "github.action_path" in install["env"]["ACTION_PATH"]


def test_every_flag_the_action_passes_exists_in_the_real_cli(action: dict) -> None:
    help_text = _check_help()
    args = _mergegate_args(_step(action, "mergegate check")["run"])
    flags = {a for a in args if a.startswith("--")}
    assert {"--format", "--output", "--require", "--also-write", "--base", "--agents"} <= flags
    for flag in flags:
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text), f"{flag} is not a mergegate check flag"
    # The values the action chooses must be among the CLI's choices too.
    format_choices = re.search(r"<(text\|[a-z|]+)>", help_text)
    assert format_choices, "the --format choices are not in --help"
    for fmt in ("sarif", "markdown", "json"):
        assert fmt in format_choices.group(1).split("|")
    require_choices = re.search(r"<(pass\|[a-z_|]+)>", help_text)
    assert require_choices and action["inputs"]["require"]["default"] in require_choices.group(1).split("|")


# -- the action's scripts, run for real ---------------------------------------------------


def _run_step(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    bin_dir = str(Path(sys.executable).parent)  # the venv's mergegate and python
    full_env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **env}
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=full_env, capture_output=True, text=True)


def _outputs(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


@pytest.fixture
def step_env(tmp_path: Path) -> dict[str, str]:
    out = tmp_path / "gh"
    out.mkdir()
    (out / "output").touch()
    (out / "summary").touch()
    return {
        "MG_BASE": "",
        "MG_HEAD": "HEAD",
        "MG_REQUIRE": "pass",
        "MG_AGENTS": "code-quality",
        "MG_FORMATS": f"junit={out / 'junit.xml'}",
        "MG_JOB_SUMMARY": "true",
        "MG_SARIF_FILE": "mergegate-results.sarif",
        "MG_PR_BASE_SHA": "",
        "MG_BASE_REF": "main",
        "MG_TEMP": str(out),
        "GITHUB_OUTPUT": str(out / "output"),
        "GITHUB_STEP_SUMMARY": str(out / "summary"),
    }


def test_check_step_writes_reports_outputs_and_summary(action: dict, repo: RepoBuilder, step_env) -> None:
    repo.base({"app.py": "def add(a, b):\n    return a + b\n"})
    repo.change({"app.py": "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"})
    # As on a runner: the base branch is a remote-tracking ref; the PR head is checked out.
    repo.git("update-ref", "refs/remotes/origin/main", "main")
    result = _run_step(_step(action, "mergegate check")["run"], step_env, repo.path)
    assert result.returncode == 0, result.stderr  # the verdict is applied by the last step
    out = _outputs(Path(step_env["GITHUB_OUTPUT"]))
    assert out["exit-code"] == "0", result.stderr
    assert out["decision"] in {"auto_approve", "human_review"}
    assert out["sarif-written"] == "true"
    sarif = json.loads(Path(out["sarif-file"]).read_text())
    assert sarif["version"] == "2.1.0"
    assert Path(step_env["GITHUB_STEP_SUMMARY"]).read_text().strip(), "the job summary is empty"
    assert Path(step_env["MG_TEMP"], "junit.xml").read_text().lstrip().startswith("<")

    verdict = _run_step(action["runs"]["steps"][-1]["run"], {"MG_EXIT": "0", "MG_DECISION": out["decision"]}, repo.path)
    assert verdict.returncode == 0


def test_usage_error_is_reported_and_fails_the_job(action: dict, repo: RepoBuilder, step_env) -> None:
    repo.base({"app.py": "x = 1\n"})
    repo.change({"app.py": "x = 2\n"})
    step_env["MG_BASE"] = "no-such-branch"
    result = _run_step(_step(action, "mergegate check")["run"], step_env, repo.path)
    assert result.returncode == 0
    out = _outputs(Path(step_env["GITHUB_OUTPUT"]))
    assert out["exit-code"] == "2"
    assert out["sarif-written"] == "false"  # nothing to upload
    assert "no report" in Path(step_env["GITHUB_STEP_SUMMARY"]).read_text()
    last = action["runs"]["steps"][-1]["run"]
    assert _run_step(last, {"MG_EXIT": "2", "MG_DECISION": "error"}, repo.path).returncode == 2


def test_verdict_step_fails_closed_when_the_check_never_finished(action: dict, tmp_path: Path) -> None:
    last = action["runs"]["steps"][-1]["run"]
    result = _run_step(last, {"MG_EXIT": "", "MG_DECISION": ""}, tmp_path)
    assert result.returncode == 3
    assert _run_step(last, {"MG_EXIT": "1", "MG_DECISION": "block_security"}, tmp_path).returncode == 1
