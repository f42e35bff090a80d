"""Benchmark ``mergegate check``: parallel vs one agent at a time, small vs large repository.

Usage (from the repository root)::

    .venv/bin/python benchmarks/run.py            # 5 repetitions, prints the tables
    .venv/bin/python benchmarks/run.py --quick    # 2 repetitions
    .venv/bin/python benchmarks/run.py --write    # also updates docs/benchmarks.md

What is timed is always the real command, ``python -m mergegate check`` in a fresh
process, on the repositories built by ``perf_repos.py`` (real sdists, real upstream
diff): the full check with every agent concurrently, and the same check restricted to
one agent (``--agents NAME``) for each agent. Every check pays the same fixed costs
(interpreter start-up, computing the change, reading the policy), so the single-agent
runs are the honest baseline for "the slowest agent bounds the wall time", and running
them back to back is what a CI that calls the tools one after another would pay.

Machines are noisy (and this one is shared), so absolute seconds are context only. The
ratios are computed *within* each repetition, from measurements taken minutes apart at
most and in shuffled order, and the reported value is the median over repetitions.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from perf_repos import (
    CHANGED_FILE,
    LARGE_EXTRA,
    TEST_COMMAND,
    BenchRepo,
    bench_repo,
    isolate_exports,
    rewind_exports,
)

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
LAST_RUN = Path(__file__).resolve().parent / ".work" / "last-run.json"
START, END = "<!-- benchmarks/run.py: start -->", "<!-- benchmarks/run.py: end -->"

PARALLEL = "(all, parallel)"
TARGET_PARALLEL = 1.2
TARGET_LARGE = 1.5


@dataclass
class Sample:
    """One timed ``mergegate check`` process."""

    wall_s: float
    exit_code: int
    agents: dict[str, tuple[str, float]]  # name -> (status, duration_s inside the run)
    decision: str


@dataclass
class RepoResult:
    repo: BenchRepo
    samples: dict[str, list[Sample]] = field(default_factory=lambda: defaultdict(list))

    def walls(self, what: str) -> list[float]:
        return [s.wall_s for s in self.samples[what]]


def agent_names() -> list[str]:
    """The agents a default check runs here (those that exist today)."""
    from mergegate.agents import registry

    return list(registry())


def timed_check(repo: BenchRepo, agents: str | None, scratch: Path) -> Sample:
    out = scratch / "report.json"
    cmd = [sys.executable, "-m", "mergegate", "check", "--repo", str(repo.path), "--base", "main"]
    cmd += ["--head", "change", "--format", "json", "--output", str(out), "--no-progress"]
    cmd += ["--audit-log", str(scratch / "audit.jsonl")]
    if agents:
        cmd += ["--agents", agents]
    out.unlink(missing_ok=True)
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 1, 3) or not out.exists():
        raise SystemExit(f"mergegate check failed (exit {proc.returncode}) on {repo.name}:\n{proc.stderr}")
    report = json.loads(out.read_text())
    return Sample(
        wall_s=wall,
        exit_code=proc.returncode,
        agents={a["name"]: (a["status"], a["duration_s"]) for a in report["agents"]},
        decision=report["decision"]["action"],
    )


def startup_s(runs: int) -> float:
    """Median wall time of ``python -m mergegate --version``: the fixed cost in every check."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mergegate", "--version"], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(repos: list[BenchRepo], agents: list[str], reps: int, seed: int) -> dict[str, RepoResult]:
    results = {r.name: RepoResult(r) for r in repos}
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="mergegate-bench-") as tmp:
        scratch = Path(tmp)
        for repo in repos:  # warm-up: page cache, .pyc files, the sandbox's first start, the first export
            timed_check(repo, None, scratch)
        for rep in range(reps):
            jobs = [(repo, what) for repo in repos for what in [PARALLEL, *agents]]
            rng.shuffle(jobs)
            for repo, what in jobs:
                if what in (PARALLEL, "test-coverage"):
                    rewind_exports(repo)  # as if the previous check was of main: the update by the diff is timed
                sample = timed_check(repo, None if what == PARALLEL else what, scratch)
                results[repo.name].samples[what].append(sample)
            print(f"  repetition {rep + 1}/{reps}: {len(jobs)} checks done", file=sys.stderr, flush=True)
    return results


