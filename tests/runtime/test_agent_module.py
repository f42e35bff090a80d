"""The reusable agent module contract: inputs agent_type, confidence_threshold, context."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mergegate.runtime.agent_module import (
    AgentModuleResult,
    ModuleOutput,
    agent_module_types,
    register_agent_module,
    run_agent_module,
)


async def echo(context: dict[str, Any]) -> ModuleOutput:
    if context.get("boom"):
        raise RuntimeError("the step broke")
    return ModuleOutput({"seen": context["value"]}, context["confidence"], status=context.get("status", "ok"))


register_agent_module("echo-test", echo)


def step(threshold: float, **context: Any) -> AgentModuleResult:
    return asyncio.run(run_agent_module("echo-test", threshold, context))


@pytest.mark.parametrize(
    ("confidence", "threshold", "go_on"),
    [(0.8, 0.7, True), (0.7, 0.7, True), (0.69, 0.7, False), (1.0, 1.0, True), (0.0, 0.0, True)],
)
def test_should_continue_is_confidence_at_or_above_the_threshold(confidence, threshold, go_on):
    result = step(threshold, value=1, confidence=confidence)
    assert result == AgentModuleResult({"seen": 1}, confidence, go_on)


def test_a_step_that_did_not_complete_never_continues():
    skipped = step(0.0, value=1, confidence=0.9, status="skipped")
    assert (skipped.confidence, skipped.should_continue, skipped.status) == (0.0, False, "skipped")
    broken = step(0.0, boom=True)
    assert (broken.result, broken.confidence, broken.should_continue, broken.status) == (None, 0.0, False, "error")
    assert broken.reason == "RuntimeError: the step broke"


def test_confidence_is_clamped_and_usage_errors_are_raised():
    assert step(0.5, value=1, confidence=7).confidence == 1.0
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        step(1.5, value=1, confidence=1)
    with pytest.raises(ValueError, match="unknown agent type 'nope'"):
        asyncio.run(run_agent_module("nope", 0.5, {}))
    assert {"review", "echo-test"} <= set(agent_module_types())


def test_review_without_an_audit_log_is_an_error_not_an_unaudited_run(tmp_path):
    result = asyncio.run(run_agent_module("review", 0.5, {"workspace": tmp_path, "diff": ""}))
    assert result.status == "error" and "audit_path is required" in result.reason
