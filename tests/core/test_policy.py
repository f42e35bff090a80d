from __future__ import annotations

import pytest

from mergegate.core.globs import glob_match
from mergegate.core.policy import Mode, PolicyError, parse_policy
from mergegate.core.severity import Severity


def test_empty_or_missing_policy_is_the_defaults():
    assert parse_policy(None).mode is Mode.ENFORCE
    assert parse_policy("").blocking_severity is Severity.HIGH


def test_valid_policy():
    p = parse_policy("mode: advisory\nthresholds: {auto_approve: 0.95, human_review: 0.5}\n")
    assert p.mode is Mode.ADVISORY and p.thresholds.auto_approve == 0.95


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mode: enforce\nmdoe: advisory\n", "line 2: mdoe: unknown key"),
        ("mode: sometimes\n", "line 1: mode: Input should be 'enforce' or 'advisory'"),
        ("thresholds:\n  auto_approve: 0.9\n  human_review: 2\n", "line 3: thresholds.human_review"),
        ("thresholds: {auto_approve: 0.5, human_review: 0.8}\n", "human_review must not be above auto_approve"),
        ("tests:\n  command: pytest\n  timeout: -1\n", "line 3: tests.timeout"),
        ("mode: [unclosed\n", "invalid YAML"),
        ("- a\n- b\n", "top level must be a mapping"),
    ],
)
def test_errors_name_key_and_line(text, expected):
    with pytest.raises(PolicyError) as exc:
        parse_policy(text, "main:.mergegate.yml")
    assert str(exc.value).startswith("main:.mergegate.yml: ")
    assert expected in str(exc.value)


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("**/auth/**", "src/auth/login.py", True),
        ("**/auth/**", "auth/login.py", True),
        ("**/auth/**", "src/oauth/login.py", False),
        ("migrations/**", "migrations/0001.sql", True),
        ("migrations/**", "app/migrations/0001.sql", False),
        ("*.py", "deep/dir/x.py", True),
        ("docs/*", "docs/a.md", True),
        ("docs/*", "docs/sub/a.md", False),
        ("test_*.py", "tests/unit/test_x.py", True),
        (".github/workflows/**", ".github/workflows/ci.yml", True),
    ],
)
def test_globs(pattern, path, matches):
    assert glob_match(pattern, path) is matches