def phase_breakdown(repo: str, agents: list[str], incremental: bool) -> dict:
    """One instrumented check (``breakdown.py``) in its own process: where the time goes."""
    cmd = [sys.executable, str(Path(__file__).with_name("breakdown.py")), repo, "--json", "--agents", ",".join(agents)]
    proc = subprocess.run([*cmd, *(["--incremental"] if incremental else [])], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"breakdown.py {repo} failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


# -- statistics ------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values)


def per_rep_ratio(num: list[float], den: list[float]) -> float:
    """Median of the per-repetition ratios (each from measurements taken close together)."""
    return med([a / b for a, b in zip(num, den, strict=True)])


def summarise(result: RepoResult, agents: list[str]) -> dict:
    alone = {a: result.walls(a) for a in agents}
    reps = len(result.walls(PARALLEL))
    slowest_each = [max(alone[a][i] for a in agents) for i in range(reps)]
    sequential_each = [sum(alone[a][i] for a in agents) for i in range(reps)]
    slowest = max(agents, key=lambda a: med(alone[a]))
    return {
        "parallel": med(result.walls(PARALLEL)),
        "slowest_agent": slowest,
        "slowest": med(slowest_each),
        "sequential": med(sequential_each),
        "parallel_over_slowest": per_rep_ratio(result.walls(PARALLEL), slowest_each),
        "parallel_over_sequential": per_rep_ratio(result.walls(PARALLEL), sequential_each),
        "alone": {a: med(v) for a, v in alone.items()},
    }


def problems(results: dict[str, RepoResult]) -> list[str]:
    """Agent runs that did not finish normally: a timing of a failed agent proves nothing."""
    seen: dict[tuple[str, str, str], int] = defaultdict(int)
    for name, result in results.items():
        for samples in result.samples.values():
            for s in samples:
                for agent, (status, _) in s.agents.items():
                    if status not in ("ok", "skipped"):
                        seen[(name, agent, status)] += 1
    return [f"{agent} ended `{status}` in {n} run(s) on {repo}" for (repo, agent, status), n in sorted(seen.items())]


# -- report ----------------------------------------------------------------------------


def _tool_versions() -> str:
    parts = []
    for dist in ("ruff", "bandit", "detect-secrets", "coverage", "pytest"):
        with contextlib.suppress(PackageNotFoundError):
            parts.append(f"{dist} {version(dist)}")
    return ", ".join(parts)


def _mergegate_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    return sha + (" (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else "")


def _verdict(value: float, target: float) -> str:
    return f"**{value:.2f}** ≤ {target:.2f} ✅" if value <= target else f"**{value:.2f}** > {target:.2f} ❌ (missed)"


def render_breakdown(small: dict, large: dict) -> list[str]:
    lines = [
        "",
        "### Where the time goes",
        "",
        "One instrumented check per repository (`benchmarks/breakdown.py`, all agents, in-process): "
        "the phases that do file-system, git or sandbox work, summed over the threads they ran in "
        "(agents overlap, so the phases add up to more than the wall time).",
        "",
        f"| phase | small ({small['files']} files) | large ({large['files']} files) |",
        "|---|---:|---:|",
        f"| **whole `run_check`** | **{small['wall_s']:.2f} s** | **{large['wall_s']:.2f} s** |",
    ]
    small_phases = {p["phase"]: p["total_s"] for p in small["phases"]}
    for phase in large["phases"]:
        name = phase["phase"]
        lines.append(f"| {name} | {small_phases.get(name, 0.0):.2f} s | {phase['total_s']:.2f} s |")
    small_agents = {a["name"]: a["duration_s"] for a in small["agents"]}
    for agent in large["agents"]:
        name = agent["name"]
        lines.append(
            f"| agent `{name}` (its own duration) | {small_agents.get(name, 0.0):.2f} s | {agent['duration_s']:.2f} s |"
        )
    growth = sorted(
        ((p["total_s"] - small_phases.get(p["phase"], 0.0), p["phase"]) for p in large["phases"]), reverse=True
    )
    grown = [f"{name} (+{extra:.1f} s)" for extra, name in growth[:4] if extra >= 0.5]
    if grown:
        lines += ["", "The phases that grow with the repository's size: " + "; ".join(grown) + "."]
    if inc := large.get("incremental"):
        lines += [
            "",
            f"The test agent's persistent export of the large repository, timed on its own (median of "
            f"{inc['rounds']}, `mergegate.runtime.export.acquire`, lock and verification included): the first "
            f"check of a repository (per slot) exports the whole tree, {inc['full_export_s']:.2f} s; a check of "
            f"`change` after one of `main` updates it by the diff, {inc['update_s']:.3f} s; the same commit "
            f"again is verified and reused, {inc['reuse_s']:.3f} s.",
        ]
    return lines


def render(
    results: dict[str, RepoResult], agents: list[str], reps: int, startup: float, load: tuple, phases: tuple | None
) -> str:
    small, large = results["small"], results["large"]
    s, lg = summarise(small, agents), summarise(large, agents)
    extra, extra_version, extra_where = LARGE_EXTRA
    lines = [
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC · {reps} repetitions, median · "
        f"{os.cpu_count()} CPUs (`nproc` {len(os.sched_getaffinity(0))}) · Python {platform.python_version()} · "
        f"{platform.system()} {platform.release()} · 1-min load average {load[0]:.2f} before, {load[1]:.2f} after",
        "",
        *(
            [
                f"**Warning:** the load average exceeded the {os.cpu_count()} CPUs during this run (other work "
                "on the machine); the seconds below are inflated and noisier than usual.",
                "",
            ]
            if max(load) > (os.cpu_count() or 1)
            else []
        ),
        f"mergegate {_mergegate_commit()} · agents: {', '.join(f'`{a}`' for a in agents)} · {_tool_versions()}",
        "",
        f"Repositories: **small** = wcwidth ({small.repo.files} files), **large** = the same plus "
        f"{extra} {extra_version} under `{extra_where}/` ({large.repo.files} files). "
        f"Change: `{CHANGED_FILE}` from wcwidth 0.2.9 (one file, identical in both). "
        f"Fixed cost in every check: interpreter start-up and imports, {startup:.2f} s.",
        "",
        "### Parallel check vs. one agent at a time",
        "",
        "| repository | all agents, parallel | slowest agent alone | every agent alone, back to back "
        "| parallel ÷ slowest (target ≤ 1.2) | parallel ÷ back to back |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for name, summ in (("small", s), ("large", lg)):
        lines.append(
            f"| {name} ({results[name].repo.files} files) | {summ['parallel']:.2f} s "
            f"| {summ['slowest']:.2f} s (`{summ['slowest_agent']}`) | {summ['sequential']:.2f} s "
            f"| {_verdict(summ['parallel_over_slowest'], TARGET_PARALLEL)} | {summ['parallel_over_sequential']:.2f} |"
        )
    lines += [
        "",
        "### Cost follows the diff: the same one-file change, small vs. large repository",
        "",
        f"| check | small ({small.repo.files} files) | large ({large.repo.files} files) | large ÷ small |",
        "|---|---:|---:|---|",
        f"| all agents, parallel (target ≤ 1.5) | {s['parallel']:.2f} s | {lg['parallel']:.2f} s "
        f"| {_verdict(per_rep_ratio(large.walls(PARALLEL), small.walls(PARALLEL)), TARGET_LARGE)} |",
    ]
    for agent in agents:
        ratio = per_rep_ratio(large.walls(agent), small.walls(agent))
        lines.append(f"| `{agent}` alone | {s['alone'][agent]:.2f} s | {lg['alone'][agent]:.2f} s | {ratio:.2f} |")
    lines += ["", "Time inside each agent during the parallel check (median `duration_s` from the JSON report):", ""]
    lines += ["| agent | small | large | status |", "|---|---:|---:|---|"]
    for agent in agents:
        durations = {
            name: med([smp.agents[agent][1] for smp in results[name].samples[PARALLEL] if agent in smp.agents] or [0])
            for name in ("small", "large")
        }
        statuses = sorted({smp.agents[agent][0] for r in results.values() for smp in r.samples[PARALLEL]})
        lines.append(f"| `{agent}` | {durations['small']:.2f} s | {durations['large']:.2f} s | {', '.join(statuses)} |")
    if phases:
        lines += render_breakdown(*phases)
    issues = problems(results)
    if issues:
        lines += ["", "**Not every agent run finished normally** (these timings are suspect):", ""]
        lines += [f"- {i}" for i in issues]
    return "\n".join(lines) + "\n"


def write_doc(table: str) -> None:
    """Replace the generated block in docs/benchmarks.md, keeping every other section."""
    text = DOC.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"{DOC} lacks the markers {START} / {END}")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{START}\n{table}{END}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 repetitions instead of 5")
    parser.add_argument("--runs", type=int, help="repetitions (default 5, or 2 with --quick)")
    parser.add_argument("--write", action="store_true", help=f"update {DOC.relative_to(ROOT)}")
    parser.add_argument("--seed", type=int, default=1, help="seed for the order of the checks")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the instrumented per-phase checks")
    args = parser.parse_args()
    reps = args.runs or (2 if args.quick else 5)
    isolate_exports()

    print("building the benchmark repositories (cached under benchmarks/.work/)", file=sys.stderr)
    repos = [bench_repo("small"), bench_repo("large")]
    agents = agent_names()
    print(f"agents: {', '.join(agents)}; test command: {TEST_COMMAND}", file=sys.stderr)
    load_before = os.getloadavg()[0]
    startup = startup_s(5)
    started = time.monotonic()
    results = measure(repos, agents, reps, args.seed)
    load_after = os.getloadavg()[0]
    phases = None
    if not args.no_breakdown:
        print("  instrumented checks (breakdown.py)", file=sys.stderr)
        phases = (phase_breakdown("small", agents, False), phase_breakdown("large", agents, True))
    print(f"measured in {time.monotonic() - started:.0f} s", file=sys.stderr)
    table = render(results, agents, reps, startup, (load_before, load_after), phases)
    raw = {
        name: {what: [vars(smp) for smp in samples] for what, samples in r.samples.items()}
        for name, r in results.items()
    }
    LAST_RUN.write_text(json.dumps({"samples": raw, "breakdown": phases}, indent=1))
    print(f"raw samples: {LAST_RUN.relative_to(ROOT)}", file=sys.stderr)
    print(table)
    if args.write:
        write_doc(table)
        print(f"updated {DOC.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
