"""Persistent exports on real git repositories: exact trees, tampering, locks, crashes.

Every assertion compares a slot's tree with a fresh ``checkout-index`` export of the
same commit (``GitRepo.export_tree``): names, file types, executable bits, symlink
targets and bytes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mergegate.runtime import export
from mergegate.vcs.git import GitRepo
from tests.gitrepo import RepoBuilder


def snapshot(root: Path) -> dict[str, tuple]:
    """Everything under ``root`` (not following symlinks): kind, x bit, target or bytes."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", bool(st.st_mode & stat.S_IXUSR), path.read_bytes())
    return out


def expected(repo: GitRepo, commit: str, tmp_path: Path) -> dict[str, tuple]:
    dest = tmp_path / f"expected-{commit[:12]}-{time.monotonic_ns()}"
    repo.export_tree(commit, dest)
    return snapshot(dest)


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "exports"


@pytest.fixture
def builder(tmp_path) -> RepoBuilder:
    return RepoBuilder(tmp_path / "r").base(
        {
            "README": "hello\n",
            "pkg/__init__.py": "",
            "pkg/mod.py": "X = 1\n",
            "pkg/old_name.py": "Y = 2\n" * 50,
            "scripts/run.sh": "#!/bin/sh\necho run\n",
            "data/keep.txt": "keep\n",
            ".gitignore": "build/\n*.pyc\n",
        }
    )


def take(repo: GitRepo, commit: str, root: Path) -> export.Export:
    held = export.acquire(repo, commit, root)
    assert held is not None
    return held


def test_successive_commits_are_exact_including_deletions_renames_modes_and_symlinks(builder, root, tmp_path):
    repo = GitRepo(builder.path)
    commits = [builder.git("rev-parse", "HEAD").strip()]
    builder.git("mv", "pkg/old_name.py", "pkg/new_name.py")
    builder.git("update-index", "--chmod=+x", "scripts/run.sh")
    commits.append(builder.commit({"pkg/mod.py": "X = 2\n", "data/keep.txt": None}))
    os.symlink("pkg/mod.py", builder.path / "link")
    os.symlink("../README", builder.path / "pkg" / "readme-link")
    commits.append(builder.commit({}))
    # A file becomes a directory, a directory becomes a file, a symlink is retargeted.
    (builder.path / "link").unlink()
    os.symlink("README", builder.path / "link")
    builder.git("rm", "-q", "README")
    (builder.path / "data").rmdir()  # emptied by the previous commit
    commits.append(builder.commit({"README/index.md": "now a directory\n", "data": "now a file\n"}))
    builder.git("update-index", "--chmod=-x", "scripts/run.sh")
    commits.append(builder.commit({"pkg/__init__.py": None}))

    hows = []
    # Forwards, then backwards: every transition is an update of the same slot.
    for commit in commits + commits[-2::-1]:
        held = take(repo, commit, root)
        try:
            assert snapshot(held.tree) == expected(repo, commit, tmp_path)
            hows.append(held.how)
        finally:
            held.release()
    assert hows[0] == "exported afresh (first use)"
    assert all(how.startswith("updated from ") for how in hows[1:]), hows
    assert len(list((root / export.repo_key(repo)).glob("slot-*"))) == 1


