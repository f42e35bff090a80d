"""Run untrusted commands (a change's tests, an agent's shell) under bubblewrap.

The sandbox is built as a *whitelist*: system directories and the Python
installations it needs are mounted read-only, the work tree is the only writable
place (in ``workspace-write`` mode), ``/tmp`` is private, and nothing else exists:
no home directories, no ``/var``, no data directories of the gate, no ``.git`` of
the repository under review. A plain ``--ro-bind / /`` is not enough, because when
mergegate runs as root the sandbox's user maps back to real root for file
permissions, and root-only files (``/etc/shadow``, keys) would be readable. Known
secret files under ``/etc`` are masked for the same reason.

The environment is scrubbed to an explicit allowlist; the network is unshared unless
the spec allows it (setup steps only); every namespace bubblewrap can unshare is
unshared, and ``--die-with-parent`` plus the PID namespace take the whole process tree
down when the time limit kills bubblewrap.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

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
    protected: tuple[Path, ...] = ()


class Sandbox(Protocol):
    name: str

    async def run(self, argv: Sequence[str], spec: SandboxSpec, timeout: float | None) -> ProcessResult: ...


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


class BubblewrapSandbox:
    name = "bubblewrap"

    def __init__(self, bwrap: str | None = None):
        found = bwrap or shutil.which("bwrap")
        if not found:
            raise SandboxUnavailable(
                "bubblewrap (bwrap) is not installed, so untrusted code cannot be sandboxed. "
                "Install it (Debian/Ubuntu: apt-get install bubblewrap), or opt out explicitly "
                "with `sandbox: none` in the base branch's .mergegate.yml."
            )
        self.bwrap = found

    def argv(self, command: Sequence[str], spec: SandboxSpec) -> list[str]:
        workdir = spec.workdir.resolve()
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
        for path in MASKED_ETC:
            if os.path.isdir(path) and not os.path.islink(path):
                args += ["--tmpfs", path]
            elif os.path.exists(path):
                args += ["--ro-bind", "/dev/null", path]
        for path in (*python_prefixes(), *spec.read_only):
            args += ["--ro-bind", str(path), str(path)]
        if spec.mode is SandboxMode.READ_ONLY:
            args += ["--ro-bind", str(workdir), str(workdir)]
        else:
            args += ["--bind", str(workdir), str(workdir)]
        for path in spec.writable:
            args += ["--bind", str(path), str(path)]
        for path in spec.protected:
            if path.exists():
                args += ["--ro-bind", str(path), str(path)]
        for key, value in scrubbed_env(spec.env).items():
            args += ["--setenv", key, value]
        args += ["--chdir", str(workdir), "--", *command]
        return args

    async def run(self, argv: Sequence[str], spec: SandboxSpec, timeout: float | None) -> ProcessResult:
        return await run_process(self.argv(argv, spec), timeout=timeout, env={})


class NoSandbox:
    """Explicit opt-out (``sandbox: none``): still a scrubbed environment, but no isolation."""

    name = "none"

    async def run(self, argv: Sequence[str], spec: SandboxSpec, timeout: float | None) -> ProcessResult:
        return await run_process(argv, cwd=spec.workdir, env=scrubbed_env(spec.env), timeout=timeout)


def make_sandbox(kind: str) -> Sandbox:
    if kind == "none":
        return NoSandbox()
    if kind == "bubblewrap":
        return BubblewrapSandbox()
    raise SandboxUnavailable(f"unknown sandbox kind {kind!r} (expected bubblewrap or none)")
