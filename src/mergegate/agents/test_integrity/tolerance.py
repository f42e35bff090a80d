"""How loose a numeric check is: tolerances of approximate comparisons, and bounds.

An edit that keeps ``x == pytest.approx(1.5)`` but raises ``rel=`` from the default to
0.5, or keeps ``elapsed < 0.5`` but makes it ``elapsed < 5``, leaves the check's shape
alone and lets far more results pass. These are compared as numbers, with each tool's
own defaults (pytest.approx, math.isclose, numpy, unittest's ``places``/``delta``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from mergegate.agents.test_integrity.astutil import call_name, dotted, keyword, number, words

#: Keyword arguments that set a tolerance; larger means looser, except ``places``/``decimal``.
TOLERANCE_KWARGS = frozenset(words("rel abs rel_tol abs_tol rtol atol places delta decimal"))
TOLERANCE_CALLS = frozenset(
    words(
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


def tolerance_of(node: ast.AST) -> Tolerance | None:
    """The tolerance of the first tolerance-bearing call in ``node`` (None: an exact check)."""
    for n in ast.walk(node):
        if not isinstance(n, ast.Call) or call_name(n) not in TOLERANCE_CALLS:
            continue
        name = call_name(n)
        if name == "approx":
            return Tolerance(_arg(n, 1e-6, "rel"), _arg(n, 1e-12, "abs"))
        if name == "isclose" and dotted(n.func).startswith("math"):
            return Tolerance(_arg(n, 1e-9, "rel_tol"), _arg(n, 0.0, "abs_tol"))
        if name == "assert_allclose":
            return Tolerance(_arg(n, 1e-7, "rtol", pos=2), _arg(n, 0.0, "atol", pos=3))
        if name in ("isclose", "allclose"):
            return Tolerance(_arg(n, 1e-5, "rtol", pos=2), _arg(n, 1e-8, "atol", pos=3))
        delta = keyword(n, "delta")
        if delta is not None:
            return Tolerance(0.0, number(delta))
        if name.startswith("assert_"):  # numpy: abs(desired - actual) < 1.5 * 10**-decimal
            decimal = _arg(n, 7.0, "decimal", pos=2)
            return Tolerance(0.0, None if decimal is None else 1.5 * 10 ** (-decimal))
        places = _arg(n, 7.0, "places", pos=2)  # unittest: round(a - b, places) == 0
        return Tolerance(0.0, None if places is None else 0.5 * 10 ** (-places))
    return None


def _arg(call: ast.Call, default: float, kw: str, pos: int | None = None) -> float | None:
    node = keyword(call, kw)
    if node is None and pos is not None and len(call.args) > pos:
        node = call.args[pos]
    return default if node is None else number(node)


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
        if not isinstance(op, _UPPER_OPS + _LOWER_OPS):
            return None
        if (value := number(right)) is not None and number(left) is None:
            return ("upper" if isinstance(op, _UPPER_OPS) else "lower", value)
        if (value := number(left)) is not None and number(right) is None:
            return ("upper" if isinstance(op, _LOWER_OPS) else "lower", value)
        return None
    if isinstance(node, ast.Call) and call_name(node) in _BOUND_METHODS and len(node.args) >= 2:
        value = number(node.args[1])
        return None if value is None else (_BOUND_METHODS[call_name(node)], value)
    return None
