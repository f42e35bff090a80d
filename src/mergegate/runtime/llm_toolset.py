"""The only tools a model gets: a pydantic-ai toolset whose every call is ``ToolRunner.call``.

The model is offered the tools its agent's allowlist names (``Bash`` for
``Bash(git diff:*)``: the runner checks the specifier on each call), each described with
its rules so the model knows what it may do. Nothing else is registered with the
pydantic-ai agent — no function tools, no built-in tools, no MCP servers — so no tool
exists that bypasses the runner.

Arguments are *not* validated by pydantic-ai: they go to the runner as the model sent
them, so a malformed call is refused **and audited** by the runtime (the runner validates
against the tool's strict argument model), instead of being bounced by the framework
without a trace.

What the model gets back is text: the tool's output when the call was allowed, and
``refused: <reason>`` or ``paused: <reason>`` otherwise — so the model can carry on (or
give up) knowing exactly why.

A *pausable* toolset (a run a server can suspend) uses pydantic-ai's own human-in-the-loop
mechanism instead: a paused call raises ``ApprovalRequired``, the run ends with
``DeferredToolRequests``, and when it is resumed the framework calls the tool again
with ``tool_call_approved``. The runner decides again, under the call index the pause
had (``resume_indices``): the durable gate then answers with the human's decision, so an
approved call runs and a denied or expired one returns its reason, audited either way.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic_ai.exceptions import ApprovalRequired
from pydantic_ai.tools import ToolDefinition
from pydantic_ai.toolsets import AbstractToolset
from pydantic_ai.toolsets.abstract import ToolsetTool

from mergegate.runtime.runner import CallResult, Status, ToolRunner
from mergegate.runtime.tools import TOOLS

#: Longer tool output is cut for the model, with a marker saying so (never silently).
MAX_RESULT_CHARS = 40_000


class _PassThrough:
    """An args "validator" that only parses: the runner is the one that validates."""

    def validate_json(self, input: str | bytes | bytearray, **_: Any) -> Any:
        text = input.decode("utf-8", "replace") if isinstance(input, bytes | bytearray) else input
        if not text.strip():
            return {}
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return {"_unparseable_arguments": text[:500]}

    def validate_python(self, input: Any, **_: Any) -> Any:
        return {} if input is None else input


def _schema(name: str) -> dict[str, Any]:
    schema = TOOLS[name].args.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    return schema


def render(result: CallResult, max_chars: int = MAX_RESULT_CHARS) -> str:
    """The tool result text the model receives."""
    if result.status is Status.REFUSED:
        return f"refused: {result.reason}"
    if result.status is Status.PAUSED:
        return f"paused: {result.reason}. The call did not run; a human must approve it first."
    text = result.output or "(no output)"
    if len(text) > max_chars:
        text = f"{text[:max_chars]}\n[output cut at {max_chars} of {len(text)} characters]"
    return text


class RuntimeToolset(AbstractToolset[Any]):
    """The agent's allowlisted tools, each call executed (or refused) by ``runner``."""

    def __init__(
        self,
        runner: ToolRunner,
        *,
        max_result_chars: int = MAX_RESULT_CHARS,
        pausable: bool = False,
        resume_indices: dict[str, int] | None = None,
    ):
        self.runner = runner
        self.max_result_chars = max_result_chars
        self.pausable = pausable
        #: tool_call_id -> call index of calls paused earlier, decided on this resume.
        self.resume_indices = dict(resume_indices or {})
        #: tool_call_id -> call index of the calls this run paused on (pausable only).
        self.paused: dict[str, int] = {}
        #: Every call the model made through this toolset, as the runtime decided it.
        self.calls: list[CallResult] = []
        rules: dict[str, list[str]] = {}
        for rule in runner.allow:
            if rule.tool in TOOLS:
                rules.setdefault(rule.tool, []).append(str(rule))
        self._defs = {
            name: ToolDefinition(
                name=name,
                description=f"{TOOLS[name].summary}. Allowed for you: {', '.join(granted)}."
                + (" Needs a human's approval: the call pauses." if TOOLS[name].needs_approval else ""),
                parameters_json_schema=_schema(name),
            )
            for name, granted in rules.items()
        }

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._defs)

    @property
    def id(self) -> str | None:
        return "mergegate-runtime"

    async def get_tools(self, ctx: Any) -> dict[str, ToolsetTool[Any]]:
        return {
            name: ToolsetTool(
                toolset=self,
                tool_def=definition,
                # A refusal is a normal result, not a retry; this only bounds malformed calls.
                max_retries=self.runner.spec.max_turns,
                args_validator=_PassThrough(),
            )
            for name, definition in self._defs.items()
        }

    async def call_tool(self, name: str, tool_args: Any, ctx: Any, tool: ToolsetTool[Any]) -> str:
        call_id = getattr(ctx, "tool_call_id", None)
        index = self.resume_indices.get(call_id) if getattr(ctx, "tool_call_approved", False) else None
        result = await self.runner.call(name, tool_args, index=index)
        self.calls.append(result)
        if self.pausable and result.status is Status.PAUSED and call_id:
            self.paused[call_id] = result.index
            raise ApprovalRequired(metadata={"index": result.index, "reason": result.reason})
        return render(result, self.max_result_chars)
