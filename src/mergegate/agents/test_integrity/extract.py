"""Read one test module into the facts that are compared between base and head.

For every function in a test file (tests *and* helpers, so that a test renamed out of
collection can still be matched) this records its checks, the markers and calls that
disable it, the ``return`` statements that end it before its checks, and what it
patches. Only the function's own statements are walked: a nested ``def`` runs only if
called, so its assertions are not the test's.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from mergegate.agents.test_integrity import checks as ck
from mergegate.agents.test_integrity.astutil import call_name, dotted
from mergegate.agents.test_integrity.collection import Collection
from mergegate.agents.test_integrity.markers import (
    Marker,
    argvalues,
    decorator_markers,
    module_skips,
    pytestmark,
    setup_skips,
)
from mergegate.agents.test_integrity.strength import RAISES, is_assertion_call

_SKIP_CALLS = frozenset({"skip", "xfail", "skipTest", "importorskip"})
_SWALLOWING = frozenset({"AssertionError", "Exception", "BaseException"})
_FAIL_CALLS = frozenset({"pytest.fail", "self.fail", "fail"})


@dataclass(frozen=True)
class Event:
    """A statement that matters by its presence: a skip call, an early return, a patch."""

    text: str
    line: int
    conditional: bool = False
    target: str = ""  # for patches: the dotted target ("app.users.find_user")


@dataclass
class TestFunction:
    path: str
    qualname: str
    name: str
    line: int
    collected: bool
    #: Why pytest does not collect it: "file", "class" or "function" (None: collected).
    uncollected_by: str | None
    body: str
    checks: list[ck.Check] = field(default_factory=list)
    cases: list[ck.Check] = field(default_factory=list)
    #: Expected values kept in variables the checks use (``expected = {...}``).
    expectations: list[ck.Check] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    skip_calls: list[Event] = field(default_factory=list)
    early_returns: list[Event] = field(default_factory=list)
    patches: list[Event] = field(default_factory=list)
    names: set[str] = field(default_factory=set)
    calls: set[str] = field(default_factory=set)

    @property
    def node_id(self) -> str:
        return f"{self.path}::{self.qualname.replace('.', '::')}"

    @property
    def subject(self) -> str:
        """What the test is about, from its names: ``TestUsers.test_find_user_x`` → ``users_find_user_x``."""
        parts = [_snake(c.removeprefix("Test")) for c in self.qualname.split(".")[:-1]]
        parts.append(self.name.removeprefix("test").strip("_"))
        return "_".join(p for p in parts if p)


@dataclass
class TestModule:
    path: str
    collected: bool
    #: Every function by qualified name; a later definition replaces an earlier one, as in Python.
    functions: dict[str, TestFunction] = field(default_factory=dict)
    #: Test functions replaced by a later definition of the same name (they never run).
    shadowed: list[TestFunction] = field(default_factory=list)
    #: Names the module imports, and from which module (``find_user`` → ``app.users``).
    imports: dict[str, str] = field(default_factory=dict)
    tree: ast.Module | None = field(default=None, repr=False)

    @property
    def tests(self) -> list[TestFunction]:
        return [f for f in self.functions.values() if f.collected]


def _snake(name: str) -> str:
    out = "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
    return out.strip("_")


def parse_module(path: str, tree: ast.Module, collection: Collection) -> TestModule:
    """The facts of a parsed test file (see ``analysis`` for files that do not parse)."""
    module = TestModule(path, collection.collects_file(path), tree=tree)
    module_markers = pytestmark(tree.body, "module") + module_skips(tree.body) + setup_skips(tree.body, "module")
    helpers = _helpers(tree.body)
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            _record_imports(node, module.imports)
    _visit(tree.body, module, collection, (), module_markers, helpers, "file" if not module.collected else None, False)
    return module


def _visit(body, module, collection, classes, markers, helpers, uncollected_by, unittest_cls) -> None:
    for node in body:
        if isinstance(node, ast.ClassDef):
            collected = collection.collects_class(node)
            is_unittest = unittest_cls or any(dotted(b).endswith("TestCase") for b in node.bases)
            class_markers = [
                *markers,
                *decorator_markers(node.decorator_list, "class"),
                *pytestmark(node.body, "class"),
                *setup_skips(node.body, "class"),
            ]
            class_helpers = {**helpers, **{f"self.{k}": v for k, v in _helpers(node.body).items()}}
            why = uncollected_by or (None if collected else "class")
            _visit(node.body, module, collection, (*classes, node.name), class_markers, class_helpers, why, is_unittest)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            fn = _function(node, module.path, classes, markers, helpers)
            named = collection.collects_function(node.name, unittest_cls)
            fn.uncollected_by = uncollected_by or (None if named else "function")
            fn.collected = fn.uncollected_by is None
            previous = module.functions.get(fn.qualname)
            if previous is not None and previous.collected:
                module.shadowed.append(previous)
            module.functions[fn.qualname] = fn


def _function(node, path, classes, inherited_markers, helpers) -> TestFunction:
    body = [s for s in node.body if not _is_docstring(s)]
    fn = TestFunction(
        path=path,
        qualname=".".join((*classes, node.name)),
        name=node.name,
        line=node.lineno,
        collected=True,
        uncollected_by=None,
        body="\n".join(ast.unparse(s) for s in body),
    )
    fn.markers = [*inherited_markers, *decorator_markers(node.decorator_list, "function")]
    for deco in node.decorator_list:
        if isinstance(deco, ast.Call) and call_name(deco) == "parametrize":
            fn.cases.extend(_cases(deco))
        _Walker(fn, helpers).expr(deco, None, False, patches_only=True)
    walker = _Walker(fn, helpers)
    walker.block(body, None, False)
    fn.early_returns = [r for r in walker.returns if any(c.line > r.line for c in fn.checks)]
    compared = set().union(*(c.operands for c in fn.checks)) if fn.checks else set()
    for name, values in walker.assigned.items():
        if len(values) == 1 and name in compared and (e := ck.expectation(name, values[0])):
            fn.expectations.append(e)
    return fn


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


class _Walker:
    """Walks a function's own statements, remembering whether a handler swallows failures."""

    def __init__(self, fn: TestFunction, helpers: dict[str, list[ck.Check]]):
        self.fn = fn
        self.helpers = helpers
        self.returns: list[Event] = []
        #: Values assigned to each plain name, in order (``expected = ...``).
        self.assigned: dict[str, list[ast.expr]] = {}

    def results(self) -> dict[str, ast.expr]:
        """Names assigned exactly once, from a call: ``expected = vat(100)``."""
        return {n: v[0] for n, v in self.assigned.items() if len(v) == 1 and isinstance(v[0], ast.Call)}

    def block(self, stmts: list[ast.stmt], swallow: str | None, conditional: bool, guard: str = "") -> None:
        for stmt in stmts:
            self.stmt(stmt, swallow, conditional, guard)

    def stmt(self, s: ast.stmt, swallow: str | None, conditional: bool, guard: str) -> None:
        if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            return
        if isinstance(s, ast.Return):
            text = f"{guard} return" if guard else ast.unparse(s)
            self.returns.append(Event(text, s.lineno, conditional))
        elif isinstance(s, ast.Assert):
            self.fn.checks.append(ck.assert_check(s, swallow, self.results()))
        elif isinstance(s, ast.Assign) and len(s.targets) == 1 and isinstance(s.targets[0], ast.Name):
            self.assigned.setdefault(s.targets[0].id, []).append(s.value)
        elif isinstance(s, ast.Raise) and s.exc is not None and dotted(s.exc).endswith("SkipTest"):
            self.fn.skip_calls.append(Event(ast.unparse(s), s.lineno, conditional))
        if isinstance(s, ast.Try | ast.TryStar):
            self.block(s.body, _swallowing_handler(s.handlers) or swallow, conditional, guard)
            for handler in s.handlers:
                self.block(handler.body, swallow, True, guard)
            self.block(s.orelse, swallow, conditional, guard)
            self.block(s.finalbody, swallow, conditional, guard)
            return
        if isinstance(s, ast.With | ast.AsyncWith):
            inner = swallow
            for item in s.items:
                self.expr(item.context_expr, swallow, conditional)
                inner = _suppressing(item.context_expr) or inner
            self.block(s.body, inner, conditional, guard)
            return
        for name, value in ast.iter_fields(s):
            if isinstance(value, ast.expr) and not (isinstance(s, ast.Assert) and name == "msg"):
                self.expr(value, swallow, conditional, checks=not isinstance(s, ast.Assert))
        if isinstance(s, ast.If):
            if isinstance(s.test, ast.Constant):  # ``if False:`` is dead code: its checks never run
                self.block(s.body if s.test.value else s.orelse, swallow, conditional, guard)
                return
            cond = f"if {ast.unparse(s.test)}:"
            self.block(s.body, swallow, True, cond)
            self.block(s.orelse, swallow, True, f"if not ({ast.unparse(s.test)}):")
            return
        if isinstance(s, ast.While) and isinstance(s.test, ast.Constant) and not s.test.value:
            return
        for name in ("body", "orelse", "finalbody"):
            self.block(getattr(s, name, []) or [], swallow, conditional or isinstance(s, ast.While), guard)
        for case in getattr(s, "cases", []) or []:
            self.block(case.body, swallow, True, guard)

    def expr(self, e: ast.expr, swallow: str | None, conditional: bool, checks=True, patches_only=False) -> None:
        for n in ast.walk(e):
            if isinstance(n, ast.Name):
                self.fn.names.add(n.id)
            elif isinstance(n, ast.Attribute):
                self.fn.names.add(n.attr)
            if not isinstance(n, ast.Call):
                continue
            name, full = call_name(n), dotted(n.func)
            self.fn.calls.add(name)
            if _is_patch(n, name, full):
                target = _patch_target(n, name)
                if target:
                    self.fn.patches.append(Event(ast.unparse(n), n.lineno, conditional, target))
            if patches_only or not checks:
                continue
            if name in RAISES:
                self.fn.checks.append(ck.raises_check(n, swallow))
            elif full in self.helpers:
                self.fn.checks.append(ck.helper_check(n, self.helpers[full], swallow))
            elif is_assertion_call(n):
                self.fn.checks.append(ck.method_check(n, swallow))
            elif full in _FAIL_CALLS and full != "fail":
                self.fn.checks.append(ck.fail_check(n, swallow))
            elif name in _SKIP_CALLS and (full.startswith(("pytest.", "self.")) or name == "importorskip"):
                self.fn.skip_calls.append(Event(ast.unparse(n), n.lineno, conditional))


