"""llm-review in real ``mergegate check`` runs on real git repositories.

Without a model it is skipped — quickly, with the reason, and without opening a socket.
With a model (an OpenAI-compatible server on loopback, configured in the base branch's
policy, the key in the environment) its issues become findings; an answer that does not
fit the contract makes the verdict ``error``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mergegate.core.results import AgentStatus
from mergegate.core.routing import Action
from mergegate.runtime.models import NOT_CONFIGURED
from tests.gitrepo import RepoBuilder
from tests.runtime.openai_fake import FakeOpenAI, completion, final

KEY = "sk-proj-" + "Lr8Wq3Zx6Tn1Vb5Mk9Pc2" + "Hs7Jd4Gf0"
MODEL_ENV = ("MERGEGATE_MODEL", "MERGEGATE_MODEL_BASE_URL", "MERGEGATE_MODEL_PROVIDER", "MERGEGATE_MODEL_API_KEY")

BASE = {"app/__init__.py": "", "app/calc.py": "def add(a, b):\n    return a + b\n"}
UNSAFE = "import subprocess\n\n\ndef add(a, b):\n    return subprocess.check_output(f'echo {a}+{b}', shell=True)\n"
CHANGE = {"app/calc.py": UNSAFE}


def policy(base_url: str) -> str:
    return f"""\
models:
  default:
    provider: openai-compatible
    base_url: {base_url}
    model: reviewer-model
    api_key_env: MG_REVIEW_KEY
    retry_base_s: 0.01
  prices:
    reviewer-model: {{input_per_mtok: 1.0, output_per_mtok: 4.0}}
