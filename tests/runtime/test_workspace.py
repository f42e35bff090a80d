"""The workspace guard on real files: traversal, absolute paths, symlinks, races, protected paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mergegate.core.policy import DEFAULT_TEST_PATHS
from mergegate.runtime.workspace import (
    PathRefused,
    ProtectedPaths,
    Workspace,
    protected_existing,
    protected_snapshot,
    sweep_new_protected,
)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "work"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("x = 1\n")
    (root / "tests").mkdir()
    (root / "tests" / "test_app.py").write_text("def test(): pass\n")
    (root / ".git" / "hooks").mkdir(parents=True)
    (tmp_path / "outside.txt").write_text("secret\n")
    (tmp_path / "outside").mkdir()
    return Workspace(root)


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("../outside.txt", "'..' leads outside"),
        ("src/../../outside.txt", "'..' leads outside"),
        ("/etc/passwd", "absolute path outside"),
        ("~/.ssh/id_rsa", "home-directory"),
        ("~root/.bashrc", "home-directory"),
        ("", "empty path"),
        ("src/\x00x", "NUL"),
    ],
)
def test_escapes_are_refused(ws: Workspace, path: str, why: str) -> None:
    with pytest.raises(PathRefused, match=why):
        ws.resolve(path)
    with pytest.raises(PathRefused, match=why):
        ws.resolve(path, for_write=True)


def test_inside_paths_resolve(ws: Workspace) -> None:
    assert ws.resolve("src/app.py").rel == "src/app.py"
    assert ws.resolve("./src/../src/app.py").rel == "src/app.py"
    assert ws.resolve(str(ws.root / "src" / "app.py")).rel == "src/app.py"
    assert ws.resolve(".").rel == ""
    assert ws.resolve("src/new.py", for_write=True).rel == "src/new.py"


def test_symlink_escapes_are_refused(ws: Workspace, tmp_path: Path) -> None:
    (ws.root / "leak").symlink_to(tmp_path / "outside.txt")
    (ws.root / "out").symlink_to(tmp_path / "outside")
    (ws.root / "abs").symlink_to("/etc/passwd")
    for path in ("leak", "abs", "out/x"):
        with pytest.raises(PathRefused, match="resolves outside"):
            ws.resolve(path)
    with pytest.raises(PathRefused, match="is a symlink"):
        ws.resolve("leak", for_write=True)
    with pytest.raises(PathRefused, match="directory resolves outside"):
        ws.resolve("out/new.txt", for_write=True)


def test_symlinks_inside_resolve_to_their_target(ws: Workspace) -> None:
    (ws.root / "alias").symlink_to("src")
    (ws.root / "hooks").symlink_to(".git/hooks")
    assert ws.resolve("alias/app.py").rel == "src/app.py"
    # The resolved path is what protected-path checks see.
    assert ws.resolve("hooks/pre-commit", for_write=True).rel == ".git/hooks/pre-commit"


def test_read_does_not_follow_a_symlink_swapped_in_after_the_check(ws: Workspace, tmp_path: Path) -> None:
    target = ws.resolve("src/app.py")
    os.unlink(ws.root / "src" / "app.py")
    (ws.root / "src" / "app.py").symlink_to(tmp_path / "outside.txt")
    with pytest.raises(PathRefused, match="symlink"):
        ws.read_bytes(target)


def test_write_does_not_follow_a_directory_swapped_for_a_symlink(ws: Workspace, tmp_path: Path) -> None:
    target = ws.resolve("src/new.py", for_write=True)
    os.rename(ws.root / "src", ws.root / "src.old")
    (ws.root / "src").symlink_to(tmp_path / "outside")
    with pytest.raises(PathRefused, match="not a plain directory"):
        ws.write_bytes(target, b"pwned")
    assert not (tmp_path / "outside" / "new.py").exists()


def test_write_replaces_a_hard_link_instead_of_writing_through_it(ws: Workspace, tmp_path: Path) -> None:
    os.link(tmp_path / "outside.txt", ws.root / "linked.txt")
    ws.write_bytes(ws.resolve("linked.txt", for_write=True), b"new")
    assert (tmp_path / "outside.txt").read_text() == "secret\n"
    assert (ws.root / "linked.txt").read_bytes() == b"new"


def test_write_keeps_the_mode_and_creates_parents(ws: Workspace) -> None:
    os.chmod(ws.root / "src" / "app.py", 0o755)
    ws.write_bytes(ws.resolve("src/app.py", for_write=True), b"y = 2\n")
    assert (ws.root / "src" / "app.py").stat().st_mode & 0o777 == 0o755
    ws.write_bytes(ws.resolve("a/b/c.txt", for_write=True), b"deep")
    assert (ws.root / "a" / "b" / "c.txt").read_bytes() == b"deep"
    assert not [p for p in (ws.root / "src").iterdir() if "mergegate-" in p.name]


def test_reading_a_fifo_does_not_block(ws: Workspace) -> None:
    os.mkfifo(ws.root / "pipe")
    with pytest.raises(PathRefused, match="not a regular file"):
        ws.read_bytes(ws.resolve("pipe"))


def test_read_is_bounded(ws: Workspace) -> None:
    (ws.root / "big").write_bytes(b"x" * 1000)
    data, truncated = ws.read_bytes(ws.resolve("big"), limit=100)
    assert len(data) == 100 and truncated


@pytest.mark.parametrize(
    ("rel", "fixer", "pattern"),
    [
        (".git", False, ".git"),
        (".git/hooks/pre-commit", False, "**/.git/**"),
        ("vendor/lib/.git/config", False, "**/.git/**"),
        (".mergegate.yml", False, ".mergegate.yml"),
        ("CODEOWNERS", False, "CODEOWNERS"),
        (".github/CODEOWNERS", False, "CODEOWNERS"),
        ("docs/CODEOWNERS", False, "CODEOWNERS"),
        (".github/workflows/ci.yml", False, ".github/workflows/**"),
        (".gitlab-ci.yml", False, ".gitlab-ci.yml"),
        (".github/actions/setup/action.yml", False, ".github/actions/**"),
        ("tests/test_app.py", True, "tests/**"),
        ("src/pkg/test_util.py", True, "test_*.py"),
        ("src/conftest.py", True, "conftest.py"),
    ],
)
def test_protected_paths(rel: str, fixer: bool, pattern: str) -> None:
    assert ProtectedPaths.for_agent(protect_tests=True, test_paths=DEFAULT_TEST_PATHS).match(rel) == pattern
    plain = ProtectedPaths.for_agent(protect_tests=False, test_paths=DEFAULT_TEST_PATHS).match(rel)
    assert (plain is None) is fixer


def test_ordinary_paths_are_not_protected() -> None:
    protected = ProtectedPaths.for_agent(protect_tests=True, test_paths=DEFAULT_TEST_PATHS)
    for rel in ("src/app.py", ".github/ISSUE_TEMPLATE.md", "docs/index.md", "gitignore", ".gitignore", ""):
        assert protected.match(rel) is None, rel


def test_sweep_removes_new_protected_paths_and_reports_changes(ws: Workspace) -> None:
    protected = ProtectedPaths.for_agent(protect_tests=True, test_paths=DEFAULT_TEST_PATHS)
    assert set(protected_existing(ws, protected)) == {".git", "tests"}
    before = protected_snapshot(ws, protected)
    (ws.root / "src" / "test_sneaky.py").write_text("def test(): pass\n")
    (ws.root / ".gitlab-ci.yml").write_text("evil: true\n")
    (ws.root / ".github" / "workflows").mkdir(parents=True)
    (ws.root / ".github" / "workflows" / "x.yml").write_text("on: push\n")
    (ws.root / "src" / "ok.py").write_text("fine\n")
    os.rename(ws.root / "tests", ws.root / "tests.moved")
    removed, changed = sweep_new_protected(ws, protected, before)
    # (A moved test file is a new file matching test_*.py: removed as well.)
    assert removed == [".github/workflows", ".gitlab-ci.yml", "src/test_sneaky.py", "tests.moved/test_app.py"]
    assert changed == ["tests"]
    assert (ws.root / "src" / "ok.py").exists() and (ws.root / ".github").is_dir()
    assert not (ws.root / ".gitlab-ci.yml").exists()
