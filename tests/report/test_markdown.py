"""The PR comment: decision on top, escaping that survives a real Markdown renderer, the
test-files warning, grouping by file and GitHub's 65,536-character limit.

Rendered with markdown-it (CommonMark + GFM tables, inline HTML on: as on GitHub), which
Rich already depends on, so the tests check what a reader sees, not the source text.
"""

from __future__ import annotations

import pytest
from markdown_it import MarkdownIt

from mergegate.core.change import FileStatus
from mergegate.core.finding import Category
from mergegate.core.policy import Mode, Policy
from mergegate.core.results import AgentStatus
from mergegate.core.severity import Severity
from mergegate.report import renderer
from mergegate.report.markdown_format import MARKER, MAX_CHARS, TEST_FILES_NOTE, render
from tests.report.factories import changed, failed, finding, make_report, ok, skipped, sqli

MD = MarkdownIt("commonmark", {"html": True}).enable("table")


def _text(inline) -> str:
    out = []
    for t in inline.children or []:
        if t.type in ("text", "code_inline"):
            out.append(t.content)
        elif t.type == "softbreak" or (t.type == "html_inline" and t.content.lower().startswith("<br")):
            out.append("\n")
    return "".join(out)


def tables(markdown: str) -> list[list[list[str]]]:
    """Every table as rows of cell texts, as a GFM renderer parses them."""
    result: list[list[list[str]]] = []
    row: list[str] | None = None
    for tok in MD.parse(markdown):
        if tok.type == "table_open":
            result.append([])
        elif tok.type == "tr_open":
            row = []
        elif tok.type == "inline" and row is not None:
            row.append(_text(tok))
        elif tok.type == "tr_close":
            result[-1].append(row)
            row = None
    return result


def findings_rows(markdown: str) -> list[list[str]]:
    return [row for table in tables(markdown) if table[0][0] == "Severity" for row in table[1:]]


def test_marker_first_and_decision_on_top():
    md = render(make_report(ok("security-scan", sqli()), ok("code-quality", finding())))
    lines = md.splitlines()
    assert lines[0] == MARKER
    assert lines[1] == "## 🛑 mergegate: Blocked: security"
    decision_line = lines[3]
    assert "**Action** `block_security`" in decision_line
    assert "**risk** high" in decision_line
    assert "**mode** enforce" in decision_line
    assert "**confidence** " in decision_line
    assert lines[5].startswith("- high security finding B608 at src/db\\.py:12")
    assert md.index("### Agents") < md.index("### Findings (2)")


@pytest.mark.parametrize(
    ("results", "files", "heading"),
    [
        ((ok("code-quality"),), ("src/app.py",), "## ✅ mergegate: AI gate green: auto-approve"),
        ((ok("code-quality"),), ("src/auth/x.py",), "## 👀 mergegate: Human review required"),
        (
            (ok("code-quality", *(finding(rule=f"R{i}", line=i + 1) for i in range(3))),),
            ("src/app.py",),
            "## ❌ mergegate: Rejected",
        ),
        ((failed("security-scan"),), ("src/app.py",), "## 💥 mergegate: Error: the change was not fully examined"),
    ],
)
def test_heading_per_action(results, files, heading):
    md = render(make_report(*results, files=changed(*files)))
    assert md.splitlines()[1].startswith(heading)


def test_reasons_are_all_listed_under_the_decision():
    report = make_report(ok("code-quality"), files=changed("src/auth/x.py"))
    md = render(report)
    for reason in report.decision.reasons:
        item = MD.parse(md)
        texts = [_text(t) for t in item if t.type == "inline"]
        assert reason in texts


def test_advisory_mode_is_stated():
    md = render(make_report(ok("security-scan", sqli()), policy=Policy(mode=Mode.ADVISORY)))
    assert "**mode** advisory" in md
    assert "Advisory mode: this verdict is reported but does not fail the check." in md


