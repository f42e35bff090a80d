"""Pausable model runs: a call that needs approval ends the run ``paused`` with its
conversation; resuming it (pydantic-ai's deferred tools) has the runner decide each
paused call again, so the human's decision is what the model gets back.

The decisions are ``FileApprovals`` (a real gate: a JSON file a human edits); the model
is pydantic-ai's ``FunctionModel``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from decimal import Decimal

from pydantic_ai.messages import ModelMessagesTypeAdapter, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from mergegate.runtime.approvals import FileApprovals
from mergegate.runtime.budget import Price, Spend
from mergegate.runtime.llm_agent import RunStatus, run_llm_agent
from tests.runtime.llm_support import make_setup, plan_for

TOOLS = "Read, PostComment"


def _model(seen: list[list[ToolReturnPart]]):
    def model(messages, info: AgentInfo) -> ModelResponse:
        returns = [p for p in messages[-1].parts if isinstance(p, ToolReturnPart)]
        if not returns:
            return ModelResponse(
                parts=[
                    ToolCallPart("Read", {"path": "app.py"}, tool_call_id="r"),
                    ToolCallPart("PostComment", {"body": "first"}, tool_call_id="c1"),
                    ToolCallPart("PostComment", {"body": "second"}, tool_call_id="c2"),
                ]
            )
        seen.append(returns)
        return ModelResponse(parts=[TextPart("done")])

    return model


def _run(setup, runner, gate_model, **kwargs):
    plan = plan_for(FunctionModel(gate_model), runner, price=Price.of(1, 1), max_usd="1")
    plan.budget.spent = kwargs.pop("spent", Spend())
    return asyncio.run(
        run_llm_agent(
            runner=runner,
            plan=plan,
            output_type=str,
            instructions="Comment on the change.",
            prompt=kwargs.pop("prompt", None),
            pausable=True,
            **kwargs,
        )
    )


def test_paused_calls_end_the_run_and_the_resume_gets_each_decision(tmp_path):
    setup = make_setup(tmp_path)
    decisions = tmp_path / "approvals.json"
    seen: list[list[ToolReturnPart]] = []

    def runner():
        r = setup.runner("commenter", tools=TOOLS)
        r.approvals = FileApprovals(decisions)
        return r

    first = _run(setup, runner(), _model(seen), prompt="Comment.")
    assert first.status is RunStatus.PAUSED, first.reason
    assert dict(first.paused) == {"c1": 1, "c2": 2}
    assert [c.status.value for c in first.calls] == ["allowed", "paused", "paused"]
    history = ModelMessagesTypeAdapter.validate_json(first.messages)
    assert isinstance(history[-1].parts[0], ToolReturnPart), "the allowed call's result is kept"

    pending = json.loads(decisions.read_text())["pending"]
    by_body = {v["args"]["body"]: k for k, v in pending.items()}
    decisions.write_text(
        json.dumps(
            {
                "pending": pending,
                "decisions": {
                    by_body["first"]: {"decision": "approve", "by": "dana"},
                    by_body["second"]: {"decision": "deny", "by": "dana", "reason": "one comment is enough"},
                },
            }
        )
    )
    spent = dataclasses.replace(first.spend)  # what the server restores from its row
    assert spent.requests == 1 and spent.cost_usd > Decimal(0)
    again = runner()
    again.turns = 1  # the calls before the paused ones; the resume re-decides those two
    resumed = _run(setup, again, _model(seen), message_history=first.messages, resume=dict(first.paused), spent=spent)
    assert resumed.status is RunStatus.COMPLETED and resumed.output == "done", resumed.reason
    [returns] = seen
    assert {p.tool_call_id: p.content for p in returns} == {
        "r": returns[0].content,
        "c1": "comment queued for the gate (delivered through the gate API)",
        "c2": "refused: denied by dana: one comment is enough",
    }
    assert [(c.index, c.status.value) for c in resumed.calls] == [(1, "allowed"), (2, "refused")]
    assert again.ctx.outbox == [{"kind": "comment", "body": "first"}]
    # The budget continued from the first part: two requests in all.
    assert resumed.spend.requests == 2 and resumed.spend.cost_usd > first.spend.cost_usd
    audit = [(e["action"], e["outcome"], e.get("call_index")) for e in setup.audit() if e["action"] == "tool_call"]
    assert audit[-2:] == [("tool_call", "allowed", 1), ("tool_call", "refused", 2)]
