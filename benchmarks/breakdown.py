"""Where does a check's time go? Times the phases of one real ``run_check``.

Usage::

    .venv/bin/python benchmarks/breakdown.py [small|large] [--agents NAME,...]

A sampling profiler (py-spy) shows that a check's wall time is mostly spent outside
Python, in git, the file system and the sandboxed test run; this script names those
phases. It wraps the functions that do them (the real ones, called normally) with
timers, runs ``run_check`` once on a benchmark repository, and prints each phase's
count, total and the thread it ran in, plus the agents' own durations.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from perf_repos import bench_repo, isolate_exports, rewind_exports

from mergegate.service import check
from mergegate.vcs.git import GitRepo

TIMES: dict[str, list[float]] = defaultdict(list)


_ACTIVE = threading.local()


def _timed_sync(name: str, fn):
    """Time the outermost call only (``copytree`` and ``rmtree`` recurse into themselves)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        active = _ACTIVE.__dict__.setdefault("names", set())
        if name in active:
            return fn(*args, **kwargs)
        active.add(name)
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            active.discard(name)
            # asyncio's worker threads are numbered in start order, which varies: name the kind only.
            where = "main thread" if threading.current_thread() is threading.main_thread() else "worker thread"
            TIMES[f"{name} [{where}]"].append(time.perf_counter() - started)

    return wrapper


def _timed_async(name: str, fn):
    @functools.wraps(fn)
    async def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            TIMES[name].append(time.perf_counter() - started)

    return wrapper


def instrument() -> None:
    from mergegate.runtime import export, worktree

    GitRepo.change = _timed_sync("git: compute the change (rev-parse, merge-base, diff)", GitRepo.change)
    GitRepo.export_tree = _timed_sync("git: export a whole tree (read-tree + checkout-index)", GitRepo.export_tree)
    export.acquire = _timed_sync("persistent export: lock a slot, update it by the diff, verify it", export.acquire)
    worktree._tidy = _timed_sync("discard the overlay, prune old exports", worktree._tidy)
    check._materialise = _timed_sync("write the changed files (base and head)", check._materialise)
    check.load_policy = _timed_sync("read the base policy", check.load_policy)
    shutil.copytree = _timed_sync("copy the exported tree (shutil.copytree)", shutil.copytree)
    shutil.rmtree = _timed_sync("delete scratch trees (shutil.rmtree)", shutil.rmtree)
    # The test agent imported these names into its own module: patch them where it looks them up.
    from mergegate.agents import test_coverage as tc

    tc.run_tests = _timed_async("sandbox: run the test command under coverage", tc.run_tests)
    tc.collect_coverage = _timed_async("sandbox: combine and read coverage", tc.collect_coverage)
    tc.prepare_environment = _timed_async("test environment (setup or reuse)", tc.prepare_environment)


def incremental_export(path: Path, rounds: int = 3) -> dict:
    """What the test agent's persistent export costs, on its own: first use, update, reuse.

    ``rounds`` times (medians), each in a throw-away exports directory: the first
    ``acquire`` of ``main`` exports the whole tree; the next, of ``change``, updates it
    by the diff (``git read-tree -m -u``) and verifies it; the one after that finds
    ``change`` already there and only verifies it.
    """
    from mergegate.runtime import export

    repo = GitRepo(path)
    main_sha, change_sha = repo.rev_parse("main"), repo.rev_parse("change")
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        with tempfile.TemporaryDirectory(prefix="mergegate-incremental-") as tmp:
            for label, commit in (("full_export_s", main_sha), ("update_s", change_sha), ("reuse_s", change_sha)):
                started = time.perf_counter()
                held = export.acquire(repo, commit, Path(tmp))
                times[label].append(time.perf_counter() - started)
                assert held is not None
                held.release()
    return {label: statistics.median(values) for label, values in times.items()} | {"rounds": rounds}


def breakdown(repo_name: str, agents: list[str] | None) -> dict:
    """Run one instrumented check; phases sorted by total time, plus the agents' durations."""
    repo = bench_repo(repo_name)
    rewind_exports(repo)  # as in run.py: the previous check was of main
    instrument()
    started = time.perf_counter()
    report = asyncio.run(check.run_check(GitRepo(repo.path), "main", "change", agents))
    return {
        "repo": repo_name,
        "files": repo.files,
        "wall_s": time.perf_counter() - started,
        "decision": report.decision.action.value,
        "phases": [
            {"phase": name, "calls": len(values), "total_s": sum(values)}
            for name, values in sorted(TIMES.items(), key=lambda kv: -sum(kv[1]))
        ],
        "agents": [{"name": r.name, "status": r.status.value, "duration_s": r.duration_s} for r in report.results],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", choices=("small", "large"), nargs="?", default="large")
    parser.add_argument("--agents", help="comma-separated agents (default: all)")
    parser.add_argument("--json", action="store_true", help="print JSON (for run.py)")
    parser.add_argument("--incremental", action="store_true", help="also time the persistent export on its own")
    args = parser.parse_args()
    isolate_exports()
    result = breakdown(args.repo, args.agents.split(",") if args.agents else None)
    if args.incremental:
        result["incremental"] = incremental_export(bench_repo(args.repo).path)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['repo']}: {result['files']} files, run_check {result['wall_s']:.2f} s, {result['decision']}")
    for phase in result["phases"]:
        print(f"  {phase['total_s']:7.2f} s  x{phase['calls']}  {phase['phase']}")
    for agent in result["agents"]:
        print(f"  agent {agent['name']:15} {agent['status']:8} {agent['duration_s']:6.2f} s")
    if "incremental" in result:
        inc = result["incremental"]
        print(
            f"  persistent export: first use {inc['full_export_s']:.2f} s, update main->change "
            f"{inc['update_s']:.3f} s, reuse {inc['reuse_s']:.3f} s"
        )


if __name__ == "__main__":
    main()
