"""Durable approval pauses on the gate server, over HTTP with real git, SQLite and PostgreSQL.

A hosted agent run that calls a tool needing approval pauses; the pause survives a
kill -9 of the server; a human (neither the agent nor the change's author) decides; the
run resumes and the call runs (the comment appears on the change) or the agent gets
the denial as its tool result. Expiry is a denial; agents never decide.
"""

from __future__ import annotations

import json
import signal
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from mergegate.service.settings import ServerSettings, SettingsError
from tests.runtime.llm_support import REVIEW
from tests.runtime.openai_fake import FakeOpenAI, completion, final
from tests.server.conftest import GateServer
from tests.server.gate_helpers import (
    BASE_POLICY,
    clone,
    make_repo,
    people,
    push_change,
    unique,
    wait_checked,
    wait_for,
)
from tests.server.test_cli import cli

POLICY = BASE_POLICY + (
    '  commenter:\n    tools: "Read, PostComment"\n    sandbox: read-only\n'
    '  sleeper:\n    tools: "Read, Bash(sleep:*), PostComment"\n    sandbox: read-only\n'
)
CALLS = [
    {"tool": "Read", "args": {"path": "README.md"}},
    {"tool": "PostComment", "args": {"body": "the agent says: LGTM"}},
    {"tool": "Read", "args": {"path": "app.py"}},
]


@pytest.fixture(scope="module")
def setup(server: GateServer, tmp_path_factory):
    root = tmp_path_factory.mktemp("approvals")
    who = people(server, unique("_"))
    repo = make_repo(server, root, unique("appr"), {".mergegate.yml": POLICY})
    # The agent principal the runs act as.
    who["agent"] = type(who["bot"])(f"commenter{unique('_')}", "")
    who["agent"] = type(who["bot"])(who["agent"].name, server.add_principal(who["agent"].name, "agent"))
    return root, who, repo


def _change(server: GateServer, setup) -> int:
    root, who, repo = setup
    w = clone(server, repo, who["carol"], root)
    return push_change(w, unique("feature/"), {"app.py": "print('hi')\n"}, "Add app")


def _start(server: GateServer, token: str, n: int, principal: str, calls=CALLS, **extra):
    with server.client(token) as api:
        body = {"change": n, "agent": "commenter", "principal": principal, "calls": calls, **extra}
        return api.post("/api/agent-runs", json=body)


def _run(server: GateServer, run_id: int) -> dict:
    with server.admin() as api:
        r = api.get(f"/api/agent-runs/{run_id}")
        assert r.status_code == 200, r.text
        return r.json()


def _wait_status(server: GateServer, run_id: int, *states: str, timeout: float = 60) -> dict:
    return wait_for(
        lambda: (run := _run(server, run_id))["status"] in states and run, timeout, f"run {run_id} in {states}"
    )


def _pending(server: GateServer, run_id: int) -> list[dict]:
    with server.admin() as api:
        r = api.get("/api/approvals", params={"state": "pending", "run": run_id})
        assert r.status_code == 200, r.text
        return r.json()


def _decide(server: GateServer, token: str, request_id: int, verb: str, reason: str = ""):
    with server.client(token) as api:
        return api.post(f"/api/approvals/{request_id}/{verb}", json={"reason": reason})


def _paused_run(server: GateServer, setup) -> tuple[dict, int, dict]:
    """A scripted run on a fresh change, started by alice, paused on its PostComment."""
    _, who, _ = setup
    run_id = _start(server, who["alice"].token, _change(server, setup), who["agent"].name).json()["id"]
    _wait_status(server, run_id, "paused")
    [req] = _pending(server, run_id)
    return who, run_id, req


