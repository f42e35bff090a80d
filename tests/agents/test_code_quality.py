"""code-quality on real git repositories with the real ruff: the base's configuration, filter modes, notes."""

from __future__ import annotations

import json

import pytest

from mergegate.agents.code_quality import DEFAULT_SELECT, rate
from mergegate.core.results import AgentResult, AgentStatus
from mergegate.core.routing import Action
from mergegate.core.severity import Severity
from tests.gitrepo import RepoBuilder

AGENT = "code-quality"
DEFAULTS = ",".join(DEFAULT_SELECT)

#: E501 at 20 columns is in no default rule set (ours or ruff's): seeing it proves a config applied.
E501_ONLY = 'line-length = 20\n\n[lint]\nselect = ["E501"]\n'
#: F821 on line 2 (only the defaults report it), a 27-column line 3 (only E501_ONLY does).
HEAD = "x = 1\ny = missing\nlong_name_here = 1234567890\n"
BY_CONFIG = [("E501", "app.py", 3, Severity.INFO, 0.6)]
BY_DEFAULTS = [("F821", "app.py", 2, Severity.MEDIUM, 0.95)]


def run(repo: RepoBuilder, head: str = "change") -> AgentResult:
    (result,) = repo.check([AGENT], head=head).results
    return result


def found(result: AgentResult) -> list[tuple[str, str, int | None, Severity, float]]:
    return [(f.rule, f.path, f.line, f.severity, f.confidence) for f in result.findings]


def policy(**options: object) -> dict[str, str]:
    body = "".join(f"    {k}: {json.dumps(v)}\n" for k, v in options.items())
    return {".mergegate.yml": f"agents:\n  code-quality:\n{body}"}


def sha12(repo: RepoBuilder, ref: str = "main") -> str:
    return repo.git("rev-parse", ref).strip()[:12]


# --- the repository's configuration, from the base ----------------------------------------


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("ruff.toml", E501_ONLY),
        (".ruff.toml", E501_ONLY),
        (
            "pyproject.toml",
            '[project]\nname = "app"\n\n[tool.ruff]\nline-length = 20\n\n[tool.ruff.lint]\nselect = ["E501"]\n',
        ),
    ],
)
def test_the_base_config_applies(repo: RepoBuilder, name: str, text: str) -> None:
    repo.base({name: text, "app.py": "x = 1\n"})
    repo.change({"app.py": HEAD})
    result = run(repo)
    assert result.status is AgentStatus.OK
    assert found(result) == BY_CONFIG  # F821 is not selected
    assert result.findings[0].properties["config"] == name
    assert f"ruff configuration from the base branch ({sha12(repo)}): {name}" in result.notes
    assert result.confidence == 1.0


def test_dot_ruff_toml_wins_over_ruff_toml_over_pyproject_as_in_ruff(repo: RepoBuilder) -> None:
    repo.base(
        {
            ".ruff.toml": E501_ONLY,
            "ruff.toml": '[lint]\nselect = ["F"]\n',
            "pyproject.toml": '[tool.ruff.lint]\nselect = ["F"]\n',
            "app.py": "x = 1\n",
        }
    )
    repo.change({"app.py": HEAD})
    assert found(run(repo)) == BY_CONFIG


def test_pyproject_without_a_ruff_table_is_not_a_config(repo: RepoBuilder) -> None:
    repo.base({"pyproject.toml": '[project]\nname = "app"\n', "app.py": "x = 1\n"})
    repo.change({"app.py": HEAD})
    result = run(repo)
    assert found(result) == BY_DEFAULTS
    assert f"no ruff configuration at the base; rules: {DEFAULTS}" in result.notes


