"""run_process(low_priority=True): niced, killable as a group, still in the caller's session."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys

from mergegate.runtime.process import LOW_PRIORITY_NICE, run_process
from tests.runtime.test_sandbox import wait_until_gone

_REPORT = "import json, os; print(json.dumps([os.getpid(), os.getpgid(0), os.getsid(0), os.nice(0)]))"


def _child(**kwargs: object) -> tuple[int, int, int, int]:
    result = asyncio.run(run_process([sys.executable, "-c", _REPORT], **kwargs))  # type: ignore[arg-type]
    assert result.returncode == 0, result.stderr
    pid, pgid, sid, nice = json.loads(result.stdout)
    return pid, pgid, sid, nice


def test_low_priority_child_is_niced_in_its_own_group_but_the_callers_session():
    pid, pgid, sid, nice = _child(low_priority=True)
    assert nice == min(os.nice(0) + LOW_PRIORITY_NICE, 19)
    assert pgid == pid  # killed as a group, like any child
    # The scheduler groups tasks by session: in a session of its own, the nice value would rank it
    # against nothing and it would take as much CPU as the whole check.
    assert sid == os.getsid(0)


def test_default_child_keeps_its_own_session_and_priority():
    pid, pgid, sid, nice = _child()
    assert (pgid, sid) == (pid, pid)
    assert nice == os.nice(0)


def test_low_priority_timeout_kills_the_whole_group():
    marker = f"{random.randint(10**8, 10**9)}"
    result = asyncio.run(
        run_process(["/bin/sh", "-c", f"sleep 1{marker} & sleep 2{marker}"], timeout=0.5, low_priority=True)
    )
    assert result.timed_out
    assert result.argv[0] == "/bin/sh"  # the result names the command, not the nice wrapper
    assert wait_until_gone(marker) == []
