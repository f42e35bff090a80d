"""test-integrity on real git repositories: each weakening is caught, each honest edit is not.

Every case builds a base commit and an agent's change on top of it, runs the agent
through ``run_check`` and looks at the findings: the rule, the severity, and that the
message quotes the old and the new code exactly as ``ast.unparse`` prints it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from textwrap import dedent

import pytest

from mergegate.agents.test_integrity import RULES, TEST_FILES_NOTE
from mergegate.core.finding import Category, Finding
from mergegate.core.results import AgentStatus
from mergegate.core.routing import Action
from mergegate.core.severity import Severity
from tests.gitrepo import RepoBuilder

AGENT = "test-integrity"
TEST = "tests/test_calc.py"

CALC = """\
def add(a, b):
    return a + b


def mean(values):
    return sum(values) / len(values)


def parse(text):
    key, _, value = text.partition("=")
    return {key: int(value)}


def find(name):
    return {"x": 3}.get(name)


def divide(a, b):
    if b == 0:
        raise ZeroDivisionError("b must not be zero")
    return a / b
"""

HEADER = """\
import time
import unittest
from unittest.mock import patch

import pytest

from app.calc import add, divide, find, mean, parse


"""


def src(body: str) -> str:
    return HEADER + dedent(body).lstrip("\n")


def case(case_id: str, edit: str, *expected: str):
    """A base/head pair of test-file bodies written as one block split by a ``---`` line."""
    base, head = dedent(edit).strip("\n").split("\n---\n")
    return pytest.param(base + "\n", head + "\n", *expected, id=case_id)


def base_files(tests: dict[str, str]) -> dict[str, str]:
    return {"app/__init__.py": "", "app/calc.py": CALC, "tests/__init__.py": "", **tests}


def findings(repo: RepoBuilder, base: dict[str, str], head: dict[str, str | None]) -> list[Finding]:
    report = repo.base(base_files(base)).change(head).check([AGENT])
    (result,) = report.results
    assert result.status is AgentStatus.OK, result.detail
    return list(result.findings)


def above_low(found: list[Finding]) -> list[str]:
    return [f"{f.rule}/{f.severity}: {f.message}" for f in found if f.severity > Severity.LOW]


# -- weakening edits: (base test file, head test file, rule, severity, old code, new code) ----------

WEAKENING = [
    case(
        "eq-to-truthy",
        """
        def test_add():
            assert add(2, 2) == 4
        ---
        def test_add():
            assert add(2, 2)
        """,
        "assertion-weakened",
        "high",
        "assert add(2, 2) == 4",
        "assert add(2, 2)",
    ),
    case(
        "eq-to-in",
        """
        def test_parse():
            assert parse('a=1') == {'a': 1}
        ---
        def test_parse():
            assert 'a' in parse('a=1')
        """,
        "assertion-weakened",
        "high",
        "assert parse('a=1') == {'a': 1}",
        "assert 'a' in parse('a=1')",
    ),
    case(
        "eq-to-not-eq",
        """
        def test_add():
            assert add(2, 2) == 4
        ---
        def test_add():
            assert add(2, 2) != 5
        """,
        "assertion-weakened",
        "high",
        "assert add(2, 2) == 4",
        "assert add(2, 2) != 5",
    ),
    case(
        "eq-to-is-not-none",
        """
        def test_find():
            assert find('x') == 3
        ---
        def test_find():
            assert find('x') is not None
        """,
        "assertion-weakened",
        "high",
        "assert find('x') == 3",
        "assert find('x') is not None",
    ),
    case(
        "assertEqual-to-assertTrue",
        """
        class TestAdd(unittest.TestCase):
            def test_add(self):
                self.assertEqual(add(2, 2), 4)
        ---
        class TestAdd(unittest.TestCase):
            def test_add(self):
                self.assertTrue(add(2, 2))
        """,
        "assertion-weakened",
        "high",
        "self.assertEqual(add(2, 2), 4)",
        "self.assertTrue(add(2, 2))",
    ),
    case(
        "assertEqual-to-assertIsNotNone",
        """
        class TestFind(unittest.TestCase):
            def test_find(self):
                self.assertEqual(find('x'), 3)
        ---
        class TestFind(unittest.TestCase):
            def test_find(self):
                self.assertIsNotNone(find('x'))
        """,
        "assertion-weakened",
        "high",
        "self.assertEqual(find('x'), 3)",
        "self.assertIsNotNone(find('x'))",
    ),
    case(
        "or-alternative",
        """
        def test_mean():
            assert mean([1, 2]) == 1.5
        ---
        def test_mean():
            assert mean([1, 2]) == 1.5 or mean([1, 2]) is None
        """,
        "assertion-weakened",
        "high",
        "assert mean([1, 2]) == 1.5",
        "assert mean([1, 2]) == 1.5 or mean([1, 2]) is None",
    ),
    case(
        "bound-relaxed",
        """
        def test_slow():
            started = time.monotonic()
            add(1, 2)
            assert time.monotonic() - started < 0.5
        ---
        def test_slow():
            started = time.monotonic()
            add(1, 2)
            assert time.monotonic() - started < 5.0
        """,
        "assertion-weakened",
        "high",
        "assert time.monotonic() - started < 0.5",
        "assert time.monotonic() - started < 5.0",
    ),
    case(
        "approx-rel-raised",
        """
        def test_mean():
            assert mean([1, 2]) == pytest.approx(1.5)
        ---
        def test_mean():
            assert mean([1, 2]) == pytest.approx(1.5, rel=0.5)
        """,
        "tolerance-widened",
        "high",
        "pytest.approx(1.5)",
        "pytest.approx(1.5, rel=0.5)",
    ),
    case(
        "approx-abs-raised",
        """
        def test_mean():
            assert mean([1, 2]) == pytest.approx(1.5, abs=0.001)
        ---
        def test_mean():
            assert mean([1, 2]) == pytest.approx(1.5, abs=0.5)
        """,
        "tolerance-widened",
        "high",
        "pytest.approx(1.5, abs=0.001)",
        "pytest.approx(1.5, abs=0.5)",
    ),
    case(
        "assertAlmostEqual-places-lowered",
        """
        class TestMean(unittest.TestCase):
            def test_mean(self):
                self.assertAlmostEqual(mean([1, 2]), 1.5, places=6)
        ---
        class TestMean(unittest.TestCase):
            def test_mean(self):
                self.assertAlmostEqual(mean([1, 2]), 1.5, places=1)
        """,
        "tolerance-widened",
        "high",
        "places=6",
        "places=1",
    ),
    case(
        "assertion-removed",
        """
        def test_add():
            assert add(2, 2) == 4
            assert add(-1, 1) == 0
        ---
        def test_add():
            assert add(2, 2) == 4
        """,
        "assertion-removed",
        "high",
        "assert add(-1, 1) == 0",
        "(2 → 1)",
    ),
    case(
        "all-assertions-removed",
        """
        def test_add():
            assert add(2, 2) == 4
        ---
        def test_add():
            add(2, 2)
        """,
        "assertion-removed",
        "high",
        "assert add(2, 2) == 4",
        "no longer checks anything",
    ),
    case(
        "skip-marker",
        """
        def test_add():
            assert add(2, 2) == 4
        ---
        @pytest.mark.skip(reason='flaky')
        def test_add():
            assert add(2, 2) == 4
        """,
        "skip-added",
        "high",
        "@pytest.mark.skip(reason='flaky')",
        "test_add",
    ),
    case(
        "skipif-marker",
        """
        def test_add():
            assert add(2, 2) == 4
        ---
        @pytest.mark.skipif(True, reason='broken on CI')
        def test_add():
            assert add(2, 2) == 4
        """,
        "skip-added",
        "high",
        "@pytest.mark.skipif(True, reason='broken on CI')",
        "test_add",
    ),
    case(
        "xfail-marker",
        """
        def test_add():
            assert add(2, 2) == 4
        ---
        @pytest.mark.xfail
        def test_add():
            assert add(2, 2) == 4
        """,
        "xfail-added",
        "high",
        "@pytest.mark.xfail",
        "expected to fail",
    ),
    case(
        "flaky-marker",
        """
        def test_add():
            assert add(2, 2) == 4
        ---
        @pytest.mark.flaky(reruns=5)
        def test_add():
            assert add(2, 2) == 4
        """,
        "flaky-added",
        "high",
        "@pytest.mark.flaky(reruns=5)",
        "re-run",
    ),
    case(
        "unittest-skip",
        """
        class TestAdd(unittest.TestCase):
            def test_add(self):
                self.assertEqual(add(2, 2), 4)
        ---
        class TestAdd(unittest.TestCase):
            @unittest.skip('later')
            def test_add(self):
                self.assertEqual(add(2, 2), 4)
        """,
        "skip-added",
        "high",
        "@unittest.skip('later')",
        "TestAdd::test_add",
    ),
    case(
        "module-pytestmark",
        """
        def test_add():
            assert add(2, 2) == 4


        def test_mean():
            assert mean([2]) == 2
        ---
        pytestmark = pytest.mark.skip(reason='wip')


        def test_add():
            assert add(2, 2) == 4


        def test_mean():
            assert mean([2]) == 2
        """,
        "skip-added",
        "high",
        "@pytest.mark.skip(reason='wip')",
        "affects 2 tests",
    ),
    case(
        "class-skip",
        """
        class TestAdd:
            def test_one(self):
                assert add(1, 0) == 1
        ---
        @pytest.mark.skip
        class TestAdd:
            def test_one(self):
                assert add(1, 0) == 1
        """,
        "skip-added",
        "high",
        "@pytest.mark.skip",
        "every test in the class",
    ),
    case(
        "pytest-skip-call",
        """
        def test_add():
            assert add(2, 2) == 4
        ---
        def test_add():
            pytest.skip('todo')
            assert add(2, 2) == 4
        """,
        "skip-call-added",
        "high",
        "pytest.skip('todo')",
        "test_add",
    ),
    case(
        "pytest-xfail-call",
        """
        def test_add():
            assert add(2, 2) == 4
        ---
        def test_add():
            if add(2, 2) != 4:
                pytest.xfail('known bug')
            assert add(2, 2) == 4
        """,
        "skip-call-added",
        "high",
        "pytest.xfail('known bug')",
        "under a condition",
    ),
    case(
        "unittest-skipTest",
        """
        class TestAdd(unittest.TestCase):
            def test_add(self):
                self.assertEqual(add(2, 2), 4)
        ---
        class TestAdd(unittest.TestCase):
            def test_add(self):
                self.skipTest('flaky')
                self.assertEqual(add(2, 2), 4)
        """,
        "skip-call-added",
        "high",
        "self.skipTest('flaky')",
        "TestAdd::test_add",
    ),
    case(
        "early-return",
        """
        def test_add():
            result = add(2, 2)
            assert result == 4
        ---
        def test_add():
            result = add(2, 2)
            return
            assert result == 4
        """,
        "early-return",
        "high",
        "return",
        "assert result == 4",
    ),
    case(
        "conditional-early-return",
        """
        def test_add():
            result = add(2, 2)
            assert result == 4
        ---
        def test_add():
            result = add(2, 2)
            if result != 4:
                return
            assert result == 4
        """,
        "early-return",
        "high",
        "if result != 4: return",
        "assert result == 4",
    ),
    case(
        "except-assertionerror-pass",
        """
        def test_add():
            assert add(2, 2) == 4
        ---
        def test_add():
            try:
                assert add(2, 2) == 4
            except AssertionError:
                pass
        """,
        "assertion-swallowed",
        "high",
        "assert add(2, 2) == 4",
        "except AssertionError: pass",
    ),
    case(
        "except-exception",
        """
        def test_add():
            assert add(2, 2) == 4
        ---
        def test_add():
            try:
                assert add(2, 2) == 4
            except Exception:
                print('ignored')
        """,
        "assertion-swallowed",
        "high",
        "assert add(2, 2) == 4",
        "except Exception: print('ignored')",
    ),
    case(
        "bare-except",
        """
        def test_add():
            assert add(2, 2) == 4
        ---
        def test_add():
            try:
                assert add(2, 2) == 4
            except:
                pass
        """,
        "assertion-swallowed",
        "high",
        "assert add(2, 2) == 4",
        "except: pass",
    ),
    case(
        "suppress-assertionerror",
        """
        def test_add():
            assert add(2, 2) == 4
        ---
        import contextlib


        def test_add():
            with contextlib.suppress(AssertionError):
                assert add(2, 2) == 4
        """,
        "assertion-swallowed",
        "high",
        "assert add(2, 2) == 4",
        "contextlib.suppress(AssertionError)",
    ),
    case(
        "raises-removed",
        """
        def test_divide_by_zero():
            with pytest.raises(ZeroDivisionError):
                divide(1, 0)
        ---
        def test_divide_by_zero():
            divide(1, 0)
        """,
        "raises-removed",
        "high",
        "pytest.raises(ZeroDivisionError)",
        "test_divide_by_zero",
    ),
    case(
        "raises-to-exception",
        """
        def test_divide_by_zero():
            with pytest.raises(ZeroDivisionError):
                divide(1, 0)
        ---
        def test_divide_by_zero():
            with pytest.raises(Exception):
                divide(1, 0)
        """,
        "raises-broadened",
        "high",
        "pytest.raises(ZeroDivisionError)",
        "pytest.raises(Exception)",
    ),
    case(
        "raises-to-baseexception",
        """
        def test_divide_by_zero():
            with pytest.raises(ZeroDivisionError):
                divide(1, 0)
        ---
        def test_divide_by_zero():
            with pytest.raises(BaseException):
                divide(1, 0)
        """,
        "raises-broadened",
        "high",
        "pytest.raises(ZeroDivisionError)",
        "pytest.raises(BaseException)",
    ),
    case(
        "raises-to-builtin-superclass",
        """
        def test_divide_by_zero():
            with pytest.raises(ZeroDivisionError):
                divide(1, 0)
        ---
        def test_divide_by_zero():
            with pytest.raises(ArithmeticError):
                divide(1, 0)
        """,
        "raises-broadened",
        "high",
        "pytest.raises(ZeroDivisionError)",
        "pytest.raises(ArithmeticError)",
    ),
    case(
        "assertRaises-to-exception",
        """
        class TestDivide(unittest.TestCase):
            def test_zero(self):
                self.assertRaises(ZeroDivisionError, divide, 1, 0)
        ---
        class TestDivide(unittest.TestCase):
            def test_zero(self):
                self.assertRaises(Exception, divide, 1, 0)
        """,
        "raises-broadened",
        "high",
        "self.assertRaises(ZeroDivisionError)",
        "self.assertRaises(Exception)",
    ),
    case(
        "raises-match-removed",
        """
        def test_divide_by_zero():
            with pytest.raises(ZeroDivisionError, match='zero'):
                divide(1, 0)
        ---
        def test_divide_by_zero():
            with pytest.raises(ZeroDivisionError):
                divide(1, 0)
        """,
        "raises-match-removed",
        "medium",
        "pytest.raises(ZeroDivisionError, match='zero')",
        "pytest.raises(ZeroDivisionError)",
    ),
    case(
        "param-case-removed",
        """
        @pytest.mark.parametrize('a, b, total', [(1, 2, 3), (2, 2, 4), (-1, 1, 0)])
        def test_add(a, b, total):
            assert add(a, b) == total
        ---
        @pytest.mark.parametrize('a, b, total', [(1, 2, 3), (2, 2, 4)])
        def test_add(a, b, total):
            assert add(a, b) == total
        """,
        "param-case-removed",
        "high",
        "(-1, 1, 0)",
        "(3 → 2)",
    ),
    case(
        "param-case-xfail",
        """
        @pytest.mark.parametrize('a, b, total', [(1, 2, 3), (2, 2, 4)])
        def test_add(a, b, total):
            assert add(a, b) == total
        ---
        @pytest.mark.parametrize('a, b, total', [(1, 2, 3), pytest.param(2, 2, 4, marks=pytest.mark.xfail)])
        def test_add(a, b, total):
            assert add(a, b) == total
        """,
        "xfail-added",
        "high",
        "pytest.param(2, 2, 4, marks=pytest.mark.xfail)",
        "parametrize case",
    ),
    case(
        "test-deleted",
        """
        def test_add():
            assert add(2, 2) == 4


        def test_mean():
            assert mean([2]) == 2
        ---
        def test_mean():
            assert mean([2]) == 2
        """,
        "test-deleted",
        "high",
        "test_add",
        "not moved or renamed",
    ),
    case(
        "renamed-underscore",
        """
        def test_add():
            assert add(2, 2) == 4
        ---
        def _test_add():
            assert add(2, 2) == 4
        """,
        "test-not-collected",
        "high",
        "`test_add`",
        "`_test_add`",
    ),
    case(
        "renamed-check",
        """
        def test_add():
            assert add(2, 2) == 4
        ---
        def check_add():
            assert add(2, 2) == 4
        """,
        "test-not-collected",
        "high",
        "`test_add`",
        "`check_add`",
    ),
    case(
        "class-renamed",
        """
        class TestAdd:
            def test_one(self):
                assert add(1, 0) == 1
        ---
        class AddChecks:
            def test_one(self):
                assert add(1, 0) == 1
        """,
        "test-not-collected",
        "high",
        "`TestAdd`",
        "`AddChecks`",
    ),
    case(
        "eq-to-length",
        """
        def test_parse():
            assert parse('a=1') == {'a': 1}
        ---
        def test_parse():
            assert len(parse('a=1')) == 1
        """,
        "assertion-weakened",
        "high",
        "assert parse('a=1') == {'a': 1}",
        "assert len(parse('a=1')) == 1",
    ),
    case(
        "skipif-condition-made-constant",
        """
        @pytest.mark.skipif(add(1, 1) != 2, reason='needs add')
        def test_add():
            assert add(2, 2) == 4
        ---
        @pytest.mark.skipif(True, reason='needs add')
        def test_add():
            assert add(2, 2) == 4
        """,
        "skip-added",
        "high",
        "@pytest.mark.skipif(True, reason='needs add')",
        "is now skipped",
    ),
    case(
        "expected-computed-by-the-unit",
        """
        def test_add():
            expected = 4
            assert add(2, 2) == expected
        ---
        def test_add():
            expected = add(2, 2)
            assert add(2, 2) == expected
        """,
        "assertion-weakened",
        "high",
        "assert add(2, 2) == expected",
        "(where expected = add(2, 2))",
    ),
    case(
        "deleted-and-replaced-by-a-vacuous-test",
        """
        def test_mean_of_pair():
            values = [1, 2]
            assert mean(values) == 1.5
        ---
        def test_mean_runs():
            mean([2, 4])
            assert True
        """,
        "test-deleted",
        "high",
        "test_mean_of_pair",
        "not moved or renamed",
    ),
    case(
        "assertions-in-dead-code",
        """
        def test_add():
            assert add(2, 2) == 4
        ---
        def test_add():
            if False:
                assert add(2, 2) == 4
        """,
        "assertion-removed",
        "high",
        "assert add(2, 2) == 4",
        "no longer checks anything",
    ),
    case(
        "autouse-fixture-skips",
        """
        def test_add():
            assert add(2, 2) == 4
        ---
        @pytest.fixture(autouse=True)
        def _environment():
            pytest.skip('not today')


        def test_add():
            assert add(2, 2) == 4
        """,
        "skip-added",
        "high",
        "_environment: pytest.skip('not today')",
        "every test in the module",
    ),
    case(
        "setUp-skips",
        """
        class TestAdd(unittest.TestCase):
            def test_add(self):
                self.assertEqual(add(2, 2), 4)
        ---
        class TestAdd(unittest.TestCase):
            def setUp(self):
                self.skipTest('later')

            def test_add(self):
                self.assertEqual(add(2, 2), 4)
        """,
        "skip-added",
        "high",
        "setUp: self.skipTest('later')",
        "every test in the class",
    ),
    case(
        "shadowed-by-redefinition",
        """
        def test_add():
            assert add(2, 2) == 4


        def test_mean():
            assert mean([2]) == 2
        ---
        def test_add():
            assert add(2, 2) == 4


        def test_mean():
            assert mean([2]) == 2


        def test_add():
            assert True
        """,
        "test-shadowed",
        "high",
        "test_add",
        "redefined",
    ),
]


@pytest.mark.parametrize(("base", "head", "rule", "severity", "old", "new"), WEAKENING)
def test_weakening_is_reported(repo, base, head, rule, severity, old, new):
    found = findings(repo, {TEST: src(base)}, {TEST: src(head)})
    hits = [f for f in found if f.rule == rule]
    assert hits, f"expected {rule}, got {[(f.rule, f.message) for f in found]}"
    hit = hits[0]
    assert hit.severity == Severity(severity)
    assert hit.category is Category.TESTS
    assert hit.path == TEST
    assert old in hit.message and new in hit.message, hit.message
    assert 0.5 <= hit.confidence <= 1.0


# -- legitimate edits: nothing above low ----------------------------------------------------

LEGITIMATE = [
    case(
        "rename-keeps-collection",
        """
        def test_add():
            assert add(2, 2) == 4
        ---
        def test_add_two_numbers():
            assert add(2, 2) == 4
        """,
    ),
    case(
        "assert-to-assertEqual",
        """
        class TestAdd(unittest.TestCase):
            def test_add(self):
                assert add(2, 2) == 4
        ---
        class TestAdd(unittest.TestCase):
            def test_add(self):
                self.assertEqual(add(2, 2), 4)
        """,
    ),
    case(
        "deprecated-alias",
        """
        class TestAdd(unittest.TestCase):
            def test_add(self):
                self.assertEquals(add(2, 2), 4)
        ---
        class TestAdd(unittest.TestCase):
            def test_add(self):
                self.assertEqual(add(2, 2), 4)
        """,
    ),
    case(
        "assertions-added",
        """
        def test_add():
            assert add(2, 2) == 4
        ---
        def test_add():
            assert add(2, 2) == 4
            assert add(-2, 2) == 0
            assert add(0, 0) == 0
        """,
    ),
    case(
        "message-typo",
        """
        def test_add():
            assert add(2, 2) == 4, 'sum is wrnog'
        ---
        def test_add():
            assert add(2, 2) == 4, 'sum is wrong'
        """,
    ),
    case(
        "unittest-message-typo",
        """
        class TestAdd(unittest.TestCase):
            def test_add(self):
                self.assertEqual(add(2, 2), 4, 'sum is wrnog')
        ---
        class TestAdd(unittest.TestCase):
            def test_add(self):
                self.assertEqual(add(2, 2), 4, msg='sum is wrong')
        """,
    ),
    case(
        "assertions-moved-to-helper",
        """
        def test_response():
            r = parse('a=1')
            assert r == {'a': 1}
            assert len(r) == 1
        ---
        def _check(r):
            assert r == {'a': 1}
            assert len(r) == 1


        def test_response():
            _check(parse('a=1'))
        """,
    ),
    case(
        "consolidated-into-parametrize",
        """
        def test_add_one():
            assert add(1, 1) == 2


        def test_add_two():
            assert add(2, 2) == 4
        ---
        @pytest.mark.parametrize('n, total', [(1, 2), (2, 4)])
        def test_add(n, total):
            assert add(n, n) == total
        """,
    ),
    case(
        "new-test",
        """
        def test_add():
            assert add(2, 2) == 4
        ---
        def test_add():
            assert add(2, 2) == 4


        def test_mean():
            assert mean([1, 3]) == 2
        """,
    ),
    case(
        "exact-float-to-approx",
        """
        def test_mean():
            assert mean([0.1, 0.2]) == 0.15
        ---
        def test_mean():
            assert mean([0.1, 0.2]) == pytest.approx(0.15)
        """,
    ),
    case(
        "style-eq-true",
        """
        def test_find():
            assert (find('x') == 3) == True
        ---
        def test_find():
            assert find('x') == 3
        """,
    ),
    case(
        "assertions-merged",
        """
        def test_parse():
            r = parse('a=1')
            assert r['a'] == 1
            assert len(r) == 1
        ---
        def test_parse():
            r = parse('a=1')
            assert (r['a'], len(r)) == (1, 1)
        """,
    ),
    case(
        "assertions-reordered",
        """
        def test_add():
            assert add(1, 1) == 2
            assert add(2, 2) == 4
        ---
        def test_add():
            assert add(2, 2) == 4
            assert add(1, 1) == 2
        """,
    ),
    case(
        "variable-renamed",
        """
        def test_add():
            result = add(2, 2)
            assert result == 4
        ---
        def test_add():
            total = add(2, 2)
            assert total == 4
        """,
    ),
    case(
        "cases-added",
        """
        @pytest.mark.parametrize('n', [1, 2])
        def test_add(n):
            assert add(n, 0) == n
        ---
        @pytest.mark.parametrize('n', [1, 2, 3, -1])
        def test_add(n):
            assert add(n, 0) == n
        """,
    ),
    case(
        "raises-match-added",
        """
        def test_divide_by_zero():
            with pytest.raises(ZeroDivisionError):
                divide(1, 0)
        ---
        def test_divide_by_zero():
            with pytest.raises(ZeroDivisionError, match='zero'):
                divide(1, 0)
        """,
    ),
    case(
        "raises-narrowed",
        """
        def test_divide_by_zero():
            with pytest.raises(Exception):
                divide(1, 0)
        ---
        def test_divide_by_zero():
            with pytest.raises(ZeroDivisionError):
                divide(1, 0)
        """,
    ),
    case(
        "bound-tightened",
        """
        def test_fast():
            started = time.monotonic()
            add(1, 2)
            assert time.monotonic() - started < 5.0
        ---
        def test_fast():
            started = time.monotonic()
            add(1, 2)
            assert time.monotonic() - started < 0.5
        """,
    ),
    case(
        "expected-value-fixed-without-code-change",
        """
        def test_add():
            assert add(2, 2) == 5
        ---
        def test_add():
            assert add(2, 2) == 4
        """,
    ),
    case(
        "duplicate-assertion-removed",
        """
        def test_add():
            assert add(2, 2) == 4
            assert add(2, 2) == 4
        ---
        def test_add():
            assert add(2, 2) == 4
        """,
    ),
    case(
        "new-test-skipped-is-low",
        """
        def test_add():
            assert add(2, 2) == 4
        ---
        def test_add():
            assert add(2, 2) == 4


        @pytest.mark.skip(reason='needs the network')
        def test_remote():
            assert add(1, 1) == 2
        """,
    ),
    case(
        "collaborator-mocked",
        """
        def test_add(mocker):
            assert add(2, 2) == 4
        ---
        def test_add(mocker):
            log = mocker.patch('app.calc.logger')
            assert add(2, 2) == 4
        """,
    ),
    case(
        "is-not-none-to-truthy",
        """
        def test_add():
            assert add(2, 2) is not None
        ---
        def test_add():
            assert add(2, 2)
        """,
    ),
    case(
        "skip-reason-reworded",
        """
        @pytest.mark.skip(reason='slow')
        def test_add():
            assert add(2, 2) == 4


        @pytest.mark.skipif(add(1, 1) != 2, reason='needs add')
        def test_mean():
            assert mean([2]) == 2
        ---
        @pytest.mark.skip(reason='too slow for CI')
        def test_add():
            assert add(2, 2) == 4


        @pytest.mark.skipif(add(1, 1) != 2, reason='add must work first')
        def test_mean():
            assert mean([2]) == 2
        """,
    ),
    case(
        "skipif-version-bumped",
        """
        import sys


        @pytest.mark.skipif(sys.version_info < (3, 8), reason='walrus')
        def test_add():
            assert add(2, 2) == 4
        ---
        import sys


        @pytest.mark.skipif(sys.version_info < (3, 9), reason='walrus')
        def test_add():
            assert add(2, 2) == 4
        """,
    ),
    case(
        "test-split-in-two",
        """
        def test_divide():
            assert divide(4, 2) == 2
            with pytest.raises(ZeroDivisionError):
                divide(1, 0)
        ---
        def test_divide():
            assert divide(4, 2) == 2


        def test_divide_by_zero():
            with pytest.raises(ZeroDivisionError):
                divide(1, 0)
        """,
    ),
    case(
        "try-fail-to-raises",
        """
        def test_divide_by_zero():
            try:
                divide(1, 0)
                pytest.fail('no error')
            except ZeroDivisionError:
                pass
        ---
        def test_divide_by_zero():
            with pytest.raises(ZeroDivisionError):
                divide(1, 0)
        """,
    ),
    case(
        "is-true-to-truthy",
        """
        def test_find():
            assert (find('x') == 3) is True
        ---
        def test_find():
            assert find('x') == 3
        """,
    ),
    case(
        "duplicate-test-removed",
        """
        def test_add():
            assert add(2, 2) == 4


        def test_add_again():
            assert add(2, 2) == 4
        ---
        def test_add():
            assert add(2, 2) == 4
        """,
    ),
    case(
        "project-assert-helper",
        """
        def test_parse():
            assert parse('a=1') == {'a': 1}
        ---
        from tests.helpers import assert_dict_equal


        def test_parse():
            assert_dict_equal(parse('a=1'), {'a': 1})
        """,
    ),
    case(
        "value-check-became-an-expected-error",
        """
        def test_divide():
            assert divide(1, 0) is None
        ---
        def test_divide():
            with pytest.raises(ZeroDivisionError, match='zero'):
                divide(1, 0)
        """,
    ),
    case(
        "rewritten-under-a-new-name",
        """
        def test_mean_of_pair():
            values = [1, 2]
            assert mean(values) == 1.5
        ---
        def test_mean_is_the_average():
            assert mean([2, 4]) == 3
            assert mean([1, 2, 3]) == 2
        """,
    ),
    case(
        "docstring-added",
        """
        def test_add():
            x = add(2, 2)
            assert x == 4
        ---
        def test_add():
            '''Adding is commutative enough for two equal numbers.'''
            x = add(2, 2)
            assert x == 4
        """,
    ),
]


@pytest.mark.parametrize(("base", "head"), LEGITIMATE)
def test_legitimate_edit_is_not_flagged_above_low(repo, base, head):
    found = findings(repo, {TEST: src(base)}, {TEST: src(head)})
    assert above_low(found) == []


# -- across files ------------------------------------------------------------------------------


def test_test_file_deleted(repo):
    body = src("def test_add():\n    assert add(2, 2) == 4\n\n\ndef test_mean():\n    assert mean([2]) == 2\n")
    found = findings(repo, {TEST: body, "tests/test_other.py": "def test_x():\n    assert 1 + 1 == 2\n"}, {TEST: None})
    (hit,) = [f for f in found if f.rule == "test-file-deleted"]
    assert hit.severity is Severity.HIGH
    assert TEST in hit.message and "test_add" in hit.message and "test_mean" in hit.message
    assert not [f for f in found if f.rule == "test-deleted"]  # one finding for the file, not one per test


def test_test_file_renamed_out_of_collection(repo):
    body = src("def test_add():\n    assert add(2, 2) == 4\n")
    repo.base(base_files({TEST: body}))
    repo.git("checkout", "-q", "-B", "change", "main")
    repo.git("mv", TEST, "tests/calc_tests.py")
    repo.git("commit", "-q", "-m", "rename")
    (result,) = repo.check([AGENT]).results
    (hit,) = [f for f in result.findings if f.rule == "test-file-not-collected"]
    assert hit.severity is Severity.HIGH
    assert f"`{TEST}`" in hit.message and "`tests/calc_tests.py`" in hit.message


def test_test_file_renamed_keeping_collection_is_fine(repo):
    body = src("def test_add():\n    assert add(2, 2) == 4\n")
    repo.base(base_files({TEST: body}))
    repo.git("checkout", "-q", "-B", "change", "main")
    repo.git("mv", TEST, "tests/test_arithmetic.py")
    repo.git("commit", "-q", "-m", "rename")
    (result,) = repo.check([AGENT]).results
    assert above_low(list(result.findings)) == []


def test_pytest_config_at_base_decides_collection(repo):
    """With ``python_files = *_tests.py`` in the base's pytest.ini, calc_tests.py is collected."""
    body = src("def test_add():\n    assert add(2, 2) == 4\n")
    repo.base({**base_files({"tests/calc_tests.py": body}), "pytest.ini": "[pytest]\npython_files = *_tests.py\n"})
    repo.change({"tests/calc_tests.py": body.replace("== 4", "== 4\n    assert add(0, 0) == 0")})
    (result,) = repo.check([AGENT]).results
    assert above_low(list(result.findings)) == []


