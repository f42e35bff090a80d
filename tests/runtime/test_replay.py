"""``mergegate agent replay`` end to end: real CLI, real git, real bubblewrap, real audit log."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from mergegate.store.audit_log import AuditLog
from tests.gitrepo import RepoBuilder

POLICY = """\
agents:
  fixer:
    env: {PYTEST_DISABLE_PLUGIN_AUTOLOAD: "1"}
  commenter:
    tools: "Read, PostComment"
  careful:
    tools: "Read, Grep, LS, Bash(cat:*), Bash(echo:*)"
    deny: "Read(secrets/**)"
    ask: "Bash(echo:*)"
    max_turns: 3
  retired:
    tools: Read
    enabled: false
"""


@pytest.fixture
def work(repo: RepoBuilder) -> RepoBuilder:
    repo.base(
        {
            ".mergegate.yml": POLICY,
            "src/app.py": "def add(a, b):\n    return a + b\n",
            "tests/test_app.py": "import sys\nsys.path.insert(0, 'src')\nfrom app import add\n\n"
            "def test_add():\n    assert add(1, 2) == 3\n",
            "secrets/key.txt": "hunter2\n",
        }
    )
    # The agent's branch tries to widen its own permissions: it must not count.
    repo.change({".mergegate.yml": POLICY.replace('tools: "Read, PostComment"', "tools: Bash")})
    return repo


def replay(cmd: list[str], work: RepoBuilder, calls: list[dict], *extra: str, agent: str = "fixer"):
    trajectory = work.path.parent / "trajectory.jsonl"
    trajectory.write_text("".join(json.dumps(c) + "\n" for c in calls))
    proc = subprocess.run(
        [*cmd, "agent", "replay", str(trajectory), "--agent", agent, "--workspace", str(work.path), *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc


def results(proc) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.splitlines()]


def audit_entries(work: RepoBuilder) -> list[dict]:
    log = work.path / ".git" / "mergegate" / "audit.jsonl"
    assert AuditLog(log).verify().ok
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_json_results_exit_codes_and_audit(mergegate_cmd, work, bwrap) -> None:
    calls = [
        {"tool": "Read", "args": {"path": "src/app.py"}},
        {"tool": "Bash", "args": {"command": "pytest -q"}},
        {"tool": "Edit", "args": {"path": "src/app.py", "old": "a + b", "new": "b + a"}},
        {"tool": "Bash", "args": {"command": "pytest -q; curl http://example.com"}},
    ]
    proc = replay(mergegate_cmd, work, calls, "--base", "main", "--format", "json")
    assert proc.returncode == 1, proc.stderr
    out = results(proc)
    assert [set(r) for r in out] == [{"index", "tool", "status", "reason", "output"}] * 4
    assert [r["status"] for r in out] == ["allowed", "allowed", "allowed", "refused"]
    assert "return a + b" in out[0]["output"]
    assert "1 passed" in out[1]["output"]
    assert "`curl http://example.com` (part of a compound command) is not allowed" in out[3]["reason"]
    assert (work.path / "src" / "app.py").read_text().endswith("b + a\n")

    entries = audit_entries(work)
    calls_logged = [e for e in entries if e["action"] == "tool_call"]
    assert [(e["call_index"], e["outcome"]) for e in calls_logged] == [
        (0, "allowed"),
        (1, "allowed"),
        (2, "allowed"),
        (3, "refused"),
    ]
    assert all(e["agent_id"] == "agent:fixer" and e["policy_applied"].startswith("main:") for e in entries)

    ok = replay(mergegate_cmd, work, calls[:1], "--base", "main", "--format", "json")
    assert ok.returncode == 0 and results(ok)[0]["status"] == "allowed"


def test_text_format_is_a_table(mergegate_cmd, work, bwrap) -> None:
    proc = replay(
        mergegate_cmd, work, [{"tool": "Write", "args": {"path": "tests/x.py", "content": ""}}], "--base", "main"
    )
    assert proc.returncode == 1
    assert "agent replay" in proc.stdout and "refused" in proc.stdout and "protected" in proc.stdout


def test_policy_comes_from_the_base_not_the_work_tree(mergegate_cmd, work, bwrap) -> None:
    proc = replay(
        mergegate_cmd,
        work,
        [{"tool": "Bash", "args": {"command": "id"}}],
        "--base",
        "main",
        "--format",
        "json",
        agent="commenter",
    )
    assert results(proc)[0]["status"] == "refused"
    assert "Bash is not in this agent's allowlist (Read, PostComment)" in results(proc)[0]["reason"]


@pytest.mark.parametrize(
    ("lines", "agent", "message"),
    [
        ('{"tool": "Read", "args": {"path": "x"}}\nnot json\n', "fixer", "trajectory.jsonl:2: not JSON"),
        ('{"args": {}}\n', "fixer", "trajectory.jsonl:1: 'tool' must be"),
        ('{"tool": "Read", "args": {"path": "x"}}\n', "nobody", "no runtime agent 'nobody'"),
    ],
)
def test_usage_errors_exit_2(mergegate_cmd, work, lines: str, agent: str, message: str) -> None:
    trajectory = work.path.parent / "trajectory.jsonl"
    trajectory.write_text(lines)
    proc = subprocess.run(
        [
            *mergegate_cmd,
            "agent",
            "replay",
            str(trajectory),
            "--agent",
            agent,
            "--workspace",
            str(work.path),
            "--base",
            "main",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert message in " ".join(proc.stderr.split())


def test_invalid_policy_file_exits_2_naming_key_and_line(mergegate_cmd, work, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yml"
    policy.write_text("agents:\n  qa:\n    tools: 'Read, Teleport'\n")
    proc = replay(mergegate_cmd, work, [{"tool": "Read", "args": {"path": "x"}}], "--policy", str(policy))
    assert proc.returncode == 2
    assert "line 3: agents.qa.tools: 'Teleport' is not a tool" in " ".join(proc.stderr.split())


def test_claude_code_records_are_accepted(mergegate_cmd, work, bwrap) -> None:
    calls = [
        {"name": "Read", "input": {"file_path": "src/app.py"}},
        {"name": "Edit", "input": {"file_path": "src/app.py", "old_string": "a + b", "new_string": "a+b"}},
    ]
    proc = replay(mergegate_cmd, work, calls, "--base", "main", "--format", "json")
    assert [r["status"] for r in results(proc)] == ["allowed", "allowed"], proc.stdout
    assert "a+b" in (work.path / "src" / "app.py").read_text()


def test_approvals_pause_and_only_humans_decide(mergegate_cmd, work, tmp_path: Path, bwrap) -> None:
    approvals = tmp_path / "approvals.json"
    calls = [{"tool": "PostComment", "args": {"body": "LGTM"}}]
    args = ("--base", "main", "--format", "json", "--approvals", str(approvals))
    first = replay(mergegate_cmd, work, calls, *args, agent="commenter")
    assert first.returncode == 1
    assert results(first)[0]["status"] == "paused"
    assert "needs approval" in results(first)[0]["reason"]
    pending = json.loads(approvals.read_text())["pending"]
    (fingerprint,) = pending

    # The agent approving its own pause changes nothing.
    for by in ("commenter", "agent:commenter", "agent:other"):
        approvals.write_text(json.dumps({"decisions": {fingerprint: {"decision": "approve", "by": by}}}))
        again = replay(mergegate_cmd, work, calls, *args, agent="commenter")
        assert results(again)[0]["status"] == "paused"
        assert "only humans approve" in results(again)[0]["reason"]

    approvals.write_text(json.dumps({"decisions": {fingerprint: {"decision": "deny", "by": "dana", "reason": "no"}}}))
    denied = replay(mergegate_cmd, work, calls, *args, agent="commenter")
    assert results(denied)[0]["status"] == "refused"
    assert results(denied)[0]["reason"] == "denied by dana: no"

    expired = {"decision": "approve", "by": "dana", "expires": "2000-01-01T00:00:00+00:00"}
    approvals.write_text(json.dumps({"decisions": {fingerprint: expired}}))
    assert "expired" in results(replay(mergegate_cmd, work, calls, *args, agent="commenter"))[0]["reason"]

    approvals.write_text(json.dumps({"decisions": {fingerprint: {"decision": "approve", "by": "dana"}}}))
    approved = replay(mergegate_cmd, work, calls, *args, agent="commenter")
    assert approved.returncode == 0
    assert results(approved)[0]["status"] == "allowed"
    # An approval covers exactly the call it was given for.
    other = replay(
        mergegate_cmd, work, [{"tool": "PostComment", "args": {"body": "ship it"}}], *args, agent="commenter"
    )
    assert results(other)[0]["status"] == "paused"
    reviewed = [e for e in audit_entries(work) if e["action"] == "tool_call" and e["outcome"] == "allowed"]
    assert reviewed[-1]["human_reviewer"] == "dana"


def test_approvals_file_inside_the_workspace_is_refused(mergegate_cmd, work) -> None:
    proc = replay(
        mergegate_cmd,
        work,
        [{"tool": "Read", "args": {"path": "x"}}],
        "--base",
        "main",
        "--approvals",
        str(work.path / "approvals.json"),
    )
    assert proc.returncode == 2 and "outside the workspace" in proc.stderr


def test_deny_ask_budget_and_redaction(mergegate_cmd, work, bwrap) -> None:
    calls = [
        {"tool": "Read", "args": {"path": "secrets/key.txt"}},
        {"tool": "Bash", "args": {"command": "cat secrets/key.txt"}},
        {"tool": "Bash", "args": {"command": "echo --password hunter22 ghp_abcdefghijklmnopqrstuvwxyz0123456789"}},
        {"tool": "Grep", "args": {"pattern": "hunter2"}},
        {"tool": "LS", "args": {"path": "."}},
    ]
    proc = replay(mergegate_cmd, work, calls, "--base", "main", "--format", "json", agent="careful")
    out = results(proc)
    assert out[0]["status"] == "refused" and "denied by the rule Read(secrets/**)" in out[0]["reason"]
    # Bash may run cat, but the denied file is hidden inside the sandbox.
    assert out[1]["status"] == "allowed" and "hunter2" not in out[1]["output"]
    assert out[2]["status"] == "paused" and "ask rule Bash(echo:*)" in out[2]["reason"]
    assert out[3]["status"] == "refused" and "turn budget exhausted" in out[3]["reason"]
    log = (work.path / ".git" / "mergegate" / "audit.jsonl").read_text()
    assert "hunter22" not in log and "ghp_abcdefghijklmnopqrstuvwxyz0123456789" not in log
    assert "[REDACTED" in log


def test_disabled_agents_do_nothing(mergegate_cmd, work, bwrap) -> None:
    proc = replay(
        mergegate_cmd,
        work,
        [{"tool": "Read", "args": {"path": "src/app.py"}}],
        "--base",
        "main",
        "--format",
        "json",
        agent="retired",
    )
    assert results(proc)[0]["status"] == "refused" and "disabled" in results(proc)[0]["reason"]


def test_long_arguments_are_shortened_in_the_log(mergegate_cmd, work, bwrap) -> None:
    content = "x = 1\n" * 5000
    proc = replay(
        mergegate_cmd,
        work,
        [{"tool": "Write", "args": {"path": "src/big.py", "content": content}}],
        "--base",
        "main",
        "--format",
        "json",
    )
    assert results(proc)[0]["status"] == "allowed"
    (entry,) = [e for e in audit_entries(work) if e["action"] == "tool_call"]
    assert len(entry["args"]["content"]) < 4300 and "[30000 chars, sha256 " in entry["args"]["content"]
