"""Persistent exports of a repository's tree, brought from one commit to the next by the diff.

The tests need the whole head tree on disk. Exporting it afresh costs one file write
per file of the repository, and deleting it afterwards as much again: seconds for a
repository of thousands of files, whatever the change. Instead each repository keeps a
few exports ("slots") in the cache directory, each with a git index of its own, and a
slot is brought from the commit it holds to the next with ``git read-tree -m -u OLD
NEW``, which rewrites only the paths that differ: the cost follows the diff between
consecutive checks.

A slot is used only once it is verified to hold exactly the commit's tree: the index
is refreshed from the files (``update-index --really-refresh``), no file differs from
the commit (``diff-index``: content, mode, symlinks, missing files) and nothing else is
there (``ls-files --others --directory``, ignored files and empty directories
included). That costs one ``lstat`` per file and one ``readdir`` per directory, tens of
milliseconds for thousands of files. Anything unexpected (a failed update, a slot left
half-updated by a killed check, a file changed by hand) makes the slot start over with
a clean export, and a clean export that does not verify is an error: tests never run
on a tree that is not the commit's.

Slots are locked (``flock``) for as long as a check uses them, so concurrent checks
never share one; the lock dies with its process. The state file naming the commit a
slot holds is removed before the slot is touched and written back only after it
verified, so a check killed mid-update leaves a slot that the next user starts over.
The tree is mounted read-only in the sandbox, under a throw-away overlay
(``mergegate.runtime.overlay``): no change can plant anything in it for the next check.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from mergegate.runtime.testenv import cache_dir, cache_limit
from mergegate.vcs.git import GitError, GitRepo

#: Concurrent checks of one repository that get a persistent export; more use a fresh one.
MAX_SLOTS = 8
#: Repositories whose exports are kept (``$MERGEGATE_CACHE_MAX_EXPORTS``), least recently used out.
DEFAULT_MAX_REPOS = 20

STATE = "state.json"
REPO_INFO = "repo.json"


class ExportError(RuntimeError):
    """A clean export could not be made or did not verify; the message says why."""


@dataclass
class Export:
    """A locked slot holding exactly ``commit``'s tree at ``tree``, until ``release``."""

    tree: Path
    commit: str
    #: How the slot got there, for the report.
    how: str
    _fd: int | None = field(default=None, repr=False)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the flock
            self._fd = None


def exports_root() -> Path:
    """``$MERGEGATE_EXPORTS_DIR``, else ``$XDG_CACHE_HOME/mergegate/exports`` or ``~/.cache/...``.

    A sibling of the test environments' cache (``testenv.cache_root``), not inside it:
    that directory holds venvs only, and is pruned as such.
    """
    return cache_dir("MERGEGATE_EXPORTS_DIR", "exports")


def max_repos() -> int:
    return cache_limit("MERGEGATE_CACHE_MAX_EXPORTS", DEFAULT_MAX_REPOS)


def repo_key(repo: GitRepo) -> str:
    return hashlib.sha256(str(repo.git_dir).encode("utf-8", "surrogateescape")).hexdigest()[:24]


def acquire(repo: GitRepo, commit: str, root: Path | None = None) -> Export | None:
    """Lock a free slot of ``repo`` and bring it to ``commit``; ``None`` when all are busy.

    Raises ``ExportError`` (or ``GitError``) when no verified export could be made.
    """
    repo_dir = (root or exports_root()) / repo_key(repo)
    repo_dir.mkdir(parents=True, exist_ok=True)
    info = repo_dir / REPO_INFO
    if not info.is_file():
        info.write_text(json.dumps({"git_dir": str(repo.git_dir)}))
    os.utime(info)  # last use, for pruning
    slots = [repo_dir / f"slot-{n}" for n in range(MAX_SLOTS)]
    # A free slot that already holds the commit first (no update at all), then in order.
    for slot in sorted(slots, key=lambda s: _read_state(s) != commit):
        slot.mkdir(exist_ok=True)
        fd = _try_lock(slot)
        if fd is None:
            continue
        try:
            how = _bring_to(_Slot(repo, slot, fd), commit)
        except BaseException:
            os.close(fd)
            raise
        return Export(slot / "tree", commit, how, fd)
    return None


