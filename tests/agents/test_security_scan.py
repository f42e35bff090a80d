"""security-scan on real git repositories with the real bandit: only what the change introduces."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from mergegate.agents.security_scan import INJECTION_RULES, map_rating
from mergegate.core.results import AgentResult, AgentStatus
from mergegate.core.routing import Action
from mergegate.core.severity import Severity
from tests.gitrepo import RepoBuilder

AGENT = "security-scan"

LEGACY = """import subprocess


def legacy(cmd):
    subprocess.call(cmd, shell=True)


def lookup(cur, name):
    return cur.execute("SELECT * FROM users WHERE name = %s", (name,))
"""


def run(repo: RepoBuilder) -> tuple[AgentResult, Action]:
    report = repo.check([AGENT])
    (result,) = report.results
    return result, report.decision.action


def rules(result: AgentResult) -> list[tuple[str, int, Severity]]:
    return [(f.rule, f.line, f.severity) for f in result.findings]


def test_fstring_sql_injection_is_new_high_cwe89_and_blocks(repo: RepoBuilder) -> None:
    repo.base({"app.py": "def ok():\n    return 1\n"})
    repo.change(
        {
            "app.py": "def ok():\n    return 1\n\n\n"
            "def find(cur, name):\n"
            "    return cur.execute(f\"SELECT * FROM users WHERE name = '{name}'\")\n"
        }
    )
    result, action = run(repo)
    assert result.status is AgentStatus.OK
    (f,) = result.findings
    assert (f.rule, f.path, f.line, f.severity, f.cwe) == ("B608", "app.py", 6, Severity.HIGH, "CWE-89")
    assert f.confidence == 0.7 and f.is_security
    assert f.properties["function"] == "find"
    assert f.properties["bandit_severity"] == "MEDIUM"
    assert action is Action.BLOCK_SECURITY


def test_preexisting_vulnerability_in_unchanged_part_does_not_block(repo: RepoBuilder) -> None:
    repo.base({"app.py": LEGACY})
    # Lines move (an import and a constant on top) and a safe function is added.
    head = (
        "import os\nimport subprocess\n\nLIMIT = 10\n"
        + LEGACY.split("\n", 1)[1]
        + ("\n\ndef home():\n    return os.path.expanduser('~')\n")
    )
    repo.change({"app.py": head})
    result, action = run(repo)
    assert result.findings == ()
    # B404 (import subprocess) and B602 (shell=True) were there before.
    assert "2 pre-existing finding(s) in changed files, not blocking" in result.notes
    assert action is not Action.BLOCK_SECURITY


def test_copy_of_old_vulnerable_line_into_another_function_is_new(repo: RepoBuilder) -> None:
    repo.base({"app.py": LEGACY})
    repo.change({"app.py": LEGACY + "\n\ndef run_it(cmd):\n    subprocess.call(cmd, shell=True)\n"})
    result, action = run(repo)
    assert rules(result) == [("B602", 13, Severity.HIGH)]
    assert result.findings[0].properties["function"] == "run_it"
    assert action is Action.BLOCK_SECURITY


def test_second_copy_in_same_function_is_new_and_reported_on_added_line(repo: RepoBuilder) -> None:
    repo.base({"app.py": LEGACY})
    head = LEGACY.replace(
        "    subprocess.call(cmd, shell=True)\n",
        "    subprocess.call(cmd, shell=True)\n    subprocess.call(cmd, shell=True)\n",
    )
    repo.change({"app.py": head})
    result, _ = run(repo)
    assert rules(result) == [("B602", 6, Severity.HIGH)]


def test_renamed_function_keeps_old_findings_old(repo: RepoBuilder) -> None:
    repo.base({"app.py": LEGACY})
    repo.change({"app.py": LEGACY.replace("def legacy(cmd):", "def legacy_runner(cmd):")})
    result, _ = run(repo)
    assert result.findings == ()


def test_editing_the_flagged_line_makes_it_new(repo: RepoBuilder) -> None:
    repo.base({"app.py": LEGACY})
    repo.change({"app.py": LEGACY.replace("call(cmd, shell=True)", "check_call(cmd, shell=True)")})
    result, _ = run(repo)
    assert rules(result) == [("B602", 5, Severity.HIGH)]


def test_comment_and_whitespace_edits_do_not_make_a_finding_new(repo: RepoBuilder) -> None:
    repo.base({"app.py": LEGACY})
    repo.change({"app.py": LEGACY.replace("call(cmd, shell=True)", "call(cmd,  shell=True)  # runs the job")})
    result, _ = run(repo)
    assert result.findings == ()


def test_renamed_file_keeps_old_findings_old(repo: RepoBuilder) -> None:
    repo.base({"old_name.py": LEGACY})
    repo.change({"old_name.py": None, "new_name.py": LEGACY + "\nX = 1\n"})
    result, _ = run(repo)
    assert result.findings == ()
    assert "2 pre-existing finding(s) in changed files, not blocking" in result.notes


def test_nosec_added_by_the_change_is_not_honoured_by_default(repo: RepoBuilder) -> None:
    repo.base({"app.py": "import os\n"})
    repo.change({"app.py": "import os\n\n\ndef f(x):\n    os.system('ls ' + x)  # nosec\n"})
    result, action = run(repo)
    assert rules(result) == [("B605", 5, Severity.HIGH)]
    assert action is Action.BLOCK_SECURITY


def test_base_policy_can_honour_nosec_and_skip_rules(repo: RepoBuilder) -> None:
    repo.base(
        {
            ".mergegate.yml": "agents:\n  security-scan:\n    honour_nosec: true\n    skip: [B311]\n",
            "app.py": "import os\n",
        }
    )
    repo.change(
        {
            "app.py": "import os\nimport random\n\n\ndef f(x):\n    os.system('ls ' + x)  # nosec\n"
            "    return random.random()\n"
        }
    )
    result, action = run(repo)
    assert result.findings == ()
    assert action is not Action.BLOCK_SECURITY


def test_every_finding_has_a_cwe_and_secrets_are_not_quoted(repo: RepoBuilder) -> None:
    repo.base({"app.py": "X = 1\n"})
    repo.change(
        {
            "app.py": "import hashlib\nimport pickle\nimport yaml\n\n"
            'password = "Tr0ub4dor&3horse"\n\n\n'
            "def load(blob, text):\n"
            "    pickle.loads(blob)\n"
            "    yaml.load(text)\n"
            "    eval(text)\n"
            "    return hashlib.md5(blob)\n"
        }
    )
    result, _ = run(repo)
    found = {f.rule: f for f in result.findings}
    assert set(found) == {"B403", "B105", "B301", "B506", "B307", "B324"}
    assert all(re.fullmatch(r"CWE-\d+", f.cwe or "") for f in result.findings)
    assert found["B301"].cwe == "CWE-502" and found["B324"].cwe == "CWE-327"
    # Injection-class rules are raised to high; the pickle import is not.
    assert {r for r, f in found.items() if f.severity is Severity.HIGH} == {"B301", "B506", "B307", "B324"}
    assert found["B403"].severity is Severity.LOW
    assert "Tr0ub4dor" not in found["B105"].message
    assert found["B105"].message == "Possible hardcoded password (value not shown)"


def test_fingerprint_ignores_line_numbers(tmp_path) -> None:
    vuln = "def find(cur, name):\n    return cur.execute(f\"SELECT * FROM t WHERE n = '{name}'\")\n"
    prints = []
    for i, prefix in enumerate(["", "import os\n\nA = 1\nB = 2\n\n\n"]):
        repo = RepoBuilder(tmp_path / str(i))
        repo.base({"db.py": "X = 1\n"}).change({"db.py": prefix + vuln})
        result, _ = run(repo)
        (f,) = result.findings
        prints.append((f.line, f.fingerprint))
    assert prints[0][0] != prints[1][0]
    assert prints[0][1] == prints[1][1]


def test_syntax_error_is_a_note_and_lowers_confidence(repo: RepoBuilder) -> None:
    repo.base({"ok.py": "X = 1\n"})
    repo.change(
        {
            "broken.py": "def f(:\n    pass\n",
            "ok.py": "import os\n\n\ndef g(x):\n    os.system('rm ' + x)\n",
        }
    )
    result, _ = run(repo)
    assert result.status is AgentStatus.OK
    assert rules(result) == [("B605", 5, Severity.HIGH)]
    assert result.confidence == 0.75
    assert any(n.startswith("broken.py: not analysed, bandit reported: syntax error") for n in result.notes)


def test_base_unparseable_only_touched_lines_count(repo: RepoBuilder) -> None:
    repo.base({"app.py": LEGACY + "\ndef broken(:\n"})
    repo.change({"app.py": LEGACY + "\n\ndef fixed(x):\n    eval(x)\n"})
    result, _ = run(repo)
    assert rules(result) == [("B307", 13, Severity.HIGH)]
    assert "2 pre-existing finding(s) in changed files, not blocking" in result.notes


def test_assert_is_reported_in_production_code_but_not_in_tests(repo: RepoBuilder) -> None:
    repo.base({"tests/test_a.py": "def test_a():\n    pass\n", "app.py": "X = 1\n"})
    repo.change(
        {"tests/test_a.py": "def test_a():\n    assert 1 + 1 == 2\n", "app.py": "X = 1\n\n\ndef f(x):\n    assert x\n"}
    )
    result, _ = run(repo)
    assert [(rule, line) for rule, line, _ in rules(result)] == [("B101", 5)]
    assert result.findings[0].path == "app.py"


def test_non_python_files_are_listed_and_only_them_skips(repo: RepoBuilder) -> None:
    repo.base({"README.md": "a\n", "app.py": "X = 1\n"})
    repo.change({"README.md": "b\n", "app.py": "X = 2\n", "conf.toml": "a = 1\n"})
    result, _ = run(repo)
    assert "not analysed (not Python): README.md, conf.toml" in result.notes

    repo.change({"README.md": "c\n"}, branch="docs")
    report = repo.check([AGENT], head="docs")
    (skipped,) = report.results
    assert skipped.status is AgentStatus.SKIPPED
    assert skipped.detail == "no Python files changed"


def _one(repo: RepoBuilder, code: str) -> tuple[str, Severity, float, str | None]:
    repo.base({"README.md": "x\n"}).change({"app.py": code})
    result, _ = run(repo)
    (f,) = result.findings
    return f.rule, f.severity, f.confidence, f.properties.get("context")


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        # SQL assembled in a variable first: bandit is unsure (LOW), the query shape is not.
        (
            'def q(db, status):\n    sql = "SELECT id FROM orders WHERE status = \'" + status + "\'"\n'
            "    return db.execute(sql)\n",
            ("B608", Severity.HIGH, 0.7, "a query string starting with SQL interpolates a variable"),
        ),
        (
            'TABLE = "events"\n\n\ndef q(cur, since):\n'
            '    cur.execute(f"SELECT id FROM {TABLE} WHERE at > %s", (since,))\n',
            ("B608", Severity.LOW, 0.4, "only constants are interpolated into the query"),
        ),
        (
            "import random\n\n\ndef make_reset_token():\n    return random.getrandbits(128)\n",
            ("B311", Severity.MEDIUM, 0.7, "the random value is used for a security purpose (by its names)"),
        ),
        (
            "import random\n\n\ndef shuffled(xs):\n    return random.sample(xs, len(xs))\n",
            ("B311", Severity.LOW, 0.9, None),
        ),
        (
            'DB_PASSWORD = "Sup3r" "S3cret!"\n',
            ("B105", Severity.MEDIUM, 0.7, "the literal looks like a real credential"),
        ),
        ('TOKEN_TYPE = "bearer"\n', ("B105", Severity.LOW, 0.7, None)),
        (
            'from urllib.request import urlopen\n\nFEED = "https://example.org/rss"\n\n\n'
            "def news():\n    return urlopen(FEED, timeout=5).read()\n",
            ("B310", Severity.LOW, 0.4, "every argument is a constant"),
        ),
        (
            "from urllib.request import urlopen\n\n\ndef fetch(url):\n    return urlopen(url).read()\n",
            ("B310", Severity.MEDIUM, 0.9, None),
        ),
        (
            'from django.utils.safestring import mark_safe\n\nHR = mark_safe("<hr>")\n',
            ("B308", Severity.LOW, 0.4, "every argument is a constant"),
        ),
    ],
)
def test_context_moves_findings_bandit_judges_by_name(repo: RepoBuilder, code: str, expected: tuple) -> None:
    assert _one(repo, code) == expected


@pytest.mark.parametrize(
    ("rule", "severity", "confidence", "expected"),
    [
        ("B602", "HIGH", "HIGH", (Severity.HIGH, 0.9)),
        ("B605", "LOW", "HIGH", (Severity.LOW, 0.9)),  # a constant command: bandit already knows
        ("B000", "HIGH", "MEDIUM", (Severity.HIGH, 0.7)),
        ("B000", "HIGH", "LOW", (Severity.MEDIUM, 0.4)),
        ("B000", "MEDIUM", "HIGH", (Severity.MEDIUM, 0.9)),
        ("B000", "MEDIUM", "LOW", (Severity.LOW, 0.4)),
        ("B000", "LOW", "HIGH", (Severity.LOW, 0.9)),
        ("B000", "LOW", "LOW", (Severity.INFO, 0.4)),
        ("B608", "MEDIUM", "MEDIUM", (Severity.HIGH, 0.7)),
        ("B608", "MEDIUM", "LOW", (Severity.LOW, 0.4)),
        ("B307", "MEDIUM", "HIGH", (Severity.HIGH, 0.9)),
        ("B506", "MEDIUM", "HIGH", (Severity.HIGH, 0.9)),
        ("B403", "LOW", "HIGH", (Severity.LOW, 0.9)),
    ],
)
def test_severity_mapping(rule: str, severity: str, confidence: str, expected: tuple[Severity, float]) -> None:
    assert map_rating(rule, severity, confidence) == expected


def test_injection_rules_cover_the_documented_set() -> None:
    assert {"B608", "B602", "B605", "B307", "B301", "B506"} <= INJECTION_RULES
    assert "B403" not in INJECTION_RULES


SEMGREP_TARGET = """import flask
import requests
import yaml


