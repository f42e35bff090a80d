"""Checks: every statement in a test that can make it fail, with how much it pins down.

A *check* is an ``assert``, an assertion method (``self.assertEqual``, ``mock.assert_called_with``,
``np.testing.assert_allclose``), an expected exception (``pytest.raises``), ``pytest.fail``,
a call to a local helper that asserts, or one case of a ``parametrize`` table.

``strength`` orders checks by how much of the result they pin down, so that an edit can
be judged *weaker* without running anything:

====  ==========================================================================
4     exact: ``==``, ``is``, ``is None``, ``assertEqual``, a specific exception
3     partial: ordering, membership, ``isinstance``, length, ``assertIn``
2     negative: ``!=``, ``is not``, ``is not None``, ``not in``, ``assertIsNotNone``
1.5   truthiness: ``assert x``, ``assertTrue(x)``, ``pytest.raises(Exception)``
0     cannot fail: ``assert True``, ``x == x``, ``... or True``
====  ==========================================================================

A drop of a whole level or more is a weakening; smaller moves (``x is True`` → ``x``)
are style. Messages and tolerance arguments are kept out of ``key`` so that fixing a
message typo is no edit, and tolerances are compared on their own, as numbers.
"""

from __future__ import annotations

import ast
import builtins
import copy
from dataclasses import dataclass, field

EXACT, PARTIAL, NEGATIVE, TRUTHY, VACUOUS = 4.0, 3.0, 2.0, 1.5, 0.0


def _words(text: str) -> list[str]:
    return text.split()


_LEVELS = (
    (EXACT, "an exact comparison"),
    (PARTIAL, "a partial check (ordering, membership, type or length)"),
    (NEGATIVE, "a negative check (!=, is not, is not None)"),
    (TRUTHY, "a truthiness check"),
    (VACUOUS, "a check that cannot fail"),
)


def describe(strength: float) -> str:
    for level, text in _LEVELS:
        if strength >= level:
            return text
    return _LEVELS[-1][1]


#: Assertion methods by strength (unittest, mock, numpy, pandas).
_METHOD_STRENGTH: dict[str, float] = {
    **dict.fromkeys(
        _words(
            "assertEqual assertEquals failUnlessEqual assertIs assertIsNone assertDictEqual assertListEqual "
            "assertTupleEqual assertSetEqual assertSequenceEqual assertMultiLineEqual assertCountEqual "
            "assertItemsEqual assertAlmostEqual assertAlmostEquals assert_called_once_with assert_called_with "
            "assert_awaited_once_with assert_awaited_with assert_has_calls assert_has_awaits assert_not_called "
            "assert_not_awaited assert_array_equal assert_array_almost_equal assert_allclose assert_almost_equal "
            "assert_equal assert_frame_equal assert_series_equal assert_index_equal"
        ),
        EXACT,
    ),
    **dict.fromkeys(
        _words(
            "assertIn assertGreater assertGreaterEqual assertLess assertLessEqual assertIsInstance assertRegex "
            "assertRegexpMatches assertLogs assertNoLogs assertDictContainsSubset assert_any_call assert_any_await "
            "assert_called_once assert_awaited_once assertIsSubclass"
        ),
        PARTIAL,
    ),
    **dict.fromkeys(
        _words(
            "assertNotEqual assertNotEquals failIfEqual assertIsNot assertIsNotNone assertNotIn assertNotIsInstance "
            "assertNotRegex assertNotAlmostEqual assertNotAlmostEquals"
        ),
        NEGATIVE,
    ),
    **dict.fromkeys(_words("assertTrue assertFalse assert_ failUnless failIf assert_called assert_awaited"), TRUTHY),
}
_ONE_ARG = frozenset(_words("assertTrue assertFalse assertIsNone assertIsNotNone assert_ failUnless failIf"))
#: Mock call assertions: every argument is part of the expectation.
_MOCK_PREFIXES = ("assert_called", "assert_any_", "assert_has_", "assert_not_", "assert_awaited")
_ALL_ARGS = frozenset(n for n in _METHOD_STRENGTH if n.startswith(_MOCK_PREFIXES))
RAISES = frozenset(
    _words(
        "raises warns deprecated_call assertRaises assertRaisesRegex assertRaisesRegexp assertWarns assertWarnsRegex"
    )
)
_GENERIC_EXCEPTIONS = frozenset({"Exception", "BaseException", "Warning"})
_MESSAGE_KWARGS = frozenset({"msg", "err_msg", "message"})
#: Keyword arguments that set a tolerance; larger means looser, except ``places``/``decimal``.
_TOLERANCE_KWARGS = frozenset({"rel", "abs", "rel_tol", "abs_tol", "rtol", "atol", "places", "delta", "decimal"})
_TOLERANCE_CALLS = frozenset(
    _words(
        "approx isclose allclose assert_allclose assertAlmostEqual assertAlmostEquals assertNotAlmostEqual "
        "assert_almost_equal assert_array_almost_equal"
    )
)


