"""The runtime's hold on the model: budget, retries, and calls the model was never offered.

``GuardedModel`` wraps the pydantic-ai model of a run; every model request of the agent
loop goes through it, so the runtime — not the model, not the framework's defaults —
decides:

- **budget**: before each request the run must have turns, tokens and dollars left, and
  the response's output is capped to what is left; after it, its usage is charged at
  the price table's rates (``budget.Budget``). Over a limit: ``BudgetExceeded``, and
  the run stops with ``budget_exceeded``. A priced model whose endpoint reports no usage
  cannot be metered, so that is ``budget_exceeded`` too, never an unmetered run.
- **retries**: transient failures (429, 5xx, timeouts, dropped connections) are retried
  with exponential backoff (honouring ``Retry-After`` up to the cap), a bounded number
  of times; then ``ModelUnavailable`` with the last error. Requests the endpoint
  rejected (400, 401, 404, exhausted quota) are not retried: sending them again cannot
  help.
- **unoffered tool calls**: the framework answers a call of a name it was not given with
  "unknown tool" and runs nothing. The runtime still audits it through
  ``ToolRunner.refuse_unoffered`` (with the runner's reason, e.g. "ApproveChange can
  never be called by an agent"), and that reason is what the model is shown in place of
  the framework's text on the next request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pydantic_ai.exceptions import (
    ModelAPIError,
    ModelConnectionError,
    ModelHTTPError,
    ModelQuotaExceededError,
    ModelRateLimitError,
    ModelRequestRejectedError,
    ModelRequestTimeout,
    ModelServerError,
    ModelUnavailableError,
)
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, ToolCallPart
from pydantic_ai.models import ModelRequestParameters
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings

from mergegate.runtime.budget import Budget, BudgetExceeded
from mergegate.runtime.redact import redact_text
from mergegate.runtime.runner import CallResult, ToolRunner

#: Statuses worth another attempt: timeouts, conflicts, rate limits, server errors, overload.
TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


class ModelUnavailable(Exception):
    """The endpoint kept failing with transient errors after every allowed retry."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: ``base_s * 2**attempt`` (a ``Retry-After`` may ask for more), capped."""

    max_retries: int = 3
    base_s: float = 1.0
    max_delay_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        wait = self.base_s * 2**attempt
        if retry_after is not None and retry_after > wait:
            wait = retry_after
        return min(wait, self.max_delay_s)


#: Codes a provider puts in a 429's body when the limit is spend or quota, not rate: no wait
#: helps (Anthropic: ``error.details.error_code``, until the month ends; OpenAI: ``error.code``).
QUOTA_CODES = frozenset({"enforced_spend_limit_reached", "insufficient_quota"})


def _quota_exhausted(exc: BaseException) -> bool:
    """Whether the error body says the spend or quota limit is reached (pydantic-ai files
    Anthropic's spend-limit 429 under rate limits, whose type it shares)."""
    body = getattr(exc, "body", None)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return False
    details = error.get("details") if isinstance(error.get("details"), dict) else {}
    return any(isinstance(c, str) and c in QUOTA_CODES for c in (error.get("code"), details.get("error_code")))


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ModelQuotaExceededError | ModelRequestRejectedError) or _quota_exhausted(exc):
        return False
    if isinstance(exc, ModelRateLimitError | ModelUnavailableError | ModelServerError | ModelConnectionError):
        return True
    if isinstance(exc, ModelRequestTimeout):
        return True
    return isinstance(exc, ModelHTTPError) and exc.status_code in TRANSIENT_STATUS