def test_a_pause_survives_kill_9_and_the_approved_call_runs(server: GateServer, setup):
    _, who, _ = setup
    n = _change(server, setup)
    r = _start(server, who["alice"].token, n, who["agent"].name)
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    assert r.json()["approval_timeout_s"] == 86_400, "the server's default: 24 hours"
    run = _wait_status(server, run_id, "paused")
    assert [x["status"] for x in run["results"]] == ["allowed"]
    [req] = _pending(server, run_id)
    waits = datetime.fromisoformat(req["expires_at"]) - datetime.fromisoformat(req["requested_at"])
    assert waits == timedelta(hours=24)
    assert req["tool"] == "PostComment" and req["args"] == {"body": "the agent says: LGTM"}
    assert req["call_index"] == 1 and req["change"] == n and run["pending_approvals"] == [req["id"]]

    workspace = server.data_dir / "agent-runs" / str(run_id) / "work"
    assert (workspace / "app.py").read_text() == "print('hi')\n", "the change's head is checked out"
    server.stop(signal.SIGKILL)
    server.start()
    assert [p["id"] for p in _pending(server, run_id)] == [req["id"]], "the pause did not survive the restart"
    assert _run(server, run_id)["status"] == "paused"

    r = _decide(server, who["bob"].token, req["id"], "approve", "fine")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved" and r.json()["decided_by"] == who["bob"].name
    run = _wait_status(server, run_id, "done", "error")
    assert run["status"] == "done", run
    assert [x["status"] for x in run["results"]] == ["allowed", "allowed", "allowed"]
    comments = server.change(n)["comments"]
    assert [(c["author"], c["body"]) for c in comments] == [(who["agent"].name, "the agent says: LGTM")]
    assert run["outbox"][0]["delivered"] is True
    wait_for(lambda: not workspace.parent.exists(), 15, "the workspace to go with its run")

    actions = [e["action"] for e in server.audit() if e["details"].get("request") == req["id"]]
    assert "approval.requested" in actions and "approval.approved" in actions
    # Deciding again is a clear conflict that names the first decision.
    again = _decide(server, who["alice"].token, req["id"], "approve")
    assert again.status_code == 409 and f"already approved by {who['bob'].name}" in again.json()["reason"]


def test_a_run_killed_mid_call_is_run_again_after_the_restart(server: GateServer, setup):
    _, who, _ = setup
    n = _change(server, setup)
    calls = [{"tool": "Bash", "args": {"command": "sleep 4"}}, CALLS[1]]
    with server.client(who["alice"].token) as api:
        body = {"change": n, "agent": "sleeper", "principal": who["agent"].name, "calls": calls}
        r = api.post("/api/agent-runs", json=body)
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]

    def sleeping():
        return any(
            e["details"].get("run_id") == f"agent-run-{run_id}" and e["details"].get("tool") == "Bash"
            for e in server.audit("tool_call")
        )

    wait_for(sleeping, 30, "the run's first call to start")
    assert _run(server, run_id)["status"] == "running"
    server.stop(signal.SIGKILL)
    server.start()
    # SQLite: released at start; PostgreSQL: the dead server's 60 s lease runs out.
    run = _wait_status(server, run_id, "paused", "error", "done", timeout=150)
    assert run["status"] == "paused", run["reason"]
    assert [(x["tool"], x["status"]) for x in run["results"]] == [("Bash", "allowed")]
    [req] = _pending(server, run_id)
    assert req["tool"] == "PostComment" and req["call_index"] == 1
    assert _decide(server, who["bob"].token, req["id"], "deny", "test over").status_code == 200
    _wait_status(server, run_id, "done")


def test_a_denial_reaches_the_agent_as_the_tool_result(server: GateServer, setup):
    who, run_id, req = _paused_run(server, setup)
    missing = _decide(server, who["bob"].token, req["id"], "deny")
    assert missing.status_code == 422, missing.text
    r = _decide(server, who["bob"].token, req["id"], "deny", "no comments on this change, please")
    assert r.status_code == 200 and r.json()["status"] == "denied", r.text
    run = _wait_status(server, run_id, "done", "error")
    denied = run["results"][1]
    assert denied["status"] == "refused"
    assert denied["reason"] == f"denied by {who['bob'].name}: no comments on this change, please"
    assert run["results"][2]["status"] == "allowed", "the run carries on after a denial"
    assert server.change(req["change"])["comments"] == []
    assert _decide(server, who["bob"].token, req["id"], "approve").status_code == 409