def test_test_moved_between_files_is_fine(repo):
    add_test = "def test_add():\n    assert add(2, 2) == 4\n"
    mean_test = "def test_mean():\n    assert mean([2]) == 2\n"
    found = findings(
        repo,
        {TEST: src(add_test + "\n\n" + mean_test)},
        {TEST: src(add_test), "tests/test_mean.py": src(mean_test)},
    )
    assert above_low(found) == []


def test_moved_and_weakened_is_still_caught(repo):
    add_test = "def test_add():\n    assert add(2, 2) == 4\n"
    mean_test = "def test_mean():\n    assert mean([2]) == 2\n"
    found = findings(
        repo,
        {TEST: src(add_test + "\n\n" + mean_test)},
        {TEST: src(add_test), "tests/test_mean.py": src("def test_mean():\n    assert mean([2])\n")},
    )
    (hit,) = [f for f in found if f.rule == "assertion-weakened"]
    assert hit.path == "tests/test_mean.py"
    assert "`assert mean([2]) == 2` → `assert mean([2])`" in hit.message


def test_renamed_and_weakened_is_still_caught(repo):
    body = "def test_parse_pairs():\n    r = parse('a=1')\n    assert r == {'a': 1}\n    assert len(r) == 1\n"
    renamed = "def test_parse_a_pair():\n    r = parse('a=1')\n    assert r\n    assert len(r) == 1\n"
    found = findings(repo, {TEST: src(body)}, {TEST: src(renamed)})
    assert [f.rule for f in found if f.severity >= Severity.MEDIUM] == ["assertion-weakened"]


