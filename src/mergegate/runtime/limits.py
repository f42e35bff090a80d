"""Run a (sandboxed) command under hard resource limits; kill the whole tree at any limit.

Limits and how each holds even when mergegate runs as root:

=============  ==================================================================
wall time      our own timer; the whole tree is killed when it expires
process count  cgroup ``pids.max`` (``RLIMIT_NPROC`` does not apply to root, whom the
               sandbox user maps to); without a usable cgroup a root gate refuses to
               run shell commands at all, a non-root gate falls back to RLIMIT_NPROC
memory         cgroup memory limit for the whole tree (tmpfs ``/tmp`` included); without
               the memory controller, ``RLIMIT_AS`` per process (applies to root)
CPU time       ``RLIMIT_CPU`` per process (applies to root), plus a CPU share in the
               cgroup so a tree of spinners cannot take every core
output         we read stdout/stderr ourselves and kill the tree past ``output_bytes``
file size      ``RLIMIT_FSIZE`` (applies to root): no single file past the limit
=============  ==================================================================

The child joins the cgroup and sets its rlimits *before* it executes the command: a
tiny launcher (``_LAUNCHER``, run with ``python -I -S``) writes its pid into the group,
calls ``setrlimit`` and ``exec``\\ s bubblewrap. If it cannot join, it exits 125 and
nothing runs. "The whole tree is killed" means: the launcher's process group gets
SIGKILL (bubblewrap's ``--die-with-parent`` and PID namespace take the sandbox with
it), then every task still in the cgroup is killed under the freezer.

A limit that was hit is named in ``LimitedResult.limit`` so the runner can refuse the
call with a reason in words.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mergegate.runtime.cgroups import Cgroup, CgroupRequest, CgroupUnavailable

LAUNCH_FAILED = 125
_MARK = "mergegate-launch:"

_LAUNCHER = f"""
import json, os, resource, sys
cfg = json.loads(sys.argv[1])
try:
    for f in cfg["procs"]:
        with open(f, "w") as fh:
            fh.write(str(os.getpid()))
    for name, (soft, hard) in cfg["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (soft, hard))
except Exception as exc:
    sys.stderr.write("{_MARK} " + type(exc).__name__ + ": " + str(exc) + "\\n")
    sys.exit({LAUNCH_FAILED})
os.execv(sys.argv[2], sys.argv[2:])
"""


@dataclass(frozen=True)
class Limits:
    wall_s: float = 120.0
    cpu_s: int = 120
    memory_bytes: int = 2 * 1024**3
    pids: int = 256
    output_bytes: int = 1024 * 1024
    file_size_bytes: int = 512 * 1024**2
    cpus: float | None = 1.0
    nofile: int = 1024


class LimitsUnavailable(RuntimeError):
    """The limits cannot be enforced here, so the command must not run."""


@dataclass(frozen=True)
class LimitedResult:
    returncode: int
    stdout: str
    stderr: str
    duration_s: float
    #: ``None``, or which limit ended the command: wall-time, output, memory, processes, cpu.
    limit: str | None = None
    detail: str = ""
    truncated: bool = False


class _Output:
    def __init__(self, limit: int, on_exceeded):
        self.limit = limit
        self.size = 0
        self.chunks: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        self.on_exceeded = on_exceeded

    async def read(self, name: str, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            room = self.limit - self.size
            if room > 0:
                self.chunks[name].append(chunk[:room])
            self.size += len(chunk)
            if self.size > self.limit:
                self.on_exceeded()
                return

    def text(self, name: str) -> str:
        return b"".join(self.chunks[name]).decode("utf-8", "replace")


def _rlimits(limits: Limits, group: Cgroup | None) -> dict[str, tuple[int, int]]:
    out = {
        "RLIMIT_CPU": (limits.cpu_s, limits.cpu_s + 1),
        "RLIMIT_FSIZE": (limits.file_size_bytes, limits.file_size_bytes),
        "RLIMIT_CORE": (0, 0),
        "RLIMIT_NOFILE": (limits.nofile, limits.nofile),
    }
    if group is None or "memory" not in group.limited:
        out["RLIMIT_AS"] = (limits.memory_bytes, limits.memory_bytes)
    if group is None:
        # Not root (checked by the caller): RLIMIT_NPROC counts this user's processes.
        current = sum(1 for p in os.listdir("/proc") if p.isdigit())
        out["RLIMIT_NPROC"] = (current + limits.pids, current + limits.pids)
    return out


def _make_group(limits: Limits) -> Cgroup | None:
    request = CgroupRequest(pids=limits.pids, memory_bytes=limits.memory_bytes, cpus=limits.cpus)
    try:
        return Cgroup.create(request)
    except (CgroupUnavailable, OSError) as exc:
        if os.geteuid() == 0:
            raise LimitsUnavailable(
                f"cannot limit the number of processes ({exc}); as root, RLIMIT_NPROC does not apply, "
                "so shell commands are refused rather than run without a process limit"
            ) from None
        return None


async def run_limited(argv: Sequence[str], limits: Limits, *, env: Mapping[str, str] | None = None) -> LimitedResult:
    """Run ``argv`` (normally a bubblewrap command line) under ``limits``."""
    group = await asyncio.to_thread(_make_group, limits)
    try:
        return await _run(argv, limits, group, env)
    finally:
        if group is not None:
            await asyncio.to_thread(group.remove)


async def _run(argv, limits: Limits, group: Cgroup | None, env) -> LimitedResult:
    cfg = {"procs": group.procs_files if group else [], "rlimits": _rlimits(limits, group)}
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        "-S",
        "-c",
        _LAUNCHER,
        json.dumps(cfg),
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        env=dict(env or {}),
    )
    assert proc.stdout is not None and proc.stderr is not None
    stop = asyncio.Event()
    why: list[tuple[str, str]] = []

    def exceeded() -> None:
        if not why:
            why.append(("output", f"more than {limits.output_bytes} bytes of output"))
        stop.set()

    output = _Output(limits.output_bytes, exceeded)

    async def watch_group() -> None:
        # Kill the whole tree as soon as the kernel refused a fork or OOM-killed a member.
        while group is not None:
            await asyncio.sleep(0.05)
            if group.pids_refused():
                why.append(("processes", f"the process limit ({limits.pids}) was reached"))
                stop.set()
                return
            if group.oom_kills():
                why.append(("memory", f"the memory limit ({limits.memory_bytes // 2**20} MiB) was reached"))
                stop.set()
                return

    readers = asyncio.gather(output.read("stdout", proc.stdout), output.read("stderr", proc.stderr))
    finished = asyncio.ensure_future(_finish(readers, proc))
    stopper = asyncio.ensure_future(stop.wait())
    watcher = asyncio.ensure_future(watch_group())
    try:
        done, _ = await asyncio.wait({finished, stopper}, timeout=limits.wall_s, return_when=asyncio.FIRST_COMPLETED)
        if not done:
            why.append(("wall-time", f"still running after {limits.wall_s:g}s"))
        if finished not in done:
            await _kill_tree(proc, group)
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(finished), 3.0)
    except asyncio.CancelledError:
        await _kill_tree(proc, group)
        raise
    finally:
        for task in (stopper, watcher):
            task.cancel()
        if not finished.done():
            finished.cancel()
        # Close the pipes explicitly: a transport left to the garbage collector after the
        # loop is gone raises "Event loop is closed".
        transport = getattr(proc, "_transport", None)
        if transport is not None:
            transport.close()
        if group is not None:
            await asyncio.to_thread(group.kill_all)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    returncode = proc.returncode if proc.returncode is not None else -signal.SIGKILL
    stderr = output.text("stderr")
    if returncode == LAUNCH_FAILED and stderr.startswith(_MARK):
        raise LimitsUnavailable(stderr[len(_MARK) :].strip())
    limit, detail = why[0] if why else (None, "")
    if limit is None and group is not None and group.oom_kills():
        limit, detail = "memory", f"the memory limit ({limits.memory_bytes // 2**20} MiB) was reached"
    if limit is None and group is not None and group.pids_refused():
        limit, detail = "processes", f"the process limit ({limits.pids}) was reached"
    if limit is None and returncode in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        limit, detail = "cpu", f"the CPU time limit ({limits.cpu_s}s) was reached"
    return LimitedResult(
        returncode=returncode,
        stdout=output.text("stdout"),
        stderr=stderr,
        duration_s=time.monotonic() - started,
        limit=limit,
        detail=detail,
        truncated=output.size > limits.output_bytes,
    )


async def _finish(readers, proc) -> None:
    await readers
    await proc.wait()


async def _kill_tree(proc, group: Cgroup | None) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if group is not None:
        await asyncio.to_thread(group.kill_all)


def describe_limits(limits: Limits) -> str:
    return (
        f"wall {limits.wall_s:g}s, cpu {limits.cpu_s}s, memory {limits.memory_bytes // 2**20} MiB, "
        f"{limits.pids} processes, output {limits.output_bytes // 1024} KiB"
    )
