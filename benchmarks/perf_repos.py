"""Build the two benchmark repositories from real PyPI sdists, with real upstream history.

Both repositories carry the same small library, wcwidth, and the same change: the real
upstream diff of one module between two releases. They differ only in how much else
the repository holds:

* ``small``: wcwidth alone. Three commits on ``main`` (the 0.2.6, 0.2.7 and 0.2.8
  sdists, each replacing the tree the way a release would), about 45 files.
* ``large``: the same three commits plus the Django 5.0.6 sdist vendored under
  ``third_party/django/`` (several thousand files, the size of a mid-sized monorepo).

The change, on branch ``change`` by an agent author, is ``wcwidth/wcwidth.py`` from
0.2.9 (~130 changed lines, a real rewrite of ``wcwidth()``/``wcswidth()``), so the diff
is byte-for-byte identical in both repositories and any difference in the cost of
``mergegate check`` comes from the repository's size, not from the change.

Downloads go through ``pip download --no-binary :all:`` (the ordinary client) and are
cached under ``benchmarks/.work/`` like the repositories themselves; a repository is
rebuilt only when the recipe (``RECIPE_VERSION``) changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

WORK = Path(__file__).resolve().parent / ".work"
SDISTS = WORK / "sdists"
REPOS = WORK / "repos"
#: The test agent's persistent exports of the benchmark repositories (``mergegate.runtime.export``).
EXPORTS = WORK / "exports"

#: Bump when anything below changes, so cached repositories are rebuilt.
RECIPE_VERSION = "5"

LIBRARY = "wcwidth"
HISTORY = ("0.2.6", "0.2.7", "0.2.8")  # commits on main, oldest first
CHANGE_FROM = "0.2.9"  # the release whose version of CHANGED_FILE is the change
CHANGED_FILE = "wcwidth/wcwidth.py"
LARGE_EXTRA = ("Django", "5.0.6", "third_party/django")

#: The test command the test-coverage agent runs, identical in both repositories.
#: ``python -m`` puts the tree's root on ``sys.path``: wcwidth's tests import the package
#: from there (tox would have installed it). ``-o addopts=`` drops wcwidth's tox.ini
#: addopts (pytest-cov flags for a plugin we do not install). ``test_null_width_0`` is
#: deselected because 0.2.9 regenerated the zero-width table together with this module;
#: with the one-file change alone that test fails, and the benchmark measures the
#: common, passing path.
TEST_COMMAND = (
    "python -m pytest -q -o addopts= tests/test_core.py tests/test_ucslevel.py"
    " --deselect tests/test_core.py::test_null_width_0"
)

POLICY = f"""\
# The benchmark's policy (on main, so it is the base ref's policy).
mode: enforce
sandbox: bubblewrap
tests:
  command: "{TEST_COMMAND}"
  timeout: 300
"""

HUMAN = ("Dana Maintainer", "dana@example.com")
AGENT = ("coding-agent[bot]", "agent@agents.mergegate.invalid")


@dataclass(frozen=True)
class BenchRepo:
    name: str
    path: Path
    files: int  # files tracked at head
    changed: list[str]  # paths changed between main and change


def sdist(name: str, version: str) -> Path:
    """The sdist of ``name==version``, downloaded once with pip into the cache."""
    SDISTS.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{version}".lower().replace("_", "-")
    for candidate in SDISTS.iterdir():
        if candidate.name.lower().replace("_", "-").startswith(stem + ".tar"):
            return candidate
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:"]
    cmd += ["--disable-pip-version-check", f"{name}=={version}", "-d", str(SDISTS)]
    subprocess.run(cmd, check=True, capture_output=True)
    return sdist(name, version)


def unpack(archive: Path, dest: Path) -> None:
    """Extract an sdist into ``dest`` without its top-level ``name-version/`` folder."""
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
        (top,) = Path(tmp).iterdir()
        shutil.copytree(top, dest, dirs_exist_ok=True, symlinks=True)


def _git(repo: Path, *args: str, author: tuple[str, str] = HUMAN, date: str = "2024-01-01T12:00:00Z") -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": author[0],
        "GIT_AUTHOR_EMAIL": author[1],
        "GIT_COMMITTER_NAME": author[0],
        "GIT_COMMITTER_EMAIL": author[1],
        "GIT_AUTHOR_DATE": date,
        "GIT_COMMITTER_DATE": date,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    proc = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {proc.stderr}")
    return proc.stdout


def _replace_library(repo: Path, version: str) -> None:
    """Make the library's files exactly those of ``version`` (vendored trees stay)."""
    for entry in repo.iterdir():
        if entry.name in (".git", "third_party", ".mergegate.yml"):
            continue
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    unpack(sdist(LIBRARY, version), repo)


