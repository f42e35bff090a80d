"""test-integrity: catch changes that make tests pass by weakening the tests.

Coding agents under pressure to go green edit the test instead of the code: they drop
or loosen assertions, skip tests, swallow failures, widen tolerances, edit expected
values, delete or un-collect tests, or mock the very function under test. This agent
compares every changed test function at the merge base and at head, at AST level, and
reports each weakening with the old and new code and a calibrated confidence.

Modules, one job each: ``extract`` (a test file into facts), ``checks`` (what a check is),
``strength`` (how much it pins down), ``tolerance`` (approx tolerances and numeric
bounds), ``markers`` (skip/xfail/flaky wherever they hide), ``collection`` (what pytest
collects), ``matching`` (base test ↔ head test), ``align`` (base checks ↔ head checks),
``compare`` (the per-test rules), ``production`` (what the change did to the code under
test), ``suite`` (conftest hooks, collect_ignore, pytest config), ``analysis`` (the whole
change) and ``issues`` (the rule catalogue).
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from pydantic import BaseModel

from mergegate.agents.base import AgentContext, AgentOutput, AgentSkipped, NoOptions
from mergegate.agents.test_integrity.analysis import Source, analyse
from mergegate.agents.test_integrity.collection import CONFIG_FILES, parse_collection
from mergegate.agents.test_integrity.issues import RULES, Issue
from mergegate.agents.test_integrity.production import production_facts
from mergegate.agents.test_integrity.suite import compare_config
from mergegate.core.change import ChangedFile
from mergegate.core.finding import Category, Finding, make_fingerprint
from mergegate.core.severity import Severity

__all__ = ["AGENT", "RULES", "TEST_FILES_NOTE", "TestIntegrity"]

TEST_FILES_NOTE = "This change modifies test files — review for specification changes vs. implementation fixes."

#: What each unparseable test file costs the agent's confidence in its own analysis.
UNPARSEABLE_PENALTY = 0.15


class TestIntegrity:
    __test__ = False  # not a pytest test class, whatever its name

    name: ClassVar[str] = "test-integrity"
    description: ClassVar[str] = "tests weakened, skipped, deleted, un-collected or mocked out by the change"
    Options: ClassVar[type[BaseModel]] = NoOptions
    default_timeout: ClassVar[float] = 60.0

    async def run(self, ctx: AgentContext) -> AgentOutput:
        return await asyncio.to_thread(self._run, ctx)

    def _run(self, ctx: AgentContext) -> AgentOutput:
        python = [f for f in ctx.change.files if not f.binary and _is_python(f)]
        configs = [f for f in ctx.change.files if f.path.rsplit("/", 1)[-1] in CONFIG_FILES and not f.binary]
        if not python and not configs:
            raise AgentSkipped("no Python files or pytest configuration changed")
        tests = [f for f in python if _is_test(ctx, f)]
        production = [f for f in python if not _is_test(ctx, f)]
        prod = production_facts([_sides(ctx, f) for f in production])
        collection = parse_collection(self._configs(ctx))
        result = analyse([_source(ctx, f) for f in tests], prod, collection)
        for f in configs:  # a change to pytest's own settings can drop tests without touching one
            base_text = ctx.base_text(f.base_path) if f.exists_at_base else None
            head_text = ctx.head_text(f.path) if f.exists_at_head else None
            result.issues += compare_config(f.path, base_text, head_text, lambda: _python_files(ctx))
        findings = [self._finding(i) for i in result.issues]

        notes = list(result.unparseable)
        tests_touched = any(ctx.is_test_path(p) for p in ctx.change.touched_paths())
        if tests_touched:
            notes.insert(0, TEST_FILES_NOTE)
        else:
            findings += self._untested(production)
        confidence = max(0.5, 1.0 - UNPARSEABLE_PENALTY * len(result.unparseable))
        return AgentOutput(findings=findings, confidence=round(confidence, 3), notes=notes)

    def _configs(self, ctx: AgentContext) -> dict[str, str | None]:
        """The pytest configuration at the merge base: the rules the change is judged by."""
        blobs = ctx.repo.read_blobs(ctx.change.merge_base, list(CONFIG_FILES))
        return {k: None if v is None else v.decode("utf-8", "replace") for k, v in blobs.items()}

    def _untested(self, production: list[ChangedFile]) -> list[Finding]:
        """Danger's rule: production code changed and no test changed with it (a nudge, info only)."""
        edited = [f.path for f in production if f.exists_at_head and f.added_lines]
        if not edited:
            return []
        listed = ", ".join(edited[:5]) + (" …" if len(edited) > 5 else "")
        msg = f"Production code changed with no test added or changed: {listed}."
        return [self._finding(Issue("production-untested", Severity.INFO, 0.9, msg, edited[0], None, "|".join(edited)))]

    def _finding(self, issue: Issue) -> Finding:
        return Finding(
            agent=self.name,
            rule=issue.rule,
            severity=issue.severity,
            confidence=issue.confidence,
            message=issue.message,
            category=Category.TESTS,
            path=issue.path,
            line=issue.line,
            fingerprint=make_fingerprint(self.name, issue.rule, issue.path, issue.basis),
        )


def _python_files(ctx: AgentContext) -> list[str]:
    """Every Python file at head (only when pytest's collection rules changed)."""
    listing = ctx.repo.git("ls-tree", "-r", "--name-only", ctx.change.head)
    return [p for p in listing.splitlines() if p.endswith(".py")]


def _is_python(f: ChangedFile) -> bool:
    return f.path.endswith(".py") or (f.old_path or "").endswith(".py")


def _is_test(ctx: AgentContext, f: ChangedFile) -> bool:
    return ctx.is_test_path(f.path) or (f.old_path is not None and ctx.is_test_path(f.old_path))


def _sides(ctx: AgentContext, f: ChangedFile) -> tuple[str, str | None, str | None]:
    base = ctx.base_text(f.base_path) if f.exists_at_base else None
    return f.path, base, ctx.head_text(f.path) if f.exists_at_head else None


def _source(ctx: AgentContext, f: ChangedFile) -> Source:
    """A test file's two sides; a side that is not a Python test file counts as absent."""
    base_ok = f.exists_at_base and f.base_path.endswith(".py") and ctx.is_test_path(f.base_path)
    # A test file renamed out of the test paths is still read, to report that it stopped running.
    renamed_out = base_ok and f.old_path is not None
    head_ok = f.exists_at_head and f.path.endswith(".py") and (ctx.is_test_path(f.path) or renamed_out)
    return Source(
        base_path=f.base_path if base_ok else None,
        head_path=f.path if head_ok else None,
        base_text=ctx.base_text(f.base_path) if base_ok else None,
        head_text=ctx.head_text(f.path) if head_ok else None,
        deleted=base_ok and not head_ok,
    )


AGENT = TestIntegrity()