def test_deleted_with_the_code_it_tests_is_low(repo):
    base = src("def test_add():\n    assert add(2, 2) == 4\n\n\ndef test_find():\n    assert find('x') == 3\n")
    head_calc = CALC.replace('def find(name):\n    return {"x": 3}.get(name)\n\n\n', "")
    head = src("def test_add():\n    assert add(2, 2) == 4\n").replace(", find,", ",")
    found = findings(repo, {TEST: base}, {TEST: head, "app/calc.py": head_calc})
    (hit,) = [f for f in found if f.rule == "test-deleted"]
    assert hit.severity is Severity.LOW
    assert "`find`" in hit.message and "app/calc.py" in hit.message


# -- what decides which tests run, outside the tests ------------------------------------------------

HOOK = """\
def pytest_collection_modifyitems(config, items):
    items[:] = [item for item in items if "users" not in item.nodeid]
"""


@pytest.mark.parametrize(
    ("base", "head", "rule", "severity", "quoted"),
    [
        pytest.param(
            {},
            {"tests/conftest.py": HOOK},
            "pytest-hook-changed",
            "high",
            "pytest_collection_modifyitems",
            id="deselecting-hook",
        ),
        pytest.param(
            {"tests/conftest.py": "import pytest\n"},
            {"tests/conftest.py": "import pytest\n\ncollect_ignore = ['test_users.py']\n"},
            "collect-ignore-added",
            "high",
            "`test_users.py`",
            id="collect-ignore",
        ),
        pytest.param(
            {"pytest.ini": "[pytest]\naddopts = -ra\n"},
            {"pytest.ini": "[pytest]\naddopts = -ra --deselect tests/test_calc.py::test_add\n"},
            "pytest-config-changed",
            "high",
            "--deselect=tests/test_calc.py::test_add",
            id="addopts-deselect",
        ),
        pytest.param(
            {"pyproject.toml": "[tool.pytest.ini_options]\naddopts = '-ra'\n"},
            {"pyproject.toml": "[tool.pytest.ini_options]\naddopts = '-ra -k \"not add\"'\n"},
            "pytest-config-changed",
            "high",
            "-k=not add",
            id="pyproject-k",
        ),
        pytest.param(
            {"pytest.ini": "[pytest]\npython_files = test_*.py\n"},
            {"pytest.ini": "[pytest]\npython_files = test_u*.py\n"},
            "pytest-config-changed",
            "high",
            f"1 test file(s) stop running: `{TEST}`",
            id="python-files-narrowed",
        ),
        pytest.param(
            {},
            {"pytest.ini": "[pytest]\ntestpaths = integration\n"},
            "pytest-config-changed",
            "high",
            f"`{TEST}`",
            id="testpaths-elsewhere",
        ),
    ],
)
def test_test_selection_changed_outside_the_tests(repo, base, head, rule, severity, quoted):
    found = findings(repo, {TEST: src("def test_add():\n    assert add(2, 2) == 4\n"), **base}, head)
    (hit,) = [f for f in found if f.rule == rule]
    assert hit.severity == Severity(severity)
    assert quoted in hit.message, hit.message