@dataclass(frozen=True)
class Tolerance:
    """How far from the expected value a result may be and still pass (``None``: unknown)."""

    rel: float | None
    abs: float | None

    def widened_from(self, old: Tolerance) -> tuple[float, str] | None:
        """How much looser than ``old`` this is: (factor, "relative tolerance 1e-06 → 0.5"), or None."""
        widest: tuple[float, str] | None = None
        for label, new_v, old_v in (("relative", self.rel, old.rel), ("absolute", self.abs, old.abs)):
            if new_v is None or old_v is None or new_v <= old_v * (1 + 1e-9):
                continue
            factor = float("inf") if old_v == 0 else new_v / old_v
            if widest is None or factor > widest[0]:
                widest = (factor, f"{label} tolerance {old_v:g} → {new_v:g}")
        return widest

    @property
    def negligible(self) -> bool:
        """Within what float round-off needs (pytest.approx's defaults are 1e-6 relative)."""
        return (self.rel or 0.0) <= 1e-6 and (self.abs or 0.0) <= 1e-6


EXACT_TOLERANCE = Tolerance(0.0, 0.0)


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

    def bound_moved(self, old: Check) -> int:
        """+1 when this is ``old`` with its numeric bound relaxed, -1 when tightened, else 0."""
        if self.bound is None or old.bound is None or self.shape != old.shape or self.bound[0] != old.bound[0]:
            return 0
        (direction, new_v), old_v = self.bound, old.bound[1]
        if new_v == old_v:
            return 0
        looser = new_v > old_v if direction == "upper" else new_v < old_v
        return 1 if looser else -1