def test_a_change_editing_the_config_is_judged_by_the_base_config(repo: RepoBuilder) -> None:
    repo.base({"ruff.toml": '[lint]\nselect = ["F"]\n', "app.py": "x = 1\n", "pkg/__init__.py": ""})
    repo.change(
        {
            # Every way the change could try to silence F821 for its own code:
            "ruff.toml": '[lint]\nselect = ["F"]\nignore = ["F821"]\n',
            ".ruff.toml": '[lint]\nselect = ["E"]\n',
            "pyproject.toml": '[tool.ruff.lint]\nignore = ["F821"]\n',
            "pkg/ruff.toml": '[lint]\nignore = ["F821"]\n',
            "app.py": "x = 1\ny = missing\n",
            "pkg/mod.py": "z = also_missing\n",
        }
    )
    result = run(repo)
    assert found(result) == [
        ("F821", "app.py", 2, Severity.MEDIUM, 0.95),
        ("F821", "pkg/mod.py", 1, Severity.MEDIUM, 0.95),
    ]
    assert {f.properties["config"] for f in result.findings} == {"ruff.toml"}
    assert "not analysed (not Python): .ruff.toml, pkg/ruff.toml, pyproject.toml, ruff.toml" in result.notes


def test_the_config_is_read_from_the_base_tip_not_the_merge_base(repo: RepoBuilder) -> None:
    repo.base({"app.py": "x = 1\n"})
    repo.change({"app.py": HEAD})
    repo.base({"ruff.toml": E501_ONLY, "other.py": "w = 1\n"}, message="main moves on: a ruff config")
    result = run(repo)
    assert found(result) == BY_CONFIG
    assert f"ruff configuration from the base branch ({sha12(repo)}): ruff.toml" in result.notes


def test_a_nested_config_applies_below_its_directory_on_its_own(repo: RepoBuilder) -> None:
    # As in ruff, the nearest config wins and does not inherit from the root one.
    repo.base(
        {
            "ruff.toml": E501_ONLY,
            "legacy/ruff.toml": '[lint]\nselect = ["F"]\nignore = ["F401"]\n',
            "app.py": "x = 1\n",
            "legacy/old.py": "x = 1\n",
        }
    )
    repo.change({"app.py": HEAD, "legacy/old.py": "import os\n" + HEAD})
    result = run(repo)
    assert found(result) == [*BY_CONFIG, ("F821", "legacy/old.py", 3, Severity.MEDIUM, 0.95)]
    assert [f.properties["config"] for f in result.findings] == ["ruff.toml", "legacy/ruff.toml"]
    assert f"ruff configuration from the base branch ({sha12(repo)}): legacy/ruff.toml, ruff.toml" in result.notes


def test_extend_is_followed_at_the_base_and_the_change_cannot_edit_it(repo: RepoBuilder) -> None:
    repo.base(
        {
            "pyproject.toml": '[tool.ruff]\nextend = "config/ruff-base.toml"\n',
            "config/ruff-base.toml": E501_ONLY,
            "app.py": "x = 1\n",
        }
    )
    repo.change({"config/ruff-base.toml": '[lint]\nselect = ["W"]\n', "app.py": HEAD})
    result = run(repo)
    assert found(result) == BY_CONFIG
    assert result.findings[0].properties["config"] == "pyproject.toml"


@pytest.mark.parametrize(
    ("extend", "reason"),
    [
        ("../outside.toml", "`extend = '../outside.toml'` in ruff.toml points outside the repository and is not read"),
        ("/etc/ruff.toml", "`extend = '/etc/ruff.toml'` in ruff.toml points outside the repository and is not read"),
        ("$HOME/ruff.toml", "`extend = '$HOME/ruff.toml'` in ruff.toml points outside the repository and is not read"),
        ("missing.toml", "missing.toml, extended by ruff.toml, does not exist at the base"),
    ],
)
def test_an_extend_that_cannot_be_read_from_the_base_is_noted(repo: RepoBuilder, extend: str, reason: str) -> None:
    repo.base({"ruff.toml": f'extend = "{extend}"\n', "app.py": "x = 1\n"})
    repo.change({"app.py": HEAD})
    result = run(repo)
    assert found(result) == BY_DEFAULTS
    assert result.notes == (
        f"base ruff configuration ruff.toml ({sha12(repo)}) cannot be used, so the default rule set "
        f"({DEFAULTS}) was applied to the files it covers: {reason}",
    )
    assert result.confidence == 0.9


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('[lint]\nselectt = ["E711"]\n', "TOML parse error at line 2, column 1: unknown field `selectt`"),
        ('[lint\nselect = ["E711"]\n', "TOML parse error at line 1, column 6: unclosed table, expected `]`"),
        ('[lint]\nselect = ["XYZ9"]\n', "Unknown rule selector `XYZ9` in `select` from `ruff.toml`"),
    ],
)
def test_an_invalid_base_config_is_noted_and_the_defaults_apply(repo: RepoBuilder, text: str, reason: str) -> None:
    repo.base({"ruff.toml": text, "app.py": "x = 1\n"})
    repo.change({"app.py": HEAD})
    result = run(repo)
    assert result.status is AgentStatus.OK
    assert found(result) == BY_DEFAULTS
    assert result.findings[0].properties["config"] == "default"
    assert result.notes == (
        f"base ruff configuration ruff.toml ({sha12(repo)}) cannot be used, so the default rule set "
        f"({DEFAULTS}) was applied to the files it covers: {reason}",
    )
    assert result.confidence == 0.9