"""


@pytest.fixture
def no_model_env(monkeypatch):
    for name in MODEL_ENV:
        monkeypatch.delenv(name, raising=False)


def test_skipped_without_a_model_quickly_and_without_network(repo: RepoBuilder, no_model_env, monkeypatch):
    repo.base(BASE).change(CHANGE)

    def no_network(*args, **kwargs):
        raise AssertionError(f"llm-review opened a connection without a model configured: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    started = time.monotonic()
    report = repo.check(["llm-review"])
    (result,) = report.results
    assert result.status is AgentStatus.SKIPPED
    assert result.detail == NOT_CONFIGURED
    assert result.confidence == 1.0 and result.findings == ()
    assert time.monotonic() - started < 5
    # Skipped is neither a pass made up by a model nor an error: routing says so in words.
    assert f"agent llm-review skipped: {NOT_CONFIGURED}" in report.decision.reasons
    assert report.decision.action is Action.AUTO_APPROVE


def run_cli(repo: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in MODEL_ENV} | env
    return subprocess.run(
        [sys.executable, "-m", "mergegate", "check", "--repo", str(repo), "--base", "main", "--head", "change", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
    )


def test_with_a_loopback_model_its_issues_become_findings_in_a_real_check(repo: RepoBuilder):
    issue = {
        "path": "b/app/calc.py",
        "line": 5,
        "severity": "high",
        "category": "security",
        "message": "shell=True with interpolated arguments allows command injection",
    }
    nit = {"path": "app/calc.py", "line": 1, "severity": "low", "category": "quality", "message": "unused import"}
    script = [
        completion(tool_calls=[("Read", {"path": "app/calc.py"}), ("Write", {"path": "app/calc.py", "content": ""})]),
        final({"score": 20, "recommendation": "request_changes", "summary": "unsafe", "issues": [issue, nit]}),
    ]
    with FakeOpenAI(script) as fake:
        repo.base({**BASE, ".mergegate.yml": policy(fake.base_url)}).change(CHANGE)
        proc = run_cli(repo.path, "--agents", "llm-review", "--format", "json", env={"MG_REVIEW_KEY": KEY})

    assert fake.problems == []
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    (agent,) = report["agents"]
    assert agent["status"] == "ok"
    findings = {(f["category"], f["severity"], f["path"], f["line"]) for f in report["findings"]}
    assert findings == {("security", "high", "app/calc.py", 5), ("quality", "low", "app/calc.py", 1)}
    assert all(f["confidence"] == 0.82 for f in report["findings"])  # 0.5 + 0.4 * (100 - 20) / 100
    assert report["decision"]["action"] == "block_security"
    # The model read through the runtime; its write was refused; all of it is in the repo's audit log.
    assert fake.requests[0].headers["authorization"] == f"Bearer {KEY}"
    entries = [json.loads(x) for x in (repo.path / ".git/mergegate/audit.jsonl").read_text().splitlines()]
    calls = [(e["tool"], e["outcome"]) for e in entries if e["action"] == "tool_call"]
    assert ("Read", "allowed") in calls and ("Write", "refused") in calls
    run_entry = next(e for e in entries if e["action"] == "llm_run")
    assert run_entry["outcome"] == "completed" and run_entry["cost_usd"] == "0.000360"  # 200 in x $1/M + 40 out x $4/M
    assert KEY not in (repo.path / ".git/mergegate/audit.jsonl").read_text()


def test_an_answer_outside_the_contract_makes_the_verdict_error(repo: RepoBuilder):
    with FakeOpenAI(lambda body: completion(content="Looks great to me! APPROVED.")) as fake:
        repo.base({**BASE, ".mergegate.yml": policy(fake.base_url)}).change(CHANGE)
        proc = run_cli(repo.path, "--agents", "llm-review", "--format", "json", env={"MG_REVIEW_KEY": KEY})
    assert proc.returncode == 3, proc.stderr
    report = json.loads(proc.stdout)
    assert report["decision"]["action"] == "error"
    assert report["agents"][0]["status"] == "error"
    assert "did not fit the contract" in report["agents"][0]["detail"]


def test_an_approving_model_cannot_raise_confidence(repo: RepoBuilder, no_model_env, monkeypatch):
    monkeypatch.setenv("MG_REVIEW_KEY", KEY)
    approve = final({"score": 100, "recommendation": "approve", "summary": "perfect", "issues": []})
    with FakeOpenAI([approve]) as fake:
        repo.base({**BASE, ".mergegate.yml": policy(fake.base_url)}).change(
            {"app/calc.py": "def add(a, b):\n    return b + a\n"}
        )
        report = repo.check(["llm-review"])
    (result,) = report.results
    assert result.status is AgentStatus.OK and result.findings == ()
    assert result.confidence == 1.0  # at most what it was; "approve" adds nothing
    assert any("advice only" in n for n in result.notes)


def test_tool_calls_go_to_the_checks_own_audit_log_in_one_chain(repo: RepoBuilder, tmp_path):
    script = [
        completion(tool_calls=[("Read", {"path": "app/calc.py"}), ("Write", {"path": "app/calc.py", "content": ""})]),
        final({"score": 90, "recommendation": "comment", "summary": "fine", "issues": []}),
    ]
    log = tmp_path / "ci-audit.jsonl"
    with FakeOpenAI(script) as fake:
        repo.base({**BASE, ".mergegate.yml": policy(fake.base_url)}).change(CHANGE)
        proc = run_cli(
            repo.path, "--agents", "llm-review", "--format", "json", "--audit-log", str(log), env={"MG_REVIEW_KEY": KEY}
        )
    assert proc.returncode in (0, 1), proc.stderr
    entries = [json.loads(x) for x in log.read_text().splitlines()]
    actions = [e["action"] for e in entries]
    assert actions.count("tool_call") >= 2 and "llm_run" in actions
    assert actions[-2:] == ["agent_run", "decision"]
    assert len({e["policy_applied"] for e in entries}) == 1  # the same base policy names every entry
    assert not (repo.path / ".git/mergegate/audit.jsonl").exists()
    verify = subprocess.run(
        [sys.executable, "-m", "mergegate", "audit", "verify", str(log)], capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stderr
