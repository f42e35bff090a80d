"""test-coverage: run the change's tests in the sandbox, report failures and diff coverage.

The configured test command (``tests.command``, read from the *base* policy like all
policy) runs on the head tree inside the sandbox: the tree writable, no network, no
secrets, under coverage (see ``mergegate.runtime.testrun``), in mergegate's own Python
environment or in a venv built by ``tests.setup`` (``mergegate.runtime.testenv``).

The head tree costs what the diff costs, not what the repository weighs: it is a
persistent export updated by the diff, seen by the tests through a throw-away overlay
that keeps the export read-only (``mergegate.runtime.worktree``), and coverage measures
the changed files only. The notes say when a fresh export had to be used instead.

The setup step executes the tree it installs, so it follows a trust rule: a venv that is
cached and shared with other changes is built from the *merge base* only, keyed by the
setup inputs there; a change that modifies a setup input (dependency files, build
configuration and hooks, ...) gets a private venv built from its own tree, used for this
check only ("dependencies changed: built a private environment" in the notes). So no
change can influence the environment another change is judged in.

Then, like diff-cover, only the lines the change added or modified in non-test Python
files are judged: of those that are executable (coverage's own analysis, so comments,
blank lines and docstrings do not count), which did no test execute?

What is fail-closed and what is a finding:

* a test command that hangs past ``tests.timeout`` raises ``TimeoutError`` (the check's
  verdict is ``error``), as does a missing sandbox (``SandboxUnavailable``);
* no test command configured is a skip with confidence 0.85: unknown test state keeps
  the change out of ``auto_approve``;
* failing tests are high-severity findings naming the test and the innermost frame in
  the repository; with ``rerun_failures`` a test that passes on a second run is reported
  as *flaky* (medium), never silently passed;
* ``pytest`` collecting no tests (exit 5) is a medium finding, not an error;
* uncovered changed lines are listed per file (info); diff coverage below
  ``min_diff_coverage`` adds one medium finding for the change.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from mergegate.agents.base import AgentContext, AgentOutput, AgentSkipped
from mergegate.core.change import ChangedFile
from mergegate.core.finding import Category, Finding, make_fingerprint
from mergegate.core.globs import match_any
from mergegate.core.policy import TestsConfig
from mergegate.core.severity import Severity
from mergegate.runtime.sandbox import Sandbox
from mergegate.runtime.testenv import SetupPlan, TestEnvironment, TreeSide, plan_setup, prepare_environment
from mergegate.runtime.testrun import (
    CoverageReport,
    FileCoverage,
    Layout,
    TestCase,
    TestRun,
    collect_coverage,
    run_tests,
)
from mergegate.runtime.worktree import WorkTree, head_work_tree
from mergegate.vcs.git import GitError, GitRepo

NAME = "test-coverage"

#: Failing tests reported one by one; beyond this, one summary finding.
MAX_FAILURE_FINDINGS = 25
#: Agent confidence when no coverage could be measured for changed Python files.
CONFIDENCE_NO_COVERAGE = 0.85
#: Agent confidence when some changed Python files were not measured.
CONFIDENCE_PARTIAL_COVERAGE = 0.95

_FRAME_PYTEST = re.compile(r"^(?P<path>[^\s:\"'<>][^:\n]*?\.py):(?P<line>\d+):", re.M)
_FRAME_NATIVE = re.compile(r'File "(?P<path>[^"\n]+\.py)", line (?P<line>\d+)')


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Share of the changed executable lines the tests must execute (like diff-cover's --fail-under).
    min_diff_coverage: float = Field(0.8, ge=0.0, le=1.0)
    #: Re-run failing tests once; those that pass are reported as flaky (never as passing).
    rerun_failures: bool = False
    #: Changed files not held to diff coverage (globs), besides the policy's test_paths:
    #: packaging and documentation code that no test is expected to import.
    exclude: tuple[str, ...] = ("setup.py", "noxfile.py", "docs/**", "doc/**")


@dataclass(frozen=True)
class DiffCoverage:
    """Per changed file: the changed executable lines, and those no test executed."""

    changed: dict[str, frozenset[int]]
    uncovered: dict[str, frozenset[int]]
    unmeasured: tuple[str, ...]

    @property
    def total(self) -> int:
        return sum(len(lines) for lines in self.changed.values())

    @property
    def covered(self) -> int:
        return self.total - sum(len(lines) for lines in self.uncovered.values())

    @property
    def ratio(self) -> float | None:
        return self.covered / self.total if self.total else None


def diff_coverage(files: list[ChangedFile], report: dict[str, FileCoverage]) -> DiffCoverage:
    changed: dict[str, frozenset[int]] = {}
    uncovered: dict[str, frozenset[int]] = {}
    unmeasured = []
    for f in files:
        cov = report.get(f.path)
        if cov is None:
            unmeasured.append(f.path)
            continue
        lines = f.added_lines & cov.statements
        if lines:
            changed[f.path] = lines
        missing = f.added_lines & cov.missing
        if missing:
            uncovered[f.path] = missing
    return DiffCoverage(changed, uncovered, tuple(unmeasured))


def line_ranges(lines: frozenset[int] | set[int]) -> str:
    """``{1, 2, 3, 7}`` -> ``"1-3, 7"``."""
    out: list[str] = []
    ordered = sorted(lines)
    start = prev = ordered[0] if ordered else 0
    for n in [*ordered[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        out.append(f"{start}-{prev}" if prev != start else f"{start}")
        if n is not None:
            start = prev = n
    return ", ".join(out)


def repo_frame(case: TestCase, layout: Layout, tree: Path) -> tuple[str, int] | None:
    """The innermost traceback frame in a file of the repository (not a library)."""
    frames = [
        (m.start(), m.group("path"), int(m.group("line")))
        for regex in (_FRAME_PYTEST, _FRAME_NATIVE)
        for m in regex.finditer(case.details)
    ]
    for _pos, path, line in sorted(frames, reverse=True):
        rel = layout.relative(path)
        if rel and "site-packages/" not in rel and (tree / rel).is_file():
            return rel, line
    return None


def tree_side(repo: GitRepo, commit: str) -> TreeSide:
    """``commit``'s files as git records them (``ls-tree``), with a reader for their text."""
    files: dict[str, str] = {}
    for entry in repo.git_bytes("ls-tree", "-r", "-z", "--full-tree", commit).split(b"\0"):
        if entry:
            meta, _, raw = entry.partition(b"\t")
            mode, _kind, oid = meta.decode().split()
            files[raw.decode("utf-8", "surrogateescape")] = f"{mode} {oid}"

    def read(path: str) -> str | None:
        if "\n" in path or not path.isprintable() or path not in files:
            return None  # cat-file --batch cannot ask for it: "cannot tell"
        try:
            return repo.read_text(commit, path)
        except (GitError, UnicodeError):
            return None

    return TreeSide(files, read)


