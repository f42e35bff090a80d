"""Starting, restarting and recovering the server, on SQLite and PostgreSQL: the admin
token is shown once, a lost one can be re-minted locally, and events left pending by a
stopped (or killed) server are handled at the next start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from mergegate.store import events
from mergegate.store.db import Database
from tests.server.conftest import GateServer, Workdir


def _git(bare: Path, *args: str) -> str:
    env = {"GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent", "PATH": os.environ["PATH"]}
    env |= {"GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@x"}
    cmd = ["git", "--git-dir", str(bare), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout.strip()


def test_restart_token_recovery_and_resumed_events(server: GateServer, tmp_path: Path):
    # First start printed a token (the fixture parsed it); it works.
    first_token = server.admin_token
    assert first_token.startswith("mgt_")
    server.create_repo("life")
    bot = server.add_principal("lifebot", "agent")

    # A change exists before the restart.
    w = Workdir(server, "life", "lifebot", bot, tmp_path / "w")
    w.git("checkout", "-q", "-b", "feature/before")
    w.commit({"a.txt": "a\n"}, "Before the restart")
    assert w.push("feature/before").returncode == 0

    server.stop()

    # While the server is down, a push event lands in the inbox (as post-receive would
    # leave it if the server died right after the hook stored it).
    bare = server.bare("life")
    tree = _git(bare, "rev-parse", "refs/heads/main^{tree}")
    sha = _git(bare, "commit-tree", tree, "-p", "refs/heads/main", "-m", "Pushed while the server was down")
    _git(bare, "update-ref", "refs/heads/feature/offline", sha)
    db = Database(server.database_url)
    try:
        with db.write() as session:
            update = {"ref": "refs/heads/feature/offline", "old": "0" * 40, "new": sha}
            event_id = events.enqueue(session, "push", {"repo": "life", "pusher": "lifebot", "updates": [update]}).id
    finally:
        db.dispose()

    # A lost admin token is re-minted without the server, by whoever holds the data dir.
    minted = subprocess.run(
        [sys.executable, "-m", "mergegate", "token", "create", "admin", "--data", str(server.data_dir),
         "--database", server.database_url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert minted.returncode == 0, minted.stderr
    recovered = minted.stdout.strip()
    assert recovered.startswith("mgt_") and recovered != first_token

    printed = server.start()
    assert "admin token:" not in printed, "the token is shown on the first start only"
    assert "Admin 'admin' exists" in printed
    assert f"mergegate token create admin --data {server.data_dir}" in printed

    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {recovered}"}) as api:
        assert api.get("/api/me").json()["name"] == "admin"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            done = [e for e in api.get("/api/events").json() if e["id"] == event_id and e["status"] == "done"]
            if done:
                break
            time.sleep(0.1)
        assert done, "the pending event was not handled after the restart"
        changes = {c["source_ref"]: c for c in api.get("/api/changes", params={"repo": "life"}).json()}
        assert changes["refs/heads/feature/offline"]["head_sha"] == sha
        assert changes["refs/heads/feature/before"]["state"] == "open"
        minted_entries = api.get("/api/audit", params={"action": "token.create"}).json()
        local = [e for e in minted_entries if e["agent_id"].startswith("local:")]
        assert local, "the local mint is audited as the local operator"
        assert api.get("/api/audit/verify").json()["ok"]


def test_a_killed_server_restarts_cleanly(server: GateServer, tmp_path: Path):
    bot = server.add_principal("killbot", "agent")
    server.create_repo("killed")
    server.stop(signal.SIGKILL)
    server.start()
    w = Workdir(server, "killed", "killbot", bot, tmp_path / "w")
    w.git("checkout", "-q", "-b", "feature/after-kill")
    w.commit({"k.txt": "k\n"}, "After kill -9")
    push = w.push("feature/after-kill")
    assert push.returncode == 0, push.stderr
    assert "opened" in push.stderr
    with server.admin() as api:
        assert api.get("/api/audit/verify").json()["ok"]


def test_bad_configuration_is_reported_without_a_traceback(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "server.toml").write_text("protected_branches = 'main'\n")
    proc = subprocess.run(
        [sys.executable, "-m", "mergegate", "serve", "--data", str(data), "--port", "1"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "250"},
    )  # fmt: skip
    assert proc.returncode == 2
    assert "protected_branches must be a list" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "mergegate", "serve", "--data", str(tmp_path / "d2"), "--database", "mysql://x/y"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "250"},
    )  # fmt: skip
    assert proc.returncode == 2
    assert "unsupported database" in proc.stderr
