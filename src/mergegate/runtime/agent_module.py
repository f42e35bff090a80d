"""The reusable agent module contract: one agent as one pipeline step.

    run_agent_module(agent_type, confidence_threshold, context)
        -> AgentModuleResult(result, confidence, should_continue)

``agent_type`` names a registered module (``review`` is built in; others register with
``register_agent_module``), ``context`` is what the step is given (a mapping; each module
documents its keys), and the result says whether the pipeline may go on:
``should_continue = confidence >= confidence_threshold`` — for a module that *completed*.
A module that was skipped (no model configured), ran out of budget or failed reports
confidence 0.0 and ``should_continue = False`` whatever the threshold: a pipeline never
continues on an answer that does not exist (fail closed). ``status`` and ``reason`` say
which it was.

The contract is deliberately small and pure — a frozen dataclass and one async function
— so a pipeline executor (local or Celery) can call any agent the same way and route on
``should_continue`` without knowing what the agent does.

The built-in ``review`` module runs the LLM review (``runtime.contracts.ReviewContract``)
inside the runtime. Its context:

=================  ==========================================================================
``workspace``      directory the model may read (read-only tools: Read, LS, Grep, Glob)
``diff``           the unified diff to review
``audit_path``     the audit log every tool call and the run are appended to (required)
``files``          changed paths (optional)
``models``         the policy's ``models:`` section (``ModelsConfig`` or a dict; optional)
``max_turns``, ``max_usd``, ``max_tokens``  the run's budget (optional)
``environ``        environment to read ``MERGEGATE_MODEL`` and keys from (optional; default the process's)
=================  ==========================================================================

``result`` is the review contract as a dict; ``confidence`` is ``score / 100``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

MODULE_OK = "ok"


@dataclass(frozen=True)
class ModuleOutput:
    """What a module function returns; ``run_agent_module`` adds ``should_continue``."""

    result: Any
    confidence: float
    status: str = MODULE_OK
    reason: str = ""
    cost_usd: str = "0"


@dataclass(frozen=True)
class AgentModuleResult:
    result: Any
    confidence: float
    should_continue: bool
    #: ``ok`` | ``skipped`` | ``budget_exceeded`` | ``error``
    status: str = MODULE_OK
    reason: str = ""
    #: What the step cost (US dollars, as a decimal string), for per-change totals.
    cost_usd: str = "0"


AgentModule = Callable[[Mapping[str, Any]], Awaitable[ModuleOutput]]

_MODULES: dict[str, AgentModule] = {}


def register_agent_module(agent_type: str, module: AgentModule) -> None:
    _MODULES[agent_type] = module


def agent_module_types() -> list[str]:
    return sorted(_MODULES)


async def run_agent_module(
    agent_type: str, confidence_threshold: float, context: Mapping[str, Any]
) -> AgentModuleResult:
    """Run one agent module as a pipeline step. Unknown types and bad thresholds are usage errors."""
    if not 0.0 <= confidence_threshold <= 1.0:
        raise ValueError(f"confidence_threshold must be within 0..1, got {confidence_threshold}")
    module = _MODULES.get(agent_type)
    if module is None:
        raise ValueError(f"unknown agent type {agent_type!r} (known: {', '.join(agent_module_types())})")
    try:
        out = await module(context)
    except Exception as exc:  # fail closed: a step that broke never lets the pipeline continue
        out = ModuleOutput(None, 0.0, "error", f"{type(exc).__name__}: {exc}")
    if out.status != MODULE_OK:
        return AgentModuleResult(out.result, 0.0, False, out.status, out.reason, out.cost_usd)
    confidence = min(1.0, max(0.0, float(out.confidence)))
    return AgentModuleResult(
        out.result, confidence, confidence >= confidence_threshold, out.status, out.reason, out.cost_usd
    )


async def review_module(context: Mapping[str, Any]) -> ModuleOutput:
    """The built-in ``review`` module (see the module docstring for its context)."""
    from pathlib import Path

    from mergegate.core.policy import ModelsConfig
    from mergegate.runtime.agent_spec import build_agent
    from mergegate.runtime.contracts import REVIEW_INSTRUCTIONS, ReviewContract, review_prompt
    from mergegate.runtime.llm_agent import plan_run, run_llm_agent
    from mergegate.runtime.models import NOT_CONFIGURED
    from mergegate.runtime.runner import ToolRunner
    from mergegate.runtime.workspace import Workspace
    from mergegate.store.audit_log import AuditLog

    if not context.get("audit_path"):
        raise ValueError("context.audit_path is required: every tool call and run is audited")
    models = context.get("models") or ModelsConfig()
    if isinstance(models, Mapping):
        models = ModelsConfig.model_validate(models)
    budget = {k: context[k] for k in ("max_turns", "max_usd", "max_tokens") if context.get(k) is not None}
    spec = build_agent("review", {"preset": "reviewer", "tools": "Read, LS, Grep, Glob", **budget})
    plan = plan_run(models, "review", spec, environ=context.get("environ"))
    if plan is None:
        return ModuleOutput({"skipped": NOT_CONFIGURED}, 0.0, "skipped", NOT_CONFIGURED)
    runner = ToolRunner(
        agent="review",
        spec=spec,
        workspace=Workspace(Path(context["workspace"])),
        audit=AuditLog(Path(context["audit_path"])),
        tests_command=None,
    )
    run = await run_llm_agent(
        runner=runner,
        plan=plan,
        output_type=ReviewContract,
        instructions=REVIEW_INSTRUCTIONS,
        prompt=review_prompt(str(context["diff"]), list(context.get("files") or [])),
    )
    cost = run.spend.to_json()["cost_usd"]
    if not run.ok or run.output is None:
        return ModuleOutput(None, 0.0, str(run.status), run.reason, cost)
    return ModuleOutput(run.output.model_dump(), run.output.score / 100, MODULE_OK, "", cost)


register_agent_module("review", review_module)
