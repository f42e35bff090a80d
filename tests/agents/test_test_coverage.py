"""test-coverage on real git repositories: real pytest and coverage in real bubblewrap.

One repository with a small package is shared by most tests; each test checks its own
branch off ``main``. Repositories whose *base policy* differs (a hung command, a setup
step, no sandbox) are built separately.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mergegate.agents.test_coverage import line_ranges
from mergegate.core.policy import PolicyError
from mergegate.core.results import AgentStatus
from mergegate.core.routing import Action
from mergegate.core.severity import Severity
from mergegate.runtime.testrun import parse_junit, pytest_argv
from mergegate.service.check import run_check
from mergegate.service.policy_source import load_policy_text
from mergegate.vcs.git import GitRepo
from tests.conftest import require_tool
from tests.gitrepo import RepoBuilder

AGENT = "test-coverage"
SECRET = "s3cr3t-parent-value-7d1f"

PYPROJECT = """\
[tool.pytest.ini_options]
pythonpath = ["src"]
"""

OPS = """\
def add(a, b):
    return a + b
"""

TEST_OPS = """\
from calc.ops import add


def test_add():
    assert add(1, 2) == 3
"""

BASE = {
    "pyproject.toml": PYPROJECT,
    "src/calc/__init__.py": "",
    "src/calc/ops.py": OPS,
    "tests/test_ops.py": TEST_OPS,
    ".mergegate.yml": "agents:\n  test-coverage:\n    rerun_failures: true\n",
}


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


@pytest.fixture(scope="module")
def calc(tmp_path_factory) -> RepoBuilder:
    require_tool("bwrap")
    return RepoBuilder(tmp_path_factory.mktemp("calc")).base(BASE)


def run_agent(repo: RepoBuilder, branch: str, files: dict[str, str | None]):
    """Check ``files`` committed on ``branch`` off main; return (report, test-coverage result)."""
    repo.change(files, branch=branch)
    report = repo.check([AGENT], head=branch)
    (result,) = report.results
    return report, result


def by_rule(result, rule: str):
    return [f for f in result.findings if f.rule == rule]


# -- the shared package ----------------------------------------------------------------------


def test_passing_tests_and_fully_covered_change(calc):
    report, result = run_agent(
        calc,
        "covered",
        {
            "src/calc/ops.py": OPS + "\n\ndef mul(a, b):\n    # product\n    return a * b\n",
            "tests/test_mul.py": "from calc.ops import mul\n\n\ndef test_mul():\n    assert mul(2, 3) == 6\n",
        },
    )
    assert result.status is AgentStatus.OK, result.detail
    assert result.findings == ()
    assert result.confidence == 1.0
    assert any("2 passed" in n for n in result.notes)
    assert any("diff coverage: 100% (2/2" in n for n in result.notes)
    assert report.decision.action is Action.AUTO_APPROVE


def test_uncovered_changed_lines_are_listed_and_low_diff_coverage_is_medium(calc):
    ops = OPS + dedent(
        """

        def div(a, b):
            # Division that refuses zero.

            if b == 0:
                raise ZeroDivisionError("b must not be zero")
            return a / b
        """
    )
    _, result = run_agent(calc, "uncovered", {"src/calc/ops.py": ops})
    assert result.status is AgentStatus.OK, result.detail
    # Lines 3-8 were added; the comment (4) and the blank line (5) are not executable,
    # and the `def` line (3) ran when the module was imported.
    (uncovered,) = by_rule(result, "uncovered-lines")
    assert uncovered.path == "src/calc/ops.py"
    assert uncovered.properties["lines"] == "6-8"
    assert "6-8" in uncovered.message
    assert (uncovered.line, uncovered.end_line) == (6, 8)
    (summary,) = by_rule(result, "diff-coverage")
    assert summary.severity is Severity.MEDIUM
    assert "25%" in summary.message and "1/4" in summary.message
    assert "src/calc/ops.py: 6-8" in summary.message


def test_diff_coverage_above_the_threshold_only_lists_the_lines(calc):
    ops = OPS + dedent(
        """

        def clamp(x, lo, hi):
            if x < lo:
                return lo
            if x > hi:
                return hi
            return x
        """
    )
    test = dedent(
        """
        from calc.ops import clamp


        def test_clamp():
            assert clamp(5, 0, 1) == 1
            assert clamp(0, 1, 2) == 1
        """
    )
    _, result = run_agent(calc, "mostly-covered", {"src/calc/ops.py": ops, "tests/test_clamp.py": test})
    assert result.status is AgentStatus.OK, result.detail
    assert by_rule(result, "diff-coverage") == []
    (uncovered,) = by_rule(result, "uncovered-lines")
    assert uncovered.severity is Severity.INFO
    assert uncovered.properties["lines"] == "8"  # `return x`: neither call reaches it
    assert any("diff coverage: 83% (5/6" in n for n in result.notes)


def test_docs_and_packaging_code_is_not_held_to_diff_coverage(calc):
    _, result = run_agent(
        calc,
        "docs-only",
        {"docs/conf.py": "project = 'calc'\nextensions = []\n", "setup.py": "from setuptools import setup\n"},
    )
    assert result.status is AgentStatus.OK, result.detail
    assert result.findings == ()
    assert any("no changed non-test Python lines" in n for n in result.notes)


def test_failing_test_is_a_high_finding_naming_the_test_and_the_repo_frame(calc):
    broken = "def add(a, b):\n    if a == 1:\n        raise ValueError('one is not supported')\n    return a + b\n"
    report, result = run_agent(calc, "failing", {"src/calc/ops.py": broken})
    assert result.status is AgentStatus.OK, result.detail
    (failure,) = by_rule(result, "test-failed")
    assert failure.severity is Severity.HIGH
    assert failure.confidence >= 0.9
    assert failure.properties["test_id"] == "tests/test_ops.py::test_add"
    assert "tests/test_ops.py::test_add" in failure.message
    assert "one is not supported" in failure.message
    # The innermost frame in the repository: the line that raised, not the test.
    assert (failure.path, failure.line) == ("src/calc/ops.py", 3)
    assert failure.properties["first_repo_frame"] == "src/calc/ops.py:3"
    # Re-run once (rerun_failures), still failing: not flaky.
    assert by_rule(result, "flaky-test") == []
    assert report.decision.action is not Action.AUTO_APPROVE


def test_a_test_that_passes_on_rerun_is_reported_flaky_not_passed(calc):
    flaky = dedent(
        """
        from pathlib import Path


        def test_sometimes():
            marker = Path(__file__).with_name(".first-run-done")
            if not marker.exists():
                marker.write_text("x")
                assert False, "first run fails"
        """
    )
    report, result = run_agent(calc, "flaky", {"tests/test_flaky.py": flaky})
    assert result.status is AgentStatus.OK, result.detail
    assert by_rule(result, "test-failed") == []
    (finding,) = by_rule(result, "flaky-test")
    assert finding.severity is Severity.MEDIUM
    assert finding.properties["test_id"] == "tests/test_flaky.py::test_sometimes"
    assert "flaky" in finding.message
    assert report.decision.action is not Action.AUTO_APPROVE


def test_no_tests_collected_is_a_medium_finding_not_an_error(calc):
    _, result = run_agent(calc, "no-tests", {"tests/test_ops.py": None})
    assert result.status is AgentStatus.OK, result.detail
    (finding,) = by_rule(result, "no-tests")
    assert finding.severity is Severity.MEDIUM
    assert "no tests were collected" in finding.message
    assert by_rule(result, "tests-failed") == []


def test_the_tests_see_no_secret_from_the_parent_process(calc, monkeypatch):
    for key in ("MERGEGATE_TOKEN", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN"):
        monkeypatch.setenv(key, SECRET)
    probe = dedent(
        f"""
        import os
        import socket
        from pathlib import Path


        def test_environment_has_no_secrets():
            seen = {{k: v for k, v in os.environ.items() if "{SECRET}" in v or k.endswith("TOKEN")}}
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    if b"{SECRET}" in Path(f"/proc/{{pid}}/environ").read_bytes():
                        seen[pid] = "environ"
                except OSError:
                    pass
            assert seen == {{}}


        def test_no_home_no_network():
            assert not Path("/root/.ssh").exists() and not Path("/root/.gitconfig").exists()
            try:
                socket.create_connection(("127.0.0.1", 5432), timeout=2)
            except OSError:
                return
            raise AssertionError("reached the network")
        """
    )
    _, result = run_agent(calc, "secret-probe", {"tests/test_probe.py": probe})
    assert result.status is AgentStatus.OK, result.detail
    assert result.findings == ()
    assert any("3 passed" in n for n in result.notes)  # the probes ran (and test_add)
    assert SECRET not in repr(result)


def test_editing_the_policy_in_the_change_does_not_change_what_runs(calc):
    _, result = run_agent(
        calc,
        "policy-edit",
        {
            ".mergegate.yml": "tests:\n  command: 'true'\n",
            "src/calc/ops.py": "def add(a, b):\n    return a - b\n",
        },
    )
    # The base policy's `pytest -q` ran, so the broken function is caught.
    (failure,) = by_rule(result, "test-failed")
    assert failure.properties["test_id"] == "tests/test_ops.py::test_add"


# -- repositories with their own base policy ---------------------------------------------------


@pytest.fixture(scope="module")
def hung(tmp_path_factory) -> RepoBuilder:
    require_tool("bwrap")
    repo = RepoBuilder(tmp_path_factory.mktemp("hung"))
    repo.base({**BASE, ".mergegate.yml": "tests:\n  command: sleep 600\n  timeout: 3\n"})
    # The change tries to swap the hanging command for one that passes: it must not matter.
    repo.change({".mergegate.yml": "tests:\n  command: 'true'\n", "src/calc/ops.py": OPS + "\nX = 1\n"})
    return repo


def test_hung_test_command_fails_closed(hung):
    report = hung.check([AGENT])
    (result,) = report.results
    assert result.status is AgentStatus.TIMEOUT
    assert result.detail == "test command did not finish within 3s"
    assert report.decision.action is Action.ERROR
    assert report.decision.confidence == 0.0


def test_hung_test_command_exits_3_from_the_cli(hung, mergegate_cmd):
    proc = subprocess.run(
        [*mergegate_cmd, "check", "--repo", str(hung.path), "--base", "main", "--head", "change", "--agents", AGENT],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "did not finish within 3s" in proc.stdout + proc.stderr


def test_no_test_command_is_a_skip_that_keeps_the_change_from_auto_approve(repo):
    repo.base({**BASE, ".mergegate.yml": "tests:\n  command: null\n"}).change({"src/calc/ops.py": OPS + "\nX = 1\n"})
    report = repo.check([AGENT])
    (result,) = report.results
    assert result.status is AgentStatus.SKIPPED
    assert result.detail == "no test command configured (tests.command)"
    assert result.confidence == 0.85
    assert report.decision.action is not Action.AUTO_APPROVE


def test_missing_bubblewrap_is_an_error_with_what_to_do(repo, monkeypatch, tmp_path):
    repo.base(BASE).change({"src/calc/ops.py": OPS + "\nX = 1\n"})
    only_git = tmp_path / "bin"
    only_git.mkdir()
    (only_git / "git").symlink_to(require_tool("git"))
    monkeypatch.setenv("PATH", str(only_git))
    report = repo.check([AGENT])
    (result,) = report.results
    assert result.status is AgentStatus.ERROR
    assert "apt-get install bubblewrap" in result.detail
    assert "sandbox: none" in result.detail
    assert report.decision.action is Action.ERROR


def test_sandbox_none_runs_unisolated_but_still_measures(repo):
    # The explicit opt-out: no remapped paths, same results.
    repo.base({**BASE, ".mergegate.yml": "sandbox: none\n"})
    repo.change({"src/calc/ops.py": OPS + "\n\ndef neg(a):\n    return -a\n"})
    report = repo.check([AGENT])
    (result,) = report.results
    assert result.status is AgentStatus.OK, result.detail
    (uncovered,) = by_rule(result, "uncovered-lines")
    assert uncovered.properties["lines"] == "6"


def test_non_pytest_command_is_judged_by_exit_status_and_still_measured(repo):
    repo.base({**BASE, ".mergegate.yml": "tests:\n  command: python -m pytest -q -x && echo done\n"})
    repo.change({"src/calc/ops.py": "def add(a, b):\n    return a * b\n"})
    report = repo.check([AGENT])
    (result,) = report.results
    assert result.status is AgentStatus.OK, result.detail
    (failure,) = by_rule(result, "tests-failed")
    assert failure.severity is Severity.HIGH
    assert "exited with status 1" in failure.message
    assert any("diff coverage: 100% (1/1" in n for n in result.notes)


# -- setup step (trust rule, cache and editable installs: tests/runtime/test_testenv.py) -------------


@pytest.mark.slow
def test_failing_setup_is_an_error_with_its_output(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("MERGEGATE_CACHE_DIR", str(tmp_path / "cache"))
    setup = "echo 'cannot build calc' >&2 && exit 7"
    repo.base({**BASE, ".mergegate.yml": f'tests:\n  setup: "{setup}"\n'}).change({"src/calc/ops.py": OPS + "#\n"})
    (result,) = repo.check([AGENT]).results
    assert result.status is AgentStatus.ERROR
    assert "exited with status 7" in result.detail and "cannot build calc" in result.detail
    assert list((tmp_path / "cache").iterdir()) == []  # nothing half-built left to reuse


# -- the head tree: a persistent export under a throw-away overlay -------------------------------

POISON = dedent(
    """
    from pathlib import Path


    def test_poison():
        # Everything a hostile change could leave behind for the next change's check.
        Path("conftest.py").write_text(
            "import pytest\\n"
            "@pytest.hookimpl(hookwrapper=True)\\n"
            "def pytest_runtest_makereport(item, call):\\n"
            "    outcome = yield\\n"
            "    outcome.get_result().outcome = 'passed'\\n"
        )
        Path("src/calc/ops.py").write_text("def add(a, b):\\n    return 3\\n")
        Path("tests/test_ops.py").unlink()
    """
)


@pytest.fixture
def exports(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MERGEGATE_EXPORTS_DIR", str(tmp_path / "exports"))
    return tmp_path / "exports"


def test_a_change_cannot_poison_the_tree_the_next_check_runs_on(repo, exports):
    require_tool("bwrap")
    repo.base(BASE)
    repo.change({"tests/test_poison.py": POISON}, branch="poison")
    (poisoner,) = repo.check([AGENT], head="poison").results
    assert poisoner.status is AgentStatus.OK, poisoner.detail
    assert any("2 passed" in n for n in poisoner.notes), poisoner.notes  # its writes worked, in its own overlay
    assert any(n.startswith("work tree: the persistent export, ") for n in poisoner.notes), poisoner.notes

    repo.change({"tests/test_more.py": "from calc.ops import add\n\n\ndef test_two():\n    assert add(2, 2) == 5\n"})
    (result,) = repo.check([AGENT]).results
    (failure,) = by_rule(result, "test-failed")  # no planted conftest.py forces it to pass
    assert failure.properties["test_id"] == "tests/test_more.py::test_two"
    assert any("1 passed, 1 failed" in n for n in result.notes)  # test_ops.py is back, add() is not poisoned
    assert any("updated from" in n and "by the diff" in n for n in result.notes), result.notes


def test_two_checks_of_one_repository_at_once_each_see_their_own_tree(repo, exports):
    require_tool("bwrap")
    repo.base(BASE)
    repo.change({"src/calc/ops.py": "def add(a, b):\n    return a - b\n"}, branch="broken")
    repo.change({"src/calc/ops.py": OPS + "\n\ndef neg(a):\n    return -a\n"}, branch="fine")

    async def both():
        git = GitRepo(repo.path)
        return await asyncio.gather(run_check(git, "main", "broken", [AGENT]), run_check(git, "main", "fine", [AGENT]))

    broken, fine = (report.results[0] for report in asyncio.run(both()))
    assert [f.properties["test_id"] for f in by_rule(broken, "test-failed")] == ["tests/test_ops.py::test_add"]
    assert by_rule(fine, "test-failed") == [] and by_rule(fine, "uncovered-lines")[0].properties["lines"] == "6"
    assert len(list(exports.glob("*/slot-*/tree"))) == 2


def test_a_changed_module_no_test_imports_is_reported_uncovered(calc):
    # Coverage measures the changed files only, and reports them even when never imported.
    _, result = run_agent(calc, "unimported", {"src/calc/extra.py": "def f():\n    return 1\n\n\nX = f()\n"})
    (uncovered,) = by_rule(result, "uncovered-lines")
    assert (uncovered.path, uncovered.properties["lines"]) == ("src/calc/extra.py", "1-2, 5")


def test_sandbox_none_says_its_tree_was_exported_afresh(repo):
    repo.base({**BASE, ".mergegate.yml": "sandbox: none\n"}).change({"src/calc/ops.py": OPS + "\nX = 1\n"})
    (result,) = repo.check([AGENT]).results
    assert "work tree: a fresh export of the head tree (sandbox: none cannot mount an overlay)" in result.notes


def test_without_overlay_support_the_tests_get_a_fresh_writable_export(repo, exports, monkeypatch, tmp_path):
    from mergegate.runtime.sandbox import _probe_overlay

    # A machine without util-linux's unshare: bubblewrap works, the overlay cannot be mounted.
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("git", "bwrap"):
        (tools / tool).symlink_to(require_tool(tool))
    monkeypatch.setenv("PATH", str(tools))
    _probe_overlay.cache_clear()  # probed again, with this PATH (and again after the test)
    repo.base(BASE)
    writes = "from pathlib import Path\n\n\ndef test_w():\n    Path('x').write_text('1')\n"
    repo.change({"tests/test_writes.py": writes})
    try:
        (result,) = repo.check([AGENT]).results
    finally:
        _probe_overlay.cache_clear()
    assert result.status is AgentStatus.OK, result.detail
    assert result.findings == ()
    assert any("2 passed" in n for n in result.notes)
    (note,) = [n for n in result.notes if n.startswith("work tree:")]
    assert note == (
        "work tree: a fresh export of the head tree (unshare and mount (util-linux) are needed to mount an overlay)"
    )
    assert not exports.exists()


# -- pure helpers ---------------------------------------------------------------------------------


def test_line_ranges():
    assert line_ranges(frozenset({1, 2, 3, 7, 9, 10})) == "1-3, 7, 9-10"
    assert line_ranges(frozenset({4})) == "4"


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("pytest -q", ["pytest", "-q"]),
        ("python -m pytest -q -k 'not slow'", ["python", "-m", "pytest", "-q", "-k", "not slow"]),
        ("python3.11 -m pytest --maxfail=1", ["python3.11", "-m", "pytest", "--maxfail=1"]),
        ("pytest -q && echo ok", None),
        ("pytest $ARGS", None),
        ("make test", None),
        ("python -m unittest", None),
        ("FOO=1 pytest", None),
    ],
)
def test_pytest_commands_are_recognised_only_when_plain(command, argv):
    assert pytest_argv(command) == argv


def test_junit_ids_from_pytest_xunit1():
    xml = b"""<testsuites><testsuite>
      <testcase classname="tests.test_a" name="test_ok" file="tests/test_a.py" line="3"/>
      <testcase classname="tests.test_a.TestX" name="test_p[1-2]" file="tests/test_a.py" line="9">
        <failure message="assert 1 == 2">tests/test_a.py:11: AssertionError</failure></testcase>
      <testcase classname="" name="tests.test_b"><error message="collection failure">boom</error></testcase>
      <testcase classname="tests.test_a" name="test_s" file="tests/test_a.py" line="20"><skipped/></testcase>
    </testsuite></testsuites>"""
    cases = parse_junit(xml)
    assert [(c.id, c.outcome, c.line) for c in cases] == [
        ("tests/test_a.py::test_ok", "passed", 4),
        ("tests/test_a.py::TestX::test_p[1-2]", "failed", 10),
        ("tests.test_b", "error", None),
        ("tests/test_a.py::test_s", "skipped", 21),
    ]


def test_options_are_validated_against_typos():
    with pytest.raises(PolicyError, match=r"agents\.test-coverage\.min_diff_coverag: unknown key"):
        load_policy_text("agents:\n  test-coverage:\n    min_diff_coverag: 0.5\n", ".mergegate.yml")
    loaded = load_policy_text("agents:\n  test-coverage:\n    min_diff_coverage: 0.5\n", ".mergegate.yml")
    assert loaded.options[AGENT].min_diff_coverage == 0.5


def test_agent_timeout_leaves_room_for_setup_and_tests():
    from mergegate.agents.test_coverage import AGENT as agent
    from mergegate.core.policy import TestsConfig

    defaults = TestsConfig()
    assert agent.default_timeout > defaults.setup_timeout + defaults.timeout


def test_interpreter_used_by_default_has_pytest_and_coverage():
    # The no-setup environment is mergegate's own: both tools must import there.
    proc = subprocess.run([sys.executable, "-c", "import coverage, pytest"], env={**os.environ}, check=False)
    assert proc.returncode == 0
    assert (Path(sys.executable).parent / "pytest").exists()