def _try_lock(slot: Path) -> int | None:
    fd = os.open(slot / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _read_state(slot: Path) -> str | None:
    try:
        commit = json.loads((slot / STATE).read_text()).get("commit")
    except (OSError, ValueError, AttributeError):
        return None
    return commit if isinstance(commit, str) and commit else None


@dataclass(frozen=True)
class _Slot:
    """One slot directory, locked by ``fd`` (which git inherits: if we are killed while
    git writes, the slot stays locked until git is done too)."""

    repo: GitRepo
    path: Path
    fd: int

    @property
    def tree(self) -> Path:
        return self.path / "tree"

    def git(self, *args: str, check: bool = True) -> bytes:
        index = self.path / "index"
        return self.repo.git_detached(self.tree, index, *args, check=check, pass_fds=(self.fd,)).stdout


def _bring_to(slot: _Slot, commit: str) -> str:
    """Make ``slot`` hold exactly ``commit``'s tree (verified); say how."""
    old = _read_state(slot.path)
    (slot.path / STATE).unlink(missing_ok=True)  # until verified: a crash from here on means "start over"
    _empty_trash(slot.path)
    if old is None:
        why = "first use" if not slot.tree.exists() else "the last update did not finish"
    elif not (slot.tree.is_dir() and (slot.path / "index").is_file()):
        why = "the slot was incomplete"
    else:
        try:
            if old != commit:
                slot.git("read-tree", "-m", "-u", old, commit)
            problem = _verify(slot, commit)
        except GitError as exc:
            problem = str(exc)
        if problem is None:
            _write_state(slot.path, commit)
            return "reused as is" if old == commit else f"updated from {old[:12]} by the diff"
        why = problem
    _reset(slot, commit)
    if problem := _verify(slot, commit):
        raise ExportError(f"a fresh export of {commit[:12]} does not match the commit: {problem}")
    _write_state(slot.path, commit)
    return f"exported afresh ({why})"


def _verify(slot: _Slot, commit: str) -> str | None:
    """``None`` when the slot's tree holds exactly ``commit``'s files and nothing else; else what differs."""
    # Re-stat every file (assume-unchanged bits ignored); content is compared where stat changed.
    slot.git("update-index", "-q", "--really-refresh", check=False)
    if differs := slot.git("diff-index", "--name-only", "-z", commit, "--"):
        return f"{_first(differs)} differs from the commit"
    if extra := slot.git("ls-files", "-z", "--others", "--directory"):
        return f"{_first(extra)} is not in the commit"
    return None


def _first(listing: bytes) -> str:
    return listing.split(b"\0")[0].decode("utf-8", "replace")


def _write_state(slot: Path, commit: str) -> None:
    tmp = slot / f".{STATE}.{uuid.uuid4().hex[:8]}"
    tmp.write_text(json.dumps({"commit": commit, "verified": time.time()}))
    os.replace(tmp, slot / STATE)


def _reset(slot: _Slot, commit: str) -> None:
    """A clean export: whatever was there is moved aside and deleted, then a full checkout."""
    for name in ("tree", "index", "index.lock"):
        if os.path.lexists(slot.path / name):
            os.rename(slot.path / name, slot.path / f".trash-{uuid.uuid4().hex[:8]}-{name}")
    _empty_trash(slot.path)
    slot.tree.mkdir()
    slot.git("read-tree", "--reset", "-u", commit)


def _empty_trash(directory: Path) -> None:
    for entry in directory.iterdir():
        if entry.name.startswith(".trash-"):
            _delete(entry)


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def prune(root: Path | None = None, keep: int | None = None) -> list[Path]:
    """Drop the exports of repositories that no longer exist, and all but the ``keep`` most recently used.

    A repository whose slots are in use is skipped. Returns what was removed.
    """
    root = root or exports_root()
    keep = keep or max_repos()
    try:
        entries = [e for e in root.iterdir() if e.is_dir() and not e.is_symlink()]
    except OSError:
        return []
    live: list[tuple[float, Path]] = []
    gone: list[tuple[float, Path]] = []
    for entry in entries:
        try:
            git_dir = json.loads((entry / REPO_INFO).read_text())["git_dir"]
            used = (entry / REPO_INFO).stat().st_mtime
        except (OSError, ValueError, KeyError, TypeError):
            if entry.name.startswith(".trash-"):
                gone.append((0.0, entry))
            continue  # being created, or not ours
        (live if os.path.isdir(git_dir) else gone).append((used, entry))
    removed = []
    for used, entry in gone + sorted(live, reverse=True)[keep:]:
        locks = [] if entry.name.startswith(".trash-") else _lock_all(entry)
        if locks is None:
            continue  # in use
        try:
            # A check touches repo.json before it locks a slot: if one just did, keep it.
            if locks and _last_use(entry) != used:
                continue
            trash = root / f".trash-{uuid.uuid4().hex[:8]}"
            os.rename(entry, trash)  # still locked: nobody is using it while it moves
        except OSError:
            continue
        finally:
            for fd in locks:
                os.close(fd)
        shutil.rmtree(trash, ignore_errors=True)
        removed.append(entry)
    return removed


def _last_use(repo_dir: Path) -> float | None:
    try:
        return (repo_dir / REPO_INFO).stat().st_mtime
    except OSError:
        return None


def _lock_all(repo_dir: Path) -> list[int] | None:
    """Every slot of ``repo_dir`` locked, or ``None`` (nothing held) when one is in use."""
    fds: list[int] = []
    for slot in repo_dir.glob("slot-*"):
        fd = _try_lock(slot)
        if fd is None:
            for held in fds:
                os.close(held)
            return None
        fds.append(fd)
    return fds
