"""Run untrusted commands (a change's tests, an agent's shell) under bubblewrap.

The sandbox is built as a *whitelist*: system directories and the Python
installations it needs are mounted read-only, the work tree is the only writable
place (in ``workspace-write`` mode), ``/tmp`` is private, and nothing else exists:
no home directories, no ``/var``, no data directories of the gate, no ``.git`` of
the repository under review. A plain ``--ro-bind / /`` is not enough, because when
mergegate runs as root the sandbox's user maps back to real root for file
permissions, and root-only files (``/etc/shadow``, keys) would be readable. For the
same reason every entry under ``/etc`` that other users could not read is masked
(computed on each run, so a newly installed service's secrets are covered too), on
top of a fixed list of known secret locations. The sandbox's own root is remounted
read-only, so nothing can be written except the work tree, explicit writable mounts
and the private ``/tmp``.

Paths can be *remapped*: the work tree and extra mounts may appear inside at fixed
places (e.g. ``/workspace``). Tools whose artefacts record absolute paths (a venv, an
editable install) then produce results that are valid on the next run, whatever
temporary directory the host used. ``NoSandbox`` cannot remap, which callers check
through ``remaps_paths``.

The environment is scrubbed to an explicit allowlist; the network is unshared unless
the spec allows it (setup steps only); every namespace bubblewrap can unshare is
unshared, and ``--die-with-parent`` plus the PID namespace take the whole process tree
down when the time limit kills bubblewrap.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Protocol

from mergegate.runtime.overlay import MOUNT_FAILED, MOUNT_FAILED_STATUS, Overlay, OverlayUnavailable, wrap
from mergegate.runtime.process import ProcessResult, run_process


class SandboxMode(StrEnum):
    READ_ONLY = "read-only"
    WORKSPACE_WRITE = "workspace-write"
    DANGER_FULL_ACCESS = "danger-full-access"


class SandboxUnavailable(RuntimeError):
    """The configured sandbox cannot run here; the message says what to install."""


#: Environment variables passed into the sandbox when the caller does not override them.
BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
}

#: System locations mounted read-only (those that exist on this machine).
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")

#: Files and directories under /etc that hold secrets: hidden even though /etc is mounted.
#: (Anything under /etc that other users cannot read is hidden as well, see ``etc_masks``.)
MASKED_ETC = (
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssh",
    "/etc/ssl/private",
    "/etc/security/opasswd",
    "/etc/machine-id",
    "/etc/postgresql",
    "/etc/mysql",
    "/etc/redis",
    "/etc/rabbitmq",
)

_NOT_FOR_OTHERS = stat.S_IROTH


@dataclass(frozen=True)
class Mount:
    """A host path made visible inside the sandbox, at ``target`` (default: the same path)."""

    source: Path
    target: Path | None = None
    writable: bool = False

    @property
    def dest(self) -> Path:
        return self.target or self.source


@dataclass(frozen=True)
class SandboxSpec:
    """What one sandboxed command may see and do."""

    workdir: Path
    mode: SandboxMode = SandboxMode.WORKSPACE_WRITE
    network: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    #: Extra paths mounted read-only at the same place (e.g. a test environment).
    read_only: tuple[Path, ...] = ()
    #: Extra paths mounted writable (e.g. a dependency cache during setup).
    writable: tuple[Path, ...] = ()
    #: Paths inside the work tree that stay read-only even in workspace-write mode.
    #: (The work tree's own ``.git``, if any, is always protected.)
    protected: tuple[Path, ...] = ()
    #: Where the work tree appears inside the sandbox (default: at its host path).
    workdir_at: Path | None = None
    #: Extra mounts, possibly at other places than on the host (see ``Mount``).
    mounts: tuple[Mount, ...] = ()
    #: The work tree is ``overlay.lower`` seen through a throw-away writable layer;
    #: ``workdir`` is then the (empty) host directory the overlay is mounted on.
    overlay: Overlay | None = None

    @property
    def remapped(self) -> bool:
        moved = self.workdir_at is not None and self.workdir_at != self.workdir
        return moved or any(m.dest != m.source for m in self.mounts)


class Sandbox(Protocol):
    name: str
    #: Whether ``SandboxSpec.workdir_at`` and ``Mount.target`` are honoured.
    remaps_paths: bool

    async def run(self, argv: Sequence[str], spec: SandboxSpec, timeout: float | None) -> ProcessResult: ...

    def overlay_problem(self) -> str | None:
        """Why ``SandboxSpec.overlay`` cannot be honoured here, or ``None`` when it can."""
        ...


def python_prefixes() -> tuple[Path, ...]:
    """The installations the running interpreter needs (venv and the base install)."""
    seen: list[Path] = []
    for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
        path = Path(p).resolve()
        if path not in seen and not any(str(path).startswith(str(s) + os.sep) for s in seen):
            seen.append(path)
    # A venv's python is a symlink into the base install; resolve it so it is mounted.
    exe = Path(sys.executable).resolve().parent.parent
    if all(exe != s and not str(exe).startswith(str(s) + os.sep) for s in seen):
        seen.append(exe)
    return tuple(seen)


def scrubbed_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = dict(BASE_ENV)
    env.update(extra)
    return env


def _within(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def etc_masks(root: str = "/etc") -> tuple[list[str], list[str]]:
    """Directories and files under ``root`` to hide: ``(dirs, files)``.

    Everything other users could not read (the sandbox user is root for permission
    checks, so it would otherwise read them), plus ``MASKED_ETC``. Symlinks are left
    alone: they resolve inside the sandbox, where their targets are masked or absent.
    """
    dirs: list[str] = []
    files: list[str] = []
    for path in MASKED_ETC:
        if not path.startswith(root.rstrip("/") + "/") or _within(path, dirs):
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            dirs.append(path)
        elif os.path.lexists(path) and not os.path.islink(path):
            files.append(path)
    for top, subdirs, names in os.walk(root, onerror=lambda _exc: None):
        keep = []
        for name in subdirs:
            path = os.path.join(top, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode) or _within(path, dirs):
                continue
            if not (st.st_mode & _NOT_FOR_OTHERS and st.st_mode & stat.S_IXOTH):
                dirs.append(path)
            else:
                keep.append(name)
        subdirs[:] = keep
        for name in names:
            path = os.path.join(top, name)
            if path in files:
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and not st.st_mode & _NOT_FOR_OTHERS:
                files.append(path)
    files = [f for f in files if not _within(f, dirs)]
    return dirs, files


@cache
def _probe(bwrap: str) -> str | None:
    """Why bubblewrap cannot create a sandbox here, or ``None`` when it can."""
    try:
        proc = subprocess.run(
            [bwrap, "--unshare-all", "--unshare-user", "--ro-bind", "/", "/", "--", "true"],
            capture_output=True,
            timeout=30,
            env={},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if proc.returncode != 0:
        return proc.stderr.decode("utf-8", "replace").strip() or f"exit {proc.returncode}"
    return None


class BubblewrapSandbox:
    name = "bubblewrap"
    remaps_paths = True

    def __init__(self, bwrap: str | None = None, *, probe: bool = True):
        found = bwrap or shutil.which("bwrap")
        if not found:
            raise SandboxUnavailable(
                "bubblewrap (bwrap) is not installed, so untrusted code cannot be sandboxed. "
                "Install it (Debian/Ubuntu: apt-get install bubblewrap), or opt out explicitly "
                "with `sandbox: none` in the base branch's .mergegate.yml."
            )
        if probe and (problem := _probe(found)):
            raise SandboxUnavailable(
                f"bubblewrap ({found}) is installed but cannot create a sandbox here: {problem}. "
                "It needs user namespaces (e.g. sysctl kernel.unprivileged_userns_clone=1 and "
                "user.max_user_namespaces > 0; in a container, a seccomp/AppArmor profile that "
                "allows them), or opt out explicitly with `sandbox: none` in the base branch's "
                ".mergegate.yml."
            )
        self.bwrap = found

    def argv(self, command: Sequence[str], spec: SandboxSpec) -> list[str]:
        workdir = spec.workdir.resolve()
        inside = spec.workdir_at or workdir
        args = [
            self.bwrap,
            "--unshare-all",
            "--unshare-user",
            "--uid",
            "65534",
            "--gid",
            "65534",
            "--cap-drop",
            "ALL",
            "--die-with-parent",
            "--new-session",
            "--clearenv",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--tmpfs",
            "/tmp",
        ]
        if spec.network:
            args.append("--share-net")
        for path in SYSTEM_PATHS:
            if os.path.lexists(path):
                # Symlinked dirs (/bin -> usr/bin on merged-/usr systems) stay symlinks.
                if os.path.islink(path):
                    args += ["--symlink", os.readlink(path), path]
                else:
                    args += ["--ro-bind", path, path]
        dirs, files = etc_masks()
        for path in dirs:
            args += ["--tmpfs", path]
        for path in files:
            args += ["--ro-bind", "/dev/null", path]
        for path in (*python_prefixes(), *spec.read_only):
            args += ["--ro-bind", str(path), str(path)]
        if spec.mode is SandboxMode.READ_ONLY:
            args += ["--ro-bind", str(workdir), str(inside)]
        else:
            args += ["--bind", str(workdir), str(inside)]
        for path in spec.writable:
            args += ["--bind", str(path), str(path)]
        for mount in spec.mounts:
            args += ["--bind" if mount.writable else "--ro-bind", str(mount.source), str(mount.dest)]
        if spec.mode is not SandboxMode.DANGER_FULL_ACCESS:
            # Over an overlay the host's mount point is empty: protect from the lower tree.
            tree = spec.overlay.lower if spec.overlay else workdir
            for path in self._protected(spec, workdir, tree):
                args += ["--ro-bind", str(tree / path), str(inside / path)]
        # The root itself is a tmpfs holding the mount points: make it read-only too.
        args += ["--remount-ro", "/"]
        for key, value in scrubbed_env(spec.env).items():
            args += ["--setenv", key, value]
        args += ["--chdir", str(inside), "--", *command]
        return wrap(args, spec.overlay, workdir) if spec.overlay else args

    @staticmethod
    def _protected(spec: SandboxSpec, workdir: Path, tree: Path) -> Iterator[Path]:
        """The protected paths that exist in ``tree``, relative to the work tree."""
        for path in (*spec.protected, workdir / ".git"):
            path = path if path.is_absolute() else workdir / path
            # Resolve the parent only: a protected symlink must not redirect the mount.
            path = path.parent.resolve() / path.name
            if not path.is_relative_to(workdir):
                continue
            rel = path.relative_to(workdir)
            real = tree / rel
            if os.path.lexists(real) and not real.is_symlink() and real.parent.resolve().is_relative_to(tree):
                yield rel

    def overlay_problem(self) -> str | None:
        return _probe_overlay(self.bwrap)

    async def run(self, argv: Sequence[str], spec: SandboxSpec, timeout: float | None) -> ProcessResult:
        result = await run_process(self.argv(argv, spec), timeout=timeout, env={})
        if spec.overlay and result.returncode == MOUNT_FAILED_STATUS and MOUNT_FAILED in result.stderr:
            # Fail closed: never report this as the tests' own failure (or success).
            raise SandboxUnavailable(f"{MOUNT_FAILED}: {result.stderr.strip()[-500:]}")
        return result


class NoSandbox:
    """Explicit opt-out (``sandbox: none``): still a scrubbed environment, but no isolation."""

    name = "none"
    remaps_paths = False

    async def run(self, argv: Sequence[str], spec: SandboxSpec, timeout: float | None) -> ProcessResult:
        if spec.remapped or spec.overlay:
            raise ValueError("sandbox: none cannot remap paths or mount overlays; check the sandbox first")
        return await run_process(argv, cwd=spec.workdir, env=scrubbed_env(spec.env), timeout=timeout)

    def overlay_problem(self) -> str | None:
        return "sandbox: none cannot mount an overlay"


@cache
def _probe_overlay(bwrap: str) -> str | None:
    """Mount an overlay on a scratch tree and delete through it: does the lower tree survive?"""
    sandbox = BubblewrapSandbox(bwrap, probe=False)
    with tempfile.TemporaryDirectory(prefix="mergegate-overlay-probe-") as tmp:
        root = Path(tmp)
        lower, view = root / "lower", root / "view"
        (lower / "d").mkdir(parents=True)
        (lower / "d" / "f").write_text("lower")
        view.mkdir()
        try:
            overlay = Overlay.create(lower, root / "scratch")
            argv = sandbox.argv(
                ["/bin/sh", "-c", 'rm -r d && echo upper > d && test "$(cat d)" = upper'],
                SandboxSpec(workdir=view, workdir_at=Path("/workspace"), overlay=overlay),
            )
            proc = subprocess.run(argv, capture_output=True, timeout=30, env={})
        except (OSError, OverlayUnavailable, subprocess.TimeoutExpired) as exc:
            return str(exc)
        intact = (lower / "d" / "f").is_file() and (lower / "d" / "f").read_text() == "lower"
        overlay.discard()
        if proc.returncode != 0 or not intact:
            err = proc.stderr.decode("utf-8", "replace").strip()[-300:]
            return f"an overlay could not be mounted and written through ({err or f'exit {proc.returncode}'})"
    return None


def make_sandbox(kind: str) -> Sandbox:
    if kind == "none":
        return NoSandbox()
    if kind == "bubblewrap":
        return BubblewrapSandbox()
    raise SandboxUnavailable(f"unknown sandbox kind {kind!r} (expected bubblewrap or none)")
