"""The tests' work tree: a persistent export under a throw-away overlay, attacked for real.

Hostile commands run in real bubblewrap with the real overlay and try to change the
persistent export that the next check will reuse; the export must come out exactly as
git has the commit, and the next check must verify it unchanged ("reused as is").
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

from mergegate.runtime import export
from mergegate.runtime.sandbox import BubblewrapSandbox, NoSandbox, SandboxMode, SandboxSpec, SandboxUnavailable
from mergegate.runtime.worktree import _Handoff, head_work_tree
from mergegate.vcs.git import GitRepo
from tests.conftest import REQUIRE_SERVICES, require_tool
from tests.gitrepo import RepoBuilder
from tests.runtime.test_export import expected, snapshot

WORKSPACE = Path("/workspace")

HOSTILE = r"""
import os, shutil, stat
from pathlib import Path

done = []
def attempt(name, action):
    try:
        action()
        done.append(name)
    except OSError as exc:
        done.append(f"{name}: {exc.strerror}")

attempt("modify", lambda: Path("pkg/mod.py").write_text("X = 'poisoned'\n"))
attempt("append", lambda: open("README", "a").write("poisoned\n"))
attempt("delete", lambda: os.unlink("pkg/other.py"))
attempt("rmtree", lambda: shutil.rmtree("data"))
attempt("plant", lambda: Path("conftest.py").write_text("raise SystemExit('planted')\n"))
attempt("plant-deep", lambda: Path("pkg/sitecustomize.py").write_text("planted = True\n"))
attempt("chmod", lambda: os.chmod("scripts/run.sh", 0o777))
attempt("symlink-swap", lambda: (os.unlink("pkg/__init__.py"), os.symlink("/etc/hostname", "pkg/__init__.py")))
attempt("hardlink", lambda: os.link("README", "README.hard"))
# rename(2) of a directory of the export is EXDEV in an overlay; mv and shutil.move copy.
attempt("move-dir", lambda: shutil.move("pkg", "pkg2"))
attempt("rename-file", lambda: os.rename("pkg2/mod.py", "pkg2/mod2.py") or os.rename("pkg2/mod2.py", "pkg2/mod.py"))
attempt("mkdir", lambda: os.mkdir("build"))
attempt("chmod-dir", lambda: os.chmod("scripts", 0o000))
print("\n".join(done))
"""


@pytest.fixture
def builder(tmp_path, monkeypatch) -> RepoBuilder:
    require_tool("bwrap")
    monkeypatch.setenv("MERGEGATE_EXPORTS_DIR", str(tmp_path / "exports"))
    b = RepoBuilder(tmp_path / "r").base(
        {
            "README": "hello\n",
            "pkg/__init__.py": "",
            "pkg/mod.py": "X = 1\n",
            "pkg/other.py": "Y = 2\n",
            "data/a.txt": "a\n",
            "data/sub/b.txt": "b\n",
            "scripts/run.sh": "#!/bin/sh\n",
        }
    )
    return b


def bwrap() -> BubblewrapSandbox:
    sandbox = BubblewrapSandbox()
    if problem := sandbox.overlay_problem():
        if REQUIRE_SERVICES:
            pytest.fail(f"the overlay is required in CI: {problem}")
        pytest.skip(f"no overlay here: {problem}")
    return sandbox


async def run_in(sandbox, work, code: str, mode=SandboxMode.WORKSPACE_WRITE):
    spec = SandboxSpec(workdir=work.root, workdir_at=WORKSPACE, mode=mode, overlay=work.overlay)
    return await sandbox.run([sys.executable, "-c", textwrap.dedent(code)], spec, 60)


def test_hostile_writes_land_in_the_overlay_and_never_in_the_export(builder, tmp_path):
    repo = GitRepo(builder.path)
    head = repo.rev_parse("HEAD")
    sandbox = bwrap()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    pristine = expected(repo, head, tmp_path)

    async def scenario():
        async with head_work_tree(repo, head, sandbox, scratch) as work:
            assert work.overlay is not None and "persistent export" in work.note
            attack = await run_in(sandbox, work, HOSTILE)
            assert attack.returncode == 0, attack.stderr
            # Every attack succeeded (inside the overlay): the tests' tree is really writable.
            assert ":" not in attack.stdout, attack.stdout
            # A later command of the same check sees the writes (a re-run, the coverage step)...
            seen = await run_in(
                sandbox,
                work,
                "import os; print(open('pkg2/mod.py').read().strip(), os.path.exists('pkg/other.py'))",
                mode=SandboxMode.READ_ONLY,
            )
            assert seen.stdout.split() == ["X", "=", "'poisoned'", "False"], seen.stderr
            # ... read-only there.
            denied = await run_in(sandbox, work, "open('README', 'a')", mode=SandboxMode.READ_ONLY)
            assert denied.returncode != 0 and "Read-only file system" in denied.stderr
            # The export itself, meanwhile, is untouched.
            assert snapshot(work.pristine) == pristine
        return work

    work = asyncio.run(scenario())
    assert not work.overlay.upper.exists()  # the writes are gone with the check
    assert snapshot(work.pristine) == pristine
    held = export.acquire(repo, head)
    assert held is not None and held.how == "reused as is"  # verified unchanged, not re-exported
    held.release()


def test_two_checks_at_once_get_their_own_export_and_overlay(builder, tmp_path):
    repo = GitRepo(builder.path)
    first = repo.rev_parse("HEAD")
    second = builder.commit({"pkg/mod.py": "X = 2\n"})
    sandbox = bwrap()

    async def one(commit: str, name: str):
        scratch = tmp_path / name
        scratch.mkdir()
        async with head_work_tree(repo, commit, sandbox, scratch) as work:
            # Both runs overlap: each writes its marker, waits, then reads the tree.
            code = f"""
                import time; from pathlib import Path
                Path('marker').write_text({name!r}); time.sleep(1)
                print(Path('pkg/mod.py').read_text().strip(), sorted(p.name for p in Path('.').glob('marker*')))
            """
            result = await run_in(sandbox, work, code)
            return work, result.stdout.strip()

    async def both():
        return await asyncio.gather(one(first, "a"), one(second, "b"))

    (work_a, out_a), (work_b, out_b) = asyncio.run(both())
    assert out_a == "X = 1 ['marker']" and out_b == "X = 2 ['marker']"
    assert work_a.pristine != work_b.pristine
    for work, commit in ((work_a, first), (work_b, second)):
        assert snapshot(work.pristine) == expected(repo, commit, tmp_path)


def test_without_an_overlay_the_tests_get_a_fresh_export(builder, tmp_path):
    repo = GitRepo(builder.path)
    head = repo.rev_parse("HEAD")
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    async def scenario():
        async with head_work_tree(repo, head, NoSandbox(), scratch) as work:
            assert work.overlay is None and work.root == scratch / "work"
            assert work.note == "work tree: a fresh export of the head tree (sandbox: none cannot mount an overlay)"
            assert snapshot(work.root) == expected(repo, head, tmp_path)

    asyncio.run(scenario())
    assert not (tmp_path / "exports").exists()  # nothing persistent for an unconfined run


def test_a_failed_overlay_mount_is_a_sandbox_error_not_a_test_result(builder, tmp_path):
    repo = GitRepo(builder.path)
    head = repo.rev_parse("HEAD")
    sandbox = bwrap()
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    async def scenario():
        async with head_work_tree(repo, head, sandbox, scratch) as work:
            shutil.rmtree(work.overlay.upper)  # the overlay can no longer be mounted
            with pytest.raises(SandboxUnavailable, match="could not mount the work tree's overlay"):
                await run_in(sandbox, work, "print('ran')")

    asyncio.run(scenario())


def test_a_slot_locked_for_a_check_that_was_cancelled_meanwhile_is_released(builder):
    repo = GitRepo(builder.path)
    head = repo.rev_parse("HEAD")
    late = _Handoff()
    late.abandon()  # cancelled before the thread finished taking the slot
    assert late.run(lambda: export.acquire(repo, head)) is None
    early = _Handoff()
    assert early.run(lambda: export.acquire(repo, head)) is not None
    early.abandon()  # cancelled after
    held = export.acquire(repo, head)
    assert held is not None and held.tree.parent.name == "slot-0"  # both times released, not leaked
    held.release()
