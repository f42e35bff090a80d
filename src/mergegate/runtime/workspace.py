"""The workspace guard: every path a tool touches resolves inside the work tree.

Resolution (``Workspace.resolve``) is done twice over, because either alone is not
enough:

1. *Before* a call, the path is resolved lexically and then with ``realpath``: ``..``
   that leaves the tree, absolute paths elsewhere, ``~`` and symlinks whose target lies
   outside (including symlinks the agent planted earlier through an allowed command)
   are refused, and the *resolved* path is what allow/deny rules and protected paths are
   matched against.
2. *While* doing I/O, files are opened by walking from the workspace root one component
   at a time with ``O_NOFOLLOW`` (``openat``-style, via ``dir_fd``). A symlink swapped
   in after the check cannot redirect the open; writes go to a fresh temporary file in
   the resolved parent and are renamed over the target, so a hard link or symlink at the
   target is replaced, never written through.

Protected paths (``ProtectedPaths``) are read-only for every agent: ``.git`` anywhere,
``.mergegate.yml``, ``CODEOWNERS`` in every location, ``.github/workflows/`` (and the
local actions they run, ``.github/actions/``), ``.gitlab-ci.yml``, whatever the base
policy adds under ``runtime.protected_paths``, and the policy's ``test_paths`` for agents
declared with ``protect_tests: true``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mergegate.core.globs import glob_match

#: Read-only for every agent, whatever its allowlist says.
ALWAYS_PROTECTED = (
    ".git",
    "**/.git/**",
    ".mergegate.yml",
    "CODEOWNERS",
    ".github/workflows",
    ".github/workflows/**",
    # Local actions run inside workflows: CI config as much as the workflows themselves.
    ".github/actions",
    ".github/actions/**",
    ".gitlab-ci.yml",
)

MAX_READ_BYTES = 512 * 1024
MAX_WRITE_BYTES = 4 * 1024 * 1024


class PathRefused(ValueError):
    """A path the agent may not use; ``str()`` says why."""


@dataclass(frozen=True)
class Resolved:
    """A path inside the workspace. ``rel`` is resolved (symlinks followed) and POSIX;
    ``""`` is the workspace root."""

    given: str
    rel: str
    abs: Path

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(p for p in self.rel.split("/") if p)


@dataclass(frozen=True)
class ProtectedPaths:
    patterns: tuple[str, ...]

    @classmethod
    def for_agent(cls, *, protect_tests: bool, test_paths: tuple[str, ...] = (), extra: tuple[str, ...] = ()):
        patterns = (*ALWAYS_PROTECTED, *extra, *(test_paths if protect_tests else ()))
        return cls(tuple(dict.fromkeys(patterns)))

    def match(self, rel: str) -> str | None:
        """The pattern protecting ``rel`` (or one of its ancestors), or ``None``."""
        if not rel:
            return None
        parts = rel.split("/")
        for i in range(len(parts), 0, -1):
            prefix = "/".join(parts[:i])
            for pattern in self.patterns:
                if glob_match(pattern, prefix):
                    return pattern
        return None

    def whole_dirs(self) -> tuple[str, ...]:
        """Directories protected as a whole (``tests/**`` → ``tests``): no new files inside."""
        return tuple(p[:-3] for p in self.patterns if p.endswith("/**") and "*" not in p[:-3] and "?" not in p[:-3])


class Workspace:
    def __init__(self, root: str | Path):
        real = Path(os.path.realpath(root))
        if not real.is_dir():
            raise NotADirectoryError(f"{root}: the workspace must be a directory")
        self.root = real

    # --- resolution -------------------------------------------------------------------

    def resolve(self, path: str, *, for_write: bool = False) -> Resolved:
        """Resolve ``path`` (relative to the root, or absolute inside it) or refuse."""
        if not isinstance(path, str) or not path.strip():
            raise PathRefused("empty path")
        if "\x00" in path:
            raise PathRefused("NUL byte in the path")
        if path.startswith("~"):
            raise PathRefused(f"{path!r}: home-directory paths are outside the workspace")
        root = str(self.root)
        lexical = os.path.normpath(path if os.path.isabs(path) else os.path.join(root, path))
        if not _inside(lexical, root):
            why = "an absolute path outside" if os.path.isabs(path) else "'..' leads outside"
            raise PathRefused(f"{path!r}: {why} the workspace")
        if for_write:
            if lexical == root:
                raise PathRefused(f"{path!r}: cannot write the workspace root")
            parent = os.path.realpath(os.path.dirname(lexical))
            if not _inside(parent, root):
                raise PathRefused(f"{path!r}: its directory resolves outside the workspace (symlink)")
            real = os.path.join(parent, os.path.basename(lexical))
            if os.path.islink(real):
                raise PathRefused(f"{path!r}: is a symlink; writing through symlinks is not allowed")
        else:
            real = os.path.realpath(lexical)
            if not _inside(real, root):
                raise PathRefused(f"{path!r}: resolves outside the workspace (symlink)")
        rel = os.path.relpath(real, root)
        return Resolved(path, "" if rel == "." else rel.replace(os.sep, "/"), Path(real))

    def relative(self, path: str | Path) -> str:
        rel = os.path.relpath(path, self.root)
        return "" if rel == "." else rel.replace(os.sep, "/")

    @staticmethod
    def private_tmp(word: str) -> bool:
        """An absolute path in the sandbox's ``/tmp``: a private, empty tmpfs per command."""
        return word.startswith("/") and (os.path.normpath(word) + "/").startswith("/tmp/")

    def lexically_inside(self, word: str, cwd: Path | None = None) -> bool:
        """Whether a path-like shell word stays inside the workspace (no resolution)."""
        base = str(cwd or self.root)
        target = os.path.normpath(word if os.path.isabs(word) else os.path.join(base, word))
        return _inside(target, str(self.root))

    # --- I/O without following symlinks ----------------------------------------------

    @contextlib.contextmanager
    def _dir_fd(self, parts: tuple[str, ...], *, create: bool = False) -> Iterator[int]:
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in parts:
                if part in ("", ".", ".."):
                    raise PathRefused(f"bad path component {part!r}")
                try:
                    nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(part, 0o755, dir_fd=fd)
                    nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise PathRefused(f"{part!r} is not a plain directory (a symlink appeared?)") from None
                    raise
                os.close(fd)
                fd = nfd
            yield fd
        finally:
            os.close(fd)

    def read_bytes(self, target: Resolved, limit: int = MAX_READ_BYTES) -> tuple[bytes, bool]:
        """``(content, truncated)`` of a regular file, opened without following symlinks."""
        if not target.parts:
            raise IsADirectoryError(target.given)
        with self._dir_fd(target.parts[:-1]) as dfd:
            try:
                fd = os.open(target.parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise PathRefused(f"{target.given!r}: is a symlink") from None
                raise
            try:
                st = os.fstat(fd)
                if stat.S_ISDIR(st.st_mode):
                    raise IsADirectoryError(target.given)
                if not stat.S_ISREG(st.st_mode):
                    raise PathRefused(f"{target.given!r}: not a regular file")
                chunks, size = [], 0
                while size <= limit and (chunk := os.read(fd, min(65536, limit + 1 - size))):
                    chunks.append(chunk)
                    size += len(chunk)
            finally:
                os.close(fd)
        data = b"".join(chunks)
        return data[:limit], len(data) > limit

    def write_bytes(self, target: Resolved, data: bytes) -> None:
        """Replace (or create) a file: temp file in the resolved parent, then rename."""
        if len(data) > MAX_WRITE_BYTES:
            raise PathRefused(f"content larger than {MAX_WRITE_BYTES} bytes")
        if not target.parts:
            raise PathRefused("cannot write the workspace root")
        name = target.parts[-1]
        with self._dir_fd(target.parts[:-1], create=True) as dfd:
            mode = 0o644
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None:
                if stat.S_ISLNK(st.st_mode):
                    raise PathRefused(f"{target.given!r}: is a symlink; writing through symlinks is not allowed")
                if not stat.S_ISREG(st.st_mode):
                    raise PathRefused(f"{target.given!r}: not a regular file")
                mode = stat.S_IMODE(st.st_mode)
            tmp = f".{name[:100]}.mergegate-{secrets.token_hex(6)}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dfd)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dfd)
                raise

    def list_dir(self, target: Resolved) -> list[tuple[str, str]]:
        """``(name, kind)`` entries of a directory, kinds ``dir``/``file``/``symlink``/``other``."""
        with self._dir_fd(target.parts) as dfd:
            out = []
            for entry in os.scandir(dfd):
                if entry.is_symlink():
                    kind = "symlink"
                elif entry.is_dir(follow_symlinks=False):
                    kind = "dir"
                elif entry.is_file(follow_symlinks=False):
                    kind = "file"
                else:
                    kind = "other"
                out.append((entry.name, kind))
        return sorted(out)

    def walk(self, start: Resolved | None = None, *, skip_git: bool = True) -> Iterator[tuple[str, bool]]:
        """``(rel, is_dir)`` for everything under ``start``, never following symlinks.

        ``skip_git`` skips the work tree's own ``.git`` (large, and a read-only mount anyway).
        """
        top = start.abs if start is not None else self.root
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            if skip_git and dirpath == str(self.root):
                dirnames[:] = [d for d in dirnames if d != ".git"]
            dirnames.sort()
            for d in dirnames:
                yield self.relative(os.path.join(dirpath, d)), True
            for f in sorted(filenames):
                yield self.relative(os.path.join(dirpath, f)), False


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


# --- protected paths around a shell command -------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """Existing protected paths before a shell command, with enough to notice a change."""

    entries: dict[str, tuple[int, int, int, int]]


def protected_snapshot(ws: Workspace, protected: ProtectedPaths) -> Snapshot:
    entries = {}
    for rel in protected_existing(ws, protected):
        try:
            st = os.lstat(ws.root / rel)
        except OSError:
            continue
        entries[rel] = (st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns)
    return Snapshot(entries)


def protected_existing(ws: Workspace, protected: ProtectedPaths) -> list[str]:
    """Top-most existing protected paths (a protected directory stands for its content)."""
    found: list[str] = []
    for rel in (".git", *protected.whole_dirs()):
        if os.path.lexists(ws.root / rel):
            found.append(rel)
    for rel, _is_dir in ws.walk():
        if any(rel == f or rel.startswith(f + "/") for f in found):
            continue
        if protected.match(rel):
            found.append(rel)
    return found


def sweep_new_protected(ws: Workspace, protected: ProtectedPaths, before: Snapshot) -> tuple[list[str], list[str]]:
    """After a shell command: remove protected paths it created; list ones it changed.

    Returns ``(removed, changed)``. Existing protected paths are read-only mounts in the
    sandbox, so ``changed`` should always be empty; new ones (a ``test_*.py`` file the
    name patterns protect, a ``.gitlab-ci.yml`` that did not exist) cannot be mounted in
    advance and are removed here.
    """
    now = protected_snapshot(ws, protected)
    removed, changed = [], []
    for rel in sorted(set(now.entries) - set(before.entries)):
        if any(rel.startswith(r + "/") for r in removed):
            continue
        _remove(ws.root / rel)
        removed.append(rel)
    for rel, sig in before.entries.items():
        current = now.entries.get(rel)
        if current is None or current[:2] != sig[:2] or (not stat.S_ISDIR(sig[0]) and current != sig):
            changed.append(rel)
    return removed, changed


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    for dirpath, dirnames, filenames in os.walk(path, topdown=False, followlinks=False):
        for name in filenames:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(dirpath, name))
        for name in dirnames:
            full = os.path.join(dirpath, name)
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                if os.path.islink(full):
                    os.unlink(full)
                else:
                    os.rmdir(full)
    with contextlib.suppress(FileNotFoundError):
        path.rmdir()
