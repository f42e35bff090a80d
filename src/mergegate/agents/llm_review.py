"""llm-review: a model reviews the diff, inside the agent runtime; its issues become findings.

The model gets the diff and read-only tools (``Read, LS, Grep, Glob`` on the head tree,
through ``ToolRunner``: allowlist, path guard, audit), and must answer with the review
contract (``runtime.contracts.ReviewContract``). Each issue becomes a finding —
``security`` or ``quality`` by the model's label, the model's severity — whose confidence
grows as the model's score falls (0.5 at score 100, 0.9 at score 0: an unverified model
claim is never certain). The score can only *lower* the agent's confidence (a factor
of 0.7 at score 0, 1.0 at 100); a recommendation to approve adds nothing. An LLM verdict never
approves a change on its own (design invariant 7).

Failure modes, all explicit:

- **no model configured** (neither ``MERGEGATE_MODEL`` nor ``models.default``): the agent is
  *skipped* with the reason, at confidence 1.0 — not a pass, not an error, and no network;
- an answer that never fits the contract, an endpoint that keeps failing, a budget
  limit (``max_turns`` / ``max_tokens`` / ``max_usd``), a missing API key or price: an
  *error* result, so the check's verdict is ``error`` (fail closed).

The tool calls and the run (model, usage, cost) are appended to the check's audit log
(``--audit-log``; by default ``.git/mergegate/audit.jsonl``).
"""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from mergegate.agents.base import AgentContext, AgentOutput, AgentSkipped
from mergegate.core.finding import Category, Finding
from mergegate.core.severity import Severity

NAME = "llm-review"
#: The tools the reviewing model gets: read-only, no shell (the head tree is not a git repository).
TOOLS = "Read, LS, Grep, Glob"


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Model requests (and tool calls) per review.
    max_turns: int = Field(8, ge=1, le=200)
    #: US dollars per review, at the price table's rates.
    max_usd: float = Field(0.50, ge=0)
    #: Input + output tokens per review.
    max_tokens: int | None = Field(200_000, ge=1)
    #: Longer diffs are cut (the model is told, and confidence is lowered accordingly).
    max_diff_chars: int = Field(60_000, ge=1000, le=5_000_000)


class LLMReviewFailed(RuntimeError):
    """The review did not complete; the check records an error (fail closed)."""


def finding_confidence(score: int) -> float:
    return round(0.5 + 0.4 * (100 - score) / 100, 4)


def score_factor(score: int) -> float:
    return round(0.7 + 0.3 * score / 100, 4)


def _clean_path(path: str) -> str:
    path = path.strip().removeprefix("./")
    return re.sub(r"^[ab]/", "", path)


class LLMReviewAgent:
    name: ClassVar[str] = NAME
    description: ClassVar[str] = (
        "LLM review of the diff inside the agent runtime (read-only tools, budgeted, audited); "
        "skipped when no model is configured"
    )
    Options: ClassVar[type[BaseModel]] = Options
    default_timeout: ClassVar[float] = 900.0

    async def run(self, ctx: AgentContext) -> AgentOutput:
        # Imported here: `mergegate check` without a model pays for none of it.
        from mergegate.runtime.agent_spec import build_agent
        from mergegate.runtime.budget import UnknownPrice
        from mergegate.runtime.llm_agent import plan_run
        from mergegate.runtime.models import NOT_CONFIGURED, ModelConfigError

        opts: Options = ctx.options  # type: ignore[assignment]
        spec = build_agent(
            NAME,
            {
                "preset": "reviewer",
                "tools": TOOLS,
                "max_turns": opts.max_turns,
                "max_usd": opts.max_usd,
                "max_tokens": opts.max_tokens,
            },
        )
        try:
            plan = plan_run(ctx.policy.models, NAME, spec)
        except (ModelConfigError, UnknownPrice) as exc:
            raise LLMReviewFailed(str(exc)) from None
        if plan is None:
            raise AgentSkipped(NOT_CONFIGURED, confidence=1.0)
        return await self._review(ctx, opts, spec, plan)

    async def _review(self, ctx: AgentContext, opts: Options, spec, plan) -> AgentOutput:
        from mergegate.runtime.contracts import REVIEW_INSTRUCTIONS, ReviewContract, review_prompt
        from mergegate.runtime.llm_agent import run_llm_agent
        from mergegate.runtime.redact import redact_text
        from mergegate.runtime.runner import ToolRunner
        from mergegate.runtime.workspace import Workspace
        from mergegate.store.audit_log import AuditLog

        change = ctx.change
        diff = ctx.repo.diff_text(change.merge_base, change.head, context=3)
        if not diff.strip():
            raise AgentSkipped("the change has no diff to review", confidence=1.0)
        truncated_from = None
        if len(diff) > opts.max_diff_chars:
            truncated_from, diff = len(diff), diff[: opts.max_diff_chars]
        tree = await ctx.full_tree()
        runner = ToolRunner(
            agent=NAME,
            spec=spec,
            workspace=Workspace(tree),
            # The check's own log, so one chain holds the agent runs, tool calls and decision.
            audit=ctx.audit or AuditLog(ctx.repo.git_dir / "mergegate" / "audit.jsonl"),
            policy_applied=ctx.policy_applied or "base branch policy (mergegate check)",
            test_paths=ctx.policy.test_paths,
            extra_protected=ctx.policy.runtime.protected_paths,
            tests_command=None,
        )
        files = [f.path for f in change.files]
        run = await run_llm_agent(
            runner=runner,
            plan=plan,
            output_type=ReviewContract,
            instructions=REVIEW_INSTRUCTIONS,
            prompt=review_prompt(diff, files, truncated_from=truncated_from),
        )
        if not run.ok or run.output is None:
            raise LLMReviewFailed(f"{run.status}: {run.reason} (model {run.model}, run {run.run_id})")
        review: ReviewContract = run.output

        weight = finding_confidence(review.score)
        findings = []
        for issue in review.issues:
            category = Category.SECURITY if issue.category == "security" else Category.QUALITY
            findings.append(
                Finding(
                    agent=NAME,
                    rule=f"{NAME}/{issue.category}",
                    severity=Severity(issue.severity),
                    confidence=weight,
                    message=redact_text(issue.message),
                    category=category,
                    path=_clean_path(issue.path),
                    line=issue.line,
                )
            )
        if review.recommendation == "request_changes" and not findings:
            findings.append(
                Finding(
                    agent=NAME,
                    rule=f"{NAME}/request-changes",
                    severity=Severity.MEDIUM,
                    confidence=weight,
                    message=redact_text(review.summary or "the model requested changes without listing issues"),
                    category=Category.QUALITY,
                )
            )
        coverage = 1.0 if truncated_from is None else max(0.5, opts.max_diff_chars / truncated_from)
        spent = run.spend.to_json()
        notes = [
            f"model {run.model}: score {review.score}, recommendation {review.recommendation} (advice only)",
            f"spent {spent['requests']} requests, {spent['input_tokens']} input + {spent['output_tokens']} "
            f"output tokens, ${spent['cost_usd']} (run {run.run_id})",
        ]
        refused = [c for c in run.calls if c.status != "allowed"]
        if refused:
            notes.append(f"{len(refused)} of {len(run.calls)} tool calls were refused or paused by the runtime")
        if truncated_from is not None:
            notes.append(f"the diff was cut at {opts.max_diff_chars} of {truncated_from} characters")
        return AgentOutput(findings, round(coverage * score_factor(review.score), 4), notes)


AGENT = LLMReviewAgent()