def _swallowing_handler(handlers: list[ast.ExceptHandler]) -> str | None:
    """``except AssertionError: pass`` and friends: a handler that lets a failed check pass."""
    for h in handlers:
        caught = set() if h.type is None else {dotted(t).rsplit(".", 1)[-1] for t in _elts(h.type)}
        if h.type is not None and not caught & _SWALLOWING:
            continue
        if _refails(h.body):
            continue
        head = "except" if h.type is None else f"except {ast.unparse(h.type)}"
        first = ast.unparse(h.body[0]).splitlines()[0] if h.body else "pass"
        return f"{head}: {first}"
    return None


def _refails(body: list[ast.stmt]) -> bool:
    for node in ast.walk(ast.Module(body=body, type_ignores=[])):
        if isinstance(node, ast.Raise | ast.Assert):
            return True
        if isinstance(node, ast.Call) and (dotted(node.func) in _FAIL_CALLS or is_assertion_call(node)):
            return True
    return False


def _suppressing(e: ast.expr) -> str | None:
    if isinstance(e, ast.Call) and call_name(e) == "suppress":
        caught = {dotted(a).rsplit(".", 1)[-1] for a in e.args}
        if caught & _SWALLOWING:
            return ast.unparse(e)
    return None


def _elts(node: ast.expr) -> list[ast.expr]:
    return list(node.elts) if isinstance(node, ast.Tuple) else [node]