def test_an_unanswered_request_expires_into_a_denial(server: GateServer, setup):
    _, who, _ = setup
    n = _change(server, setup)
    run_id = _start(server, who["alice"].token, n, who["agent"].name, approval_timeout_s=2).json()["id"]
    _wait_status(server, run_id, "paused")
    with server.admin() as api:
        req = api.get("/api/approvals", params={"run": run_id}).json()[0]
    run = _wait_status(server, run_id, "done", "error", timeout=30)
    assert run["results"][1]["status"] == "refused"
    assert "the approval expired" in run["results"][1]["reason"]
    with server.admin() as api:
        assert api.get(f"/api/approvals/{req['id']}").json()["status"] == "expired"
    late = _decide(server, who["bob"].token, req["id"], "approve")
    assert late.status_code == 409 and "expired" in late.json()["reason"]
    expired = [e for e in server.audit("approval.expired") if e["details"]["request"] == req["id"]]
    assert len(expired) == 1 and expired[0]["outcome"] == "expired"
    assert server.change(n)["comments"] == []


def test_agents_and_the_changes_author_cannot_decide(server: GateServer, setup):
    who, run_id, req = _paused_run(server, setup)
    for person in ("agent", "bot", "rootbot"):  # its own pause, another agent, an admin agent
        r = _decide(server, who[person].token, req["id"], "approve")
        assert r.status_code == 403, r.text
        assert "agents can never approve" in r.json()["reason"]
        refused = [
            e
            for e in server.audit("approval.approve")
            if e["agent_id"] == who[person].name and e["details"].get("request") == req["id"]
        ]
        assert refused and refused[-1]["outcome"] == "refused"
    r = _decide(server, who["carol"].token, req["id"], "approve")
    assert r.status_code == 403 and "author of change" in r.json()["reason"], r.text
    assert any(
        e["agent_id"] == who["carol"].name and e["outcome"] == "refused" for e in server.audit("approval.approve")
    )
    assert _pending(server, run_id)[0]["status"] == "pending", "a refused decision changed nothing"
    assert _decide(server, who["bob"].token, 999_999, "approve").status_code == 404
    with server.client(who["bob"].token) as api:
        assert api.get("/api/approvals/999999").status_code == 404
    # Clean up: the run ends (denied) so later tests' runs are not queued behind it.
    assert _decide(server, who["bob"].token, req["id"], "deny", "test over").status_code == 200


def test_only_humans_and_the_runs_own_agent_read_its_paused_calls(server: GateServer, setup):
    who, run_id, req = _paused_run(server, setup)
    try:
        for person in ("carol", "agent"):  # a human, and the agent the run acts as
            with server.client(who[person].token) as api:
                assert api.get(f"/api/approvals/{req['id']}").json()["args"] == req["args"]
                listed = api.get("/api/approvals", params={"run": run_id}).json()
                assert [r["id"] for r in listed] == [req["id"]]
        for person in ("bot", "rootbot"):  # another agent, an agent with the admin role
            with server.client(who[person].token) as api:
                r = api.get(f"/api/approvals/{req['id']}")
                assert r.status_code == 403 and "reads only its own runs" in r.json()["reason"], r.text
                assert api.get("/api/approvals", params={"run": run_id}).json() == []
            refused = [
                e
                for e in server.audit("approval.read")
                if e["agent_id"] == who[person].name and e["details"].get("request") == req["id"]
            ]
            assert refused and refused[-1]["outcome"] == "refused"
    finally:  # the run ends (denied) so later tests' runs are not queued behind it
        assert _decide(server, who["bob"].token, req["id"], "deny", "test over").status_code == 200