def test_fix_true_in_the_config_does_not_fix_the_snapshot_away(repo: RepoBuilder) -> None:
    repo.base({"ruff.toml": 'fix = true\n[lint]\nselect = ["F401"]\n', "app.py": "x = 1\n"})
    repo.change({"app.py": "import os\n\nx = 1\n"})
    assert found(run(repo)) == [("F401", "app.py", 1, Severity.LOW, 0.8)]


def test_files_excluded_by_the_base_config_are_noted(repo: RepoBuilder) -> None:
    repo.base({"ruff.toml": 'extend-exclude = ["generated"]\n[lint]\nselect = ["F"]\n', "app.py": "x = 1\n"})
    repo.change({"app.py": "x = 1\ny = missing\n", "generated/api.py": "z = missing\n"})
    result = run(repo)
    assert found(result) == [("F821", "app.py", 2, Severity.MEDIUM, 0.95)]
    assert "not analysed (excluded by the base ruff configuration): generated/api.py" in result.notes
    assert result.confidence == 1.0


# --- options --------------------------------------------------------------------------------


def test_select_option_replaces_the_default_rule_set(repo: RepoBuilder) -> None:
    repo.base({**policy(select=["W291"]), "app.py": "x = 1\n"})
    repo.change({"app.py": "x = 1 \n" + HEAD[6:]})
    result = run(repo)
    assert found(result) == [("W291", "app.py", 1, Severity.INFO, 0.6)]  # no F821
    assert "no ruff configuration at the base; rules: W291" in result.notes


def test_select_and_ignore_options_override_the_repo_config(repo: RepoBuilder) -> None:
    repo.base({**policy(select=["F", "E501"], ignore=["F821"]), "ruff.toml": E501_ONLY, "app.py": "x = 1\n"})
    repo.change({"app.py": "import os\n" + HEAD})
    result = run(repo)
    # The config's line-length still applies; the selection is the option's, minus F821.
    assert found(result) == [("F401", "app.py", 1, Severity.LOW, 0.8), ("E501", "app.py", 4, Severity.INFO, 0.6)]
    assert (
        f"ruff configuration from the base branch ({sha12(repo)}): ruff.toml; "
        "overridden by .mergegate.yml select: F,E501, ignore: F821"
    ) in result.notes


def test_an_unknown_rule_in_the_options_fails_closed(repo: RepoBuilder) -> None:
    repo.base({**policy(select=["NOPE1"]), "ruff.toml": E501_ONLY, "app.py": "x = 1\n"})
    repo.change({"app.py": HEAD})
    report = repo.check([AGENT])
    (result,) = report.results
    assert result.status is AgentStatus.ERROR
    assert result.detail == "ToolFailed: ruff exited 2: Unknown rule selector `NOPE1` in `select` from the CLI"
    assert report.decision.action is Action.ERROR


