"""Checks: every statement in a test that can make it fail, and what identifies each one.

A *check* is an ``assert``, an assertion method (``self.assertEqual``, ``mock.assert_called_with``,
``np.testing.assert_allclose``), an expected exception (``pytest.raises``), ``pytest.fail``,
a call to a local helper that asserts, or one case of a ``parametrize`` table.

Each check carries a ``key`` (identical keys: the same check), a ``shape`` (the key with
literals blanked: same shape and other literals is an edited expectation), a strength
(see ``strength``), and its tolerance and numeric bound (see ``tolerance``). Failure
messages and tolerance arguments are kept out of the key, so fixing a typo in a message
is no edit and a widened tolerance is judged as a number.
"""

from __future__ import annotations

import ast
import copy
from dataclasses import dataclass, field

from mergegate.agents.test_integrity import strength as st
from mergegate.agents.test_integrity.astutil import call_name, keyword
from mergegate.agents.test_integrity.tolerance import (
    TOLERANCE_CALLS,
    TOLERANCE_KWARGS,
    Tolerance,
    bound_of,
    tolerance_of,
)

_MESSAGE_KWARGS = frozenset({"msg", "err_msg", "message"})
#: Kinds that stand for "this must raise": a ``try: f(); pytest.fail()`` is an old-style raises.
RAISING_KINDS = frozenset({"raises", "fail"})


@dataclass(frozen=True)
class Check:
    kind: str  # assert | method | raises | fail | helper | case
    #: What the reviewer sees: ``ast.unparse`` of the check, without its failure message.
    text: str
    #: ``text`` without tolerance arguments: identical keys mean the same check.
    key: str
    #: ``key`` with every literal replaced: same shape + other literals = an edited expectation.
    shape: str
    literals: tuple[str, ...]
    strength: float
    line: int
    tolerance: Tolerance | None = None
    #: Set when the check sits in a ``try`` whose handler swallows its failure: how.
    swallowed: str | None = None
    #: How many removed checks this one may stand in for (a helper's assertions).
    capacity: int = 1
    idents: frozenset[str] = field(default_factory=frozenset)
    #: For ``raises``: the expected exception's source text, and its ``match=`` pattern.
    exception: str | None = None
    match: str | None = None
    #: For ``x < 5``-style checks: ("upper" | "lower", the numeric bound).
    bound: tuple[str, float] | None = None
    #: What the check says about which expression (see ``strength.form_of``).
    form: tuple[str, str] | None = None
    #: Plain names compared as a whole for equality (``assert result == expected``).
    operands: frozenset[str] = frozenset()

    @property
    def raising(self) -> bool:
        return self.kind in RAISING_KINDS

    def bound_moved(self, old: Check) -> int:
        """+1 when this is ``old`` with its numeric bound relaxed, -1 when tightened, else 0."""
        if self.bound is None or old.bound is None or self.shape != old.shape or self.bound[0] != old.bound[0]:
            return 0
        (direction, new_v), old_v = self.bound, old.bound[1]
        if new_v == old_v:
            return 0
        looser = new_v > old_v if direction == "upper" else new_v < old_v
        return 1 if looser else -1


#: Deprecated unittest aliases: renaming one to the other is no edit.
_ALIASES = {
    "assertEquals": "assertEqual",
    "failUnlessEqual": "assertEqual",
    "assertNotEquals": "assertNotEqual",
    "failIfEqual": "assertNotEqual",
    "assertAlmostEquals": "assertAlmostEqual",
    "assertNotAlmostEquals": "assertNotAlmostEqual",
    "assertItemsEqual": "assertCountEqual",
    "assertRegexpMatches": "assertRegex",
    "assertRaisesRegexp": "assertRaisesRegex",
    "assert_": "assertTrue",
    "failUnless": "assertTrue",
    "failIf": "assertFalse",
}


class _Normalise(ast.NodeTransformer):
    """Drop failure messages and tolerance arguments: they are not what a check checks."""

    def visit_Call(self, node: ast.Call) -> ast.Call:
        self.generic_visit(node)
        name = call_name(node)
        if name in _ALIASES and isinstance(node.func, ast.Attribute):
            node.func.attr = _ALIASES[name]
        drop = set(_MESSAGE_KWARGS)
        if name in TOLERANCE_CALLS:
            drop |= TOLERANCE_KWARGS
        node.keywords = [k for k in node.keywords if k.arg not in drop]
        if name in st.METHOD_STRENGTH and name not in st.ALL_ARGS:
            node.args = node.args[: 1 if name in st.ONE_ARG else 2]  # the rest is msg/places
        return node


class _Shape(ast.NodeTransformer):
    def __init__(self) -> None:
        self.literals: list[str] = []

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        if isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            self.literals.append(repr(-node.operand.value))
            return ast.Constant(...)
        return self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        self.literals.append(repr(node.value))
        return ast.Constant(...)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        """An f-string is one literal (its parts cannot be replaced one by one)."""
        self.literals.append(ast.unparse(node))
        return ast.Constant(...)


def _idents(node: ast.AST) -> frozenset[str]:
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.Attribute):
            out.add(n.attr)
    return frozenset(out)


def make_check(kind: str, node: ast.AST, text: str, strength: float, line: int, **extra) -> Check:
    """Build a check from the AST ``node`` whose normalised form identifies it."""
    normal = _Normalise().visit(_copy(node))
    key = ast.unparse(normal)
    idents = _idents(normal)
    shaper = _Shape()
    shape = ast.unparse(shaper.visit(normal))  # in place: ``normal`` is not needed any more
    return Check(
        kind=kind,
        text=text,
        key=f"{kind}:{key}",
        shape=f"{kind}:{shape}",
        literals=tuple(shaper.literals),
        strength=strength,
        line=line,
        tolerance=tolerance_of(node),
        idents=idents,
        **extra,
    )