def dotted(node: ast.AST) -> str:
    """``a.b.c`` for a Name/Attribute chain, ``a.b()`` → ``a.b``; '' when not a plain chain."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Call):
        return dotted(node.func)
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def call_name(call: ast.Call) -> str:
    """The last segment of what is called: ``self.assertEqual(...)`` → ``assertEqual``."""
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def is_assertion_call(call: ast.Call) -> bool:
    return call_name(call).startswith("assert") and call_name(call) not in RAISES


# -- strength of an asserted expression -----------------------------------------------------


def expr_strength(node: ast.expr) -> float:
    """How much an asserted expression pins down (see the module docstring)."""
    if isinstance(node, ast.Constant):
        return VACUOUS if node.value else EXACT  # ``assert False`` always fails: a hard stop
    if isinstance(node, ast.BoolOp):
        parts = [expr_strength(v) for v in node.values]
        if isinstance(node.op, ast.And):
            return max(parts)
        return max(VACUOUS, min(parts) - 1.0)  # any alternative passing is enough: looser
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        inner = node.operand
        if isinstance(inner, ast.Compare) and len(inner.ops) == 1:
            return NEGATIVE if isinstance(inner.ops[0], ast.Eq | ast.Is | ast.In) else PARTIAL
        return TRUTHY
    if isinstance(node, ast.Compare):
        strengths, left = [], node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            strengths.append(_op_strength(op, left, right))
            left = right
        return min(strengths)
    if isinstance(node, ast.Call):
        return _call_strength(node)
    return TRUTHY


def _is_bool(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, bool)


def _is_len(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and call_name(node) == "len"


def _op_strength(op: ast.cmpop, left: ast.expr, right: ast.expr) -> float:
    if ast.unparse(left) == ast.unparse(right):
        return VACUOUS
    if isinstance(op, ast.Eq | ast.Is):
        if _is_bool(left) or _is_bool(right):
            return NEGATIVE  # ``x is True`` is barely more than ``assert x``
        return PARTIAL if _is_len(left) or _is_len(right) else EXACT
    if isinstance(op, ast.NotEq | ast.IsNot | ast.NotIn):
        return NEGATIVE
    return PARTIAL  # in, <, <=, >, >=


def _call_strength(node: ast.Call) -> float:
    name = call_name(node)
    if name in ("isclose", "allclose", "array_equal", "equals", "assert_equal"):
        return EXACT
    if name in ("isinstance", "issubclass", "startswith", "endswith", "match", "fullmatch", "search"):
        return PARTIAL
    if name in ("all", "any") and node.args and isinstance(node.args[0], ast.GeneratorExp | ast.ListComp):
        inner = expr_strength(node.args[0].elt)
        return inner if name == "all" else max(VACUOUS, inner - 1.0)
    return TRUTHY


def method_strength(call: ast.Call) -> float:
    name = call_name(call)
    base = _METHOD_STRENGTH.get(name, PARTIAL)  # an unknown assert helper: neutral
    if name in ("assertTrue", "assert_", "failUnless") and call.args:
        return max(base, expr_strength(call.args[0]))  # assertTrue(a == b) is assertEqual(a, b)
    return base


def exception_strength(exc: ast.expr | None, has_match: bool) -> float:
    names = _exception_names(exc)
    if not names or names & _GENERIC_EXCEPTIONS:
        return TRUTHY
    level = PARTIAL if len(names) > 1 else EXACT
    return level + (0.5 if has_match else 0.0)


def _exception_names(exc: ast.expr | None) -> set[str]:
    if exc is None:
        return set()
    elts = exc.elts if isinstance(exc, ast.Tuple) else [exc]
    return {dotted(e).rsplit(".", 1)[-1] for e in elts if dotted(e)}


def broadened_to_superclass(old: str | None, new: str | None) -> bool:
    """``FileNotFoundError`` → ``OSError``: uses the real hierarchy of built-in exceptions."""
    old_cls = getattr(builtins, (old or "").rsplit(".", 1)[-1], None)
    new_cls = getattr(builtins, (new or "").rsplit(".", 1)[-1], None)
    return (
        isinstance(old_cls, type)
        and isinstance(new_cls, type)
        and issubclass(old_cls, BaseException)
        and old_cls is not new_cls
        and issubclass(old_cls, new_cls)
    )


# -- keys, shapes and tolerances --------------------------------------------------------------


class _Normalise(ast.NodeTransformer):
    """Drop failure messages and tolerance arguments: they are not what a check checks."""

    def visit_Call(self, node: ast.Call) -> ast.Call:
        self.generic_visit(node)
        name = call_name(node)
        drop = set(_MESSAGE_KWARGS)
        if name in _TOLERANCE_CALLS:
            drop |= _TOLERANCE_KWARGS
        node.keywords = [k for k in node.keywords if k.arg not in drop]
        if name in _METHOD_STRENGTH and name not in _ALL_ARGS:
            node.args = node.args[: 1 if name in _ONE_ARG else 2]  # the rest is msg/places
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


def _idents(node: ast.AST) -> frozenset[str]:
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.Attribute):
            out.add(n.attr)
    return frozenset(out)


def _number(node: ast.expr | None) -> float | None:
    if node is None:
        return None
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _kw(call: ast.Call, *names: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg in names), None)


def tolerance_of(node: ast.AST) -> Tolerance | None:
    """The tolerance of the first tolerance-bearing call in ``node`` (None: an exact check)."""
    for n in ast.walk(node):
        if not isinstance(n, ast.Call) or call_name(n) not in _TOLERANCE_CALLS:
            continue
        name = call_name(n)
        if name == "approx":
            return Tolerance(_default(n, 1e-6, "rel"), _default(n, 1e-12, "abs"))
        if name == "isclose" and dotted(n.func).startswith("math"):
            return Tolerance(_default(n, 1e-9, "rel_tol"), _default(n, 0.0, "abs_tol"))
        if name in ("isclose", "allclose", "assert_allclose"):
            rtol = 1e-7 if name == "assert_allclose" else 1e-5
            return Tolerance(_default(n, rtol, "rtol", pos=2), _default(n, 1e-8 if rtol == 1e-5 else 0.0, "atol"))
        places_kw = "decimal" if name.startswith("assert_") else "places"
        delta = _kw(n, "delta")
        if delta is not None:
            return Tolerance(0.0, _number(delta))
        places = _default(n, 7.0, places_kw, pos=2 if places_kw == "places" else None)
        scale = 1.5 if places_kw == "decimal" else 0.5  # numpy's and unittest's definitions
        return Tolerance(0.0, None if places is None else scale * 10 ** (-places))
    return None


def _default(call: ast.Call, default: float, kw: str, pos: int | None = None) -> float | None:
    node = _kw(call, kw)
    if node is None and pos is not None and len(call.args) > pos:
        node = call.args[pos]
    return default if node is None else _number(node)


def make_check(kind: str, node: ast.AST, text: str, strength: float, line: int, **extra) -> Check:
    """Build a check from the AST ``node`` whose normalised form identifies it."""
    normal = _Normalise().visit(copy.deepcopy(node))
    key = ast.unparse(normal)
    shaper = _Shape()
    shape = ast.unparse(shaper.visit(copy.deepcopy(normal)))
    return Check(
        kind=kind,
        text=text,
        key=f"{kind}:{key}",
        shape=f"{kind}:{shape}",
        literals=tuple(shaper.literals),
        strength=strength,
        line=line,
        tolerance=tolerance_of(node),
        idents=_idents(normal),
        **extra,
    )


_UPPER_OPS = (ast.Lt, ast.LtE)
_LOWER_OPS = (ast.Gt, ast.GtE)
_BOUND_METHODS = {
    "assertLess": "upper",
    "assertLessEqual": "upper",
    "assertGreater": "lower",
    "assertGreaterEqual": "lower",
}


def bound_of(node: ast.AST) -> tuple[str, float] | None:
    """``elapsed < 0.5`` → ("upper", 0.5); ``0.5 > elapsed`` likewise; None when not a numeric bound."""
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        op, left, right = node.ops[0], node.left, node.comparators[0]
        if (value := _number(right)) is not None and _number(left) is None:
            upper = isinstance(op, _UPPER_OPS)
        elif (value := _number(left)) is not None and _number(right) is None:
            upper = isinstance(op, _LOWER_OPS)
        else:
            return None
        if isinstance(op, _UPPER_OPS + _LOWER_OPS):
            return ("upper" if upper else "lower", value)
        return None
    if isinstance(node, ast.Call) and call_name(node) in _BOUND_METHODS and len(node.args) >= 2:
        value = _number(node.args[1])
        return None if value is None else (_BOUND_METHODS[call_name(node)], value)
    return None


def assert_check(stmt: ast.Assert, swallowed: str | None) -> Check:
    strength = expr_strength(stmt.test)
    text = f"assert {ast.unparse(stmt.test)}"
    return make_check("assert", stmt.test, text, strength, stmt.lineno, swallowed=swallowed, bound=bound_of(stmt.test))


def method_check(call: ast.Call, swallowed: str | None) -> Check:
    text, strength = ast.unparse(call), method_strength(call)
    return make_check("method", call, text, strength, call.lineno, swallowed=swallowed, bound=bound_of(call))


def raises_check(call: ast.Call, swallowed: str | None) -> Check:
    name = call_name(call)
    exc = call.args[0] if call.args else _kw(call, "expected_exception", "expected_warning")
    match = _kw(call, "match")
    if match is None and name.endswith(("Regex", "Regexp")) and len(call.args) > 1:
        match = call.args[1]
    strength = EXACT if name == "deprecated_call" else exception_strength(exc, match is not None)
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
    return make_check("fail", call.func, ast.unparse(call), EXACT, call.lineno, swallowed=swallowed)


def helper_check(call: ast.Call, inner: list[Check], swallowed: str | None) -> Check:
    strength = max((c.strength for c in inner), default=PARTIAL)
    return make_check(
        "helper", call, ast.unparse(call), strength, call.lineno, swallowed=swallowed, capacity=max(1, len(inner))
    )


def case_check(case: ast.expr) -> Check:
    """One row of a ``parametrize`` table; ``pytest.param(a, b, marks=...)`` counts as ``(a, b)``."""
    values = case
    if isinstance(case, ast.Call) and call_name(case) == "param":
        values = ast.Tuple(elts=list(case.args), ctx=ast.Load())
    return make_check("case", values, ast.unparse(case), EXACT, case.lineno)