def test_use_repo_config_false_uses_the_defaults(repo: RepoBuilder) -> None:
    repo.base({**policy(use_repo_config=False), "ruff.toml": E501_ONLY, "app.py": "x = 1\n"})
    repo.change({"app.py": HEAD})
    result = run(repo)
    assert found(result) == BY_DEFAULTS
    assert f"use_repo_config: false; rules: {DEFAULTS}" in result.notes


def test_a_noqa_comment_is_not_honoured_by_default_and_says_so(repo: RepoBuilder) -> None:
    repo.base({"app.py": "x = 1\n"})
    repo.change({"app.py": "x = 1\ny = missing  # noqa: F821\n"})
    result = run(repo)
    assert found(result) == [("F821", "app.py", 2, Severity.MEDIUM, 0.95)]
    assert result.findings[0].properties["noqa"] == "not honoured (honour_noqa: false)"


def test_the_base_policy_can_honour_noqa(repo: RepoBuilder) -> None:
    repo.base({**policy(honour_noqa=True), "app.py": "x = 1\n"})
    repo.change({"app.py": "x = 1\ny = missing  # noqa: F821\nz = gone  # noqa: E501\n"})
    # The wrong code does not cover F821; RUF100 points out the useless directive.
    assert found(run(repo)) == [
        ("F821", "app.py", 3, Severity.MEDIUM, 0.95),
        ("RUF100", "app.py", 3, Severity.INFO, 0.9),
    ]


# --- filter modes ---------------------------------------------------------------------------

FILTER_BASE = """import os
import json


def a():
    return json.dumps(1)


def b():
    unused = 1
    return 2


def c():
    return 3
"""
# ``import json`` removed (so line 5 now has an undefined name the change caused), and a
# new undefined name on line 14. ``import os`` (1) and ``unused`` (9) were there before.
FILTER_HEAD = """import os


def a():
    return json.dumps(1)


def b():
    unused = 1
    return 2


def c():
    return undefined_c
"""
NEW_F821 = ("F821", 14, Severity.MEDIUM, 0.95, "true", None)
OLD_F401 = ("F401", 1, Severity.INFO, 0.0, "false", "true")
CAUSED_F821 = ("F821", 5, Severity.MEDIUM, 0.95, "false", "false")
OLD_F841 = ("F841", 9, Severity.INFO, 0.0, "false", "true")


@pytest.mark.parametrize(
    ("mode", "expected", "note"),
    [
        (
            "added",
            [NEW_F821],
            "3 finding(s) on lines the change did not add or change are not reported (filter: added)",
        ),
        # The hunk that removed ``import json`` shows line 1 as context.
        (
            "diff_context",
            [OLD_F401, NEW_F821],
            "2 finding(s) outside the diff hunks are not reported (filter: diff_context)",
        ),
        ("file", [OLD_F401, CAUSED_F821, OLD_F841, NEW_F821], None),
        ("nofilter", [OLD_F401, CAUSED_F821, OLD_F841, NEW_F821], None),
    ],
)
def test_filter_modes(repo: RepoBuilder, mode: str, expected: list, note: str | None) -> None:
    repo.base({**policy(filter=mode), "app.py": FILTER_BASE})
    repo.change({"app.py": FILTER_HEAD})
    result = run(repo)
    got = [
        (f.rule, f.line, f.severity, f.confidence, f.properties["on_changed_line"], f.properties.get("pre_existing"))
        for f in result.findings
    ]
    assert got == expected
    assert all(f.properties["filter"] == mode for f in result.findings)
    pre = sum(1 for e in expected if e[5] == "true")
    if pre:
        assert f"{pre} pre-existing finding(s) outside the changed lines: reported at info, not weighed" in result.notes
        assert {f.properties.get("rule_confidence") for f in result.findings if f.severity is Severity.INFO} == {"0.8"}
    if note:
        assert note in result.notes


def test_when_the_base_version_did_not_parse_old_looking_findings_are_capped_at_low(repo: RepoBuilder) -> None:
    repo.base({**policy(filter="file"), "app.py": "def f(:\n    pass\n\n\ndef g():\n    return missing\n"})
    repo.change({"app.py": "def f():\n    pass\n\n\ndef g():\n    return missing\n"})
    result = run(repo)
    assert [(f.rule, f.line, f.severity, f.properties["pre_existing"]) for f in result.findings] == [
        ("F821", 6, Severity.LOW, "unknown")
    ]


