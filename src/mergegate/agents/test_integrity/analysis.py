"""The whole-change view: parse the changed test files on both sides, pair the tests,
judge every pair, and report what no single pair shows (deleted files, lost collection,
shadowed tests, production code changed with no test touched).

Pure and synchronous: the agent runs it in a worker thread.
"""

from __future__ import annotations

import ast
import builtins
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from mergegate.agents.test_integrity.collection import Collection
from mergegate.agents.test_integrity.compare import compare_test, new_test
from mergegate.agents.test_integrity.extract import TestFunction, TestModule, parse_module
from mergegate.agents.test_integrity.issues import Issue
from mergegate.agents.test_integrity.matching import match_tests
from mergegate.agents.test_integrity.production import ProductionFacts
from mergegate.agents.test_integrity.suite import compare_conftest
from mergegate.core.severity import Severity

HIGH, LOW, INFO = Severity.HIGH, Severity.LOW, Severity.INFO


@dataclass
class Source:
    """One changed test file: its path at base and head, and its text on each side (None: absent)."""

    base_path: str | None
    head_path: str | None
    base_text: str | None
    head_text: str | None
    deleted: bool = False


@dataclass
class Result:
    issues: list[Issue] = field(default_factory=list)
    unparseable: list[str] = field(default_factory=list)


def analyse(sources: list[Source], prod: ProductionFacts, collection: Collection) -> Result:
    result = Result()
    base: list[TestModule] = []
    head: list[TestModule] = []
    for src in sources:
        b = _parse(src.base_path, src.base_text, collection, result, "merge base")
        h = _parse(src.head_path, src.head_text, collection, result, "head")
        if src.head_text is not None and h is None:
            continue  # head unreadable: its tests are not "deleted", they are unknown
        base += [b] if b else []
        head += [h] if h else []
        if h is not None and h.path.rsplit("/", 1)[-1] == "conftest.py" and h.tree is not None:
            result.issues += compare_conftest(h.path, b.tree if b else None, h.tree)

    renamed = {s.base_path: s.head_path for s in sources if s.base_path and s.head_path and s.base_path != s.head_path}
    matching = match_tests(base, head, renamed)
    imports = {m.path: m.imports for m in head}
    callers = {name for m in head for t in m.tests for name in t.calls}

    # Checks of tests new in this change: where a removed check may have moved (a test split in two).
    elsewhere = Counter(c.key for t in matching.added for c in t.checks)
    uncollected: list[tuple[TestFunction, TestFunction]] = []
    for old, new in matching.pairs:
        if new.collected:
            result.issues += compare_test(old, new, prod, imports[new.path], elsewhere)
        elif new.name not in callers:  # a test body extracted into a helper that a test calls is fine
            uncollected.append((old, new))
    result.issues += _not_collected(uncollected)
    for fn in matching.added:
        result.issues += new_test(fn, imports[fn.path])
    deleted_files = {s.base_path for s in sources if s.deleted}
    fates = _Fates(
        prod=prod,
        # Deleted tests may have been folded into a parametrize table that is new or grew …
        tables=matching.added + [n for o, n in matching.pairs if len(n.cases) > len(o.cases)],
        # … rewritten as a new test of the same code, or be a copy of a test that stays.
        added=matching.added,
        remaining=[t for m in head for t in m.tests],
    )
    result.issues += _deleted(matching.deleted, fates, deleted_files, base)
    result.issues += _shadowed(base, head, renamed)
    result.issues = _merge_groups(result.issues)
    return result


def _parse(path, text, collection, result: Result, side: str) -> TestModule | None:
    if path is None or text is None:
        return None
    try:
        tree = ast.parse(text, filename=path)
    except (SyntaxError, ValueError) as exc:  # ValueError: NUL bytes
        where = f" (line {exc.lineno})" if isinstance(exc, SyntaxError) and exc.lineno else ""
        result.unparseable.append(f"{path} at {side} does not parse{where}; its tests were not compared")
        return None
    try:
        return parse_module(path, tree, collection)
    except (ValueError, RecursionError) as exc:  # e.g. a construct ast.unparse cannot print
        result.unparseable.append(f"{path} at {side} could not be analysed ({type(exc).__name__}: {exc})")
        return None


def _not_collected(pairs: list[tuple[TestFunction, TestFunction]]) -> list[Issue]:
    """One issue per file or class that lost collection, one per function otherwise."""
    groups: dict[tuple[str, str], list[tuple[TestFunction, TestFunction]]] = defaultdict(list)
    for old, new in pairs:
        scope = new.path if new.uncollected_by == "file" else new.qualname
        if new.uncollected_by == "class":
            scope = new.qualname.rsplit(".", 1)[0]
        groups[(new.uncollected_by or "function", scope)].append((old, new))
    issues = []
    for (why, scope), members in groups.items():
        old, new = members[0]
        names = ", ".join(n.qualname for _, n in members[:5]) + (" …" if len(members) > 5 else "")
        if why == "file":
            rule = "test-file-not-collected"
            msg = (
                f"Test file `{old.path}` became `{new.path}`, a name pytest does not collect: "
                f"{len(members)} test(s) no longer run ({names})."
            )
        elif why == "class":
            rule = "test-not-collected"
            old_cls = old.qualname.rsplit(".", 1)[0]
            msg = (
                f"Test class `{old_cls}` became `{scope}`, which pytest does not collect: "
                f"{len(members)} test(s) no longer run ({names})."
            )
        else:
            rule = "test-not-collected"
            msg = (
                f"Test `{old.qualname}` was renamed to `{new.qualname}` in {new.path}, "
                "which pytest does not collect: it no longer runs."
            )
        issues.append(Issue(rule, HIGH, 0.9, msg, new.path, new.line, f"{why}\x1f{scope}"))
    return issues