def _build(name: str, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _git(tmp, "init", "-q", "-b", "main")
    _git(tmp, "config", "core.autocrlf", "false")
    # No background auto-gc racing the build or, later, the timed runs; one gc at the end.
    _git(tmp, "config", "gc.auto", "0")
    (tmp / ".mergegate.yml").write_text(POLICY, encoding="utf-8")
    if name == "large":
        extra, version, where = LARGE_EXTRA
        unpack(sdist(extra, version), tmp / where)
    for day, version in enumerate(HISTORY, start=1):
        _replace_library(tmp, version)
        _git(tmp, "add", "-A")
        _git(tmp, "commit", "-q", "-m", f"{LIBRARY} {version}", date=f"2023-0{day}-01T12:00:00Z")
    _git(tmp, "checkout", "-q", "-b", "change")
    with tempfile.TemporaryDirectory() as scratch:
        unpack(sdist(LIBRARY, CHANGE_FROM), Path(scratch))
        shutil.copyfile(Path(scratch) / CHANGED_FILE, tmp / CHANGED_FILE)
    _git(tmp, "add", CHANGED_FILE)
    _git(
        tmp,
        "commit",
        "-q",
        "-m",
        f"wcswidth: zero-width joiner handling (upstream {CHANGE_FROM})",
        author=AGENT,
        date="2023-10-30T12:00:00Z",
    )
    _git(tmp, "gc", "-q")
    (tmp / ".git" / "bench-recipe").write_text(RECIPE_VERSION)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def bench_repo(name: str) -> BenchRepo:
    """The benchmark repository ``small`` or ``large``, built (once) if needed."""
    path = REPOS / name
    stamp = path / ".git" / "bench-recipe"
    if not (stamp.is_file() and stamp.read_text() == RECIPE_VERSION):
        _build(name, path)
    files = len(_git(path, "ls-tree", "-r", "--name-only", "change").splitlines())
    changed = _git(path, "diff", "--name-only", "main...change").split()
    return BenchRepo(name, path, files, changed)


def isolate_exports() -> None:
    """Keep the benchmark's persistent exports under ``.work/`` (this process and its children)."""
    os.environ["MERGEGATE_EXPORTS_DIR"] = str(EXPORTS)


def rewind_exports(repo: BenchRepo, ref: str = "main") -> None:
    """Bring every persistent export of ``repo`` back to ``ref`` (untimed).

    The benchmark checks the same head again and again; without this, every check
    after the first would find the export already at ``change`` and reuse it as is. A
    gate checks a new commit each time, so each timed check starts from the base and
    pays what a real one pays: the update by the diff, and its verification.
    """
    from mergegate.runtime import export
    from mergegate.vcs.git import GitRepo

    git = GitRepo(repo.path)
    commit = git.rev_parse(ref)
    slots = len(list((EXPORTS / export.repo_key(git)).glob("slot-*"))) or 1
    held: list[export.Export] = []
    try:
        while len(held) < slots and (taken := export.acquire(git, commit, EXPORTS)) is not None:
            held.append(taken)
    finally:
        for taken in held:
            taken.release()


if __name__ == "__main__":
    for repo_name in ("small", "large"):
        repo = bench_repo(repo_name)
        print(f"{repo.name}: {repo.path} ({repo.files} files, changed: {', '.join(repo.changed)})")