def handler(name, text, url):
    yaml.load(text)
    requests.get(url, verify=False, timeout=5)
    return flask.render_template_string(f"<p>{name}</p>")
"""


def test_semgrep_findings_merge_with_bandit_on_the_same_line(repo: RepoBuilder) -> None:
    if shutil.which("semgrep") is None:
        pytest.skip("semgrep (optional extra) is not installed")
    repo.base({"app.py": "X = 1\n"}).change({"app.py": SEMGREP_TARGET})
    result, _ = run(repo)
    by_line = {f.line: f for f in result.findings}
    assert sorted(by_line) == [7, 8, 9]
    assert by_line[7].rule == "B506" and by_line[7].properties["also_reported_by"] == "semgrep.yaml-load"
    assert by_line[7].properties["fix"] == "yaml.safe_load(text)"
    assert by_line[8].rule == "B501" and by_line[8].properties["also_reported_by"] == "semgrep.requests-no-verify"
    assert (by_line[9].rule, by_line[9].cwe, by_line[9].severity) == (
        "semgrep.flask-render-string",
        "CWE-79",
        Severity.MEDIUM,
    )


def test_semgrep_taint_rules_follow_request_data(repo: RepoBuilder) -> None:
    if shutil.which("semgrep") is None:
        pytest.skip("semgrep (optional extra) is not installed")
    code = (
        "import os\n\nimport requests\nfrom flask import request, send_from_directory\n\n\n"
        "def download():\n"
        "    with open(os.path.join('/srv', request.args['name'])) as fh:\n"
        "        return fh.read()\n\n\n"
        "def safe():\n"
        "    return send_from_directory('/srv', request.args['name'])\n\n\n"
        "def preview():\n"
        "    return requests.get(request.args['url'], timeout=5).text\n"
    )
    repo.base({"README.md": "x\n"}).change({"app.py": code})
    result, action = run(repo)
    assert [(f.rule, f.line, f.cwe, f.severity) for f in result.findings] == [
        ("semgrep.flask-path-traversal", 8, "CWE-22", Severity.HIGH),
        ("semgrep.flask-ssrf", 17, "CWE-918", Severity.HIGH),
    ]
    assert action is Action.BLOCK_SECURITY


def test_without_semgrep_the_notes_say_so(repo: RepoBuilder) -> None:
    if shutil.which("semgrep") is not None:
        pytest.skip("semgrep is installed")
    repo.base({"app.py": "X = 1\n"}).change({"app.py": "X = 2\n"})
    result, _ = run(repo)
    assert "semgrep is not installed (optional extra mergegate[semgrep]): bandit only" in result.notes


def test_a_broken_semgrep_is_a_note_not_an_error(repo: RepoBuilder, tmp_path, monkeypatch) -> None:
    """semgrep is optional: when it fails, bandit's answer stands and the agent is less sure."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "semgrep"
    fake.write_text("#!/bin/sh\necho 'semgrep: cannot load rules' >&2\nexit 7\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    repo.base({"app.py": "X = 1\n"}).change({"app.py": "import os\n\n\ndef f(x):\n    os.system('ls ' + x)\n"})
    result, _ = run(repo)
    assert result.status is AgentStatus.OK
    assert rules(result) == [("B605", 5, Severity.HIGH)]
    assert result.confidence == 0.9
    assert any(n.startswith("semgrep failed, bandit only: semgrep exited 7") for n in result.notes)
