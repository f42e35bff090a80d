"""Run one checked shell script in bubblewrap, under limits, with protected paths held.

This is where the sandbox, the limits and the workspace guard meet for shell commands:

- the sandbox mode decides whether the work tree is writable; existing protected paths
  (``.git``, ``.mergegate.yml``, CODEOWNERS, CI config, and tests for a fixer) are
  read-only bind mounts even in ``workspace-write`` mode;
- every directory *above* a protected path is bound onto itself, which makes it a mount
  point: ``mv .github x`` (then recreating ``.github/workflows``) fails with EBUSY
  instead of moving the protection away;
- files hidden by ``Read(...)`` deny rules are covered by ``/dev/null`` (or an empty
  directory), so ``cat`` cannot read what the Read tool may not;
- protected paths that did not exist before cannot be mounted in advance (a new
  ``.gitlab-ci.yml``, a new ``test_x.py`` anywhere): after the command they are found
  and removed, and the call is refused with their names;
- limits (``mergegate.runtime.limits``) bound time, CPU, memory, processes and output,
  and kill the whole tree at any of them.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mergegate.core.globs import match_any
from mergegate.runtime.limits import Limits, run_limited
from mergegate.runtime.sandbox import BASE_ENV, BubblewrapSandbox, Mount, SandboxMode, SandboxSpec
from mergegate.runtime.workspace import (
    ProtectedPaths,
    Workspace,
    protected_existing,
    protected_snapshot,
    sweep_new_protected,
)


def sandbox_path() -> str:
    """PATH inside the sandbox: mergegate's own environment first (read-only), then the system."""
    venv_bin = Path(sys.prefix) / "bin"
    base = BASE_ENV["PATH"]
    return f"{venv_bin}:{base}" if sys.prefix != sys.base_prefix else base


@dataclass(frozen=True)
class ShellJob:
    script: str
    mode: SandboxMode
    network: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    protected: ProtectedPaths = field(default_factory=lambda: ProtectedPaths(()))
    #: Globs (workspace-relative) the command must not see: the agent's Read deny rules.
    hidden: tuple[str, ...] = ()


@dataclass(frozen=True)
class ShellOutcome:
    returncode: int
    stdout: str
    stderr: str
    duration_s: float
    limit: str | None = None
    detail: str = ""
    truncated: bool = False
    #: New protected paths the command created (removed again) / existing ones it changed.
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()


def _ancestors(rels: list[str]) -> list[str]:
    out: dict[str, None] = {}
    for rel in rels:
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            out["/".join(parts[:i])] = None
    return sorted(out, key=lambda r: r.count("/"))


async def run_shell(ws: Workspace, sandbox: BubblewrapSandbox, job: ShellJob) -> ShellOutcome:
    writable = job.mode is not SandboxMode.READ_ONLY
    guard = writable and job.mode is not SandboxMode.DANGER_FULL_ACCESS
    existing = protected_existing(ws, job.protected) if guard else []
    before = protected_snapshot(ws, job.protected) if guard else None
    empty_dir = Path(tempfile.mkdtemp(prefix="mergegate-empty-"))
    try:
        mounts: list[Mount] = []
        for rel in _ancestors(existing):
            path = ws.root / rel
            if path.is_dir() and not path.is_symlink():
                mounts.append(Mount(path, writable=True))
        if job.hidden:
            for rel, is_dir in ws.walk():
                # Symlinks are skipped: bubblewrap would mount over their target instead.
                if match_any(job.hidden, rel) and not (ws.root / rel).is_symlink():
                    mounts.append(Mount(empty_dir if is_dir else Path(os.devnull), ws.root / rel))
        env = {"PATH": sandbox_path(), **job.env}
        spec = SandboxSpec(
            workdir=ws.root,
            mode=job.mode,
            network=job.network,
            env=env,
            protected=tuple(ws.root / rel for rel in existing),
            mounts=tuple(mounts),
        )
        bash = shutil.which("bash") or "/bin/bash"
        argv = sandbox.argv([bash, "--noprofile", "--norc", "-c", job.script], spec)
        result = await run_limited(argv, job.limits, env={})
    finally:
        shutil.rmtree(empty_dir, ignore_errors=True)
    removed: list[str] = []
    changed: list[str] = []
    if before is not None:
        removed, changed = sweep_new_protected(ws, job.protected, before)
    return ShellOutcome(
        returncode=result.returncode,
        stdout=result.stdout,
        stderr=result.stderr,
        duration_s=result.duration_s,
        limit=result.limit,
        detail=result.detail,
        truncated=result.truncated,
        removed=tuple(removed),
        changed=tuple(changed),
    )
