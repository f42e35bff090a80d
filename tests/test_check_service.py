"""The check runner: concurrency, fail-closed, policy from base, audit. Uses plug-in agents
registered the way third-party agents are (the registry), not mocks."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from typing import ClassVar

import pytest
from pydantic import BaseModel

from mergegate.agents import AgentOutput, registry
from mergegate.agents.base import NoOptions
from mergegate.core.policy import Mode, PolicyError
from mergegate.core.results import AgentStatus
from mergegate.core.routing import Action
from mergegate.runtime.process import run_process
from mergegate.store.audit_log import AuditLog


class PluginAgent:
    Options: ClassVar[type[BaseModel]] = NoOptions
    default_timeout: ClassVar[float] = 30.0
    description = "test plug-in"

    def __init__(self, name, run):
        self.name = name
        self._run = run

    async def run(self, ctx):
        return await self._run(ctx)


@pytest.fixture
def plugin(monkeypatch):
    def register(name, run):
        monkeypatch.setitem(registry(), name, PluginAgent(name, run))

    return register


async def _clean(ctx):
    return AgentOutput()


def test_an_agent_that_raises_makes_the_verdict_error(repo, plugin):
    async def boom(ctx):
        raise RuntimeError("analyser crashed")

    plugin("boom", boom)
    plugin("fine", _clean)
    report = repo.base({"a.py": "a = 1\n"}).change({"a.py": "a = 2\n"}).check(["boom", "fine"])
    by_name = {r.name: r for r in report.results}
    assert by_name["boom"].status is AgentStatus.ERROR
    assert "RuntimeError: analyser crashed" in by_name["boom"].detail
    assert by_name["fine"].status is AgentStatus.OK
    assert report.decision.action is Action.ERROR
    assert "fail closed" in report.decision.reasons[0]


def test_an_agent_past_its_timeout_makes_the_verdict_error(repo, plugin):
    async def hang(ctx):
        await asyncio.sleep(3600)

    plugin("hang", hang)
    repo.base({".mergegate.yml": "agents: {hang: {timeout: 0.3}}\n", "a.py": "a = 1\n"})
    report = repo.change({"a.py": "a = 2\n"}).check(["hang"])
    assert report.results[0].status is AgentStatus.TIMEOUT
    assert report.results[0].detail == "did not finish within 0.3s"
    assert report.decision.action is Action.ERROR


def test_agents_run_concurrently(repo, plugin):
    # Each agent waits for the other: this only completes if both run at once.
    a_ready, b_ready = asyncio.Event(), asyncio.Event()

    async def a(ctx):
        a_ready.set()
        await asyncio.wait_for(b_ready.wait(), 10)
        return AgentOutput()

    async def b(ctx):
        b_ready.set()
        await asyncio.wait_for(a_ready.wait(), 10)
        return AgentOutput()

    plugin("a", a)
    plugin("b", b)
    report = repo.base({"x": "1\n"}).change({"x": "2\n"}).check(["a", "b"])
    assert [r.status for r in report.results] == [AgentStatus.OK, AgentStatus.OK]


def test_a_timed_out_agent_leaves_no_process_behind(repo, plugin):
    marker = f"mergegate-test-{uuid.uuid4().hex}"

    async def spawn(ctx):
        await run_process(["sh", "-c", f"sleep 300; echo {marker}", marker])

    plugin("spawn", spawn)
    repo.base({".mergegate.yml": "agents: {spawn: {timeout: 0.5}}\n"})
    report = repo.change({"x": "1\n"}).check(["spawn"])
    assert report.results[0].status is AgentStatus.TIMEOUT
    survivors = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if marker.encode() in fh.read():
                    survivors.append(pid)
        except OSError:
            continue
    assert survivors == []


def test_policy_is_read_from_the_base_branch_not_the_change(repo, plugin):
    plugin("fine", _clean)
    repo.base({".mergegate.yml": "mode: enforce\nblocking_severity: high\n"})
    report = repo.change({".mergegate.yml": "mode: advisory\nblocking_severity: critical\n"}).check(["fine"])
    assert report.policy.source == "main:.mergegate.yml"
    assert report.decision.mode is Mode.ENFORCE
    assert report.policy.policy.blocking_severity.value == "high"
    # Editing the policy is itself sensitive: never auto-approved.
    assert report.decision.action is Action.HUMAN_REVIEW


def test_a_broken_policy_in_the_change_cannot_break_the_check(repo, plugin):
    plugin("fine", _clean)
    repo.base({".mergegate.yml": "mode: enforce\n"})
    report = repo.change({".mergegate.yml": "mode: [oops\n"}).check(["fine"])
    assert report.decision.mode is Mode.ENFORCE


def test_a_broken_base_policy_is_a_config_error_naming_the_line(repo, plugin):
    plugin("fine", _clean)
    repo.base({".mergegate.yml": "mode: enforce\nthresholds:\n  auto_aprove: 0.9\n"})
    with pytest.raises(PolicyError) as exc:
        repo.change({"x": "1\n"}).check(["fine"])
    assert "main:.mergegate.yml: line 3: thresholds.auto_aprove: unknown key" in str(exc.value)


def test_unknown_agent_options_are_rejected_with_their_line(repo, plugin):
    plugin("fine", _clean)
    repo.base({".mergegate.yml": "agents:\n  fine:\n    timeout: 5\n    colour: blue\n"})
    with pytest.raises(PolicyError, match=r"line 4: agents\.fine\.colour: unknown key"):
        repo.change({"x": "1\n"}).check(["fine"])


def test_no_policy_file_means_built_in_defaults(repo, plugin):
    plugin("fine", _clean)
    report = repo.base({"x": "0\n"}).change({"x": "1\n"}).check(["fine"])
    assert report.policy.source == "built-in defaults"
    assert report.decision.action is Action.AUTO_APPROVE


def test_every_agent_run_and_the_decision_are_audited(repo, plugin, tmp_path):
    plugin("fine", _clean)
    plugin("other", _clean)
    audit = AuditLog(tmp_path / "audit.jsonl")
    repo.base({"x": "0\n"}).change({"x": "1\n"}).check(["fine", "other"], audit=audit)
    entries = [json.loads(line) for line in audit.path.read_text().splitlines()]
    assert [(e["agent_id"], e["action"], e["outcome"]) for e in entries] == [
        ("mergegate/fine", "agent_run", "ok"),
        ("mergegate/other", "agent_run", "ok"),
        ("mergegate/check", "decision", "auto_approve"),
    ]
    assert all(e["policy_applied"].startswith("built-in defaults@") for e in entries)
    assert audit.verify().ok