def test_the_same_commit_again_is_reused_as_is(builder, root, tmp_path):
    repo = GitRepo(builder.path)
    head = repo.rev_parse("HEAD")
    take(repo, head, root).release()
    held = take(repo, head, root)
    assert held.how == "reused as is"
    assert snapshot(held.tree) == expected(repo, head, tmp_path)
    held.release()


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda t: (t / "pkg/mod.py").write_text("X = 666\n"), id="content"),
        pytest.param(lambda t: _same_size_same_mtime(t / "pkg/mod.py", b"X = 9\n"), id="content-same-size-and-mtime"),
        pytest.param(lambda t: (t / "pkg/mod.py").unlink(), id="deleted"),
        pytest.param(lambda t: os.chmod(t / "pkg/mod.py", 0o755), id="mode"),
        pytest.param(lambda t: (t / "conftest.py").write_text("raise SystemExit\n"), id="planted-file"),
        pytest.param(lambda t: (t / "build").mkdir() or (t / "build/x.py").write_text(""), id="planted-ignored-file"),
        pytest.param(lambda t: (t / "pkg/mod.cpython-311.pyc").write_bytes(b"\0"), id="planted-ignored-pyc"),
        pytest.param(lambda t: (t / "empty").mkdir(), id="planted-empty-dir"),
        pytest.param(lambda t: (t / "pkg/mod.py").unlink() or os.symlink("/etc/hosts", t / "pkg/mod.py"), id="symlink"),
    ],
)
def test_a_tampered_export_does_not_survive(builder, root, tmp_path, tamper):
    repo = GitRepo(builder.path)
    first = repo.rev_parse("HEAD")
    second = builder.commit({"README": "changed\n"})
    held = take(repo, first, root)
    tamper(held.tree)
    held.release()
    for commit in (first, second):  # the same commit again, and an update to the next
        held = take(repo, commit, root)
        try:
            assert snapshot(held.tree) == expected(repo, commit, tmp_path)
        finally:
            held.release()
        tamper(held.tree)


def _same_size_same_mtime(path: Path, data: bytes) -> None:
    st = path.stat()
    assert len(data) == st.st_size
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_tampering_is_named_in_how_the_export_was_made(builder, root):
    repo = GitRepo(builder.path)
    head = repo.rev_parse("HEAD")
    held = take(repo, head, root)
    (held.tree / "conftest.py").write_text("")
    held.release()
    held = take(repo, head, root)
    assert held.how == "exported afresh (conftest.py is not in the commit)"
    held.release()


def test_concurrent_users_get_different_slots_and_a_full_house_gets_none(builder, root, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "MAX_SLOTS", 2)
    repo = GitRepo(builder.path)
    first = repo.rev_parse("HEAD")
    second = builder.commit({"pkg/mod.py": "X = 3\n"})
    a = take(repo, first, root)
    b = take(repo, second, root)
    try:
        assert a.tree != b.tree
        assert snapshot(a.tree) == expected(repo, first, tmp_path)
        assert snapshot(b.tree) == expected(repo, second, tmp_path)
        assert export.acquire(repo, first, root) is None
    finally:
        a.release()
        b.release()
    c = take(repo, second, root)
    assert c.how == "reused as is" and c.tree == b.tree  # the first free slot holding it
    c.release()


def test_a_slot_held_by_another_process_is_not_used(builder, root):
    repo = GitRepo(builder.path)
    head = repo.rev_parse("HEAD")
    child = _child(
        f"""
        held = export.acquire(GitRepo({str(builder.path)!r}), {head!r}, Path({str(root)!r}))
        print(held.tree, flush=True)
        time.sleep(60)
        """
    )
    try:
        their_tree = Path(child.stdout.readline().strip())
        mine = take(repo, head, root)
        assert mine.tree != their_tree
        mine.release()
    finally:
        _kill(child)


