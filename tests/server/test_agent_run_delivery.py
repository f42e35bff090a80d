"""What a hosted run's approved calls do on the gate, over HTTP with real git, SQLite and
PostgreSQL: ``OpenChange`` proposes the workspace as a change authored by the agent
principal (checked by the gate like any push), a call delivered just before a kill -9 is
not delivered again after the restart, and only humans and the run's own agent read a
run's results.
"""

from __future__ import annotations

import signal

import pytest

from mergegate.service.run_delivery import CRASH_ENV, DELIVERED
from tests.server import test_crash
from tests.server.conftest import GateServer
from tests.server.gate_helpers import (
    BASE_POLICY,
    clone,
    git_bare,
    make_repo,
    people,
    push_change,
    review,
    unique,
    wait_checked,
    wait_for,
)
from tests.server.test_approvals import _decide, _pending, _run, _wait_status

POLICY = BASE_POLICY + ('  editor:\n    tools: "Read, Write, OpenChange, PostComment"\n    sandbox: workspace-write\n')
FIX = "def add(a, b):\n    return a + b\n"


def _setup(server: GateServer, root) -> tuple[dict, str]:
    who = people(server, unique("_"))
    repo = make_repo(server, root, unique("deliv"), {".mergegate.yml": POLICY})
    name = f"editor{unique('_')}"
    who["agent"] = type(who["bot"])(name, server.add_principal(name, "agent"))
    return who, repo


@pytest.fixture(scope="module")
def setup(server: GateServer, tmp_path_factory):
    root = tmp_path_factory.mktemp("delivery")
    who, repo = _setup(server, root)
    return root, who, repo


def _change(server: GateServer, root, who: dict, repo: str) -> int:
    w = clone(server, repo, who["carol"], root)
    return push_change(w, unique("feature/"), {"app.py": "def add(a, b):\n    return a - b\n"}, "Add add")