def test_only_human_maintainers_start_runs(server: GateServer, setup):
    _, who, _ = setup
    n = _change(server, setup)
    for person, word in (("bot", "agents cannot start"), ("carol", "maintainer or admin role")):
        r = _start(server, who[person].token, n, who["agent"].name)
        assert r.status_code == 403 and word in r.json()["reason"], r.text
    r = _start(server, who["alice"].token, n, who["bob"].name)
    assert r.status_code == 422 and "not an agent principal" in r.json()["reason"]
    r = _start(server, who["alice"].token, n, who["agent"].name, calls=[{"nope": 1}])
    assert r.status_code == 422, r.text
    with server.client(who["alice"].token) as api:
        r = api.post(
            "/api/agent-runs", json={"change": n, "agent": "ghost", "principal": who["agent"].name, "calls": CALLS}
        )
    assert r.status_code == 422 and "no runtime agent 'ghost'" in r.json()["reason"]


def test_the_cli_starts_lists_shows_and_decides(server: GateServer, setup, tmp_path):
    _, who, _ = setup
    n = _change(server, setup)
    trajectory = tmp_path / "calls.jsonl"
    trajectory.write_text("\n".join(json.dumps(c) for c in CALLS) + "\n")
    alice = {"token": who["alice"].token, "url": server.url}
    started = cli(
        "agent",
        "start",
        "commenter",
        "--change",
        str(n),
        "--calls",
        str(trajectory),
        "--principal",
        who["agent"].name,
        "--json",
        **alice,
    )
    assert started.returncode == 0, started.stderr
    run_id = json.loads(started.stdout)["id"]
    _wait_status(server, run_id, "paused")

    listed = cli("approvals", "list", "--run", str(run_id), **alice)
    assert listed.returncode == 0, listed.stderr
    assert "PostComment" in listed.stdout and "pending" in listed.stdout
    [req] = json.loads(cli("approvals", "list", "--run", str(run_id), "--json", **alice).stdout)
    shown = cli("approvals", "show", str(req["id"]), **alice)
    assert shown.returncode == 0 and "the tool always needs approval" in shown.stdout, shown.stdout

    refused = cli("approvals", "approve", str(req["id"]), token=who["bot"].token, url=server.url)
    assert refused.returncode == 1 and "agents can never approve" in refused.stderr
    no_reason = cli("approvals", "deny", str(req["id"]), **alice)
    assert no_reason.returncode == 2, no_reason.stderr
    unknown = cli("approvals", "approve", "999999", **alice)
    assert unknown.returncode == 2 and "no approval request 999999" in unknown.stderr

    denied = cli("approvals", "deny", str(req["id"]), "--reason", "not now", **alice)
    assert denied.returncode == 0 and f"denied request {req['id']}" in denied.stdout, denied.stderr
    again = cli("approvals", "deny", str(req["id"]), "--reason", "again", **alice)
    assert again.returncode == 2 and "already denied" in again.stderr
    _wait_status(server, run_id, "done")
    shown = cli("agent", "runs", str(run_id), **alice)
    assert shown.returncode == 0 and f"denied by {who['alice'].name}: not now" in shown.stdout, shown.stdout
    runs = json.loads(cli("agent", "runs", "--change", str(n), "--json", **alice).stdout)
    assert [r["id"] for r in runs] == [run_id]


