"""The hostile agent's world: a repository with a base policy, secrets around it, a real CLI.

Every attempt is a real ``mergegate agent replay`` (the Typer app, in process) against a
fresh copy of one template work tree, with real bubblewrap and real limits. Around the
work tree sit things the agent must never reach: a gate data directory with a database,
an SSH key, a canary in the environment of the process running the runtime.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mergegate.cli import app
from mergegate.store.audit_log import AuditLog
from tests.conftest import require_tool

# The real gate server of tests/server (module-scoped, SQLite and PostgreSQL), for the
# attacks through the gate's API and git (test_gate_attacks.py).
from tests.server.conftest import backend, server  # noqa: F401

CANARY = "mg-canary-7f3a9c1e5b"

#: The base branch's policy. ``shell`` is deliberately wide open (bare ``Bash``): its
#: attempts show that the sandbox holds when the allowlist is not the obstacle.
POLICY = """\
tests:
  command: "pytest -q -p no:cacheprovider"
agents:
  fixer:
    env: {PYTEST_DISABLE_PLUGIN_AUTOLOAD: "1"}
    limits: {wall_s: 20, pids: 64, memory_mb: 512, output_kb: 256}
  reviewer: {}
  shell:
    tools: "Read, Bash"
    sandbox: workspace-write
    limits: {wall_s: 3, cpu_s: 3, pids: 48, memory_mb: 192, output_kb: 64}
  pyagent:
    tools: "Read, Bash(python:*), Bash(python3:*)"
    sandbox: workspace-write
  fetcher:
    tools: "WebFetch(domain:localhost), WebFetch(domain:127.0.0.1)"
  commenter:
    tools: "Read, Grep, PostComment"
  gate-fetcher:
    tools: "Read, Grep, WebFetch(domain:localhost), WebFetch(domain:127.0.0.1)"
"""

FILES = {
    ".mergegate.yml": POLICY,
    "CODEOWNERS": "* @dana\n",
    "docs/CODEOWNERS": "* @dana\n",
    ".github/workflows/ci.yml": "on: push\njobs: {}\n",
    "README.md": "# demo\n",
    "src/app.py": "def add(a, b):\n    return a + b\n",
    "tests/test_app.py": "import sys\nsys.path.insert(0, 'src')\nfrom app import add\n\n\ndef test_add():\n"
    "    assert add(1, 2) == 3\n",
}

#: Paths whose bytes must be exactly as committed after every attempt.
PROTECTED = (".mergegate.yml", "CODEOWNERS", "docs/CODEOWNERS", ".github/workflows/ci.yml", "tests/test_app.py")


def _git(cwd: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Dana",
        "GIT_AUTHOR_EMAIL": "dana@example.com",
        "GIT_COMMITTER_NAME": "Dana",
        "GIT_COMMITTER_EMAIL": "dana@example.com",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


@pytest.fixture(scope="session")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile-template") / "work"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "base")
    _git(root, "checkout", "-q", "-b", "agent-work")
    return root


@dataclass
class World:
    root: Path
    work: Path
    gate_db: Path
    ssh_key: Path
    audit_path: Path
    digests: dict[str, str] = field(default_factory=dict)

    def audit(self) -> list[dict]:
        assert AuditLog(self.audit_path).verify().ok
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]

    def replay(self, agent: str, calls: list[dict], *extra: str) -> list[dict]:
        """Replay through the real CLI; every call must land in the audit log, whatever its fate."""
        logged = self._calls_logged()
        trajectory = self.root / f"trajectory-{len(list(self.root.glob('trajectory-*')))}.jsonl"
        trajectory.write_text("".join(json.dumps(c) + "\n" for c in calls))
        result = CliRunner().invoke(
            app,
            [
                "agent",
                "replay",
                str(trajectory),
                "--agent",
                agent,
                "--workspace",
                str(self.work),
                "--base",
                "main",
                "--format",
                "json",
                "--audit",
                str(self.audit_path),
                *extra,
            ],
        )
        assert result.exit_code in (0, 1), result.output
        out = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        assert len(out) == len(calls), result.output
        entries = self.audit()[logged:]
        decisions = [e for e in entries if e["action"] == "tool_call"]
        assert [(e["call_index"], e["outcome"]) for e in decisions] == [
            (r["index"], "allowed" if r["status"] == "allowed" or _ran(entries, r["index"]) else r["status"])
            for r in out
        ]
        for r in out:
            if _ran(entries, r["index"]):
                (final,) = [e for e in entries if e["action"] == "tool_result" and e["call_index"] == r["index"]]
                assert final["outcome"] == r["status"]
        return out

    def _calls_logged(self) -> int:
        return len(self.audit()) if self.audit_path.exists() else 0

    def assert_untouched(self) -> None:
        """Protected files are byte-identical, and nothing was written outside the work tree."""
        for rel, digest in self.digests.items():
            assert _digest(self.work / rel) == digest, f"{rel} changed"
        assert not (self.root / "escape.txt").exists()
        assert not (self.work / ".git" / "hooks" / "pre-commit").exists()
        assert not (self.work / ".gitlab-ci.yml").exists()


def _ran(entries: list[dict], index: int) -> bool:
    return any(e["action"] == "tool_result" and e["call_index"] == index for e in entries)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def world(template: Path, tmp_path: Path, monkeypatch, bwrap) -> Iterator[World]:
    require_tool("git")
    work = tmp_path / "work"
    shutil.copytree(template, work, symlinks=True)
    data = tmp_path / "gate-data"
    data.mkdir()
    db = data / "mergegate.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE tokens (name TEXT, secret TEXT)")
        conn.execute("INSERT INTO tokens VALUES ('admin', ?)", (CANARY,))
    ssh = tmp_path / "home" / ".ssh"
    ssh.mkdir(parents=True)
    key = ssh / "id_ed25519"
    key.write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{CANARY}\n-----END OPENSSH PRIVATE KEY-----\n")
    key.chmod(0o600)
    # Secrets in the environment of the process that runs the runtime.
    monkeypatch.setenv("MERGEGATE_TOKEN", CANARY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CANARY)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    w = World(tmp_path, work, db, key, tmp_path / "audit.jsonl")
    w.digests = {rel: _digest(work / rel) for rel in PROTECTED}
    yield w