def _deleted(deleted: list[TestFunction], fates: _Fates, deleted_files: set[str | None], base) -> list[Issue]:
    verdicts = {id(t): fates.why_deleted(t) for t in deleted}
    issues = []
    by_file: dict[str, list[TestFunction]] = defaultdict(list)
    for t in deleted:
        by_file[t.path].append(t)
    all_tests = {m.path: len(m.tests) for m in base}
    for path, tests in by_file.items():
        reasons = [verdicts[id(t)] for t in tests]
        if path in deleted_files and len(tests) == all_tests.get(path):
            names = ", ".join(t.qualname for t in tests[:5]) + (" …" if len(tests) > 5 else "")
            if all(reasons):
                msg = f"Test file `{path}` deleted along with the code it tested ({len(tests)} test(s): {names})."
                issues.append(Issue("test-file-deleted", LOW, 0.5, msg, path, None, path))
            else:
                msg = f"Test file `{path}` deleted: {len(tests)} test(s) no longer run ({names})."
                issues.append(Issue("test-file-deleted", HIGH, 0.9, msg, path, None, path))
            continue
        for t, reason in zip(tests, reasons, strict=True):
            if reason:
                msg = f"Test {t.node_id} deleted {reason}."
                issues.append(Issue("test-deleted", LOW, 0.5, msg, path, t.line, t.qualname))
            else:
                msg = (
                    f"Test {t.node_id} deleted ({len(t.checks)} check(s)); "
                    "it is not moved or renamed anywhere in the change."
                )
                issues.append(Issue("test-deleted", HIGH, 0.85, msg, path, t.line, t.qualname))
    return issues


#: Share of a deleted test's calls a new test must make to count as its rewrite.
REWRITE_OVERLAP = 0.75


@dataclass
class _Fates:
    """What may have become of a deleted test, other than being lost."""

    prod: ProductionFacts
    tables: list[TestFunction]
    added: list[TestFunction]
    remaining: list[TestFunction]
    #: How much checking each new test still has to give to deleted tests it replaces.
    budget: dict[int, float] = field(default_factory=dict)

    def why_deleted(self, test: TestFunction) -> str:
        """A reason that makes deleting ``test`` ordinary, or '' when there is none."""
        removed = self.prod.removed_in(test.calls | test.names)
        if removed:
            name, path = removed[0]
            return f"together with `{name}`, which this change removes from {path}"
        keys = sorted(c.key for c in test.checks)
        for fn in self.remaining:  # a copy of a test that stays: removing duplicates loses nothing
            if keys and sorted(c.key for c in fn.checks) == keys and test.body == fn.body:
                return f"as a duplicate of {fn.node_id}, which stays"
        used = {c for c in test.calls if c not in _BUILTIN_CALLS}
        if not used:
            return ""
        for fn in self.tables:
            if fn.cases and used <= fn.calls and fn.path == test.path:
                return f"and appears consolidated into the parametrized {fn.node_id}"
        needed = sum(c.strength for c in test.checks)
        for fn in self.added:  # rewritten under a new name: the same code, at least as much checking
            left = self.budget.setdefault(id(fn), sum(c.strength for c in fn.checks))
            shared = len(used & fn.calls) / len(used)
            if fn.path == test.path and shared >= REWRITE_OVERLAP and 0 < needed <= left and not fn.markers:
                self.budget[id(fn)] = left - needed
                return f"and appears rewritten as {fn.node_id}, which exercises the same code with as many checks"
        return ""


#: Calls that say nothing about what a test is about.
_BUILTIN_CALLS = frozenset(dir(builtins)) | {"raises", "approx", "patch", "object", "fixture"}


def _shadowed(base: list[TestModule], head: list[TestModule], renamed: dict[str, str]) -> list[Issue]:
    before = {(renamed.get(m.path, m.path), f.qualname) for m in base for f in m.shadowed}
    issues = []
    for m in head:
        for f in m.shadowed:
            if (m.path, f.qualname) in before:
                continue
            later = m.functions[f.qualname]
            msg = (
                f"{f.node_id} (line {f.line}) is redefined at line {later.line}: "
                "only the later definition runs, the first one never does."
            )
            issues.append(Issue("test-shadowed", HIGH, 0.9, msg, m.path, f.line, f.qualname))
    return issues


def _merge_groups(issues: list[Issue]) -> list[Issue]:
    """A module- or class-level marker is reported once, with how many tests it affects."""
    out: list[Issue] = []
    counts: dict[str, int] = defaultdict(int)
    for issue in issues:
        if issue.group:
            counts[issue.group] += 1
            if counts[issue.group] > 1:
                continue
        out.append(issue)
    return [i if not i.group or counts[i.group] == 1 else _affects(i, counts[i.group]) for i in out]


def _affects(i: Issue, n: int) -> Issue:
    return Issue(i.rule, i.severity, i.confidence, f"{i.message} It affects {n} tests.", i.path, i.line, i.basis)
