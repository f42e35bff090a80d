"""Run a model-driven agent inside the runtime: the loop, its limits and its record.

``run_llm_agent`` builds a pydantic-ai ``Agent`` whose only tools are the runtime's
(``llm_toolset.RuntimeToolset``: every call is ``ToolRunner.call``) and whose model is
wrapped in ``model_guard.GuardedModel`` (budget, retries, unoffered calls). The model
proposes tool calls and finally an answer of the requested type; the runtime executes,
refuses or pauses each call and keeps the budget.

A run ends with one of three statuses, and says why:

- ``completed`` — the answer validated against the output type;
- ``budget_exceeded`` — a turn, token or dollar limit was reached (the reason names it);
- ``error`` — the endpoint failed after its retries, rejected the request, the answer
  never fitted the contract, or anything else went wrong. Fail closed: a caller treats
  it as "not examined";
- ``paused`` — only for a ``pausable`` run: a call needs a human's approval. The run
  returns its conversation (``LLMRun.messages``, pydantic-ai's JSON) and the paused
  calls; ``run_llm_agent(message_history=…, resume=…)`` continues it once the humans
  decided (the caller restores the budget's spend, so limits hold across resumes).

Whatever the status, the run is recorded in the audit log (``action: llm_run``) with
the model, the usage and the cost, and the same numbers are returned (``LLMRun.spend``)
so a server can sum the cost of every run for a change.

``plan_run`` turns configuration into what a run needs: the model choice (policy +
environment, see ``models``), the pydantic-ai model (the API key read now), the budget
(the agent's ``max_turns`` / ``max_tokens`` / ``max_usd`` at the price of that model).
It returns ``None`` when no model is configured — without touching the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Generic, TypeVar

from mergegate.core.policy import ModelsConfig
from mergegate.runtime.agent_spec import AgentSpec
from mergegate.runtime.budget import Budget, BudgetExceeded, Price, Spend, lookup_price
from mergegate.runtime.models import ModelChoice, ModelConfigError, build_model, resolve_model
from mergegate.runtime.redact import redact_text
from mergegate.runtime.runner import CallResult, ToolRunner

T = TypeVar("T")

#: How many times the model may be asked to fix an answer that does not fit the contract.
OUTPUT_RETRIES = 2


class RunStatus(StrEnum):
    COMPLETED = "completed"
    BUDGET_EXCEEDED = "budget_exceeded"
    ERROR = "error"
    PAUSED = "paused"


@dataclass(frozen=True)
class LLMRun(Generic[T]):
    status: RunStatus
    output: T | None
    reason: str
    spend: Spend
    run_id: str
    model: str
    calls: tuple[CallResult, ...] = ()
    #: Failed attempts that were retried: (attempt, delay in seconds, error).
    retries: tuple[tuple[int, float, str], ...] = ()
    #: The whole conversation as pydantic-ai JSON (pausable runs only), to resume from.
    messages: bytes | None = None
    #: (tool_call_id, call index) of the calls a paused run waits on.
    paused: tuple[tuple[str, int], ...] = ()

    @property
    def ok(self) -> bool:
        return self.status is RunStatus.COMPLETED

    @property
    def cost_usd(self) -> Decimal:
        return self.spend.cost_usd


@dataclass
class RunPlan:
    """Everything a run needs besides its runner and prompt."""

    choice: ModelChoice
    model: Any
    budget: Budget
    retry: Any  # model_guard.RetryPolicy (imported lazily with pydantic-ai)


def plan_run(
    models: ModelsConfig,
    agent: str,
    spec: AgentSpec,
    *,
    environ: Mapping[str, str] | None = None,
    http_client: Any = None,
) -> RunPlan | None:
    """The model, budget and retry policy for ``agent``; ``None`` when no model is configured.

    Raises ``models.ModelConfigError`` (bad configuration, missing key) or
    ``budget.UnknownPrice`` (a dollar limit with no price to enforce it by).
    """
    choice = resolve_model(models, agent, os.environ if environ is None else environ)
    if choice is None:
        return None
    price: Price = lookup_price(
        choice.model,
        models.prices,
        provider=choice.price_provider,
        base_url=choice.base_url,
    )
    try:
        from mergegate.runtime.model_guard import RetryPolicy
    except ImportError as exc:  # the `llm` extra is not installed
        raise ModelConfigError(
            f"a model is configured ({choice.label}) but the LLM backends are not installed "
            f"({exc.name or exc}): pip install 'mergegate[llm]'"
        ) from None

    budget = Budget(
        price=price, max_turns=spec.max_turns, max_usd=Decimal(str(spec.max_usd)), max_tokens=spec.max_tokens
    )
    model = build_model(choice, environ, http_client=http_client)
    return RunPlan(choice, model, budget, RetryPolicy(choice.max_retries, choice.retry_base_s))


async def run_llm_agent(
    *,
    runner: ToolRunner,
    plan: RunPlan,
    output_type: type[T],
    instructions: str,
    prompt: str | None,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    pausable: bool = False,
    message_history: bytes | None = None,
    resume: dict[str, int] | None = None,
) -> LLMRun[T]:
    """Drive the model until it answers with ``output_type``, a limit is reached, or it fails.

    ``pausable``: a call that needs approval ends the run ``paused`` (see the module doc);
    ``message_history`` + ``resume`` (tool_call_id -> call index of the decided calls)
    continue such a run.
    """
    from pydantic_ai import Agent, AgentRetries, DeferredToolRequests, DeferredToolResults
    from pydantic_ai.exceptions import ModelAPIError, UnexpectedModelBehavior, UsageLimitExceeded
    from pydantic_ai.messages import ModelMessagesTypeAdapter
    from pydantic_ai.usage import UsageLimits

    from mergegate.runtime.llm_toolset import RuntimeToolset
    from mergegate.runtime.model_guard import GuardedModel, ModelUnavailable, describe_error

    toolset = RuntimeToolset(runner, pausable=pausable, resume_indices=resume)
    guard = GuardedModel(
        plan.model,
        budget=plan.budget,
        retry=plan.retry,
        runner=runner,
        offered=toolset.names,
        max_output_tokens=plan.choice.max_output_tokens,
        sleep=sleep,
    )
    agent = Agent(
        guard,
        output_type=[output_type, DeferredToolRequests] if pausable else output_type,
        instructions=instructions,
        toolsets=[toolset],
        retries=AgentRetries(tools=runner.spec.max_turns, output=OUTPUT_RETRIES),
        name=runner.agent,
    )
    output: T | None = None
    reason = ""
    messages: bytes | None = None
    kwargs: dict[str, Any] = {}
    if message_history is not None:
        kwargs["message_history"] = ModelMessagesTypeAdapter.validate_json(message_history)
        if resume:
            kwargs["deferred_tool_results"] = DeferredToolResults(approvals=dict.fromkeys(resume, True))
    try:
        # Our budget is the limit; the framework's own request cap (50) would cut in silently.
        result = await agent.run(prompt, usage_limits=UsageLimits(request_limit=None), **kwargs)
        if pausable:
            messages = ModelMessagesTypeAdapter.dump_json(result.all_messages())
        if isinstance(result.output, DeferredToolRequests):
            status = RunStatus.PAUSED
            reason = f"waiting for a human's approval of {len(toolset.paused)} call(s)"
        else:
            status, output = RunStatus.COMPLETED, result.output
    except BudgetExceeded as exc:
        status, reason = RunStatus.BUDGET_EXCEEDED, exc.reason
    except UsageLimitExceeded as exc:
        status, reason = RunStatus.BUDGET_EXCEEDED, str(exc)
    except ModelUnavailable as exc:
        status, reason = RunStatus.ERROR, str(exc)
    except UnexpectedModelBehavior as exc:
        status, reason = RunStatus.ERROR, "the model's answer did not fit the contract: " + redact_text(exc.message)
    except ModelAPIError as exc:
        status, reason = RunStatus.ERROR, f"the model endpoint refused the request: {describe_error(exc)}"
    except Exception as exc:  # fail closed, and say what happened
        status, reason = RunStatus.ERROR, redact_text(f"{type(exc).__name__}: {exc}")
    finally:
        await _close(plan.model)
    # Our own reasons are redaction-safe; texts from endpoints and exceptions were redacted above.
    reason = reason[:2000]
    spend = plan.budget.spent
    calls = tuple(sorted([*toolset.calls, *guard.refused], key=lambda c: c.index))
    runner.audit.append(
        agent_id=f"agent:{runner.agent}",
        action="llm_run",
        confidence_score=None,
        policy_applied=runner.policy_applied,
        human_reviewer=None,
        outcome=str(status),
        run_id=runner.run_id,
        model=plan.choice.label,
        model_source=plan.choice.source,
        price_source=plan.budget.price.source,
        usage=spend.to_json(),
        cost_usd=spend.to_json()["cost_usd"],
        limits={
            "max_turns": plan.budget.max_turns,
            "max_tokens": plan.budget.max_tokens,
            "max_usd": str(plan.budget.max_usd),
        },
        tool_calls=len(calls),
        retries=len(guard.retried),
        reason=reason,
    )
    return LLMRun(
        status=status,
        output=output,
        reason=reason,
        spend=spend,
        run_id=runner.run_id,
        model=plan.choice.label,
        calls=calls,
        retries=tuple((a.attempt, a.delay_s, a.error) for a in guard.retried),
        messages=messages,
        paused=tuple(toolset.paused.items()) if status is RunStatus.PAUSED else (),
    )


async def _close(model: Any) -> None:
    """Close the SDK client (and its connection pool) built for this run."""
    close = getattr(getattr(model, "client", None), "close", None)
    if close is not None:
        with contextlib.suppress(Exception):  # best effort; the run's outcome is already decided
            await close()
