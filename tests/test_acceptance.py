"""Issue 2's acceptance list, end to end through the real ``mergegate`` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mergegate.service.demo import AGENT_CHANGES, BASE_FILES, build_demo_repo

MERGEGATE = [sys.executable, "-m", "mergegate"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MERGEGATE, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def check_json(repo: Path, *extra: str, base: str = "main", head: str = "change"):
    proc = run("check", "--repo", str(repo), "--base", base, "--head", head, "--format", "json", *extra)
    assert proc.returncode in (0, 1, 3), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


@pytest.fixture(scope="module")
def demo_repo(tmp_path_factory) -> tuple[Path, str, str]:
    path = tmp_path_factory.mktemp("demo") / "repo"
    base, head = build_demo_repo(path)
    return path, base, head


def test_the_demo_change_is_blocked_by_security_secrets_and_test_integrity(bwrap, demo_repo):
    path, base, head = demo_repo
    code, report = check_json(path, base=base, head=head)
    assert code == 1
    assert report["decision"]["action"] == "block_security"
    agents_with_findings = {f["agent"] for f in report["findings"]}
    assert {"security-scan", "secrets", "test-integrity"} <= agents_with_findings
    rules = {(f["agent"], f["path"]) for f in report["findings"]}
    assert ("security-scan", "app/users.py") in rules
    assert ("secrets", "app/notify.py") in rules
    assert ("test-integrity", "tests/test_users.py") in rules
    assert all(a["status"] in ("ok", "skipped") for a in report["agents"]), report["agents"]


def test_the_demo_change_cannot_relax_its_own_policy(bwrap, demo_repo):
    path, base, head = demo_repo
    _, report = check_json(path, base=base, head=head)
    # The change sets mode: advisory and blocking_severity: critical; the base says otherwise.
    assert report["policy"]["source"] == "main:.mergegate.yml"
    assert report["decision"]["mode"] == "enforce"
    assert report["decision"]["action"] == "block_security"


def test_the_quickstart_demo_command_shows_the_blocked_verdict(bwrap):
    proc = run("demo")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "BLOCKED: security" in proc.stdout
    assert "main:.mergegate.yml" in proc.stdout


def test_a_clean_change_passes(bwrap, repo):
    repo.base(BASE_FILES)
    clean = (
        BASE_FILES["app/users.py"]
        + '\n\ndef count_users(db):\n    (n,) = db.execute("SELECT COUNT(*) FROM users").fetchone()\n    return n\n'
    )
    tests = BASE_FILES["tests/test_users.py"] + (
        "\n\ndef test_count_users():\n    from app.users import count_users\n\n"
        '    db = connect()\n    add_user(db, "ada", 36)\n    assert count_users(db) == 1\n'
    )
    repo.change({"app/users.py": clean, "tests/test_users.py": tests}, author=("Dana", "dana@example.com"))
    code, report = check_json(repo.path)
    assert report["findings"] == [] or all(f["severity"] in ("info", "low") for f in report["findings"]), report[
        "findings"
    ]
    assert report["decision"]["action"] in ("auto_approve", "human_review")
    assert code == 0


def test_a_hung_test_command_is_an_error_not_a_pass(bwrap, repo):
    repo.base({".mergegate.yml": "tests: {command: 'sleep 600', timeout: 2}\n", "app.py": "x = 1\n"})
    repo.change({"app.py": "x = 2\n"})
    code, report = check_json(repo.path)
    assert code == 3
    assert report["decision"]["action"] == "error"
    coverage = next(a for a in report["agents"] if a["name"] == "test-coverage")
    assert coverage["status"] == "timeout"


def test_tampering_with_one_audit_line_is_detected(bwrap, demo_repo, tmp_path):
    path, base, head = demo_repo
    log = tmp_path / "audit.jsonl"
    check_json(path, "--audit-log", str(log), base=base, head=head)
    assert run("audit", "verify", str(log)).returncode == 0
    lines = log.read_text().splitlines()
    entry = json.loads(lines[-1])
    entry["outcome"] = "auto_approve"  # someone rewrites the verdict
    lines[-1] = json.dumps(entry)
    log.write_text("\n".join(lines) + "\n")
    proc = run("audit", "verify", str(log))
    assert proc.returncode == 1
    assert f"line {len(lines)}" in proc.stderr


def test_the_demo_repository_really_contains_what_the_readme_says():
    users = AGENT_CHANGES["app/users.py"]
    assert "f\"SELECT id, name, age FROM users WHERE name = '{name}'\"" in users
    assert "sk-proj-" in AGENT_CHANGES["app/notify.py"]
    assert "@pytest.mark.skip" in AGENT_CHANGES["tests/test_users.py"]
    assert "mode: advisory" in AGENT_CHANGES[".mergegate.yml"]
