"""Crash durability: kill -9 the real server mid-pipeline, restart it on the same data
directory and database, and the work resumes (issue 4, item 10).

- a check that was running when the server died is run again and the change reaches a
  verdict;
- a push stored by the hook but not yet handled is handled at restart, once;
- a merge cut short leaves ``main`` at the old tip or exactly the landing commit, and the
  change's state agrees with the ref (a ref moved by git whose transaction never
  committed is reconciled at start); never a double merge.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from tests.server.conftest import GateServer, fresh_database
from tests.server.gate_helpers import (
    CLEAN_CODE,
    branch_tip,
    clone,
    git_bare,
    merge,
    people,
    push_change,
    review,
    rule,
    status,
    unique,
    wait_checked,
    wait_for,
)

#: The base policy of the slow-check test: the coverage agent runs the tests, which first sleep.
SLOW_POLICY = 'tests: {command: "sleep 6 && pytest -q", timeout: 120}\n'
SLOW_TESTS = {
    "calc.py": "def add(a, b):\n    return a + b\n",
    "tests/__init__.py": "",
    "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n",
}


@pytest.fixture
def gate(backend: str, tmp_path) -> Iterator[GateServer]:
    """A server of its own per test: these tests kill it."""
    with fresh_database(backend, tmp_path / "db") as url:
        server = GateServer(data_dir=tmp_path / "data", database_url=url)
        server.start()
        try:
            yield server
        finally:
            server.stop(signal.SIGKILL)


def kill9(server: GateServer) -> None:
    server.stop(signal.SIGKILL)


def restart(server: GateServer) -> None:
    token = server.admin_token
    server.start()
    server.admin_token = token  # printed on the first start only


def make_repo(server: GateServer, root, name: str, files: dict[str, str]) -> str:
    src = root / f"src-{name}"
    env = {"GIT_CONFIG_NOSYSTEM": "1", "HOME": str(root), "PATH": "/usr/bin:/bin"}
    env |= {"GIT_AUTHOR_NAME": "Dana", "GIT_AUTHOR_EMAIL": "d@example.com"}
    env |= {"GIT_COMMITTER_NAME": "Dana", "GIT_COMMITTER_EMAIL": "d@example.com"}
    subprocess.run(["git", "init", "-q", "-b", "main", str(src)], env=env, check=True)
    for rel, text in files.items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    subprocess.run(["git", "add", "-A"], cwd=src, env=env, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "Initial"], cwd=src, env=env, check=True)
    server.create_repo(name, str(src))
    return name


def gate_checks(st: dict, commit: str) -> list[dict]:
    return [c for c in st["checks"] if c["commit"] == commit and c["producer"] == "mergegate"]


def test_a_check_running_at_a_crash_is_run_again(gate: GateServer, tmp_path):
    who = people(gate, unique("-"))
    repo = make_repo(gate, tmp_path, unique("slow"), {".mergegate.yml": SLOW_POLICY, **SLOW_TESTS})
    w = clone(gate, repo, who["alice"], tmp_path)
    w.git("checkout", "-q", "-b", "feature")
    w.commit({"calc.py": SLOW_TESTS["calc.py"] + "\n\ndef sub(a, b):\n    return a - b\n"}, "sub")
    w.commit({"tests/test_calc.py": SLOW_TESTS["tests/test_calc.py"] + "\n\ndef test_sub():\n"
              "    from calc import sub\n\n    assert sub(3, 2) == 1\n"}, "test sub")  # fmt: skip
    proc = w.push("HEAD:refs/heads/feature")
    assert proc.returncode == 0, proc.stderr
    change = wait_for(lambda: next(iter(gate.changes(repo)), None), 30, "the change")
    n = change["number"]
    landing = wait_for(lambda: status(gate, n)["landing"]["commit"], 30, "a landing commit")
    time.sleep(2.5)  # the checks are claimed and the tests are sleeping
    st = status(gate, n)
    assert [c["status"] for c in gate_checks(st, landing)] == ["pending"], st["checks"]
    kill9(gate)
    restart(gate)
    st = wait_checked(gate, n, timeout=180)
    assert st["landing"]["commit"] == landing
    [check] = gate_checks(st, landing)
    assert check["name"] == "mergegate/check"
    assert check["status"] == "success", check
    assert rule(st, "checks")["satisfied"], rule(st, "checks")
    # It counts against the approval only now: the verdict is complete.
    assert not st["mergeable"]


def test_a_push_stored_but_not_handled_is_handled_once_after_restart(gate: GateServer, tmp_path):
    who = people(gate, unique("-"))
    repo = make_repo(
        gate, tmp_path, unique("inbox"), {".mergegate.yml": "agents:\n  test-coverage: {enabled: false}\n"}
    )
    w = clone(gate, repo, who["bot"], tmp_path)
    # A worker that only polls every minute and a hook that waits: the push event sits
    # in the inbox, stored and committed, while nothing handles it yet.
    gate.stop()
    (gate.data_dir / "server.toml").write_text("worker_poll_s = 60.0\nhook_wait_s = 30.0\n")
    restart(gate)
    w.git("checkout", "-q", "-b", "agent/x")
    head = w.commit({"x.py": CLEAN_CODE}, "x")
    pushing = threading.Thread(target=w.push, args=("HEAD:refs/heads/agent/x",), daemon=True)
    pushing.start()

    def pending_push():
        with gate.admin() as api:
            return [e for e in api.get("/api/events", params={"status": "pending"}).json() if e["kind"] == "push"]

    [event] = wait_for(pending_push, 30, "the stored push event")
    assert gate.changes(repo) == []
    kill9(gate)
    pushing.join(30)
    (gate.data_dir / "server.toml").unlink()
    restart(gate)
    gate.wait_idle(120)
    changes = gate.changes(repo)
    assert len(changes) == 1, changes
    assert changes[0]["source_ref"] == "refs/heads/agent/x"
    assert changes[0]["head_sha"] == head
    opened = [a for a in gate.audit("change.opened") if a["details"].get("change") == changes[0]["number"]]
    assert len(opened) == 1, opened
    with gate.admin() as api:
        done = [e for e in api.get("/api/events", params={"status": "done"}).json() if e["id"] == event["id"]]
    assert len(done) == 1


def _approved_change(gate: GateServer, tmp_path) -> tuple[str, int, dict, str]:
    who = people(gate, unique("-"))
    repo = make_repo(gate, tmp_path, unique("m"), {".mergegate.yml": "agents:\n  test-coverage: {enabled: false}\n"})
    w = clone(gate, repo, who["carol"], tmp_path)
    n = push_change(w, "feat", {"add.py": CLEAN_CODE}, "add")
    st = wait_checked(gate, n)
    r = review(gate, who["bob"].token, n)
    assert r.status_code in (200, 201), r.text
    st = status(gate, n)
    assert st["mergeable"], st["rules"]
    return repo, n, who, st["landing"]["commit"]


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2])
def test_a_merge_cut_short_lands_once_or_not_at_all(gate: GateServer, tmp_path, delay: float):
    repo, n, who, landing = _approved_change(gate, tmp_path)
    old = branch_tip(gate, repo)
    answers: list = []
    t = threading.Thread(target=lambda: answers.append(_try_merge(gate, who["alice"].token, n)), daemon=True)
    t.start()
    time.sleep(delay)
    kill9(gate)
    t.join(30)
    restart(gate)
    gate.wait_idle(60)
    tip = branch_tip(gate, repo)
    assert tip in (old, landing)
    change = gate.change(n)
    assert change["state"] == ("merged" if tip == landing else "open"), (tip, change)
    if tip == old:
        # Not merged: merging now lands exactly the landing commit, once.
        r = merge(gate, who["alice"].token, n)
        assert r.status_code == 200, r.text
        assert branch_tip(gate, repo) == landing
    # Never twice: another merge is refused and the branch does not move.
    r = merge(gate, who["alice"].token, n)
    assert r.status_code == 409, r.text
    assert branch_tip(gate, repo) == landing
    assert git_bare(gate, repo, "rev-list", "--count", f"{old}..main") == git_bare(
        gate, repo, "rev-list", "--count", f"{old}..{landing}"
    )
    merged = [a for a in gate.audit("change.merged") if a["details"].get("change") == n]
    assert len(merged) == 1, merged


def test_a_ref_moved_by_a_merge_whose_transaction_died_is_reconciled_at_start(gate: GateServer, tmp_path):
    repo, n, who, landing = _approved_change(gate, tmp_path)
    old = branch_tip(gate, repo)
    # The state a kill -9 between the compare-and-swap and the commit leaves behind:
    # git moved main to the landing commit, the database still has the change open.
    kill9(gate)
    git_bare(gate, repo, "update-ref", "refs/heads/main", landing, old)
    restart(gate)
    change = gate.change(n)
    assert change["state"] == "merged", change
    assert branch_tip(gate, repo) == landing
    [event] = [a for a in gate.audit("change.merged") if a["details"].get("change") == n]
    assert event["outcome"] == "reconciled"
    assert event["agent_id"] == "mergegate"
    r = merge(gate, who["alice"].token, n)
    assert r.status_code == 409, r.text
    assert branch_tip(gate, repo) == landing


def test_a_git_lock_left_by_a_killed_merge_does_not_block_the_next_one(gate: GateServer, tmp_path):
    repo, n, who, landing = _approved_change(gate, tmp_path)
    # git update-ref killed with the server leaves its lock file; git never removes it,
    # and while it exists every compare-and-swap of main fails.
    kill9(gate)
    lock = gate.bare(repo) / "refs" / "heads" / "main.lock"
    lock.write_text(landing + "\n")
    restart(gate)
    assert not lock.exists()
    r = merge(gate, who["alice"].token, n)
    assert r.status_code == 200, r.text
    assert branch_tip(gate, repo) == landing
    assert gate.change(n)["state"] == "merged"


def _try_merge(gate: GateServer, token: str, n: int):
    try:
        return merge(gate, token, n).status_code
    except Exception as exc:  # the server died under the request
        return type(exc).__name__