def test_agents_table_shows_status_detail_and_counts():
    report = make_report(
        ok("code-quality", finding(), confidence=0.95, duration=1.234),
        failed("security-scan", AgentStatus.TIMEOUT, "did not finish within 120s"),
        skipped("secrets", "nothing | to <scan>"),
    )
    (agents,) = [t for t in tables(render(report)) if t[0][0] == "Agent"]
    assert agents == [
        ["Agent", "Status", "Findings", "Confidence", "Time"],
        ["code-quality", "✅ ok", "1", "0.95", "1.2s"],
        ["security-scan", "⏱️ timeout: did not finish within 120s", "0", "0.00", "1.0s"],
        ["secrets", "⏭️ skipped: nothing | to <scan>", "0", "1.00", "0.0s"],
    ]


def test_test_file_note_when_a_test_path_changed():
    md = render(make_report(ok("code-quality"), files=changed("src/app.py", "tests/test_app.py")))
    assert f"> {TEST_FILES_NOTE}" in md
    assert TEST_FILES_NOTE == (
        "This change modifies test files — review for specification changes vs. implementation fixes."
    )
    assert "> Test files touched: `tests/test_app.py`" in md


def test_test_file_note_uses_the_policys_test_paths():
    custom = Policy(test_paths=("spec/**",))
    assert TEST_FILES_NOTE in render(make_report(ok("code-quality"), files=changed("spec/a_spec.rb"), policy=custom))
    assert TEST_FILES_NOTE not in render(
        make_report(ok("code-quality"), files=changed("tests/test_app.py"), policy=custom)
    )


def test_test_file_note_for_a_deleted_test_file_and_for_test_integrity_findings():
    deleted = changed("tests/test_gone.py", status=FileStatus.DELETED)
    assert TEST_FILES_NOTE in render(make_report(ok("code-quality"), files=deleted))
    integrity = finding(
        "test-integrity", "skip-added", Severity.MEDIUM, "skip added", category=Category.TESTS, path="checks/t.py"
    )
    md = render(make_report(ok("test-integrity", integrity), files=changed("checks/t.py")))
    assert TEST_FILES_NOTE in md


def test_no_test_file_note_for_a_source_only_change():
    assert TEST_FILES_NOTE not in render(make_report(ok("code-quality", finding())))


def test_messages_with_code_render_literally():
    nasty = (
        "q = \"a|b\" + x  # <script>alert('1')</script> *not bold* `tick` [link](http://e) &amp; &#35; @octocat\n"
        "second line"
    )
    md = render(make_report(ok("security-scan", sqli(message=nasty))))
    html = MD.render(md)
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    (row,) = findings_rows(md)
    assert row[0] == "🔴 high"
    assert row[1] == "12-13"
    assert row[2] == "security-scan/B608 CWE-89"
    # The message comes out exactly, except that a mention is broken by a zero-width space.
    assert row[3] == nasty.replace("@", "@\u200b")
    assert '<a href="https://cwe.mitre.org/data/definitions/89.html">CWE-89</a>' in html


def test_findings_grouped_by_file_most_severe_file_first_change_level_first():
    report = make_report(
        ok(
            "code-quality",
            finding(path="b.py", line=2),
            finding(rule="F401", severity=Severity.LOW, path="b.py", line=1),
        ),
        ok("security-scan", sqli(path="z.py")),
        ok("test-integrity", finding("test-integrity", "tests-deleted", path=None, line=None, message="tests deleted")),
        files=changed("b.py", "z.py"),
    )
    md = render(report)
    summaries = [line for line in md.splitlines() if line.startswith("<summary>")]
    assert summaries == [
        "<summary>Change-level findings (no single file): 1 finding(s), worst medium</summary>",
        "<summary><code>z.py</code>: 1 finding(s), worst high</summary>",
        "<summary><code>b.py</code>: 2 finding(s), worst medium</summary>",
    ]
    rows = findings_rows(md)
    # Within a file, by line.
    assert [(r[1], r[2]) for r in rows[2:]] == [("1", "code-quality/F401"), ("2", "code-quality/F821")]


