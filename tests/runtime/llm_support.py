"""Shared set-up for model-driven runs: a workspace, a runner on it, a plan around a model."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from mergegate.runtime.agent_spec import build_agent
from mergegate.runtime.budget import Budget, Price
from mergegate.runtime.contracts import ReviewContract
from mergegate.runtime.llm_agent import LLMRun, RunPlan, run_llm_agent
from mergegate.runtime.model_guard import RetryPolicy
from mergegate.runtime.models import ModelChoice
from mergegate.runtime.runner import ToolRunner
from mergegate.runtime.workspace import Workspace
from mergegate.store.audit_log import AuditLog

REVIEW = {"score": 70, "recommendation": "comment", "summary": "ok", "issues": []}


@dataclass
class Setup:
    root: Path
    workspace: Path
    audit_path: Path

    def runner(self, agent: str = "reviewer", **spec: Any) -> ToolRunner:
        raw = {"preset": "reviewer", **spec} if spec else None
        return ToolRunner(
            agent=agent,
            spec=build_agent(agent, raw),
            workspace=Workspace(self.workspace),
            audit=AuditLog(self.audit_path),
        )

    def audit(self) -> list[dict[str, Any]]:
        if not self.audit_path.exists():
            return []
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]


def make_setup(tmp_path: Path, files: dict[str, str] | None = None) -> Setup:
    ws = tmp_path / "ws"
    ws.mkdir()
    for rel, text in (files or {"app.py": "def add(a, b):\n    return a - b\n"}).items():
        target = ws / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return Setup(tmp_path, ws, tmp_path / "audit.jsonl")


def plan_for(
    model: Any,
    runner: ToolRunner,
    *,
    price: Price | None = None,
    max_usd: str | None = None,
    max_tokens: int | None = None,
    max_output_tokens: int | None = None,
) -> RunPlan:
    choice = ModelChoice(
        provider="openai-compatible",
        model="test",
        base_url=None,
        api_key_env=None,
        timeout_s=10,
        max_retries=2,
        retry_base_s=0.001,
        max_output_tokens=max_output_tokens,
        source="test",
    )
    budget = Budget(
        price=price or Price.of(0, 0),
        max_turns=runner.spec.max_turns,
        max_usd=Decimal(max_usd if max_usd is not None else str(runner.spec.max_usd)),
        max_tokens=max_tokens if max_tokens is not None else runner.spec.max_tokens,
    )
    return RunPlan(choice, model, budget, RetryPolicy(2, 0.001))


def run_review(runner: ToolRunner, plan: RunPlan, delays: list[float] | None = None) -> LLMRun[ReviewContract]:
    """One review run with ``plan``; retry backoffs are recorded in ``delays``, not slept."""

    async def sleep(seconds: float) -> None:
        if delays is not None:
            delays.append(seconds)
        await asyncio.sleep(0)

    return asyncio.run(
        run_llm_agent(
            runner=runner,
            plan=plan,
            output_type=ReviewContract,
            instructions="Review the change.",
            prompt="Review app.py.",
            sleep=sleep,
        )
    )