def test_harmless_hook_and_options_are_not_flagged_above_low(repo):
    hook = "def pytest_report_header(config):\n    return 'calc tests'\n"
    ini = "[pytest]\naddopts = -ra --strict-markers -q\ntestpaths = tests\n"
    found = findings(
        repo,
        {TEST: src("def test_add():\n    assert add(2, 2) == 4\n"), "pytest.ini": "[pytest]\naddopts = -ra\n"},
        {"tests/conftest.py": hook, "pytest.ini": ini},
    )
    assert above_low(found) == []
    assert "every existing test file is still collected" in next(
        f.message for f in found if f.rule == "pytest-config-changed"
    )


# -- the unit under test mocked ------------------------------------------------------------------

USERS = "def find_user(db, name):\n    return db.get(name)\n"


@pytest.mark.parametrize(
    ("base", "head", "patched"),
    [
        pytest.param(
            "def test_find_user_returns_the_row():\n    assert find_user({'ada': 1}, 'ada') == 1\n",
            "def test_find_user_returns_the_row(mocker):\n    mocker.patch('app.users.find_user', return_value=1)\n"
            "    assert find_user({'ada': 1}, 'ada') == 1\n",
            "mocker.patch('app.users.find_user', return_value=1)",
            id="mocker-patch",
        ),
        pytest.param(
            "def test_find_user():\n    assert find_user({'ada': 1}, 'ada') == 1\n",
            "@patch('app.users.find_user', return_value=1)\ndef test_find_user(mock_find):\n"
            "    assert find_user({'ada': 1}, 'ada') == 1\n",
            "patch('app.users.find_user', return_value=1)",
            id="patch-decorator",
        ),
        pytest.param(
            "def test_find_user(monkeypatch):\n    assert find_user({'ada': 1}, 'ada') == 1\n",
            "def test_find_user(monkeypatch):\n    monkeypatch.setattr('app.users.find_user', lambda db, n: 1)\n"
            "    assert find_user({'ada': 1}, 'ada') == 1\n",
            "monkeypatch.setattr('app.users.find_user', lambda db, n: 1)",
            id="monkeypatch",
        ),
    ],
)
def test_unit_under_test_mocked(repo, base, head, patched):
    header = "from unittest.mock import patch\n\nfrom app.users import find_user\n\n\n"
    repo.base({**base_files({"tests/test_users.py": header + base}), "app/users.py": USERS})
    (result,) = repo.change({"tests/test_users.py": header + head}).check([AGENT]).results
    (hit,) = [f for f in result.findings if f.rule == "unit-mocked"]
    assert hit.severity is Severity.HIGH
    assert "`app.users.find_user`" in hit.message and patched in hit.message


