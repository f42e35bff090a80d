"""The gate's rules over HTTP with real git pushes, on SQLite and PostgreSQL: checks on
the exact commit that would land, reviews bound to what was reviewed, CODEOWNERS from
the base, the verdict in words, and every path an agent would try instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.server.conftest import GateServer
from tests.server.gate_helpers import (
    CLEAN_CODE,
    SQL_INJECTION,
    audit,
    branch_tip,
    clone,
    git_bare,
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


@pytest.fixture(scope="module")
def crew(server: GateServer):
    return people(server, "")


def test_happy_path_lands_exactly_the_tested_commit(server: GateServer, crew, tmp_path: Path):
    alice, bob = crew["alice"], crew["bob"]
    repo = make_repo(server, tmp_path, unique("happy"))
    base = branch_tip(server, repo)
    w = clone(server, repo, alice, tmp_path)
    n = push_change(w, "feature/add", {"calc.py": CLEAN_CODE}, "Add add()")

    st = wait_checked(server, n)
    landing = st["landing"]["commit"]
    assert st["landing"]["method"] == "merge" and st["landing"]["base"] == base
    # The landing commit is the gate's merge of the base tip and the head, made by the gate.
    parents = git_bare(server, repo, "log", "-1", "--format=%P", landing).split()
    assert parents == [base, st["head"]]
    assert git_bare(server, repo, "log", "-1", "--format=%an|%cn", landing) == "mergegate|mergegate"
    assert git_bare(server, repo, "rev-parse", f"refs/changes/{n}/landing") == landing
    gate_runs = {c["commit"]: c for c in st["checks"] if c["producer"] == "mergegate"}
    assert gate_runs[landing]["status"] == "success" and gate_runs[landing]["counts"] is True
    assert gate_runs[st["head"]]["counts"] is False, "the head's check is informational"
    assert rule(st, "checks")["satisfied"], rule(st, "checks")
    assert not rule(st, "approvals")["satisfied"]
    assert rule(st, "approvals")["reason"].startswith("blocked: no approvals yet")
    assert not st["mergeable"]

    r = review(server, bob.token, n, "approve", "looks right")
    assert r.status_code == 201, r.text
    assert r.json()["fingerprint"] == st["fingerprint"]
    assert r.json()["sequence"] > st["last_push_sequence"]
    st = status(server, n)
    assert st["mergeable"], st["summary"]
    assert rule(st, "approvals")["reason"] == f"1 of 1 required approvals: {bob.name}"

    r = merge(server, bob.token, n)
    assert r.status_code == 200, r.text
    merged = r.json()
    assert merged["commit"] == landing and merged["old"] == base
    # main now IS the tested commit: same id, so the same tree.
    assert branch_tip(server, repo) == landing
    tested_tree = git_bare(server, repo, "rev-parse", f"{gate_runs[landing]['commit']}^{{tree}}")
    assert git_bare(server, repo, "rev-parse", "refs/heads/main^{tree}") == tested_tree == merged["tree"]
    assert server.change(n)["state"] == "merged"
    entry = next(e for e in audit(server, "change.merged") if e["details"]["change"] == n)
    assert entry["agent_id"] == bob.name and entry["human_reviewer"] == bob.name
    assert entry["details"]["new"] == landing and entry["details"]["tree"] == tested_tree
    with server.admin() as api:
        assert api.get("/api/audit/verify").json()["ok"] is True
    # Merging again is refused: the change is merged.
    again = merge(server, bob.token, n)
    assert again.status_code == 409 and again.json()["error"] == "blocked"


def test_agents_can_never_approve_request_changes_dismiss_or_merge(server: GateServer, crew, tmp_path: Path):
    alice, bob, bot, rootbot = crew["alice"], crew["bob"], crew["bot"], crew["rootbot"]
    repo = make_repo(server, tmp_path, unique("agents"))
    w = clone(server, repo, bot, tmp_path)
    n = push_change(w, "bot/feature", {"calc.py": CLEAN_CODE}, "Agent change")
    wait_checked(server, n)
    # A human objects, so there is a review an agent could try to dismiss.
    objection = review(server, bob.token, n, "request_changes", "no")
    assert objection.status_code == 201
    for agent in (bot, rootbot):
        with server.client(agent.token) as api:
            attempts = {
                "review.approve": api.post(f"/api/changes/{n}/reviews", json={"state": "approve"}),
                "review.request_changes": api.post(f"/api/changes/{n}/reviews", json={"state": "request_changes"}),
                "review.dismiss": api.post(
                    f"/api/changes/{n}/reviews/{objection.json()['id']}/dismiss", json={"reason": "mine now"}
                ),
                "change.merge": api.post(f"/api/changes/{n}/merge", json={}),
                "change.merge_when_ready": api.post(f"/api/changes/{n}/merge-when-ready", json={}),
            }
            for action, r in attempts.items():
                assert r.status_code == 403, (agent.name, action, r.text)
                assert r.json()["error"] == "forbidden"
                assert f"{agent.name} is an agent" in r.json()["reason"]
                refused = [
                    e
                    for e in audit(server, action)
                    if e["agent_id"] == agent.name and e["outcome"] == "refused" and e["details"].get("change") == n
                ]
                assert refused, f"{action} by {agent.name} was not audited"
            if agent is rootbot:
                assert "its role admin does not change that" in attempts["review.approve"].json()["reason"]
            # An agent may comment (a review with no verdict).
            comment = api.post(f"/api/changes/{n}/reviews", json={"state": "comment", "body": "I think it is fine"})
            assert comment.status_code == 201, comment.text
    st = status(server, n)
    assert not st["mergeable"]
    assert not rule(st, "change_requests")["satisfied"]
    assert branch_tip(server, repo) == st["base_tip"]
    # The human objection still stands: only a human maintainer could clear it.
    assert all(not r["dismissed"] for r in st["reviews"])
    # And nothing an agent did counts as an approval.
    assert rule(st, "approvals")["reason"].startswith("blocked: no approvals yet")
    assert alice.name not in st["approvers"]


def test_author_and_last_pusher_cannot_approve(server: GateServer, crew, tmp_path: Path):
    alice, bob, carol = crew["alice"], crew["bob"], crew["carol"]
    repo = make_repo(server, tmp_path, unique("self"))
    n = push_change(clone(server, repo, alice, tmp_path), "feature/self", {"calc.py": CLEAN_CODE}, "Mine")
    wait_checked(server, n)

    own = review(server, alice.token, n)
    assert own.status_code == 403
    assert own.json()["reason"].startswith(f"{alice.name} is the author of change {n}")
    # Bob pushes a follow-up to Alice's change: now he is the last pusher.
    push_change(clone(server, repo, bob, tmp_path), "feature/self", {"more.py": "X = 1\n"}, "Follow-up")
    assert server.change(n)["last_pusher"] == bob.name
    pushed = review(server, bob.token, n)
    assert pushed.status_code == 403
    assert f"{bob.name} pushed the latest patchset of change {n}" in pushed.json()["reason"]
    refusals = [e for e in audit(server, "review.approve") if e["details"].get("change") == n]
    assert {e["agent_id"] for e in refusals if e["outcome"] == "refused"} == {alice.name, bob.name}

    wait_checked(server, n)
    st = status(server, n)
    assert not st["mergeable"] and not st["reviews"]
    # A third person's approval counts.
    assert review(server, carol.token, n).status_code == 201
    st = status(server, n)
    assert rule(st, "approvals")["satisfied"], st["summary"]


def test_pushing_after_an_approval_makes_the_gate_dismiss_it(server: GateServer, crew, tmp_path: Path):
    alice, bob = crew["alice"], crew["bob"]
    repo = make_repo(server, tmp_path, unique("stale"))
    w = clone(server, repo, alice, tmp_path)
    n = push_change(w, "feature/stale", {"calc.py": CLEAN_CODE}, "First")
    first = wait_checked(server, n)
    approved = review(server, bob.token, n)
    assert approved.status_code == 201
    assert status(server, n)["mergeable"]

    # More code after the approval.
    push_change(w, "feature/stale", {"calc.py": CLEAN_CODE + "\n\ndef sub(a, b):\n    return a - b\n"}, "Second")
    st = wait_checked(server, n)
    assert st["fingerprint"] != first["fingerprint"]
    assert not st["mergeable"]
    reason = rule(st, "approvals")["reason"]
    assert reason.startswith(f"blocked: the only approval was dismissed (stale: {bob.name} approved content")
    assert "dismissed by the gate" in reason and "was given before the last push" in reason
    (row,) = st["reviews"]
    assert row["dismissed"] and row["dismissed_by"] == "mergegate" and row["dismissed_by_gate"]
    # Audited as the gate's act; the push is its cause, not its actor.
    (entry,) = [e for e in audit(server, "review.dismissed") if e["details"]["review"] == row["id"]]
    assert entry["agent_id"] == "mergegate" and entry["details"]["by_gate"] is True
    assert entry["details"]["cause"]["pusher"] == alice.name
    assert entry["human_reviewer"] == bob.name
    # Merging is refused with the reason; a new approval of the new content counts.
    refused = merge(server, bob.token, n)
    assert refused.status_code == 409 and "approvals: blocked" in refused.json()["reason"]
    assert review(server, bob.token, n).status_code == 201
    assert status(server, n)["mergeable"]


def test_codeowners_come_from_the_base_and_editing_them_in_the_change_does_not_help(
    server: GateServer, crew, tmp_path: Path
):
    alice, bob, carol = crew["alice"], crew["bob"], crew["carol"]
    group = unique("security")
    with server.admin() as api:
        r = api.post(f"/api/groups/{group}/members", json={"members": [carol.name]})
        assert r.status_code == 200, r.text
        assert r.json()["members"] == [carol.name]
    with server.client(crew["rootbot"].token) as api:  # an admin agent cannot manage groups
        r = api.post(f"/api/groups/{group}/members", json={"members": [crew["rootbot"].name]})
        assert r.status_code == 403, r.text
    codeowners = f"/src/auth/ @{group}\n*.md {bob.name}@example.com\n"
    files = {".github/CODEOWNERS": codeowners, "src/auth/login.py": "A = 1\n"}
    repo = make_repo(server, tmp_path, unique("owners"), files)
    w = clone(server, repo, alice, tmp_path)
    # The change edits an owned file AND rewrites CODEOWNERS to drop the owner.
    n = push_change(
        w,
        "feature/owners",
        {"src/auth/login.py": "A = 2\n", ".github/CODEOWNERS": f"/src/auth/ @{alice.name}\n"},
        "Touch auth, own it myself",
    )
    wait_checked(server, n)
    assert review(server, bob.token, n).status_code == 201
    st = status(server, n)
    owners = rule(st, "code_owners")
    assert not owners["satisfied"] and not st["mergeable"]
    assert f"src/auth/login.py is owned by @{group}; no approval from them" in owners["reason"]
    # CODEOWNERS itself is always owned (by the admins when no rule names anyone).
    assert ".github/CODEOWNERS is owned by the admins; no approval from them" in owners["reason"]

    assert review(server, carol.token, n).status_code == 201  # the group's member
    owners = rule(status(server, n), "code_owners")
    assert "src/auth/login.py" not in owners["reason"], "the group's member approved"
    assert owners["reason"].startswith("blocked: .github/CODEOWNERS is owned by the admins")
    assert review(server, server.admin_token, n).status_code == 201
    st = status(server, n)
    assert rule(st, "code_owners")["satisfied"], st["summary"]
    assert st["mergeable"]

    # Owners by email: README.md is owned by bob's address; carol's approval is not his.
    n2 = push_change(w, "feature/docs", {"README.md": "hello again\n"}, "Docs")
    wait_checked(server, n2)
    assert review(server, carol.token, n2).status_code == 201
    owners = rule(status(server, n2), "code_owners")
    assert f"README.md is owned by {bob.name}@example.com; no approval from them" in owners["reason"]
    assert review(server, bob.token, n2).status_code == 201
    assert rule(status(server, n2), "code_owners")["satisfied"]


def test_checks_posted_by_others_never_count_and_a_failing_check_blocks_the_merge(
    server: GateServer, crew, tmp_path: Path
):
    bob, bot = crew["bob"], crew["bot"]
    repo = make_repo(server, tmp_path, unique("inject"))
    n = push_change(clone(server, repo, bot, tmp_path), "bot/query", {"db.py": SQL_INJECTION}, "Add a query")
    st = wait_checked(server, n)
    landing = st["landing"]["commit"]
    ours = next(c for c in st["checks"] if c["commit"] == landing and c["producer"] == "mergegate")
    assert ours["status"] == "failure" and ours["blocking_findings"] == 1
    assert "block_security" in ours["summary"] and "B608" in ours["summary"]

    # The agent posts a green mergegate/check for the landing commit, as itself.
    with server.client(bot.token) as api:
        posted = api.post(
            f"/api/changes/{n}/checks", json={"name": "mergegate/check", "status": "success", "commit": landing}
        )
        assert posted.status_code == 201, posted.text
        assert posted.json()["producer"] == bot.name and posted.json()["counts"] is False
    assert review(server, bob.token, n).status_code == 201
    st = status(server, n)
    checks = rule(st, "checks")
    assert not checks["satisfied"]
    assert "required check 'mergegate/check' failed on" in checks["reason"]
    assert "(the commit that would land)" in checks["reason"]
    findings = rule(st, "findings")
    assert findings["reason"] == "blocked: 1 blocking finding (enforce mode)"
    posted_row = next(c for c in st["checks"] if c["producer"] == bot.name)
    assert posted_row["counts"] is False

    r = merge(server, bob.token, n)
    assert r.status_code == 409 and r.json()["error"] == "blocked"
    assert "checks: blocked: required check 'mergegate/check' failed" in r.json()["reason"]
    assert "findings: blocked" in r.json()["reason"]
    assert branch_tip(server, repo) == st["base_tip"]
    blocked = [e for e in audit(server, "change.merge") if e["details"]["change"] == n]
    assert blocked and blocked[0]["outcome"] == "blocked"


def test_a_green_head_is_not_a_green_landing_commit(server: GateServer, crew, tmp_path: Path):
    """The change's head passes its checks, but it conflicts with main: nothing that
    would land was checked, so the change is blocked, in words."""
    alice, bob, carol = crew["alice"], crew["bob"], crew["carol"]
    repo = make_repo(server, tmp_path, unique("conflict"), {"calc.py": "VALUE = 1\n"})
    w1 = clone(server, repo, alice, tmp_path)
    first = push_change(w1, "feature/one", {"calc.py": "VALUE = 2\n"}, "Two")
    wait_checked(server, first)
    assert review(server, bob.token, first).status_code == 201
    w2 = clone(server, repo, carol, tmp_path)
    second = push_change(w2, "feature/other", {"calc.py": "VALUE = 3\n"}, "Three")
    wait_checked(server, second)
    assert review(server, bob.token, second).status_code == 201
    assert merge(server, bob.token, first).status_code == 200
    server.wait_idle(120)

    st = status(server, second)
    head_run = next(c for c in st["checks"] if c["commit"] == st["head"] and c["producer"] == "mergegate")
    assert head_run["status"] == "success", "the head alone is green"
    assert st["landing"]["commit"] is None and "calc.py" in st["landing"]["problem"]
    assert rule(st, "landing")["reason"].startswith("blocked: no commit can land: merging the change into the base")
    assert "conflicts in calc.py" in rule(st, "landing")["reason"]
    assert rule(st, "checks")["reason"].startswith("blocked: the commit that would land is not known yet")
    assert not st["mergeable"]
    r = merge(server, bob.token, second)
    assert r.status_code == 409 and "conflicts in calc.py" in r.json()["reason"]


def test_request_changes_blocks_until_a_maintainer_dismisses_it(server: GateServer, crew, tmp_path: Path):
    alice, bob, carol = crew["alice"], crew["bob"], crew["carol"]
    repo = make_repo(server, tmp_path, unique("objection"))
    n = push_change(clone(server, repo, alice, tmp_path), "feature/obj", {"calc.py": CLEAN_CODE}, "Change")
    wait_checked(server, n)
    objection = review(server, carol.token, n, "request_changes", "please add tests")
    assert objection.status_code == 201
    assert review(server, bob.token, n).status_code == 201
    st = status(server, n)
    blocked = rule(st, "change_requests")
    assert not blocked["satisfied"] and not st["mergeable"]
    assert blocked["reason"].startswith(f"blocked: {carol.name} requested changes")
    assert rule(st, "approvals")["satisfied"], "bob's approval counts, and still does not clear carol's objection"

    rid = objection.json()["id"]
    with server.client(carol.token) as api:  # a contributor cannot dismiss, not even their own
        r = api.post(f"/api/changes/{n}/reviews/{rid}/dismiss", json={"reason": "nevermind"})
        assert r.status_code == 403 and "needs the maintainer role" in r.json()["reason"]
    with server.client(alice.token) as api:
        r = api.post(f"/api/changes/{n}/reviews/{rid}/dismiss", json={"reason": "tests were added in #12"})
        assert r.status_code == 200, r.text
        assert r.json()["dismissed_by"] == alice.name and r.json()["dismissed_by_gate"] is False
    st = status(server, n)
    assert rule(st, "change_requests")["satisfied"] and st["mergeable"], st["summary"]
    (entry,) = [e for e in audit(server, "review.dismissed") if e["details"]["review"] == rid]
    assert entry["agent_id"] == alice.name and entry["details"]["reason"] == "tests were added in #12"


def test_the_gate_rules_come_from_the_base_and_a_broken_base_policy_fails_closed(
    server: GateServer, crew, tmp_path: Path
):
    alice, bob, carol = crew["alice"], crew["bob"], crew["carol"]
    strict = "agents:\n  test-coverage: {enabled: false}\ngate:\n  required_approvals: 2\n"
    repo = make_repo(server, tmp_path, unique("rules"), {".mergegate.yml": strict})
    w = clone(server, repo, alice, tmp_path)
    # The change lowers the bar for itself.
    n = push_change(w, "feature/lower", {".mergegate.yml": strict.replace("2", "1"), "calc.py": CLEAN_CODE}, "Lower")
    wait_checked(server, n)
    assert review(server, bob.token, n).status_code == 201
    st = status(server, n)
    assert rule(st, "approvals")["reason"] == f"blocked: 1 of 2 required approvals ({bob.name})"
    assert ".mergegate.yml is owned by the admins" in rule(st, "code_owners")["reason"]
    assert review(server, carol.token, n).status_code == 201
    assert rule(status(server, n), "approvals")["satisfied"]

    # A base whose policy cannot be read: every check errors and the verdict says why.
    broken = make_repo(server, tmp_path, unique("broken"), {".mergegate.yml": "thresholds:\n  auto_aprove: 0.5\n"})
    w = clone(server, broken, alice, tmp_path)
    w.commit({"calc.py": CLEAN_CODE}, "On a broken base")
    pushed = w.push("HEAD:refs/for/main")  # direct branch pushes are refused while the policy is broken
    assert pushed.returncode == 0, pushed.stderr
    server.wait_idle(120)
    (change,) = server.changes(broken)
    st = status(server, change["number"])
    policy = rule(st, "policy")
    assert not policy["satisfied"] and "line 2: thresholds.auto_aprove: unknown key" in policy["reason"]
    ours = [c for c in st["checks"] if c["producer"] == "mergegate" and c["commit"] == st["landing"]["commit"]]
    assert ours and ours[-1]["status"] == "error"
    assert "the check could not run" in ours[-1]["summary"] and "auto_aprove" in ours[-1]["summary"]
    assert rule(st, "checks")["reason"].startswith("blocked: required check 'mergegate/check' errored on")
    assert rule(st, "findings")["reason"].startswith("blocked: the number of blocking findings is unknown")