def _start(server: GateServer, who: dict, n: int, calls: list[dict]) -> int:
    with server.client(who["alice"].token) as api:
        body = {"change": n, "agent": "editor", "principal": who["agent"].name, "calls": calls}
        r = api.post("/api/agent-runs", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _approve_pause(server: GateServer, who: dict, run_id: int, tool: str) -> None:
    _wait_status(server, run_id, "paused")
    [req] = _pending(server, run_id)
    assert req["tool"] == tool
    r = _decide(server, who["bob"].token, req["id"], "approve", "go ahead")
    assert r.status_code == 200, r.text


def test_an_approved_open_change_opens_a_change_the_gate_checks(server: GateServer, setup):
    root, who, repo = setup
    n = _change(server, root, who, repo)
    calls = [
        {"tool": "Write", "args": {"path": "app.py", "content": FIX}},
        {"tool": "OpenChange", "args": {"title": "Fix add", "body": "It subtracted.\n\nChange-Id: I" + "1" * 40}},
    ]
    run_id = _start(server, who, n, calls)
    _approve_pause(server, who, run_id, "OpenChange")
    run = _wait_status(server, run_id, "done", "error")
    assert run["status"] == "done", run
    [sent] = run["outbox"]
    assert sent["kind"] == "change" and sent["delivered"] is True and sent["call_index"] == 1, sent

    def opened():
        return _run(server, run_id)["outbox"][0]["change"]

    new = wait_for(opened, 60, "the proposed change to open")
    assert new != n, "a Change-Id in the agent's body must not add a patchset to another change"
    change = server.change(new)
    assert change["author"] == who["agent"].name and change["last_pusher"] == who["agent"].name
    assert change["target_branch"] == "main" and change["source_ref"] == "refs/for/main"
    assert change["subject"] == "Fix add" and change["head_sha"] == sent["commit"]
    old_head = server.change(n)["head_sha"]
    assert server.change(n)["patchsets"][-1]["number"] == 1, "the run's own change is untouched"
    # One commit on the change head the run checked out, with the agent's edit, by the agent.
    assert git_bare(server, repo, "rev-parse", f"{sent['commit']}^") == old_head
    diff = git_bare(server, repo, "diff", old_head, sent["commit"])
    assert "-    return a - b" in diff and "+    return a + b" in diff
    assert git_bare(server, repo, "diff", "--name-only", old_head, sent["commit"]) == "app.py"
    author = git_bare(server, repo, "log", "-1", "--format=%an|%cn", sent["commit"])
    assert author == f"{who['agent'].name}|{who['agent'].name}"
    assert git_bare(server, repo, "rev-parse", "refs/heads/main") != sent["commit"], "main never moves"

    checked = wait_checked(server, new)
    assert any(c["producer"] == "mergegate" and c["status"] != "pending" for c in checked["checks"])
    pushed = [e for e in server.audit("push.accepted") if e["details"].get("run") == run_id]
    assert len(pushed) == 1 and pushed[0]["agent_id"] == who["agent"].name
    opened_entries = [e for e in server.audit("change.opened") if e["details"]["change"] == new]
    assert len(opened_entries) == 1 and opened_entries[0]["agent_id"] == who["agent"].name

    # The agent proposed it; it can never approve it.
    r = review(server, who["agent"].token, new)
    assert r.status_code == 403 and "agents can never approve" in r.json()["reason"], r.text


def test_open_change_with_nothing_changed_opens_nothing(server: GateServer, setup):
    root, who, repo = setup
    n = _change(server, root, who, repo)
    run_id = _start(server, who, n, [{"tool": "OpenChange", "args": {"title": "Nothing"}}])
    _approve_pause(server, who, run_id, "OpenChange")
    run = _wait_status(server, run_id, "done", "error")
    [sent] = run["outbox"]
    assert sent["delivered"] is False and "nothing to propose" in sent["why"], sent
    assert not [e for e in server.audit("push.accepted") if e["details"].get("run") == run_id]


def test_only_humans_and_the_runs_own_agent_read_its_results(server: GateServer, setup):
    root, who, repo = setup
    n = _change(server, root, who, repo)
    run_id = _start(server, who, n, [{"tool": "Read", "args": {"path": "app.py"}}])
    run = _wait_status(server, run_id, "done", "error")
    assert "return a - b" in run["results"][0]["output"]
    for person in ("agent", "carol", "alice"):  # its own agent, a human contributor, a maintainer
        with server.client(who[person].token) as api:
            r = api.get(f"/api/agent-runs/{run_id}")
            assert r.status_code == 200 and r.json()["results"][0]["output"] == run["results"][0]["output"]
            assert run_id in [x["id"] for x in api.get("/api/agent-runs", params={"change": n}).json()]
    for person in ("bot", "rootbot"):  # another agent, an admin agent
        with server.client(who[person].token) as api:
            r = api.get(f"/api/agent-runs/{run_id}")
            assert r.status_code == 403 and "reads only its own runs" in r.json()["reason"], r.text
            listed = api.get("/api/agent-runs", params={"change": n})
            assert listed.status_code == 200 and listed.json() == [], "another agent's list leaves the run out"
        refused = [e for e in server.audit("agent_run.read") if e["agent_id"] == who[person].name]
        assert refused and refused[-1]["outcome"] == "refused" and refused[-1]["details"]["run"] == run_id
    with server.client("not-a-token") as api:
        assert api.get(f"/api/agent-runs/{run_id}").status_code == 401


# -- crashes -----------------------------------------------------------------------------

#: A server of its own per test, as the crash tests use: this one kills it.
gate = test_crash.gate


def _crash_after_delivery(gate: GateServer, who: dict, run_id: int, monkeypatch) -> None:
    """Approve the run's pause on a server armed to kill itself right after it commits the
    delivery (before the run records that the call ran), then start it again."""
    _wait_status(gate, run_id, "paused")
    token = gate.admin_token
    gate.stop()
    monkeypatch.setenv(CRASH_ENV, DELIVERED)
    gate.start()
    gate.admin_token = token
    monkeypatch.delenv(CRASH_ENV)
    [req] = _pending(gate, run_id)
    assert _decide(gate, who["bob"].token, req["id"], "approve").status_code == 200
    proc = gate.proc
    wait_for(lambda: proc.poll() is not None, 60, "the server to die at the crash point")
    assert proc.returncode == -signal.SIGKILL
    gate.start()
    gate.admin_token = token


def _ran(gate: GateServer, run_id: int, tool: str) -> int:
    return sum(
        1
        for e in gate.audit("tool_result")
        if e["details"].get("run_id") == f"agent-run-{run_id}" and e["details"].get("tool") == tool
    )


def test_a_comment_delivered_just_before_a_kill_9_is_not_posted_again(gate: GateServer, tmp_path, monkeypatch):
    who, repo = _setup(gate, tmp_path)
    n = _change(gate, tmp_path, who, repo)
    calls = [
        {"tool": "PostComment", "args": {"body": "posted once"}},
        {"tool": "Read", "args": {"path": "app.py"}},
    ]
    run_id = _start(gate, who, n, calls)
    _crash_after_delivery(gate, who, run_id, monkeypatch)
    assert [c["body"] for c in gate.change(n)["comments"]] == ["posted once"]
    # The run resumes from its saved state: the comment call runs again, and is not delivered again.
    run = _wait_status(gate, run_id, "done", "error", timeout=150)
    assert run["status"] == "done", run
    assert [(x["tool"], x["status"]) for x in run["results"]] == [("PostComment", "allowed"), ("Read", "allowed")]
    comments = gate.change(n)["comments"]
    assert [c["body"] for c in comments] == ["posted once"], "the comment was posted twice"
    [sent] = run["outbox"]
    assert sent["delivered"] is True and sent["comment"] == comments[0]["id"]
    assert _ran(gate, run_id, "PostComment") == 2, "the call itself did run twice (once before the crash)"
    posted = [e for e in gate.audit("change.comment") if e["details"]["change"] == n]
    assert len(posted) == 1


def test_a_change_proposed_just_before_a_kill_9_is_not_opened_again(gate: GateServer, tmp_path, monkeypatch):
    who, repo = _setup(gate, tmp_path)
    n = _change(gate, tmp_path, who, repo)
    calls = [
        {"tool": "Write", "args": {"path": "app.py", "content": FIX}},
        {"tool": "OpenChange", "args": {"title": "Fix add"}},
    ]
    run_id = _start(gate, who, n, calls)
    _crash_after_delivery(gate, who, run_id, monkeypatch)
    run = _wait_status(gate, run_id, "done", "error", timeout=150)
    assert run["status"] == "done", run
    assert _ran(gate, run_id, "OpenChange") == 2, "the call itself did run twice (once before the crash)"
    [sent] = run["outbox"]
    new = wait_for(lambda: _run(gate, run_id)["outbox"][0]["change"], 60, "the proposed change to open")
    proposed = [c for c in gate.changes(repo) if c["author"] == who["agent"].name]
    assert [c["number"] for c in proposed] == [new], "the change was proposed twice"
    assert gate.change(new)["head_sha"] == sent["commit"]
    pushed = [e for e in gate.audit("push.accepted") if e["details"].get("run") == run_id]
    assert len(pushed) == 1