# -- specification change vs implementation fix --------------------------------------------------


def test_expected_value_edited_with_the_code_is_a_medium_question(repo):
    base = src("def test_mean():\n    assert mean([1, 2]) == 1.5\n")
    head = src("def test_mean():\n    assert mean([1, 2]) == 1\n")
    head_calc = CALC.replace("return sum(values) / len(values)", "return sum(values) // len(values)")
    found = findings(repo, {TEST: base}, {TEST: head, "app/calc.py": head_calc})
    (hit,) = [f for f in found if f.rule == "expected-value-changed"]
    assert hit.severity is Severity.MEDIUM
    assert "`assert mean([1, 2]) == 1.5` → `assert mean([1, 2]) == 1`" in hit.message
    assert "`mean` (app/calc.py)" in hit.message
    assert hit.message.endswith("?")


def test_expected_value_in_a_variable_edited_with_the_code(repo):
    base = src("def test_parse():\n    expected = {'a': 1}\n    assert parse('a=1') == expected\n")
    head = src("def test_parse():\n    expected = {'a': '1'}\n    assert parse('a=1') == expected\n")
    head_calc = CALC.replace("return {key: int(value)}", "return {key: value}")
    found = findings(repo, {TEST: base}, {TEST: head, "app/calc.py": head_calc})
    (hit,) = [f for f in found if f.rule == "expected-value-changed"]
    assert hit.severity is Severity.MEDIUM
    assert "`expected = {'a': 1}` → `expected = {'a': '1'}`" in hit.message
    assert "`parse` (app/calc.py)" in hit.message


