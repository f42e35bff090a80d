"""Judge one test at base against the same test at head, and a new test on its own.

Every rule looks at one way a test can lose its power to fail (see ``issues.RULES``).
Messages name the test and quote the old and the new code, so that a reviewer can
decide without opening the diff.
"""

from __future__ import annotations

import sys
from collections import Counter

from mergegate.agents.test_integrity import checks as ck
from mergegate.agents.test_integrity import strength as st
from mergegate.agents.test_integrity.align import align
from mergegate.agents.test_integrity.extract import Event, TestFunction
from mergegate.agents.test_integrity.issues import Issue, code
from mergegate.agents.test_integrity.markers import Marker
from mergegate.agents.test_integrity.production import ProductionFacts
from mergegate.agents.test_integrity.tolerance import EXACT_TOLERANCE
from mergegate.core.severity import Severity

HIGH, MEDIUM, LOW = Severity.HIGH, Severity.MEDIUM, Severity.LOW

_MARKER_RULES = {  # kind → (rule, confidence when added)
    "skip": ("skip-added", 0.9),
    "skipif": ("skip-added", 0.7),
    "xfail": ("xfail-added", 0.85),
    "flaky": ("flaky-added", 0.7),
}


def compare_test(
    old: TestFunction, new: TestFunction, prod: ProductionFacts, imports: dict[str, str], elsewhere: Counter[str]
) -> list[Issue]:
    """Everything that weakened between ``old`` and ``new`` (a collected test at head).

    ``elsewhere`` counts the checks of tests new in this change, where removed checks may have moved.
    """
    issues = _checks(old, new, prod, elsewhere) + _cases(old, new, prod) + _expectations(old, new, prod)
    issues += _markers(old, new)
    issues += _skip_calls(old, new) + _early_returns(old, new) + _swallowed(old, new)
    issues += unit_mocked(new, imports, before=old)
    return issues


def _issue(rule: str, sev: Severity, conf: float, msg: str, fn: TestFunction, line: int | None, basis: str) -> Issue:
    return Issue(rule, sev, conf, msg, fn.path, line or fn.line, f"{fn.qualname}\x1f{basis}")


# -- checks ---------------------------------------------------------------------------------


def _checks(old: TestFunction, new: TestFunction, prod: ProductionFacts, elsewhere: Counter[str]) -> list[Issue]:
    alignment = align(old.checks, new.checks, elsewhere)
    issues = [i for o, n in alignment.pairs if (i := _judge(o, n, new, prod))]
    plain = [c for c in alignment.removed if c.kind != "raises"]
    for c in alignment.removed:
        if c.kind == "raises":
            msg = f"Expected exception removed from {new.node_id}: {code(c.text)} no longer wraps the call."
            issues.append(_issue("raises-removed", HIGH, 0.85, msg, new, None, c.key))
    if plain:
        before, after = len(old.checks), len(new.checks)
        listed = "; ".join(code(c.text) for c in plain)
        nothing = " — it no longer checks anything" if not new.checks else ""
        msg = f"{len(plain)} check(s) removed from {new.node_id} ({before} → {after}){nothing}: {listed}"
        conf = 0.95 if not new.checks else 0.85
        issues.append(_issue("assertion-removed", HIGH, conf, msg, new, None, "|".join(c.key for c in plain)))
    return issues


def _judge(o: ck.Check, n: ck.Check, fn: TestFunction, prod: ProductionFacts) -> Issue | None:
    """What an edit from check ``o`` to check ``n`` did, if it weakened or re-specified the test."""
    where = fn.node_id
    basis = f"{o.key}\x1f{n.key}"
    widened = (n.tolerance or EXACT_TOLERANCE).widened_from(o.tolerance or EXACT_TOLERANCE)
    if widened and n.tolerance is not None and not n.tolerance.negligible:
        factor, how = widened
        sev, conf = (HIGH, 0.85) if factor >= 10 else (MEDIUM, 0.6)
        msg = f"Tolerance widened in {where}: {code(o.text)} → {code(n.text)} ({how})."
        return _issue("tolerance-widened", sev, conf, msg, fn, n.line, basis)
    if o.kind == "raises":
        return _judge_raises(o, n, fn, prod)
    if o.form and n.form and o.form[1] == n.form[1]:
        pair = (o.form[0], n.form[0])
        if pair in (("true", "truthy"), ("false", "falsy")):
            return None  # ``x is True`` → ``x``: a style fix
        if pair == ("eq", "of"):
            msg = (
                f"Assertion weakened in {where}: {code(o.text)} → {code(n.text)} "
                f"(it now checks only a property of `{o.form[1]}`, not its value)."
            )
            return _issue("assertion-weakened", HIGH, 0.75, msg, fn, n.line, basis)
    drop = o.strength - n.strength
    if drop >= 1.0:
        conf = 0.95 if n.strength == st.VACUOUS else 0.9 if drop >= 2.0 else 0.75
        msg = (
            f"Assertion weakened in {where}: {code(o.text)} → {code(n.text)} "
            f"({st.describe(o.strength)} became {st.describe(n.strength)})."
        )
        return _issue("assertion-weakened", HIGH, conf, msg, fn, n.line, basis)
    moved = n.bound_moved(o)
    if moved > 0:
        msg = f"Assertion weakened in {where}: {code(o.text)} → {code(n.text)} (the bound was relaxed)."
        return _issue("assertion-weakened", HIGH, 0.75, msg, fn, n.line, basis)
    if moved == 0 and o.shape == n.shape and o.literals != n.literals and not _more_specific(o, n):
        return _value_changed(o, n, fn, prod)
    return None