def test_small_reports_expand_everything_large_ones_only_severe_files():
    small = render(make_report(ok("code-quality", finding(path="a.py"))))
    assert "<details open>" in small
    many = [finding(rule=f"R{i}", path=f"f{i}.py", severity=Severity.LOW, line=1) for i in range(12)]
    large = render(make_report(ok("code-quality", *many), ok("security-scan", sqli())))
    opened = [i for i, line in enumerate(large.splitlines()) if line == "<details open>"]
    assert len(opened) == 1  # only the security finding's file
    assert large.count("<details>") == 12


def test_path_in_summary_is_html_escaped_only():
    md = render(make_report(ok("code-quality", finding(path="src/<a>_b.py"))))
    assert "<summary><code>src/&lt;a&gt;_b.py</code>: 1 finding(s), worst medium</summary>" in md


def test_long_reports_fit_githubs_limit_and_keep_the_decision():
    long_message = "x" * 400
    many = [
        finding(rule=f"R{i % 50}", path=f"pkg/mod{i % 300}.py", line=i + 1, message=long_message) for i in range(3000)
    ]
    report = make_report(ok("code-quality", *many), ok("security-scan", sqli()))
    md = renderer("markdown")(report)
    assert len(md) <= MAX_CHARS
    assert md.startswith(MARKER + "\n## 🛑 mergegate: Blocked: security")
    assert "### Agents" in md
    shown = len(findings_rows(md))
    assert 0 < shown < 3001
    note = f"> {3001 - shown} finding(s) in "
    assert note in md
    assert "GitHub limits a comment to 65,536 characters" in md
    # The most severe file is never the one cut.
    assert "<summary><code>src/db.py</code>: 1 finding(s), worst high</summary>" in md
    assert md.rstrip().endswith("a human approves.</sub>")


def test_truncation_within_one_huge_file():
    many = [finding(rule="R", path="big.py", line=i + 1, message="y" * 200) for i in range(500)]
    md = render(make_report(ok("code-quality", *many)), max_chars=20_000)
    assert len(md) <= 20_000
    shown = len(findings_rows(md))
    assert 0 < shown < 500
    assert f"<summary><code>big.py</code>: {shown} of 500 finding(s), worst medium</summary>" in md
    assert f"> {500 - shown} finding(s) in 1 file group(s) are not shown" in md


def test_very_long_messages_are_cut_in_the_table():
    md = render(make_report(ok("code-quality", finding(message="z" * 5000))))
    (row,) = findings_rows(md)
    assert row[3] == "z" * 999 + "…"


def test_notes_and_extra_reasons_are_collapsed():
    noted = ok("code-quality", finding())
    noted = type(noted)(noted.name, noted.status, noted.findings, 0.9, 0.1, "", ("3 files too large to lint",))
    blocking = [sqli(line=i + 1, message=f"injection {i}") for i in range(20)]
    md = render(make_report(noted, ok("security-scan", *blocking)))
    assert "<summary>Agent notes (1)</summary>" in md
    assert "- `code-quality`: 3 files too large to lint" in md
    assert "- … and 5 more reason(s), below" in md
    assert "<summary>5 more reason(s)</summary>" in md


def test_real_check_comment(repo):
    report = (
        repo.base({"src/app.py": "def f():\n    return 1\n", "tests/test_app.py": "def test_f():\n    assert 1\n"})
        .change(
            {
                "src/app.py": "def f():\n    return missing\n",
                "tests/test_app.py": "def test_f():\n    pass\n",
            }
        )
        .check(["code-quality"])
    )
    md = render(report)
    assert md.startswith(MARKER)
    assert TEST_FILES_NOTE in md
    rows = findings_rows(md)
    assert rows == [["🟠 medium", "2", "code-quality/F821", "Undefined name `missing`"]]