def test_parametrized_expected_value_edited_with_the_code(repo):
    table = """\
@pytest.mark.parametrize('a, b, total', [(1, 2, 3), (2, 2, 4)])
def test_add(a, b, total):
    assert add(a, b) == total
"""
    head_calc = CALC.replace("return a + b", "return a + b + (a == b)")
    found = findings(
        repo, {TEST: src(table)}, {TEST: src(table.replace("(2, 2, 4)", "(2, 2, 5)")), "app/calc.py": head_calc}
    )
    (hit,) = [f for f in found if f.rule == "expected-value-changed"]
    assert hit.severity is Severity.MEDIUM
    assert "`(2, 2, 4)` → `(2, 2, 5)`" in hit.message


# -- the agent as a whole --------------------------------------------------------------------------


def test_production_change_without_tests_is_info_only(repo):
    repo.base(base_files({TEST: src("def test_add():\n    assert add(2, 2) == 4\n")}))
    report = repo.change({"app/calc.py": CALC.replace("a + b", "b + a")}).check([AGENT])
    (result,) = report.results
    (hit,) = result.findings
    assert (hit.rule, hit.severity) == ("production-untested", Severity.INFO)
    assert "app/calc.py" in hit.message
    assert TEST_FILES_NOTE not in result.notes


def test_test_changes_get_the_review_note(repo):
    report = repo.base(base_files({TEST: src("def test_add():\n    assert add(2, 2) == 4\n")})).change(
        {TEST: src("def test_add():\n    assert add(2, 2) == 4\n    assert add(1, 1) == 2\n")}
    )
    (result,) = report.check([AGENT]).results
    assert TEST_FILES_NOTE in result.notes
    assert result.findings == ()