def _copy(node: ast.AST) -> ast.AST:
    """A private copy to transform; re-parsing is much faster than ``copy.deepcopy`` of an AST."""
    try:
        return ast.parse(ast.unparse(node), mode="eval").body
    except SyntaxError:  # pragma: no cover - unparse output always parses
        return copy.deepcopy(node)


def assert_check(stmt: ast.Assert, swallowed: str | None, results: dict[str, ast.expr] | None = None) -> Check:
    """``results``: names assigned once from a call (``expected = vat(100)``), to see tautologies."""
    test = stmt.test
    text, strength = f"assert {ast.unparse(test)}", st.expr_strength(test)
    same = _tautology(test, results or {})
    if same:
        text, strength = f"{text} (where {same})", st.VACUOUS
    return make_check(
        "assert",
        test,
        text,
        strength,
        stmt.lineno,
        swallowed=swallowed,
        bound=bound_of(test),
        form=st.form_of(test),
        operands=_operands(test),
    )


def _operands(node: ast.expr) -> frozenset[str]:
    if isinstance(node, ast.Compare) and all(isinstance(op, ast.Eq | ast.Is) for op in node.ops):
        sides = [node.left, *node.comparators]
    elif isinstance(node, ast.Call) and st.METHOD_STRENGTH.get(call_name(node)) == st.EXACT:
        sides = node.args[:2]
    else:
        return frozenset()
    return frozenset(s.id for s in sides if isinstance(s, ast.Name))


def _tautology(test: ast.expr, results: dict[str, ast.expr]) -> str:
    """``assert f(x) == expected`` after ``expected = f(x)``: the test compares the code with itself."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq | ast.Is)):
        return ""
    sides = (test.left, test.comparators[0])
    named = [s.id for s in sides if isinstance(s, ast.Name) and s.id in results]
    resolved = [
        ast.unparse(results[s.id]) if isinstance(s, ast.Name) and s.id in results else ast.unparse(s) for s in sides
    ]
    if named and resolved[0] == resolved[1]:
        return "; ".join(f"{n} = {ast.unparse(results[n])}" for n in named)
    return ""


def expectation(target: str, value: ast.expr) -> Check | None:
    """``expected = {"a": 1}``: an expected value kept in a variable, compared like a check's literals."""
    if not _literal_like(value):
        return None
    text = f"{target} = {ast.unparse(value)}"
    return make_check("expect", value, text, st.EXACT, value.lineno, form=("expect", target))


def _literal_like(node: ast.expr) -> bool:
    """Literals, displays of literals, and constructors of literals (``Decimal("2.68")``)."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.UnaryOp):
        return _literal_like(node.operand)
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return all(_literal_like(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(k is None or _literal_like(k) for k in node.keys) and all(_literal_like(v) for v in node.values)
    if isinstance(node, ast.Call) and call_name(node)[:1].isupper():
        return all(_literal_like(a) for a in node.args) and all(_literal_like(k.value) for k in node.keywords)
    return False


def method_check(call: ast.Call, swallowed: str | None) -> Check:
    return make_check(
        "method",
        call,
        ast.unparse(call),
        st.method_strength(call),
        call.lineno,
        swallowed=swallowed,
        bound=bound_of(call),
        form=st.form_of(call),
        operands=_operands(call),
    )


def raises_check(call: ast.Call, swallowed: str | None) -> Check:
    name = call_name(call)
    exc = call.args[0] if call.args else keyword(call, "expected_exception", "expected_warning")
    match = keyword(call, "match")
    if match is None and name.endswith(("Regex", "Regexp")) and len(call.args) > 1:
        match = call.args[1]
    strength = st.EXACT if name == "deprecated_call" else st.exception_strength(exc, match is not None)
    # Only the expectation identifies a raises check, not the code run under it (call form).
    ident = ast.Tuple(elts=[e for e in (exc, match) if e is not None], ctx=ast.Load())
    return make_check(
        "raises",
        ident,
        ast.unparse(_raises_display(call)),
        strength,
        call.lineno,
        swallowed=swallowed,
        exception=None if exc is None else ast.unparse(exc),
        match=None if match is None else ast.unparse(match),
    )


def _raises_display(call: ast.Call) -> ast.Call:
    """``pytest.raises(E, f, x)`` (call form) is shown as ``pytest.raises(E)``."""
    shown = copy.copy(call)
    shown.args = call.args[: 2 if call_name(call).endswith(("Regex", "Regexp")) else 1]
    return shown


def fail_check(call: ast.Call, swallowed: str | None) -> Check:
    return make_check("fail", call.func, ast.unparse(call), st.EXACT, call.lineno, swallowed=swallowed)


def helper_check(call: ast.Call, inner: list[Check], swallowed: str | None) -> Check:
    strength = max((c.strength for c in inner), default=st.PARTIAL)
    capacity = max(1, len(inner))
    return make_check("helper", call, ast.unparse(call), strength, call.lineno, swallowed=swallowed, capacity=capacity)


def case_check(case: ast.expr) -> Check:
    """One row of a ``parametrize`` table; ``pytest.param(a, b, marks=...)`` counts as ``(a, b)``."""
    values = case
    if isinstance(case, ast.Call) and call_name(case) == "param":
        values = ast.Tuple(elts=list(case.args), ctx=ast.Load())
    return make_check("case", values, ast.unparse(case), st.EXACT, case.lineno)