def _is_patch(call: ast.Call, name: str, full: str) -> bool:
    if name == "setattr":
        return "monkeypatch" in full
    if name == "object" and full.endswith("patch.object"):
        return True
    return name == "patch" and full in ("patch", "mock.patch", "unittest.mock.patch", "mocker.patch")


def _patch_target(call: ast.Call, name: str) -> str:
    """The dotted name a patch replaces: ``patch("a.b.f")`` → a.b.f, ``patch.object(m, "f")`` → m.f."""
    args = call.args
    if args and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
        return args[0].value
    if len(args) >= 2 and isinstance(args[1], ast.Constant) and isinstance(args[1].value, str):
        return f"{dotted(args[0]) or ast.unparse(args[0])}.{args[1].value}"
    return ""


def _cases(deco: ast.Call) -> list[ck.Check]:
    return [ck.case_check(case) for case in argvalues(deco)]


def _helpers(body: list[ast.stmt]) -> dict[str, list[ck.Check]]:
    """Non-test functions in ``body`` that assert: calling one is checking (one level deep)."""
    out = {}
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("test"):
            fn = TestFunction("", node.name, node.name, node.lineno, False, "function", "")
            _Walker(fn, {}).block(node.body, None, False)
            if fn.checks:
                out[node.name] = fn.checks
    return out


def _record_imports(node: ast.Import | ast.ImportFrom, imports: dict[str, str]) -> None:
    if isinstance(node, ast.ImportFrom):
        for alias in node.names:
            imports[alias.asname or alias.name] = node.module or ""
    else:
        for alias in node.names:
            imports[alias.asname or alias.name.split(".")[0]] = alias.name
