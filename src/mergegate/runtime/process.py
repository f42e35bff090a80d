"""Run a subprocess asynchronously with a wall-time limit and bounded output.

The child gets its own session, so on timeout or cancellation the whole process group
is killed, not just the direct child. (Inside the sandbox, bubblewrap's PID namespace
takes the rest of the tree down with it.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_OUTPUT = 4 * 1024 * 1024


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


async def _read_bounded(stream: asyncio.StreamReader, limit: int) -> tuple[bytes, bool]:
    chunks, size, truncated = [], 0, False
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            break
        if size < limit:
            chunks.append(chunk[: limit - size])
        else:
            truncated = True
        size += len(chunk)
    return b"".join(chunks), truncated or size > limit


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def run_process(
    argv: Sequence[str],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    stdin: bytes | None = None,
    max_output: int = DEFAULT_MAX_OUTPUT,
) -> ProcessResult:
    """Run ``argv``; on timeout return a result with ``timed_out=True`` (never raises it)."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=str(cwd) if cwd else None,
        env=dict(env) if env is not None else None,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stderr is not None

    async def communicate() -> tuple[tuple[bytes, bool], tuple[bytes, bool]]:
        if stdin is not None and proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                proc.stdin.write(stdin)
                await proc.stdin.drain()
            proc.stdin.close()
        out, err = await asyncio.gather(_read_bounded(proc.stdout, max_output), _read_bounded(proc.stderr, max_output))
        await proc.wait()
        return out, err

    task = asyncio.ensure_future(communicate())
    try:
        (out, out_trunc), (err, err_trunc) = await asyncio.wait_for(asyncio.shield(task), timeout)
        timed_out = False
    except TimeoutError:
        _kill_group(proc)
        (out, out_trunc), (err, err_trunc) = await task
        timed_out = True
    except asyncio.CancelledError:
        # Our caller gave up (e.g. the agent's own timeout): leave nothing running.
        _kill_group(proc)
        with contextlib.suppress(Exception):
            await task
        raise
    finally:
        # Orphans that kept the group alive after the leader exited.
        _kill_group(proc)
    return ProcessResult(
        argv=tuple(argv),
        returncode=proc.returncode if proc.returncode is not None else -9,
        stdout=out.decode("utf-8", "replace"),
        stderr=err.decode("utf-8", "replace"),
        duration_s=time.monotonic() - started,
        timed_out=timed_out,
        truncated=out_trunc or err_trunc,
    )
