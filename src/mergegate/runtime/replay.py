"""Replay a recorded trajectory of tool calls through the runtime.

A trajectory is JSON lines, one call each, tool names as in the allowlist::

    {"tool": "Read", "args": {"path": "src/app.py"}}
    {"tool": "Bash", "args": {"command": "pytest -q"}}

Claude-Code-style records (``{"name": …, "input": …}``) are accepted too, so real
transcripts can be replayed after extracting their tool-use blocks. Blank lines and
lines starting with ``#`` are skipped. A line that is not a call is a usage error that
names its line number: a policy is tested against exactly the calls given, or not at
all.

Every call goes through ``ToolRunner.call``, with the agent's allowlist, sandbox and
approvals; a call that pauses does not stop the replay (later calls are still
evaluated, as if the human had been asked and the agent carried on).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mergegate.runtime.runner import CallResult, Status, ToolRunner


class TrajectoryError(ValueError):
    pass


@dataclass(frozen=True)
class RecordedCall:
    line: int
    tool: str
    args: Any


def parse_trajectory(lines: Iterable[str], source: str = "<trajectory>") -> list[RecordedCall]:
    calls = []
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TrajectoryError(f"{source}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise TrajectoryError(f"{source}:{number}: expected an object with 'tool' and 'args'")
        tool = record.get("tool", record.get("name"))
        args = record.get("args", record.get("input", {}))
        if not isinstance(tool, str) or not tool:
            raise TrajectoryError(f"{source}:{number}: 'tool' must be a non-empty string")
        calls.append(RecordedCall(number, tool, args))
    return calls


def load_trajectory(path: str | Path) -> list[RecordedCall]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrajectoryError(f"{path}: cannot read: {exc}") from None
    return parse_trajectory(text.splitlines(), str(path))


async def replay(calls: list[RecordedCall], runner: ToolRunner) -> list[CallResult]:
    results = []
    for index, call in enumerate(calls):
        results.append(await runner.call(call.tool, call.args, index=index))
    return results


def exit_code(results: list[CallResult]) -> int:
    """0 when every call was allowed, 1 when any was refused or paused."""
    return 0 if all(r.status is Status.ALLOWED for r in results) else 1
