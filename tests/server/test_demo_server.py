"""``mergegate demo --serve``'s seeding against a real server: the four demo changes get
the verdicts the demo promises, and the printed commands let sam approve and merge the
clean one while the agent's changes stay blocked. The checks are the demo's real ones
(the base policy of ``service.demo``: tests and diff coverage included)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from mergegate.service import demo_server
from tests.server.conftest import GateServer, free_port
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
    assert rows["clean"][4].startswith("blocked only on a human approval")
    assert rows["sqli"][3] == "failure" and rows["sqli"][4].startswith("blocked: checks:")
    assert "B608" in demo_server.verdict_words(seeded.statuses["sqli"])
    assert rows["weak-test"][3] == "failure" and rows["weak-test"][4].startswith("blocked: checks:")
    assert "code_owners: .mergegate.yml is owned by the admins" in rows["policy"][4]


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


def test_demo_serve_seeds_prints_the_commands_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    data = tmp_path / "data"
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    cmd = [sys.executable, "-m", "mergegate", "demo", "--serve", "--data", str(data), "--port", str(port)]
    out = tmp_path / "demo.out"
    with open(out, "wb") as stdout:
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 900
        while "Serving until Ctrl-C." not in out.read_text():
            assert proc.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.5)
        text = out.read_text()
        for title in ("Count users", "Simplify the user lookup", "Fix a flaky test", "Make the gate advisory"):
            assert title in text
        assert "blocked only on a human approval" in text
        token = re.search(rf"export MERGEGATE_URL=http://127.0.0.1:{port} MERGEGATE_TOKEN=(\S+)", text).group(1)
        approve = re.search(r"(\S*mergegate\S*(?: -m mergegate)?) change approve (\d+)", text)
        assert approve, text
        url = f"http://127.0.0.1:{port}"
        proc_status = cli("change", "status", approve.group(2), token=token, url=url)
        assert proc_status.returncode == 1 and "blocked" in proc_status.stdout, proc_status.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert proc.returncode == 0, out.read_text()
    assert "stopping the server" in out.read_text()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