def _more_specific(o: ck.Check, n: ck.Check) -> bool:
    """``"ok" in out`` → ``"ok: 3 files" in out``: a partial check on a longer string demands more."""
    if o.strength > st.PARTIAL:
        return False
    changed = [(a, b) for a, b in zip(o.literals, n.literals, strict=True) if a != b]
    return all(a[:1] in "'\"" and b[:1] in "'\"" and a[1:-1] in b[1:-1] for a, b in changed)


def _judge_raises(o: ck.Check, n: ck.Check, fn: TestFunction, prod: ProductionFacts) -> Issue | None:
    if n.kind != "raises":
        return None  # rewritten as try/pytest.fail: still demands the failure
    where, basis = fn.node_id, f"{o.key}\x1f{n.key}"
    generic = n.strength <= st.TRUTHY < o.strength
    if generic or o.strength - n.strength >= 1.0 or st.broadened_to_superclass(o.exception, n.exception):
        msg = f"Expected exception broadened in {where}: {code(o.text)} → {code(n.text)}."
        return _issue("raises-broadened", HIGH, 0.9 if generic else 0.75, msg, fn, n.line, basis)
    if o.match and not n.match and o.exception == n.exception:
        msg = f"Expected exception no longer checks its message in {where}: {code(o.text)} → {code(n.text)}."
        return _issue("raises-match-removed", MEDIUM, 0.6, msg, fn, n.line, basis)
    if n.strength > o.strength or st.broadened_to_superclass(n.exception, o.exception):
        return None  # narrowed: the test demands more than before
    if o.exception != n.exception or (o.shape == n.shape and o.literals != n.literals):
        return _value_changed(o, n, fn, prod)
    return None


def _value_changed(o: ck.Check, n: ck.Check, fn: TestFunction, prod: ProductionFacts) -> Issue:
    """An expected value edited: fine alone, a question when the code under test changed too."""
    kind = "parametrize case" if o.kind == "case" else "expected value"
    msg = f"{kind.capitalize()} changed in {fn.node_id}: {code(o.text)} → {code(n.text)}"
    linked = prod.changed_in(fn.names | fn.calls)
    if linked:
        named = ", ".join(f"`{name}` ({path})" for name, path in linked[:3])
        sev, conf = MEDIUM, 0.7
        msg += f", while {named} changed in the same change."
    elif prod.files:
        sev, conf = MEDIUM, 0.5
        msg += f", while production code ({', '.join(prod.files[:3])}) changed in the same change."
    else:
        sev, conf = LOW, 0.4
        msg += "; no production code changed, so this reads as a correction of the test."
        return _issue("expected-value-changed", sev, conf, msg, fn, n.line, f"{o.key}\x1f{n.key}")
    msg += " Is this a specification change, or was the test edited to match new behaviour?"
    return _issue("expected-value-changed", sev, conf, msg, fn, n.line, f"{o.key}\x1f{n.key}")


def _cases(old: TestFunction, new: TestFunction, prod: ProductionFacts) -> list[Issue]:
    alignment = align(old.cases, new.cases)
    issues = [i for o, n in alignment.pairs if o.key != n.key and (i := _judge(o, n, new, prod))]
    if alignment.removed:
        listed = "; ".join(code(c.text) for c in alignment.removed)
        counts = f"{len(old.cases)} → {len(new.cases)}"
        msg = f"{len(alignment.removed)} parametrize case(s) removed from {new.node_id} ({counts}): {listed}"
        basis = "|".join(c.key for c in alignment.removed)
        issues.append(_issue("param-case-removed", HIGH, 0.75, msg, new, None, basis))
    return issues


def _expectations(old: TestFunction, new: TestFunction, prod: ProductionFacts) -> list[Issue]:
    before = {c.form: c for c in old.expectations}
    edited = [(before[c.form], c) for c in new.expectations if c.form in before and before[c.form].key != c.key]
    return [_value_changed(o, n, new, prod) for o, n in edited if o.shape == n.shape]


# -- disabling ------------------------------------------------------------------------------


