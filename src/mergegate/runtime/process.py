"""Run a subprocess asynchronously with a wall-time limit and bounded output.

The child gets its own session, so on timeout or cancellation the whole process group
is killed, not just the direct child. (Inside the sandbox, bubblewrap's PID namespace
takes the rest of the tree down with it.)

``low_priority`` is for work that is never a check's critical path (static analysers
of the changed files, seconds at most): it runs at ``nice`` ``LOW_PRIORITY_NICE``, so
on a busy machine the steps the check waits for (the sandboxed tests, git) get the CPU
first, and the analysers fill the time those leave idle; on an idle machine it costs
nothing. Such a child gets its own process group (killed the same way) but stays in
the caller's session: Linux's scheduler groups tasks by session ("autogroup"), and a
nice value only ranks a task within its group, so a child in a session of its own
would still take an equal share of the CPU whatever its nice value.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_OUTPUT = 4 * 1024 * 1024
#: The nice value of ``low_priority`` children (weight ~1/10 of a normal task's).
LOW_PRIORITY_NICE = 10


@dataclass(frozen=True)
class ProcessResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


class ProcessTimeout(TimeoutError):
    def __init__(self, result: ProcessResult):
        self.result = result
        super().__init__(f"{result.argv[0]} exceeded its time limit of {result.duration_s:.0f}s")


#: After a kill, how long to keep reading output. Processes that escaped the group
#: (``setsid`` daemons, without the sandbox's PID namespace) can hold the pipes open
#: forever; a time limit must not depend on them closing.
KILL_GRACE_S = 2.0


class _Capture:
    """Output read so far, at most ``limit`` bytes (kept when reading is abandoned)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0

    async def read(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            if self.size < self.limit:
                self.chunks.append(chunk[: self.limit - self.size])
            self.size += len(chunk)

    def result(self) -> tuple[bytes, bool]:
        return b"".join(self.chunks), self.size > self.limit


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def _settle(task: asyncio.Future[None], proc: asyncio.subprocess.Process) -> None:
    """After a kill: collect the rest of the output, but give up after ``KILL_GRACE_S``."""
    done, _ = await asyncio.wait({task}, timeout=KILL_GRACE_S)
    if not done:
        task.cancel()
        transport = getattr(proc, "_transport", None)
        if transport is not None:
            transport.close()  # stop reading pipes that escaped processes still hold
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    if proc.returncode is None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), KILL_GRACE_S)


async def run_process(
    argv: Sequence[str],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    stdin: bytes | None = None,
    max_output: int = DEFAULT_MAX_OUTPUT,
    low_priority: bool = False,
) -> ProcessResult:
    """Run ``argv``; on timeout return a result with ``timed_out=True`` (never raises it)."""
    started = time.monotonic()
    nice = shutil.which("nice") if low_priority else None
    # See the module docstring: a group of its own, but not a session of its own.
    group: dict[str, object] = {"process_group": 0} if low_priority else {"start_new_session": True}
    proc = await asyncio.create_subprocess_exec(
        *([nice, "-n", str(LOW_PRIORITY_NICE)] if nice else []),
        *argv,
        cwd=str(cwd) if cwd else None,
        env=dict(env) if env is not None else None,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        **group,  # type: ignore[arg-type]
    )
    assert proc.stdout is not None and proc.stderr is not None

    stdout, stderr = _Capture(max_output), _Capture(max_output)

    async def communicate() -> None:
        if stdin is not None and proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                proc.stdin.write(stdin)
                await proc.stdin.drain()
            proc.stdin.close()
        await asyncio.gather(stdout.read(proc.stdout), stderr.read(proc.stderr))
        await proc.wait()

    task = asyncio.ensure_future(communicate())
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout)
        timed_out = False
    except TimeoutError:
        _kill_group(proc)
        await _settle(task, proc)
        timed_out = True
    except asyncio.CancelledError:
        # Our caller gave up (e.g. the agent's own timeout): leave nothing running.
        _kill_group(proc)
        await _settle(task, proc)
        raise
    finally:
        # Orphans that kept the group alive after the leader exited.
        _kill_group(proc)
    (out, out_trunc), (err, err_trunc) = stdout.result(), stderr.result()
    return ProcessResult(
        argv=tuple(argv),
        returncode=proc.returncode if proc.returncode is not None else -9,
        stdout=out.decode("utf-8", "replace"),
        stderr=err.decode("utf-8", "replace"),
        duration_s=time.monotonic() - started,
        timed_out=timed_out,
        truncated=out_trunc or err_trunc,
    )