def test_a_model_run_pauses_survives_kill_9_and_resumes_with_the_tool_result(server: GateServer, setup):
    root, who, _ = setup
    replies = [
        completion(tool_calls=[("Read", {"path": "README.md"}), ("PostComment", {"body": "the model says hi"})]),
        completion(content="Posted my comment."),
    ]
    asked: list[dict] = []  # the agent's requests (the gate's llm-review check asks the same model)
    reviews: list[dict] = []

    def script(body: dict):
        if "code reviewer for a merge gate" in str(body["messages"][0].get("content")):
            reviews.append(body)
            return final(REVIEW, prompt_tokens=1000, completion_tokens=100)
        asked.append(body)
        return replies.pop(0)

    with FakeOpenAI(script) as fake:
        models = (
            "models:\n"
            f"  default: {{provider: openai-compatible, base_url: '{fake.base_url}', model: fake-model, "
            "retry_base_s: 0.05}\n"
            "  prices:\n    fake-model: {input_per_mtok: 2.0, output_per_mtok: 8.0}\n"
        )
        repo = make_repo(server, root, unique("model"), {".mergegate.yml": POLICY + models})
        w = clone(server, repo, who["carol"], root)
        n = push_change(w, unique("feature/"), {"app.py": "print('hi')\n"}, "Add app")
        with server.client(who["alice"].token) as api:
            body = {"change": n, "agent": "commenter", "principal": who["agent"].name, "prompt": "Review and comment."}
            r = api.post("/api/agent-runs", json=body)
        assert r.status_code == 201, r.text
        run_id = r.json()["id"]
        run = _wait_status(server, run_id, "paused", "error", "done")
        assert run["status"] == "paused", run["reason"]
        assert len(asked) == 1 and run["requests"] == 1
        [req] = _pending(server, run_id)
        assert req["tool"] == "PostComment" and req["args"] == {"body": "the model says hi"}

        server.stop(signal.SIGKILL)
        server.start()
        assert _run(server, run_id)["status"] == "paused"
        assert _decide(server, who["bob"].token, req["id"], "approve").status_code == 200
        run = _wait_status(server, run_id, "done", "error", "budget_exceeded")
        assert run["status"] == "done", run["reason"]
        assert run["output"] == "Posted my comment."
        # The resumed conversation carries both tool results, answered in order, to the model.
        assert len(asked) == 2 and fake.problems == []
        tool_messages = [m for m in asked[1]["messages"] if m["role"] == "tool"]
        assert [m["tool_call_id"] for m in tool_messages] == ["call_0_Read", "call_1_PostComment"]
        assert "hello" in tool_messages[0]["content"]
        assert "comment queued" in tool_messages[1]["content"]
        # Budget and cost kept across the pause and the restart: two requests of 100 + 20 tokens.
        assert (run["requests"], run["input_tokens"], run["output_tokens"]) == (2, 200, 40)
        assert Decimal(run["cost_usd"]) == Decimal("0.00072")
        wait_checked(server, n)
    change = server.change(n)
    assert [(c["author"], c["body"]) for c in change["comments"]] == [(who["agent"].name, "the model says hi")]
    # The change's model cost: this run plus every llm-review of its checks (1000 + 100 tokens each).
    cost = change["cost"]
    assert reviews and cost["agent_runs"] == 1 and Decimal(cost["agent_runs_usd"]) == Decimal("0.00072")
    assert Decimal(cost["checks_usd"]) == Decimal("0.0028") * len(reviews)
    assert Decimal(cost["total_usd"]) == Decimal("0.00072") + Decimal("0.0028") * len(reviews)
    shown = cli("change", "show", str(n), token=who["alice"].token, url=server.url)
    assert f"model cost:  ${cost['total_usd']} (agent runs: 1, $0.00072" in shown.stdout, shown.stdout


def test_a_model_run_without_a_model_is_skipped_not_faked(server: GateServer, setup):
    _, who, _ = setup
    n = _change(server, setup)
    with server.client(who["alice"].token) as api:
        body = {"change": n, "agent": "commenter", "principal": who["agent"].name, "prompt": "Review it."}
        run_id = api.post("/api/agent-runs", json=body).json()["id"]
    run = _wait_status(server, run_id, "skipped", "error", "done")
    assert run["status"] == "skipped" and "no model configured" in run["reason"], run


def test_the_default_approval_timeout_is_a_server_setting(tmp_path):
    config = tmp_path / "server.toml"
    config.write_text("approval_timeout_s = 600\n")
    assert ServerSettings.load(tmp_path).approval_timeout_s == 600
    for bad in ("0", "'soon'", "99999999"):
        config.write_text(f"approval_timeout_s = {bad}\n")
        with pytest.raises(SettingsError, match="approval_timeout_s"):
            ServerSettings.load(tmp_path)