def _markers(old: TestFunction, new: TestFunction) -> list[Issue]:
    if any(m.kind == "skip" and m.scope != "param" for m in old.markers):
        return []  # it did not run before either
    before = {(m.scope, m.key) for m in old.markers}
    issues = []
    for m in new.markers:
        if (m.scope, m.key) in before:
            continue
        same = [o for o in old.markers if o.kind == m.kind and o.scope == m.scope != "param"]
        if same:
            if m.kind == "skipif":  # a condition edited: often a supported-version bump
                msg = f"Skip condition changed for {new.node_id}: {code(same[0].text)} → {code(m.text)}."
                issues.append(_marker_issue("skip-condition-changed", LOW, 0.5, msg, new, m))
            continue
        rule, conf = _MARKER_RULES[m.kind]
        if m.scope == "param":
            msg = f"A parametrize case of {new.node_id} is now marked {m.kind}: {code(m.text)}."
        elif m.scope == "function":
            msg = f"{code(m.text)} added: {new.node_id} is now {_verb(m.kind)}."
        else:
            msg = f"{code(m.text)} added: every test in the {m.scope} is now {_verb(m.kind)} (e.g. {new.node_id})."
        issues.append(_marker_issue(rule, HIGH, conf, msg, new, m))
    return issues


def _verb(kind: str) -> str:
    return {"skip": "skipped", "skipif": "skipped under a condition", "xfail": "expected to fail"}.get(
        kind, "re-run until it passes"
    )


def _marker_issue(rule: str, sev: Severity, conf: float, msg: str, fn: TestFunction, m: Marker) -> Issue:
    group = None if m.scope in ("function", "param") else f"{rule}:{fn.path}:{m.scope}:{m.text}"
    if m.scope == "class":
        group += ":" + fn.qualname.rsplit(".", 1)[0]
    return Issue(rule, sev, conf, msg, fn.path, m.line, group or f"{fn.qualname}\x1f{m.text}", group)


def _new_events(old: list[Event], new: list[Event]) -> list[Event]:
    seen = Counter(e.text for e in old)
    out = []
    for e in new:
        if seen[e.text] > 0:
            seen[e.text] -= 1
        else:
            out.append(e)
    return out


def _skip_calls(old: TestFunction, new: TestFunction) -> list[Issue]:
    issues = []
    for e in _new_events(old.skip_calls, new.skip_calls):
        if "importorskip" in e.text:
            sev, conf = MEDIUM, 0.5
        else:
            sev, conf = HIGH, 0.7 if e.conditional else 0.85
        cond = " under a condition" if e.conditional else ""
        msg = f"{code(e.text)} added to {new.node_id}{cond}: the test stops there instead of checking."
        issues.append(_issue("skip-call-added", sev, conf, msg, new, e.line, e.text))
    return issues


def _early_returns(old: TestFunction, new: TestFunction) -> list[Issue]:
    issues = []
    for e in _new_events(old.early_returns, new.early_returns):
        after = [c for c in new.checks if c.line > e.line]
        msg = (
            f"{code(e.text)} added to {new.node_id} before {len(after)} check(s) "
            f"(first: {code(after[0].text)}): they{' may' if e.conditional else ''} never run."
        )
        issues.append(_issue("early-return", HIGH, 0.7 if e.conditional else 0.9, msg, new, e.line, e.text))
    return issues


def _swallowed(old: TestFunction, new: TestFunction) -> list[Issue]:
    before = Counter(c.key for c in old.checks if c.swallowed)
    issues = []
    for c in new.checks:
        if not c.swallowed:
            continue
        if before[c.key] > 0:
            before[c.key] -= 1
            continue
        msg = f"{code(c.text)} in {new.node_id} is now inside a try whose {code(c.swallowed)} swallows its failure."
        issues.append(_issue("assertion-swallowed", HIGH, 0.9, msg, new, c.line, c.key))
    return issues


# -- the unit under test mocked ---------------------------------------------------------------


def unit_mocked(fn: TestFunction, imports: dict[str, str], before: TestFunction | None = None) -> list[Issue]:
    """A patch of the very function the test is about (by its name), which the test also uses."""
    known = {p.target for p in before.patches} if before else set()
    subject = f"_{fn.subject.lower()}_"
    issues = []
    for p in fn.patches:
        if p.target in known:
            continue
        module, _, name = p.target.rpartition(".")
        bare = name.lower().strip("_")
        if len(bare) < 3 or f"_{bare}_" not in subject or module.split(".")[0] in sys.stdlib_module_names:
            continue
        called = name in fn.calls
        if not (called or imports.get(name) == module):
            continue
        conf = 0.85 if called else 0.7
        sev = HIGH if before else MEDIUM
        msg = (
            f"{fn.node_id} replaces {code(p.target)}, the function it tests, with a mock ({code(p.text)}); "
            "the test no longer exercises the real code."
        )
        issues.append(_issue("unit-mocked", sev, conf if before else 0.6, msg, fn, p.line, p.target))
    return issues


def new_test(fn: TestFunction, imports: dict[str, str]) -> list[Issue]:
    """A test that did not exist before: only a mocked unit or being disabled is worth a word."""
    issues = unit_mocked(fn, imports)
    disabled = [m for m in fn.markers if m.kind in ("skip", "xfail") and m.scope == "function"]
    disabled += [e for e in fn.skip_calls if not e.conditional]
    if disabled:
        what = disabled[0].text
        msg = f"New test {fn.node_id} is disabled from the start ({code(what)})."
        issues.append(_issue("new-test-skipped", LOW, 0.6, msg, fn, getattr(disabled[0], "line", None), what))
    return issues
