"""How much a check pins down, so that an edit can be judged *weaker* without running it.

====  ==========================================================================
4     exact: ``==``, ``is``, ``is None``, ``assertEqual``, a specific exception
3     partial: ordering, membership, ``isinstance``, ``assertIn``
2     negative: ``!=``, ``is not``, ``is not None``, ``not in``, ``assertIsNotNone``
1.5   truthiness: ``assert x``, ``assertTrue(x)``, ``pytest.raises(Exception)``
0     cannot fail: ``assert True``, ``x == x``, ``... or True``
====  ==========================================================================

A drop of a whole level or more is a weakening; smaller moves are style. Two edits the
levels cannot see are told apart by the check's *form* (what it says about which
expression): ``x is True`` → ``x`` is a style fix, while ``x == [1, 2]`` →
``len(x) == 2`` keeps the level but only checks a projection of ``x``.
"""

from __future__ import annotations

import ast
import builtins

from mergegate.agents.test_integrity.astutil import call_name, dotted, words

EXACT, PARTIAL, NEGATIVE, TRUTHY, VACUOUS = 4.0, 3.0, 2.0, 1.5, 0.0

_LEVELS = (
    (EXACT, "an exact comparison"),
    (PARTIAL, "a partial check (ordering, membership or type)"),
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
METHOD_STRENGTH: dict[str, float] = {
    **dict.fromkeys(
        words(
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
        words(
            "assertIn assertGreater assertGreaterEqual assertLess assertLessEqual assertIsInstance assertRegex "
            "assertRegexpMatches assertLogs assertNoLogs assertDictContainsSubset assert_any_call assert_any_await "
            "assert_called_once assert_awaited_once assertIsSubclass"
        ),
        PARTIAL,
    ),
    **dict.fromkeys(
        words(
            "assertNotEqual assertNotEquals failIfEqual assertIsNot assertIsNotNone assertNotIn assertNotIsInstance "
            "assertNotRegex assertNotAlmostEqual assertNotAlmostEquals"
        ),
        NEGATIVE,
    ),
    **dict.fromkeys(words("assertTrue assertFalse assert_ failUnless failIf assert_called assert_awaited"), TRUTHY),
}
ONE_ARG = frozenset(words("assertTrue assertFalse assertIsNone assertIsNotNone assert_ failUnless failIf"))
_MOCK_PREFIXES = ("assert_called", "assert_any_", "assert_has_", "assert_not_", "assert_awaited")
#: Mock call assertions: every argument is part of the expectation.
ALL_ARGS = frozenset(n for n in METHOD_STRENGTH if n.startswith(_MOCK_PREFIXES))
RAISES = frozenset(
    words("raises warns deprecated_call assertRaises assertRaisesRegex assertRaisesRegexp assertWarns assertWarnsRegex")
)
_GENERIC_EXCEPTIONS = frozenset({"Exception", "BaseException", "Warning"})
#: Wrappers that keep only one property of their argument.
_PROJECTIONS = frozenset({"len", "type", "bool", "isinstance", "hasattr", "callable"})


def is_assertion_call(call: ast.Call) -> bool:
    return call_name(call).startswith("assert") and call_name(call) not in RAISES


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


def _op_strength(op: ast.cmpop, left: ast.expr, right: ast.expr) -> float:
    if ast.unparse(left) == ast.unparse(right):
        return VACUOUS
    if isinstance(op, ast.Eq | ast.Is):
        return EXACT
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
    base = METHOD_STRENGTH.get(name) or _guess(name)
    if name in ("assertTrue", "assert_", "failUnless") and call.args:
        return max(base, expr_strength(call.args[0]))  # assertTrue(a == b) is assertEqual(a, b)
    return base


def _guess(name: str) -> float:
    """A project's own ``assert_*`` helper, judged by its name (``assert_dict_equal``: exact)."""
    lowered = name.lower()
    if "not" in lowered.replace("_", ""):
        return NEGATIVE if "equal" in lowered or "none" in lowered else PARTIAL
    if any(word in lowered for word in ("equal", "same", "identical")):
        return EXACT
    if any(word in lowered for word in ("true", "truthy", "exists", "called")):
        return TRUTHY
    return PARTIAL  # unknown: neutral


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


# -- form: what a check says about which expression ----------------------------------------------


def form_of(node: ast.AST) -> tuple[str, str] | None:
    """("eq" | "true" | "false" | "of" | "truthy" | "falsy", subject) for the common shapes.

    ``x == y`` → ("eq", "x"); ``x is True`` → ("true", "x"); ``len(x) == 2`` and
    ``isinstance(x, T)`` → ("of", "x"); ``assert x`` → ("truthy", "x"); ``not x`` → ("falsy", "x").
    """
    if isinstance(node, ast.Call) and call_name(node).startswith("assert"):
        return _method_form(node)
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        left, right = node.left, node.comparators[0]
        if _bool(left) is not None:
            left, right = right, left
        if _projected(left) is not None:
            return ("of", _projected(left))
        if isinstance(node.ops[0], ast.Eq | ast.Is):
            flag = _bool(right)
            return ("eq" if flag is None else "true" if flag else "false", ast.unparse(left))
        return None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not) and not isinstance(node.operand, ast.Compare):
        return ("falsy", ast.unparse(node.operand))
    if _projected(node) is not None:
        return ("of", _projected(node))
    if isinstance(node, ast.Name | ast.Attribute | ast.Subscript | ast.Call):
        return ("truthy", ast.unparse(node))
    return None


def _method_form(call: ast.Call) -> tuple[str, str] | None:
    name, args = call_name(call), call.args
    if not args:
        return None
    if name in ("assertTrue", "assertFalse"):
        inner = form_of(args[0])
        if name == "assertFalse" and inner and inner[0] == "truthy":
            return ("falsy", inner[1])
        return inner
    if _projected(args[0]) is not None:
        return ("of", _projected(args[0]))
    if name == "assertIsInstance":
        return ("of", ast.unparse(args[0]))
    if name in ("assertEqual", "assertEquals", "assertIs") and len(args) > 1:
        flag = _bool(args[1])
        return ("eq" if flag is None else "true" if flag else "false", ast.unparse(args[0]))
    return None


def _bool(node: ast.expr) -> bool | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, bool) else None


def _projected(node: ast.expr) -> str | None:
    if isinstance(node, ast.Call) and call_name(node) in _PROJECTIONS and node.args and not node.keywords:
        return ast.unparse(node.args[0])
    return None