def test_one_clear_weakening_rejects_the_change(repo):
    """Category tests is not security: it routes by confidence (one high at 0.9 → 0.55 < 0.70)."""
    repo.base(base_files({TEST: src("def test_add():\n    assert add(2, 2) == 4\n")}))
    report = repo.change({TEST: src("def test_add():\n    assert add(2, 2)\n")}).check([AGENT])
    assert report.decision.action is Action.REJECT
    assert report.decision.confidence == pytest.approx(0.55)


def test_unparseable_test_file_is_a_note_not_a_crash(repo):
    repo.base(base_files({TEST: src("def test_add():\n    assert add(2, 2) == 4\n")}))
    (result,) = repo.change({TEST: src("def test_add(:\n    assert add(2, 2) == 4\n")}).check([AGENT]).results
    assert result.status is AgentStatus.OK
    assert result.confidence < 1.0
    assert any(TEST in n and "does not parse" in n for n in result.notes)
    assert not [f for f in result.findings if f.rule in ("test-deleted", "test-file-deleted")]


def test_no_python_changes_skips(repo):
    repo.base(base_files({TEST: src("def test_add():\n    assert add(2, 2) == 4\n")}))
    (result,) = repo.change({"README.md": "# calc\n"}).check([AGENT]).results
    assert result.status is AgentStatus.SKIPPED


def test_every_rule_is_documented():
    reported = {p.values[2] for p in WEAKENING}
    assert reported <= set(RULES)


def test_labelled_set_meets_its_targets():
    """The benchmark's labelled edits, as a regression test: recall ≥ 0.9, false positives ≤ 0.1."""
    path = Path(__file__).parents[2] / "benchmarks" / "test_integrity_eval.py"
    spec = importlib.util.spec_from_file_location("test_integrity_eval", path)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up
    spec.loader.exec_module(bench)
    summary = bench.summarise(asyncio.run(bench.evaluate_all(sorted(bench.CASES.glob("*.yaml")))))
    assert summary["weakening"] >= 40 and summary["legitimate"] >= 40
    assert summary["recall"] >= bench.RECALL_TARGET, summary["missed"]
    assert summary["fp_rate"] <= bench.FP_TARGET, summary["false_positives"]
    assert summary["spec_high"] == 0