def test_a_run_killed_while_git_updates_the_slot_is_recovered(builder, root, tmp_path, monkeypatch):
    """Killed mid-update (inside ``read-tree -u``, by a smudge filter that blocks): the next user starts over."""
    monkeypatch.setattr(export, "MAX_SLOTS", 2)
    gate = tmp_path / "gate"
    gate.mkdir()
    entered, blocked = gate / "entered", gate / "blocked"
    filter_cmd = f"sh -c 'if test -e {blocked}; then touch {entered}; sleep 60; fi; cat'"
    builder.git("config", "filter.slow.smudge", filter_cmd)
    builder.git("config", "filter.slow.clean", "cat")
    repo = GitRepo(builder.path)
    first = builder.commit({".gitattributes": "*.slow filter=slow\n"})
    second = builder.commit({f"f{i}.slow": f"{i}\n" for i in range(5)} | {"pkg/mod.py": "X = 5\n"})
    take(repo, first, root).release()

    blocked.touch()
    child = _child(
        f"""
        export.acquire(GitRepo({str(builder.path)!r}), {second!r}, Path({str(root)!r}))
        print("finished", flush=True)
        """
    )
    other = None
    try:
        deadline = time.monotonic() + 30
        while not entered.exists():
            assert time.monotonic() < deadline, "the update never reached the filter"
            time.sleep(0.05)
        blocked.unlink()  # only this one git waits in the filter
        # Only our process dies; git, still running, keeps the slot locked (it inherited the lock).
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        other = take(repo, second, root)
        assert other.tree.parent.name == "slot-1"
    finally:
        _kill(child)  # now git too
        blocked.unlink(missing_ok=True)
    try:
        deadline = time.monotonic() + 30
        while (held := export.acquire(repo, second, root)) is None:  # until the killed git is gone
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert held.tree.parent.name == "slot-0"
        assert held.how == "exported afresh (the last update did not finish)"
        assert snapshot(held.tree) == expected(repo, second, tmp_path)
        held.release()
    finally:
        other.release()


def test_exports_of_repositories_that_are_gone_are_pruned_and_busy_ones_kept(tmp_path, root):
    repos = [RepoBuilder(tmp_path / f"r{i}").base({"a": f"{i}\n"}) for i in range(3)]
    held = []
    for b in repos:
        repo = GitRepo(b.path)
        held.append(take(repo, repo.rev_parse("HEAD"), root))
    held[0].release()
    held[2].release()
    for b in repos:
        subprocess.run(["rm", "-rf", str(b.path)], check=True)
    removed = export.prune(root, keep=10)
    assert sorted(p.name for p in removed) == sorted(
        p.name for p in (held[0].tree.parent.parent, held[2].tree.parent.parent)
    )
    assert held[1].tree.is_dir()  # in use: kept
    held[1].release()
    assert [p.name for p in export.prune(root, keep=10)] == [held[1].tree.parent.parent.name]
    assert [p.name for p in root.iterdir()] == []


def test_only_the_most_recently_used_repositories_are_kept(tmp_path, root):
    keys = []
    for i in range(3):
        b = RepoBuilder(tmp_path / f"r{i}").base({"a": f"{i}\n"})
        repo = GitRepo(b.path)
        take(repo, repo.rev_parse("HEAD"), root).release()
        keys.append(export.repo_key(repo))
        os.utime(root / keys[-1] / export.REPO_INFO, (1000 + i, 1000 + i))
    assert [p.name for p in export.prune(root, keep=2)] == [keys[0]]
    assert sorted(p.name for p in root.iterdir()) == sorted(keys[1:])


def _child(body: str) -> subprocess.Popen:
    code = "import time\nfrom pathlib import Path\nfrom mergegate.runtime import export\n"
    code += "from mergegate.vcs.git import GitRepo\n" + textwrap.dedent(body)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)


def _kill(child: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def test_the_forges_bare_repositories_are_exported_too(builder, root, tmp_path):
    from mergegate.forge.local.bare_git import BareGitRepo

    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(builder.path), str(bare)], check=True)
    first = builder.git("rev-parse", "HEAD").strip()
    second = builder.commit({"pkg/mod.py": "X = 7\n", "README": None})
    subprocess.run(["git", "-C", str(bare), "fetch", "-q", str(builder.path), "main:main"], check=True)
    repo = BareGitRepo(bare)
    for commit in (first, second):
        held = take(repo, commit, root)
        assert snapshot(held.tree) == expected(repo, commit, tmp_path)
        held.release()
    assert held.how == f"updated from {first[:12]} by the diff"
    assert not (bare / "index").exists()  # the repository's own index is never written