def setup_plan(repo: GitRepo, merge_base: str, head: str, setup: str | None) -> SetupPlan | None:
    """Whether the change may use the merge base's shared venv (see ``testenv.plan_setup``)."""
    if not setup:
        return None
    try:
        return plan_setup(tree_side(repo, merge_base), tree_side(repo, head), setup)
    except (GitError, UnicodeError, ValueError) as exc:
        return SetupPlan(f"could not list the change's files ({exc})")


class TestCoverage:
    __test__ = False  # an agent, not a pytest test class

    name: ClassVar[str] = NAME
    description: ClassVar[str] = "runs the tests in the sandbox: failing tests and diff coverage of changed lines"
    Options: ClassVar[type[BaseModel]] = Options
    #: Above the defaults of tests.setup_timeout (900 s) + tests.timeout (600 s) + combining.
    default_timeout: ClassVar[float] = 1800.0

    async def run(self, ctx: AgentContext) -> AgentOutput:
        tests: TestsConfig = ctx.policy.tests
        opts: Options = ctx.options  # type: ignore[assignment]
        if not tests.command:
            raise AgentSkipped("no test command configured (tests.command)", confidence=0.85)
        sandbox = ctx.sandbox()  # SandboxUnavailable propagates: the runner reports it
        async with head_work_tree(ctx.repo, ctx.change.head, sandbox, ctx.scratch) as work:
            return await self._run(ctx, opts, tests, sandbox, work)

    async def _run(
        self, ctx: AgentContext, opts: Options, tests: TestsConfig, sandbox: Sandbox, work: WorkTree
    ) -> AgentOutput:
        sources = [
            f
            for f in ctx.head_files(".py")
            if f.added_lines and not ctx.is_test_path(f.path) and match_any(opts.exclude, f.path) is None
        ]
        measured = tuple(f.path for f in sources)
        layout = Layout.create(
            ctx.scratch, work.root, remap=sandbox.remaps_paths, overlay=work.overlay, measured=measured
        )
        plan = (
            await asyncio.to_thread(setup_plan, ctx.repo, ctx.change.merge_base, ctx.change.head, tests.setup)
            if tests.setup
            else None
        )

        async def export_base(dest: Path) -> None:
            await asyncio.to_thread(ctx.repo.export_tree, ctx.change.merge_base, dest)

        env = await prepare_environment(
            sandbox,
            setup=tests.setup,
            setup_timeout=tests.setup_timeout,
            tree=work.root,
            scratch=ctx.scratch,
            repo_id=str(ctx.repo.path),
            plan=plan,
            export_base=export_base,
            overlay=work.overlay,
        )
        # Nothing to measure: no coverage at all (it only slows the tests down).
        run = await run_tests(sandbox, layout, env, tests.command or "", tests.timeout, measure=bool(sources))
        if run.timed_out:
            raise TimeoutError(f"test command did not finish within {tests.timeout:g}s")

        tree = work.pristine
        notes = [f"environment: {env.description}", _summary(run)]
        findings = self._failures(ctx, run, layout, tree)
        if opts.rerun_failures and not run.passed and not run.no_tests_collected:
            findings, flaky = await self._rerun(ctx, run, layout, env, tree, findings)
            notes.append(f"re-ran the failures once: {flaky} passed the second time (reported as flaky)")

        confidence = 1.0
        if sources:
            report = await collect_coverage(sandbox, layout, env, list(measured))
            coverage_findings, coverage_notes, confidence = self._coverage(ctx, opts, sources, report)
            findings += coverage_findings
            notes += coverage_notes
        else:
            notes.append("diff coverage: no changed non-test Python lines")
        notes.append(work.note)
        return AgentOutput(findings=findings, confidence=confidence, notes=notes)

    # -- test results -------------------------------------------------------------------

    def _failures(self, ctx: AgentContext, run: TestRun, layout: Layout, tree: Path) -> list[Finding]:
        if run.no_tests_collected:
            return [
                Finding(
                    agent=NAME,
                    rule="no-tests",
                    severity=Severity.MEDIUM,
                    confidence=0.9,
                    message=f"no tests were collected by `{ctx.policy.tests.command}`",
                    category=Category.TESTS,
                    fingerprint=make_fingerprint(NAME, "no-tests", None, ctx.policy.tests.command or ""),
                )
            ]
        failed = [c for c in run.cases or () if c.failed]
        findings = [self._failure(c, layout, tree) for c in failed[:MAX_FAILURE_FINDINGS]]
        if len(failed) > MAX_FAILURE_FINDINGS:
            rest = failed[MAX_FAILURE_FINDINGS:]
            findings.append(
                Finding(
                    agent=NAME,
                    rule="test-failed",
                    severity=Severity.HIGH,
                    confidence=0.95,
                    message=f"{len(rest)} more tests failed: " + ", ".join(c.id for c in rest[:50]),
                    category=Category.TESTS,
                    fingerprint=make_fingerprint(NAME, "test-failed", None, " ".join(c.id for c in rest)),
                )
            )
        if not run.passed and not failed:
            # No test named (not pytest, or pytest stopped before running tests).
            findings.append(
                Finding(
                    agent=NAME,
                    rule="tests-failed",
                    severity=Severity.HIGH,
                    confidence=0.9,
                    message=f"the test command `{ctx.policy.tests.command}` exited with status "
                    f"{run.returncode}:\n{run.output_tail}",
                    category=Category.TESTS,
                    fingerprint=make_fingerprint(NAME, "tests-failed", None, ctx.policy.tests.command or ""),
                )
            )
        return findings

    @staticmethod
    def _failure(case: TestCase, layout: Layout, tree: Path, *, flaky: bool = False) -> Finding:
        frame = repo_frame(case, layout, tree)
        path, line = frame if frame else (case.file, case.line)
        where = f" at {frame[0]}:{frame[1]}" if frame else ""
        reason = case.message.strip().splitlines()[0][:300] if case.message.strip() else case.outcome
        if flaky:
            rule, severity, confidence = "flaky-test", Severity.MEDIUM, 0.9
            message = f"test {case.id} failed{where} ({reason}), then passed when re-run: flaky, not counted as passing"
        else:
            rule, severity, confidence = "test-failed", Severity.HIGH, 0.95
            message = f"test {case.id} {'failed' if case.outcome == 'failed' else 'errored'}{where}: {reason}"
        return Finding(
            agent=NAME,
            rule=rule,
            severity=severity,
            confidence=confidence,
            message=message,
            category=Category.TESTS,
            path=path,
            line=line,
            fingerprint=make_fingerprint(NAME, rule, case.file, case.id),
            properties={"test_id": case.id, **({"first_repo_frame": f"{frame[0]}:{frame[1]}"} if frame else {})},
        )

    async def _rerun(
        self,
        ctx: AgentContext,
        run: TestRun,
        layout: Layout,
        env: TestEnvironment,
        tree: Path,
        findings: list[Finding],
    ) -> tuple[list[Finding], int]:
        """Re-run the failures once (without coverage); those that pass now are flaky.

        Named pytest tests are re-run by id; anything else re-runs the whole command,
        and if that passes every failure of the first run is reported as flaky.
        """
        tests = ctx.policy.tests
        failed = [c for c in run.cases or () if c.failed]
        select = tuple(c.id for c in failed if "::" in c.id)
        by_id = bool(failed) and len(select) == len(failed)
        command = tests.command or ""
        again = await run_tests(
            ctx.sandbox(), layout, env, command, tests.timeout, measure=False, select=select if by_id else ()
        )
        if again.timed_out:
            raise TimeoutError(f"re-running the failed tests did not finish within {tests.timeout:g}s")
        if not by_id:
            if not again.passed:
                return findings, 0
            failures = [f for f in findings if f.rule in ("test-failed", "tests-failed")]
            others = [f for f in findings if f.rule not in ("test-failed", "tests-failed")]
            return [*others, *(self._whole_command_flaky(f) for f in failures)], len(failures)
        passed_now = {c.id for c in again.cases or () if c.outcome == "passed"}
        flaky = {c.id for c in failed if c.id in passed_now}
        kept = [f for f in findings if f.properties.get("test_id") not in flaky]
        return [*kept, *(self._failure(c, layout, tree, flaky=True) for c in failed if c.id in flaky)], len(flaky)

    @staticmethod
    def _whole_command_flaky(finding: Finding) -> Finding:
        return Finding(
            agent=NAME,
            rule="flaky-test",
            severity=Severity.MEDIUM,
            confidence=0.9,
            message=f"{finding.message} — then passed when re-run: flaky, not counted as passing",
            category=Category.TESTS,
            path=finding.path,
            line=finding.line,
            fingerprint=make_fingerprint(NAME, "flaky-test", finding.path, finding.fingerprint),
            properties=dict(finding.properties),
        )

    # -- diff coverage -------------------------------------------------------------------

    def _coverage(
        self, ctx: AgentContext, opts: Options, sources: list[ChangedFile], report: CoverageReport
    ) -> tuple[list[Finding], list[str], float]:
        if report.files is None:
            return [], [f"diff coverage unknown: {report.problem}"], CONFIDENCE_NO_COVERAGE
        diff = diff_coverage(sources, report.files)
        notes = []
        confidence = 1.0
        if diff.unmeasured:
            notes.append("not measured (no coverage data; e.g. not valid Python): " + ", ".join(diff.unmeasured))
            confidence = CONFIDENCE_PARTIAL_COVERAGE
        ratio = diff.ratio
        if ratio is None:
            notes.append("diff coverage: the change has no executable lines in non-test Python files")
            return [], notes, confidence
        below = ratio < opts.min_diff_coverage
        notes.append(
            f"diff coverage: {ratio:.0%} ({diff.covered}/{diff.total} changed executable lines), "
            f"threshold {opts.min_diff_coverage:.0%}"
        )
        findings = []
        for path, lines in sorted(diff.uncovered.items()):
            text = (ctx.head_text(path) or "").splitlines()
            basis = "\n".join(text[n - 1].strip() for n in sorted(lines) if 0 < n <= len(text))
            findings.append(
                Finding(
                    agent=NAME,
                    rule="uncovered-lines",
                    severity=Severity.INFO,
                    confidence=0.9,
                    message=f"changed lines not executed by any test: {line_ranges(lines)}",
                    category=Category.COVERAGE,
                    path=path,
                    line=min(lines),
                    end_line=max(lines),
                    fingerprint=make_fingerprint(NAME, "uncovered-lines", path, basis),
                    properties={"lines": line_ranges(lines)},
                )
            )
        if below:
            worst = max(diff.uncovered, key=lambda p: len(diff.uncovered[p]))
            listing = "; ".join(f"{p}: {line_ranges(ls)}" for p, ls in sorted(diff.uncovered.items()))
            findings.append(
                Finding(
                    agent=NAME,
                    rule="diff-coverage",
                    severity=Severity.MEDIUM,
                    confidence=0.9,
                    message=f"diff coverage {ratio:.0%} is below the required {opts.min_diff_coverage:.0%} "
                    f"({diff.covered}/{diff.total} changed executable lines covered); uncovered: {listing}"[:4000],
                    category=Category.COVERAGE,
                    path=worst,
                    line=min(diff.uncovered[worst]),
                    fingerprint=make_fingerprint(NAME, "diff-coverage", None, " ".join(sorted(diff.uncovered))),
                    properties={"diff_coverage": f"{ratio:.4f}", "threshold": f"{opts.min_diff_coverage:.4f}"},
                )
            )
        return findings, notes, confidence


def _summary(run: TestRun) -> str:
    if run.cases is None:
        return f"tests: `{run.command}` exited with status {run.returncode} in {run.duration_s:.1f}s"
    counts = run.counts()
    parts = [f"{n} {label}" for label, n in counts.items() if n or label == "passed"]
    return f"tests: {', '.join(parts)} in {run.duration_s:.1f}s"


AGENT = TestCoverage()
