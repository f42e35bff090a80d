"""The gate from the command line, as people use it: ``mergegate change status|approve|
request-changes|dismiss|merge`` and ``mergegate group`` against a running server, with
``--json`` and the documented exit codes (0 ok, 1 refused or blocked, 2 a wrong request)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.server.conftest import GateServer
from tests.server.gate_helpers import (
    CLEAN_CODE,
    branch_tip,
    clone,
    make_repo,
    people,
    push_change,
    status,
    unique,
    wait_checked,
    wait_for,
)
from tests.server.test_cli import cli, one_line


@pytest.fixture(scope="module")
def backend() -> str:
    return "sqlite"  # the CLI only speaks HTTP; both databases are covered by test_gate/test_merge


def test_status_review_and_merge_commands(server: GateServer, tmp_path: Path):
    crew = people(server, "c")
    alice, bob, carol, bot = crew["alice"], crew["bob"], crew["carol"], crew["bot"]
    repo = make_repo(server, tmp_path, unique("cli"), {"CODEOWNERS": "*.py @reviewers\n"})
    url = server.url

    made = cli("group", "add", "@reviewers", carol.name, bob.name, "--json", token=server.admin_token, url=url)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["members"] == sorted([bob.name, carol.name])
    refused = cli("group", "add", "reviewers", bot.name, token=bot.token, url=url)
    assert refused.returncode == 1 and "agents can never manage principals" in one_line(refused.stderr)

    n = push_change(clone(server, repo, alice, tmp_path), "feature/cli", {"calc.py": CLEAN_CODE}, "Add add()")
    st = wait_checked(server, n)

    shown = cli("change", "status", str(n), token=bob.token, url=url)
    assert shown.returncode == 1, "blocked exits 1"
    out = shown.stdout
    assert f"change {n} (open) → main in {repo}: blocked" in out
    assert f"landing commit: {st['landing']['commit']} (merge)" in out
    assert "✓ checks: required checks 'mergegate/check' passed on" in out
    assert "✗ approvals: blocked: no approvals yet" in out
    assert "✗ code_owners: blocked: calc.py is owned by @reviewers; no approval from them" in out

    # An agent cannot approve; the author cannot either.
    agent = cli("change", "approve", str(n), token=bot.token, url=url)
    assert agent.returncode == 1 and f"{bot.name} is an agent; agents can never approve" in one_line(agent.stderr)
    own = cli("change", "approve", str(n), token=alice.token, url=url)
    assert own.returncode == 1 and "is the author of change" in one_line(own.stderr)
    # A reviewer pinning an old head is told the change moved.
    stale = cli("change", "approve", str(n), "--head", "0" * 40, token=carol.token, url=url)
    assert stale.returncode == 2 and "moved since you looked" in one_line(stale.stderr)

    objection = cli("change", "request-changes", str(n), "-m", "rename it", "--json", token=carol.token, url=url)
    assert objection.returncode == 0, objection.stderr
    review_id = json.loads(objection.stdout)["id"]
    approved = cli("change", "approve", str(n), "-m", "fine by me", token=bob.token, url=url)
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.startswith(f"approved change {n} (patchset 1, ")

    blocked = cli("change", "merge", str(n), token=bob.token, url=url)
    assert blocked.returncode == 1
    assert f"change_requests: blocked: {carol.name} requested changes" in one_line(blocked.stderr)
    assert branch_tip(server, repo) == st["base_tip"]

    dismissed = cli("change", "dismiss", str(n), str(review_id), "--reason", "renamed", token=alice.token, url=url)
    assert dismissed.returncode == 0, dismissed.stderr
    assert dismissed.stdout.strip() == f"dismissed {carol.name}'s request_changes review {review_id} on change {n}"

    ok = cli("change", "status", str(n), "--json", token=bob.token, url=url)
    assert ok.returncode == 0, ok.stdout
    assert json.loads(ok.stdout)["mergeable"] is True

    merged = cli("change", "merge", str(n), "--json", token=bob.token, url=url)
    assert merged.returncode == 0, merged.stderr
    result = json.loads(merged.stdout)
    assert result["commit"] == st["landing"]["commit"] == branch_tip(server, repo)
    assert result["approvers"] == [bob.name]

    usage = cli("change", "merge", str(n), "--method", "octopus", token=bob.token, url=url)
    assert usage.returncode == 2 and "--method must be merge, squash or rebase" in one_line(usage.stderr)


def test_merge_when_ready_from_the_cli(server: GateServer, tmp_path: Path):
    crew = people(server, "w")
    alice, bob, carol, bot = crew["alice"], crew["bob"], crew["carol"], crew["bot"]
    repo = make_repo(server, tmp_path, unique("wr"))
    n = push_change(clone(server, repo, alice, tmp_path), "feature/wr", {"calc.py": CLEAN_CODE}, "When ready")
    url = server.url

    agent = cli("change", "merge", str(n), "--when-ready", token=bot.token, url=url)
    assert agent.returncode == 1 and "agents can never set merge-when-ready" in one_line(agent.stderr)
    asked = cli("change", "merge", str(n), "--when-ready", "--method", "squash", token=bob.token, url=url)
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.startswith(f"change {n}: the gate merges it (squash) as soon as every rule holds")
    st = wait_checked(server, n)
    assert st["landing"]["method"] == "squash" and st["merge_when_ready_by"] == bob.name

    assert cli("change", "approve", str(n), token=carol.token, url=url).returncode == 0
    wait_for(lambda: server.change(n)["state"] == "merged", 60, "the gate to merge")
    final = status(server, n)
    assert branch_tip(server, repo) == final["merged_sha"] == final["landing"]["commit"]
    assert final["merged_by"] == "mergegate"