def test_pre_existing_findings_in_file_mode_do_not_weigh_on_the_change(repo: RepoBuilder) -> None:
    legacy = "".join(f"import mod{i}\n" for i in range(40)) + "\n\ndef f():\n    return 1\n"
    repo.base({**policy(filter="nofilter"), "legacy.py": legacy})
    repo.change({"legacy.py": legacy.replace("return 1", "return 2")})
    report = repo.check([AGENT])
    (result,) = report.results
    assert len(result.findings) == 40
    assert {(f.rule, f.severity, f.confidence) for f in result.findings} == {("F401", Severity.INFO, 0.0)}
    assert report.decision.action is Action.AUTO_APPROVE
    assert report.decision.confidence == 1.0


# --- what was not analysed ------------------------------------------------------------------


def test_non_python_binary_and_deleted_files_are_noted_without_lowering_confidence(repo: RepoBuilder) -> None:
    repo.base({"app.py": "x = 1\n", "old.py": "y = 1\n", "docs/guide.md": "# Guide\n"})
    repo.change({"app.py": "x = 2\n", "old.py": None, "docs/guide.md": "# Guide!\n", "setup.cfg": "[x]\n"})
    (repo.path / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    repo.commit({}, "a binary")
    result = run(repo)
    assert result.findings == ()
    assert result.notes[:3] == (
        "not analysed (not Python): docs/guide.md, setup.cfg",
        "not analysed (binary): logo.png",
        "not analysed (deleted): old.py",
    )
    assert result.confidence == 1.0


def test_a_long_list_of_other_files_is_truncated(repo: RepoBuilder) -> None:
    repo.base({"app.py": "x = 1\n"})
    repo.change({"app.py": "x = 2\n", **{f"data/{i:02}.txt": "x\n" for i in range(14)}})
    shown = ", ".join(f"data/{i:02}.txt" for i in range(10))
    assert f"not analysed (not Python): {shown} and 4 more" in run(repo).notes


def test_no_python_files_skips_and_says_what_was_not_analysed(repo: RepoBuilder) -> None:
    repo.base({"README.md": "# app\n"})
    repo.change({"README.md": "# app!\n", "notes.txt": "x\n"})
    result = run(repo)
    assert result.status is AgentStatus.SKIPPED
    assert result.detail == "no Python files changed; not analysed: README.md, notes.txt (not Python)"
    assert result.confidence == 1.0


def test_a_too_large_python_file_is_noted_and_lowers_confidence(repo: RepoBuilder) -> None:
    big = "x = missing\n" + "y = 1\n" * 40
    repo.base({**policy(max_file_bytes=100), "small.py": "a = 1\n"})
    repo.change({"small.py": "a = gone\n", "big.py": big})
    result = run(repo)
    assert found(result) == [("F821", "small.py", 1, Severity.MEDIUM, 0.95)]  # nothing from big.py
    assert f"not analysed (larger than max_file_bytes=100): big.py ({len(big)} bytes)" in result.notes
    assert result.confidence == 0.85  # 1 - 0.3 x 1/2


def test_an_undecodable_python_file_is_noted_and_lowers_confidence(repo: RepoBuilder) -> None:
    repo.base({"app.py": "x = 1\n"})
    repo.change({"app.py": "x = 2\n"})
    (repo.path / "latin.py").write_bytes(b'name = "Jos\xe9"\n')
    repo.commit({}, "latin-1 file")
    result = run(repo)
    assert "latin.py: not analysed, ruff could not lint it: stream did not contain valid UTF-8" in result.notes
    assert result.confidence == 0.85


def test_a_syntax_error_in_head_is_high_and_the_file_counts_as_unanalysed(repo: RepoBuilder) -> None:
    repo.base({"app.py": "def f():\n    return 1\n"})
    repo.change({"app.py": "def f(:\n    return missing\n"})
    report = repo.check([AGENT])
    (result,) = report.results
    assert [(f.rule, f.line, f.severity, f.confidence) for f in result.findings] == [
        ("invalid-syntax", 1, Severity.HIGH, 0.95),
        ("invalid-syntax", 1, Severity.HIGH, 0.95),
    ]
    assert result.findings[0].message == "Expected a parameter or the end of the parameter list"
    assert "app.py: does not parse, so ruff checked its syntax only; other findings in it are unknown" in result.notes
    assert result.confidence == 0.7
    assert report.decision.action is Action.REJECT


def test_a_stub_file_is_analysed(repo: RepoBuilder) -> None:
    repo.base({"app.py": "x = 1\n"})
    repo.change({"app.pyi": "def f(x: Undefined) -> int: ...\n"})
    assert found(run(repo)) == [("F821", "app.pyi", 1, Severity.MEDIUM, 0.95)]


def _notebook(*cells: tuple[str, str]) -> str:
    def cell(kind: str, source: str) -> dict:
        extra = {"execution_count": None, "outputs": []} if kind == "code" else {}
        return {"cell_type": kind, "metadata": {}, "source": source.splitlines(keepends=True), **extra}

    doc = {"cells": [cell(k, s) for k, s in cells], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(doc, indent=1) + "\n"


def test_a_notebook_is_analysed_by_cell_and_only_changed_cell_lines_count(repo: RepoBuilder) -> None:
    before = _notebook(("markdown", "# Analysis\n"), ("code", "import os\nx = 1\n"), ("code", "print(x)\n"))
    after = _notebook(("markdown", "# Analysis\n"), ("code", "import os\nx = 1\n"), ("code", "print(x)\nprint(yy)\n"))
    repo.base({"analysis.ipynb": before})
    repo.change({"analysis.ipynb": after})
    result = run(repo)
    (f,) = result.findings  # the old unused ``import os`` is not on a changed line
    assert (f.rule, f.path, f.line, f.severity) == ("F821", "analysis.ipynb", None, Severity.MEDIUM)
    assert f.message == "cell 3, line 2: Undefined name `yy`"
    assert (f.properties["cell"], f.properties["cell_line"]) == ("3", "2")


# --- ratings and fingerprints ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "severity", "confidence"),
    [
        ("invalid-syntax", Severity.HIGH, 0.95),
        ("F706", Severity.HIGH, 0.9),
        ("F821", Severity.MEDIUM, 0.95),
        ("F632", Severity.MEDIUM, 0.85),
        ("PLE1142", Severity.MEDIUM, 0.85),
        ("F811", Severity.MEDIUM, 0.7),
        ("B006", Severity.MEDIUM, 0.7),
        ("F401", Severity.LOW, 0.8),
        ("F541", Severity.LOW, 0.8),
        ("B904", Severity.LOW, 0.7),
        ("E711", Severity.LOW, 0.6),
        ("RUF100", Severity.INFO, 0.9),
        ("E501", Severity.INFO, 0.6),
        ("D100", Severity.INFO, 0.6),
    ],
)
def test_rating_table(code: str, severity: Severity, confidence: float) -> None:
    assert rate(code) == (severity, confidence)


def test_the_fingerprint_survives_the_line_moving(repo: RepoBuilder) -> None:
    repo.base({"app.py": "x = 1\n"})
    repo.change({"app.py": "x = 1\ny = missing\n"})
    repo.change({"app.py": '"""Docs."""\n\nimport sys\n\nx = 1\n\n\ny = missing\nprint(sys)\n'}, branch="moved")
    (first,) = run(repo).findings
    (moved,) = run(repo, head="moved").findings
    assert (first.line, moved.line) == (2, 8)
    assert first.fingerprint == moved.fingerprint


def test_repeated_equal_lines_get_distinct_fingerprints(repo: RepoBuilder) -> None:
    repo.base({"app.py": "x = 1\n"})
    repo.change({"app.py": "x = 1\ny = missing\ny = missing\n"})
    result = run(repo)
    assert [f.line for f in result.findings] == [2, 3]
    assert len({f.fingerprint for f in result.findings}) == 2
