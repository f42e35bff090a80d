"""Markers that stop a test from running or from failing: skip, skipif, xfail, flaky.

They are read wherever pytest and unittest accept them: on the function, on its class,
in a module's or class's ``pytestmark``, on single ``pytest.param`` cases, and as a
module-level ``pytest.skip(..., allow_module_level=True)``. A marker's ``key`` leaves
out its reason, so rewording why a test is skipped is not a new skip, and a ``skipif``
whose condition is a constant that always holds counts as a plain ``skip``.
"""

from __future__ import annotations

import ast
import copy
from dataclasses import dataclass

from mergegate.agents.test_integrity.astutil import call_name, dotted

_KINDS = {
    "skip": "skip",
    "skipif": "skipif",
    "skipIf": "skipif",
    "skipUnless": "skipif",
    "xfail": "xfail",
    "expectedFailure": "xfail",
    "flaky": "flaky",
}


@dataclass(frozen=True)
class Marker:
    kind: str  # skip | skipif | xfail | flaky
    text: str
    scope: str  # function | class | module | param
    line: int
    #: ``text`` without the reason: what the marker does.
    key: str = ""


def _kind(node: ast.expr) -> str | None:
    target = node.func if isinstance(node, ast.Call) else node
    kind = _KINDS.get(dotted(target).rsplit(".", 1)[-1])
    if kind == "skipif" and isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        holds = bool(node.args[0].value)
        if holds == (call_name(node) != "skipUnless"):
            return "skip"  # skipif(True): skipped whatever the platform
    return kind


def _key(node: ast.expr) -> str:
    """The marker without its reason: ``skip('flaky')`` and ``skip('slow')`` do the same."""
    if not isinstance(node, ast.Call):
        return ast.unparse(node)
    call = copy.copy(node)
    call.keywords = [k for k in node.keywords if k.arg not in ("reason", "msg")]
    keep = 1 if _KINDS.get(call_name(node)) == "skipif" else 0  # the condition stays
    call.args = node.args[:keep] + [a for a in node.args[keep:] if not isinstance(a, ast.Constant)]
    return ast.unparse(call)


def decorator_markers(decorators: list[ast.expr], scope: str) -> list[Marker]:
    out = []
    for deco in decorators:
        kind = _kind(deco)
        if kind:
            out.append(Marker(kind, f"@{ast.unparse(deco)}", scope, deco.lineno, _key(deco)))
        elif isinstance(deco, ast.Call) and call_name(deco) == "parametrize":
            out.extend(_param_markers(deco))
    return out


def _param_markers(deco: ast.Call) -> list[Marker]:
    out = []
    for case in argvalues(deco):
        if not (isinstance(case, ast.Call) and call_name(case) == "param"):
            continue
        for kw in case.keywords:
            marks = kw.value.elts if isinstance(kw.value, ast.List | ast.Tuple) else [kw.value]
            for mark in marks if kw.arg == "marks" else []:
                kind = _kind(mark)
                if kind:
                    key = f"{ast.unparse(ast.Tuple(elts=list(case.args), ctx=ast.Load()))}:{_key(mark)}"
                    out.append(Marker(kind, ast.unparse(case), "param", case.lineno, key))
    return out


def argvalues(deco: ast.Call) -> list[ast.expr]:
    """The cases of a ``parametrize`` decorator, when written as a literal list or tuple."""
    values = next((k.value for k in deco.keywords if k.arg == "argvalues"), None)
    if len(deco.args) > 1:
        values = deco.args[1]
    return list(values.elts) if isinstance(values, ast.List | ast.Tuple) else []


def pytestmark(body: list[ast.stmt], scope: str) -> list[Marker]:
    out = []
    for stmt in body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in stmt.targets):
            values = stmt.value.elts if isinstance(stmt.value, ast.List | ast.Tuple) else [stmt.value]
            out.extend(decorator_markers(values, scope))
    return out


def module_skips(body: list[ast.stmt]) -> list[Marker]:
    """``pytest.skip(..., allow_module_level=True)`` at module level skips every test in it."""
    out = []
    for stmt in body:
        for node in ast.walk(stmt) if isinstance(stmt, ast.Expr | ast.If) else ():
            if isinstance(node, ast.Call) and dotted(node.func) in ("pytest.skip", "pytest.xfail"):
                out.append(Marker(call_name(node), ast.unparse(node), "module", node.lineno, _key(node)))
    return out


#: Setup functions that run before every test of their module or class (unittest and pytest).
_SETUP = frozenset(
    {"setUp", "setUpClass", "setUpModule", "setup_method", "setup_class", "setup_module", "setup_function"}
)


def setup_skips(body: list[ast.stmt], scope: str) -> list[Marker]:
    """A skip in ``setUp``, ``setup_module`` or an autouse fixture skips every test it runs before."""
    out = []
    for node in body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if node.name not in _SETUP and not _autouse(node):
            continue
        for call, conditional in _skips_in(node.body, False):
            text = f"{node.name}: {ast.unparse(call)}"
            key = f"{node.name}:{_key(call) if isinstance(call, ast.Call) else ast.unparse(call)}"
            out.append(Marker("skipif" if conditional else "skip", text, scope, call.lineno, key))
    return out


def _autouse(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(
        isinstance(d, ast.Call)
        and call_name(d) == "fixture"
        and any(k.arg == "autouse" and isinstance(k.value, ast.Constant) and k.value.value for k in d.keywords)
        for d in node.decorator_list
    )


def _skips_in(stmts: list[ast.stmt], conditional: bool) -> list[tuple[ast.AST, bool]]:
    out: list[tuple[ast.AST, bool]] = []
    for stmt in stmts:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        if isinstance(stmt, ast.Raise) and stmt.exc is not None and dotted(stmt.exc).endswith("SkipTest"):
            out.append((stmt, conditional))
        call = stmt.value if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) else None
        if call is not None and dotted(call.func) in ("pytest.skip", "pytest.xfail", "self.skipTest", "cls.skipTest"):
            out.append((call, conditional))
        nested = conditional or isinstance(stmt, ast.If | ast.For | ast.While | ast.Try | ast.Match)
        for name in ("body", "orelse", "finalbody", "handlers"):
            children = getattr(stmt, name, None) or []
            for child in children:
                out += _skips_in(child.body if isinstance(child, ast.ExceptHandler) else [child], nested)
    return out
