"""run_process: time limits that hold, bounded output, nothing left running."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import time

import pytest

from mergegate.runtime.process import KILL_GRACE_S, run_process
from tests.runtime.test_sandbox import marker_processes, wait_until_gone


def unique() -> str:
    return f"{random.randint(10**8, 10**9)}"


def test_exit_code_output_stdin_and_env():
    result = asyncio.run(
        run_process(
            ["/bin/sh", "-c", 'cat; echo "$GREETING"; echo oops >&2; exit 3'],
            stdin=b"from stdin\n",
            env={"GREETING": "hello", "PATH": "/usr/bin:/bin"},
        )
    )
    assert result.returncode == 3
    assert result.stdout == "from stdin\nhello\n"
    assert result.stderr == "oops\n"
    assert not result.ok and not result.timed_out and not result.truncated


def test_timeout_returns_quickly_with_timed_out():
    started = time.monotonic()
    result = asyncio.run(run_process(["/bin/sh", "-c", "echo started; sleep 30"], timeout=0.5))
    assert result.timed_out
    assert not result.ok
    assert result.stdout == "started\n"  # what was printed before the kill is kept
    assert time.monotonic() - started < 3


def test_output_is_bounded_and_marked_truncated():
    code = "import sys; sys.stdout.write('x' * 5_000_000); sys.stderr.write('y' * 10)"
    result = asyncio.run(run_process([sys.executable, "-c", code], max_output=1000))
    assert result.returncode == 0
    assert result.stdout == "x" * 1000
    assert result.stderr == "y" * 10
    assert result.truncated


def test_timeout_kills_children_in_the_group():
    marker = unique()
    result = asyncio.run(run_process(["/bin/sh", "-c", f"sleep 1{marker} & sleep 2{marker}"], timeout=0.5))
    assert result.timed_out
    assert wait_until_gone(marker) == []


def test_background_orphans_are_killed_when_the_leader_exits():
    marker = unique()
    result = asyncio.run(run_process(["/bin/sh", "-c", f"sleep 3{marker} >/dev/null 2>&1 & exit 0"], timeout=10))
    assert result.returncode == 0
    assert wait_until_gone(marker) == []


def test_escaped_daemon_holding_the_pipes_cannot_defeat_the_time_limit():
    # Without a PID namespace, a `setsid` grandchild leaves our process group and may
    # keep stdout open forever; the time limit must hold regardless.
    marker = unique()
    started = time.monotonic()
    try:
        result = asyncio.run(run_process(["/bin/sh", "-c", f"setsid sleep 4{marker} & sleep 5{marker}"], timeout=0.5))
        assert result.timed_out
        assert time.monotonic() - started < 0.5 + KILL_GRACE_S + 3
    finally:
        for pid in marker_processes(marker):  # the escaped daemon is ours: clean it up
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_cancellation_kills_the_group():
    marker = unique()

    async def cancel_soon():
        task = asyncio.ensure_future(run_process(["/bin/sh", "-c", f"sleep 6{marker} & sleep 7{marker}"], timeout=60))
        deadline = time.monotonic() + 10
        while not marker_processes(marker) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    started = time.monotonic()
    asyncio.run(cancel_soon())
    assert time.monotonic() - started < 10
    assert wait_until_gone(marker) == []


def test_an_outer_wait_for_is_honoured():
    # The check runner wraps each agent in asyncio.wait_for: cancellation must finish.
    marker = unique()

    async def outer():
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(run_process(["/bin/sh", "-c", f"sleep 8{marker}"], timeout=60), 0.5)

    started = time.monotonic()
    asyncio.run(outer())
    assert time.monotonic() - started < 5
    assert wait_until_gone(marker) == []
