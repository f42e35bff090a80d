"""``mergegate demo --serve``'s seeding against a real server: the four demo changes get
the verdicts the demo promises, and the printed commands let sam approve and merge the
clean one while the agent's changes stay blocked. The checks are the demo's real ones
(the base policy of ``service.demo``: tests and diff coverage included)."""

from __future__ import annotations

import pytest

from mergegate.service import demo_server
from tests.server.conftest import GateServer
from tests.server.gate_helpers import branch_tip, rule
from tests.server.test_cli import cli


@pytest.fixture(scope="module")
def backend() -> str:
    return "sqlite"  # seeding only speaks HTTP and git; both databases are covered elsewhere


@pytest.fixture(scope="module")
def seeded(server: GateServer, tmp_path_factory) -> demo_server.Seeded:
    return demo_server.seed(server.url, server.admin_token, workdir=tmp_path_factory.mktemp("seed"), timeout=900)


def unsatisfied(st: dict) -> set[str]:
    return {r["rule"] for r in st["rules"] if not r["satisfied"]}


def gate_check(st: dict) -> dict:
    check = demo_server.checked(st)
    assert check is not None, st["checks"]
    return check


def test_the_clean_change_is_green_and_waits_only_for_an_approval(seeded):
    st = seeded.statuses["clean"]
    assert gate_check(st)["status"] == "success", gate_check(st)
    assert rule(st, "checks")["satisfied"], st["summary"]
    assert unsatisfied(st) == {"approvals"}, st["summary"]
    assert rule(st, "approvals")["reason"].startswith("blocked: no approvals yet")


def test_the_sql_injection_is_blocked_by_the_check(seeded):
    st = seeded.statuses["sqli"]
    check = gate_check(st)
    assert check["status"] == "failure"
    assert "block_security" in check["summary"], check["summary"]
    assert "checks" in unsatisfied(st)


def test_the_weakened_test_is_blocked_by_the_check(seeded):
    st = seeded.statuses["weak-test"]
    assert gate_check(st)["status"] == "failure", gate_check(st)
    assert "checks" in unsatisfied(st)


def test_the_policy_edit_needs_an_admin_and_is_judged_by_the_base_policy(seeded):
    st = seeded.statuses["policy"]
    owners = rule(st, "code_owners")
    assert not owners["satisfied"]
    assert ".mergegate.yml" in owners["reason"] and "admin" in owners["reason"], owners["reason"]
    # The base policy (enforce mode) judged it, not the change's advisory one.
    assert st["policy"], st
    assert "advisory" not in str(st["policy"])


def test_the_table_states_every_verdict(seeded):
    rows = {row[1].rsplit("(", 1)[1].rstrip(")"): row for row in demo_server.table(seeded)}
    assert set(rows) == {"clean", "sqli", "weak-test", "policy"}
    assert rows["clean"][2] == demo_server.MAINTAINER
    assert {rows[k][2] for k in ("sqli", "weak-test", "policy")} == {demo_server.AGENT}
    assert rows["clean"][3] == "success"
    assert rows["clean"][4].startswith("approvals: no approvals yet")
    assert rows["sqli"][3] == "failure" and "checks:" in rows["sqli"][4]


def test_sam_approves_and_merges_the_clean_change_and_the_agent_cannot(server: GateServer, seeded):
    sam = seeded.tokens[demo_server.APPROVER]
    agent = seeded.tokens[demo_server.AGENT]
    n = seeded.numbers["clean"]
    landing = seeded.statuses["clean"]["landing"]["commit"]
    # The agent can neither approve nor merge anything.
    assert cli("change", "approve", str(seeded.numbers["sqli"]), token=agent, url=server.url).returncode != 0
    assert cli("change", "merge", str(n), token=agent, url=server.url).returncode != 0
    for key in ("sqli", "weak-test", "policy"):
        proc = cli("change", "status", str(seeded.numbers[key]), token=sam, url=server.url)
        assert "blocked" in proc.stdout, proc.stdout
        assert cli("change", "merge", str(seeded.numbers[key]), token=sam, url=server.url).returncode != 0
    proc = cli("change", "approve", str(n), token=sam, url=server.url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = cli("change", "merge", str(n), token=sam, url=server.url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert branch_tip(server, seeded.repo) == landing
    assert server.change(n)["state"] == "merged"
