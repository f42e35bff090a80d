"""The head tree a change's tests run in, at a cost that follows the diff.

The tests need the whole head tree and may write into it. The usual way (export the
tree, run, delete) costs one file operation per file of the repository, twice. Here:

* the tree comes from a persistent export of the repository, updated by the diff
  since the commit it last held (``mergegate.runtime.export``), locked for this check;
* the tests see it through a throw-away overlay (``mergegate.runtime.overlay``): the
  export stays read-only, their writes go to a directory in the check's scratch space.

Where the sandbox cannot mount an overlay (``sandbox: none``, a kernel without
unprivileged overlayfs), or every persistent export of the repository is busy, or one
cannot be verified, the head tree is exported afresh into the scratch space instead,
exactly as before: correct, but its cost grows with the repository. The note says
which happened.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from mergegate.runtime import export
from mergegate.runtime.overlay import Overlay, OverlayUnavailable
from mergegate.runtime.sandbox import Sandbox
from mergegate.vcs.git import GitError, GitRepo


@dataclass(frozen=True)
class WorkTree:
    #: The work tree the sandbox is given (an overlay's mount point, or a fresh export).
    root: Path
    #: The head tree as exported, for the host to look files up in (never written to).
    pristine: Path
    overlay: Overlay | None
    #: How the tree was made, for the report.
    note: str


@asynccontextmanager
async def head_work_tree(repo: GitRepo, commit: str, sandbox: Sandbox, scratch: Path) -> AsyncIterator[WorkTree]:
    """A writable view of ``commit``'s tree for the duration of the ``async with``."""
    held, problem = await _export(repo, commit, sandbox)
    if held is not None:
        try:
            overlay = Overlay.create(held.tree, scratch)
        except (OverlayUnavailable, OSError) as exc:
            held.release()
            held, problem = None, str(exc)
    if held is None:
        fresh = scratch / "work"
        await asyncio.to_thread(repo.export_tree, commit, fresh)
        yield WorkTree(fresh, fresh, None, f"work tree: a fresh export of the head tree ({problem})")
        return
    mount_point = scratch / "work"
    mount_point.mkdir()
    note = f"work tree: the persistent export, {held.how}, under a throw-away overlay"
    try:
        yield WorkTree(mount_point, held.tree, overlay, note)
    finally:
        held.release()
        await asyncio.to_thread(_tidy, overlay)


async def _export(repo: GitRepo, commit: str, sandbox: Sandbox) -> tuple[export.Export | None, str | None]:
    """A locked persistent export at ``commit`` if the sandbox can overlay it, else why not."""
    problem = await asyncio.to_thread(sandbox.overlay_problem)  # probed once per process: a sandbox run
    if problem is not None:
        return None, problem
    handoff = _Handoff()
    try:
        held = await asyncio.to_thread(handoff.run, lambda: export.acquire(repo, commit))
    except (export.ExportError, GitError, OSError) as exc:
        return None, f"the persistent export failed: {exc}"
    except asyncio.CancelledError:
        handoff.abandon()  # the thread still runs: whatever it locks is released, not leaked
        raise
    if held is None:
        return None, f"all {export.MAX_SLOTS} persistent exports of this repository are in use"
    return held, None


class _Handoff:
    """Hands a lock taken in a worker thread to the coroutine, or releases it if that gave up."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._abandoned = False
        self._held: export.Export | None = None

    def run(self, acquire: Callable[[], export.Export | None]) -> export.Export | None:
        held = acquire()
        with self._mutex:
            if self._abandoned and held is not None:
                held.release()
                return None
            self._held = held
        return held

    def abandon(self) -> None:
        with self._mutex:
            self._abandoned = True
            if self._held is not None:
                self._held.release()


def _tidy(overlay: Overlay) -> None:
    overlay.discard()
    export.prune()
