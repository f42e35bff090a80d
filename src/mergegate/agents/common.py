"""Helpers shared by agents that wrap command-line analysers."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from mergegate.core.change import ChangedFile
from mergegate.core.finding import Finding, make_fingerprint
from mergegate.runtime.process import ProcessResult, run_process


class ToolFailed(RuntimeError):
    """An analyser exited in a way that means it did not analyse (not 'found issues')."""


async def run_python_tool(module: str, args: Sequence[str], cwd: Path, ok_codes: Sequence[int] = (0,)) -> ProcessResult:
    """Run ``python -m module args`` with this interpreter (so the pinned tool is used).

    These analysers only *read* code, they never execute it, so they run outside the
    sandbox; the files they read are the snapshot of the change, not a live checkout.
    They are never a check's critical path (the tests are), so they run at low CPU
    priority (``run_process(low_priority=True)``): with few cores they fill the time the
    sandboxed tests leave idle instead of delaying them.
    """
    result = await run_process([sys.executable, "-m", module, *args], cwd=cwd, low_priority=True)
    if result.returncode not in ok_codes:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise ToolFailed(f"{module} exited {result.returncode}: {' '.join(tail)[:500]}")
    return result


def on_added_line(file: ChangedFile | None, line: int | None, end_line: int | None = None) -> bool:
    """Whether a finding at ``line..end_line`` touches a line the change added or changed."""
    if file is None or line is None:
        return False
    last = end_line if end_line and end_line >= line else line
    return any(n in file.added_lines for n in range(line, last + 1))


def dedupe_fingerprints(findings: list[Finding]) -> list[Finding]:
    """Equal lines share a fingerprint basis; number the repeats so ids stay unique."""
    seen: Counter[str] = Counter()
    out = []
    for f in findings:
        n = seen[f.fingerprint]
        seen[f.fingerprint] += 1
        if n:
            f = replace(f, fingerprint=make_fingerprint(f.agent, f.rule, f.path, f"{f.fingerprint}#{n}"))
        out.append(f)
    return out