def describe_error(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return redact_text(f"{type(exc).__name__}{f' (HTTP {status})' if status else ''}: {text}")[:500]


@dataclass(frozen=True)
class Attempt:
    """A failed attempt that was retried (kept for the run's report and the audit log)."""

    attempt: int
    delay_s: float
    error: str


class GuardedModel(WrapperModel):
    """Every model request of a run, under the runtime's budget, retries and audit."""

    def __init__(
        self,
        wrapped: Any,
        *,
        budget: Budget,
        retry: RetryPolicy,
        runner: ToolRunner,
        offered: frozenset[str],
        max_output_tokens: int | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ):
        super().__init__(wrapped)
        self.budget = budget
        self.retry = retry
        self.runner = runner
        self.offered = offered
        self.max_output_tokens = max_output_tokens
        self.retried: list[Attempt] = []
        #: Calls of tools the model was not offered, refused and audited here.
        self.refused: list[CallResult] = []
        self._sleep = sleep
        #: tool_call_id -> what the model is told about a call it was not offered.
        self._refusals: dict[str, str] = {}

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        self.budget.before_request()
        cap = self.budget.output_cap(self.max_output_tokens)
        capped_by_budget = cap is not None and (self.max_output_tokens is None or cap < self.max_output_tokens)
        settings: ModelSettings = dict(model_settings or {})  # type: ignore[assignment]
        if cap is not None:
            settings["max_tokens"] = min(cap, settings.get("max_tokens") or cap)
        response = await self._with_retries(self._shown(messages), settings, model_request_parameters)

        usage = response.usage
        try:
            self.budget.charge(usage.input_tokens, usage.output_tokens, usage.cache_read_tokens)
            if response.finish_reason == "length" and capped_by_budget:
                raise BudgetExceeded(
                    f"the response was cut at {cap} output tokens, all the remaining budget allows "
                    f"(spent ${self.budget.spent.to_json()['cost_usd']} of max_usd ${self.budget.max_usd})"
                )
        except BudgetExceeded as exc:
            # The calls this response proposed will never run; they are still calls the agent made.
            await self._refuse_calls(response, model_request_parameters, f"not run: the run stopped ({exc.reason})")
            raise
        await self._refuse_calls(response, model_request_parameters)
        return response

    @asynccontextmanager
    async def request_stream(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """Refused: the budget and the unoffered-call audit work on whole responses.

        The wrapper's default would hand the stream straight to the wrapped model,
        around every check above; a run that asks for streaming fails instead.
        """
        raise NotImplementedError("the runtime meters whole responses; streamed model runs are not supported")
        yield  # pragma: no cover

    async def _with_retries(
        self, messages: list[ModelMessage], settings: ModelSettings, params: ModelRequestParameters
    ) -> ModelResponse:
        attempt = 0
        while True:
            try:
                return await self.wrapped.request(messages, settings, params)
            except ModelAPIError as exc:
                if not is_transient(exc):
                    raise
                if attempt >= self.retry.max_retries:
                    raise ModelUnavailable(
                        f"the model endpoint failed {attempt + 1} times in a row (max_retries: "
                        f"{self.retry.max_retries}); last error: {describe_error(exc)}"
                    ) from exc
                delay = self.retry.delay(attempt, getattr(exc, "retry_after", None))
                self.retried.append(Attempt(attempt + 1, delay, describe_error(exc)))
                attempt += 1
                await self._sleep(delay)

    async def _refuse_calls(
        self, response: ModelResponse, params: ModelRequestParameters, stopped: str | None = None
    ) -> None:
        """Audit as refused: calls of tools never offered, or (``stopped``) every call of the response."""
        output_tools = {t.name for t in params.output_tools}
        for part in response.parts:
            if not isinstance(part, ToolCallPart) or part.tool_name in output_tools:
                continue
            if stopped is None and part.tool_name in self.offered:
                continue
            result = await self.runner.refuse_unoffered(part.tool_name, _args(part), reason=stopped)
            self.refused.append(result)
            offered = ", ".join(sorted(self.offered)) or "none"
            self._refusals[part.tool_call_id] = f"refused: {result.reason} (tools you can call: {offered})"

    def _shown(self, messages: list[ModelMessage]) -> list[ModelMessage]:
        """The conversation as the model sees it: the runtime's refusals in place of "unknown tool"."""
        if not self._refusals:
            return messages
        shown = []
        for message in messages:
            if isinstance(message, ModelRequest) and any(
                getattr(p, "tool_call_id", None) in self._refusals for p in message.parts
            ):
                parts = [
                    dataclasses.replace(p, content=self._refusals[p.tool_call_id])
                    if getattr(p, "tool_call_id", None) in self._refusals and hasattr(p, "content")
                    else p
                    for p in message.parts
                ]
                message = dataclasses.replace(message, parts=parts)
            shown.append(message)
        return shown


def _args(part: ToolCallPart) -> Any:
    if isinstance(part.args, str):
        try:
            return json.loads(part.args) if part.args.strip() else {}
        except json.JSONDecodeError:
            return {"_unparseable_arguments": part.args[:500]}
    return part.args if part.args is not None else {}
