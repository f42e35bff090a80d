"""Benchmark ``mergegate serve``: pushes per second and push → verdict latency, SQLite vs PostgreSQL.

Usage (from the repository root)::

    .venv/bin/python benchmarks/server.py            # 1, 10 and 100 concurrent changes
    .venv/bin/python benchmarks/server.py --quick    # 1, 10 and 30
    .venv/bin/python benchmarks/server.py --write    # also appends/updates the block in docs/benchmarks.md

Everything is real: two ``python -m mergegate serve`` processes (one on a fresh SQLite
file, one on a fresh ``mg_bench_<uuid>`` PostgreSQL database, dropped afterwards), the
git CLI pushing over HTTP, and the gate's own checks. For each level N, N one-line
changes are pushed at once, each by its own ``git push`` to its own branch (so each push
opens a change). The levels alternate between the two servers (SQLite N, PostgreSQL N,
then the next N) so that the ratios compare measurements taken a minute apart at most.

- **pushes per second**: N ÷ the time from starting the N pushes to the last change
  being open (the push event handled: change row, landing commit, check events queued);
- **push → verdict**: per change, from its ``git push`` returning to ``GET
  /api/changes/{n}/status`` showing a result of the gate's ``mergegate/check`` on the
  change's current landing commit (p50 and p95 over the N changes).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.server.conftest import GateServer, git_env  # noqa: E402  (the same server fixture the tests use)

DOC = ROOT / "docs" / "benchmarks.md"
LAST_RUN = Path(__file__).resolve().parent / ".work" / "last-server-run.json"
START, END = "<!-- benchmarks/server.py: start -->", "<!-- benchmarks/server.py: end -->"
PG_ADMIN_URL = os.environ.get("MERGEGATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ("sqlite", "postgresql")

#: The base policy: only the two cheap agents, so the numbers are about the gate (events,
#: landing commits, check scheduling, the database), not about ruff, bandit or the tests.
BASE_POLICY = (
    "agents:\n"
    "  test-coverage: {enabled: false}\n"
    "  security-scan: {enabled: false}\n"
    "  secrets: {enabled: false}\n"
    "  llm-review: {enabled: false}\n"
)
OPENED = re.compile(r"change (\d+) opened")
#: What the post-receive hook says when it could not store the push (the ref moved anyway).
UNRECORDED = "could not be recorded"


@contextlib.contextmanager
def fresh_database(backend: str, directory: Path) -> Iterator[str]:
    if backend == "sqlite":
        directory.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{directory / 'mergegate.db'}"
        return
    import psycopg

    name = f"mg_bench_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def git(env: dict, *args: str, cwd: Path | None = None, stdin: str | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


@dataclass
class Bench:
    """One server with a repository and a pusher."""

    backend: str
    server: GateServer
    repo: str
    user: str
    token: str
    src: Path
    env: dict
    main: str
    made: int = 0

    @property
    def push_url(self) -> str:
        return self.server.clone_url(self.repo, self.user, self.token)

    def commits(self, n: int, tag: str) -> list[tuple[str, str]]:
        """n commits on top of main, each adding one one-line file; (branch, sha) pairs,
        made in one ``git fast-import`` so that preparing them costs nothing measurable."""
        stream = []
        branches = []
        for i in range(n):
            self.made += 1
            branch = f"bench/{tag}-{i}"
            body = f"VALUE_{self.made} = {self.made}\n"
            msg = f"Add value {self.made}\n"
            stream += [
                f"commit refs/heads/{branch}",
                f"mark :{self.made}",
                "committer Bench <bench@example.com> 1700000000 +0000",
                f"data {len(msg.encode())}",
                msg.rstrip("\n"),
                f"from {self.main}",
                f"M 100644 inline values/v{self.made}.py",
                f"data {len(body.encode())}",
                body,
            ]
            branches.append(branch)
        git(self.env, "fast-import", "--quiet", cwd=self.src, stdin="\n".join(stream) + "\n")
        return [(b, git(self.env, "rev-parse", f"refs/heads/{b}", cwd=self.src)) for b in branches]


def setup(backend: str, root: Path, stack: contextlib.ExitStack) -> Bench:
    root.mkdir(parents=True, exist_ok=True)
    url = stack.enter_context(fresh_database(backend, root / "db"))
    server = GateServer(data_dir=root / "data", database_url=url)
    server.start(timeout=60)
    stack.callback(server.stop)
    env = git_env(root / "home")
    src = root / "src"
    git(env, "init", "-q", "-b", "main", str(src))
    (src / ".mergegate.yml").write_text(BASE_POLICY)
    (src / "README.md").write_text("benchmark\n")
    git(env, "add", "-A", cwd=src)
    git(env, "commit", "-q", "-m", "Initial", cwd=src)
    server.create_repo("bench", str(src))
    token = server.add_principal("pusher", "agent", "contributor", email="pusher@example.com")
    return Bench(backend, server, "bench", "pusher", token, src, env, git(env, "rev-parse", "HEAD", cwd=src))


@dataclass
class Level:
    backend: str
    n: int
    wall_s: float = 0.0  # first push started → last change open
    push_s: list[float] = field(default_factory=list)  # each git push's own duration
    latency_s: list[float] = field(default_factory=list)  # push returned → landing check result visible
    from_start_s: list[float] = field(default_factory=list)  # push started → landing check result visible
    statuses: dict[str, int] = field(default_factory=dict)
    failed_pushes: int = 0
    unrecorded: int = 0  # pushes that landed but whose event the hook could not store (no change)
    no_verdict: int = 0  # changes with no landing-check result within the verdict timeout
    not_seen_open: int = 0  # pushes whose change the poller never saw (left out of pushes/s)
    poll_sweep_s: float = 0.0
    load: float = 0.0

    @property
    def pushes_per_s(self) -> float:
        return self.n / self.wall_s

    def verdict(self, q: float, from_start: bool = False) -> float:
        """Percentile of push → verdict; a change without a verdict counts as infinitely late."""
        seen = [v for v in (self.from_start_s if from_start else self.latency_s) if v == v]  # drop NaN
        return pct(seen + [float("inf")] * self.no_verdict, q)


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values) or [float("nan")]
    return ordered[max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))]


def secs(value: float) -> str:
    return "none in time" if value == float("inf") else f"{value:.2f} s"


def ratio(a: float, b: float) -> str:
    return "n/a" if float("inf") in (a, b) or not b else f"{a / b:.2f}"


def run_level(bench: Bench, n: int, clients: int, verdict_timeout: float) -> Level:
    level = Level(bench.backend, n)
    pairs = bench.commits(n, f"{n}-{uuid.uuid4().hex[:6]}")
    by_branch: dict[str, dict] = {b: {"sha": sha} for b, sha in pairs}
    lock = threading.Lock()
    started = time.monotonic()

    def push(branch: str) -> None:
        t0 = time.monotonic()
        with lock:
            by_branch[branch]["started_at"] = t0
        proc = subprocess.run(
            ["git", "push", "-q", bench.push_url, f"{by_branch[branch]['sha']}:refs/heads/{branch}"],
            cwd=bench.src,
            env=bench.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        t1 = time.monotonic()
        with lock:
            rec = by_branch[branch]
            rec["push_s"], rec["pushed_at"], rec["ok"] = t1 - t0, t1, proc.returncode == 0
            rec["said"] = proc.stderr[-1000:]
            if proc.returncode != 0:
                rec["error"] = proc.stderr[-500:]
            if found := OPENED.search(proc.stderr):
                rec["number"], rec["opened_at"] = int(found.group(1)), t1

    pool = ThreadPoolExecutor(max_workers=min(n, clients))
    futures = [pool.submit(push, b) for b in by_branch]

    # One poller: find change numbers for pushes that returned before their change was
    # reported (hook_wait_s ran out), and poll each pushed change's status until the
    # gate's check of its landing commit has a result.
    sweeps = []
    with bench.server.admin() as api:
        while True:
            sweep_start = time.monotonic()
            with lock:
                recs = list(by_branch.items())
            if any("number" not in r and r.get("ok") for _, r in recs):
                listing = api.get("/api/changes", params={"repo": bench.repo}).json()
                now = time.monotonic()
                with lock:
                    for ch in listing:
                        rec = by_branch.get(ch["source_ref"].removeprefix("refs/heads/"))
                        if rec is not None and "number" not in rec:
                            rec["number"], rec["opened_at"] = ch["number"], now
            pending = polled = 0
            for _, rec in recs:
                if "verdict_at" in rec or (rec.get("ok") is False):
                    continue
                if "number" not in rec or "pushed_at" not in rec:
                    pending += 1
                    continue
                polled += 1
                st = api.get(f"/api/changes/{rec['number']}/status").json()
                landing = (st.get("landing") or {}).get("commit")
                ours = [c for c in st.get("checks", []) if c["commit"] == landing and c["producer"] == "mergegate"]
                if landing and st["landing"].get("current") and ours and all(c["status"] != "pending" for c in ours):
                    rec["verdict_at"], rec["status"] = time.monotonic(), ours[-1]["status"]
                else:
                    pending += 1
            if polled:
                sweeps.append(time.monotonic() - sweep_start)
            if not pending:
                break
            with lock:
                returned = [r["pushed_at"] for r in by_branch.values() if "pushed_at" in r]
            if len(returned) == n and time.monotonic() - max(returned) > verdict_timeout:
                print(f"  {bench.backend} N={n}: {pending} changes without a verdict", file=sys.stderr)
                break
            time.sleep(0.05)
    pool.shutdown()
    for f in futures:
        f.result()
    recs = list(by_branch.values())
    ok = [r for r in recs if r.get("ok")]
    level.failed_pushes = len(recs) - len(ok)
    for r in recs:
        if not r.get("ok"):
            print(f"  push failed: {r.get('error')}", file=sys.stderr)
    # A change not seen open by the poller opened no later than its verdict was seen.
    opened = [r.get("opened_at", r.get("verdict_at")) for r in ok]
    level.not_seen_open = sum(1 for t in opened if t is None)
    level.unrecorded = sum(1 for r in ok if UNRECORDED in r["said"])
    for branch, r in by_branch.items():
        if r.get("ok") and "number" not in r:
            print(f"  {bench.backend} N={n}: {branch} never seen open; its push said: {r['said']!r}", file=sys.stderr)
    level.wall_s = max(t for t in opened if t is not None) - started
    level.push_s = [r["push_s"] for r in ok]
    seen = [r for r in ok if "verdict_at" in r]
    level.no_verdict = len(ok) - len(seen)
    level.latency_s = [r["verdict_at"] - r["pushed_at"] for r in seen] or [float("nan")]
    level.from_start_s = [r["verdict_at"] - r["started_at"] for r in seen] or [float("nan")]
    for r in seen:
        level.statuses[r["status"]] = level.statuses.get(r["status"], 0) + 1
    level.poll_sweep_s = statistics.median(sweeps or [0.0])
    level.load = os.getloadavg()[0]
    try:  # the heads' (informational) checks too, before the next level
        bench.server.wait_idle(verdict_timeout)
    except AssertionError:
        print(f"  {bench.backend} N={n}: events still pending (leased checks?)", file=sys.stderr)
    return level


def hook_cost(bench: Bench, runs: int = 5) -> float:
    """Median wall time of starting the receive hook's interpreter (``python -m
    mergegate.forge.local.hooks --help``-like: import and exit), the fixed cost a push pays twice."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import mergegate.forge.local.hooks"], capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# -- report ----------------------------------------------------------------------------


def _commit() -> str:
    def g(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    sha = g("rev-parse", "--short", "HEAD") or "unknown"
    return sha + (" (with uncommitted changes)" if g("status", "--porcelain", "--untracked-files=no") else "")


def server_errors(server: GateServer) -> dict[str, int]:
    """What went wrong inside the server: lines of its log, counted by kind."""
    text = server.log_path.read_text(errors="replace") if server.log_path else ""
    found = {
        "check worker errors (retried)": text.count("the check worker hit an error"),
        "check results that could not be stored (given back, run again)": text.count("giving it back"),
        "event transactions that failed (attempt counted)": text.count("its transaction failed"),
        "push events that failed an attempt": len(re.findall(r"event \d+ \(push\) failed", text)),
        "deadlocks detected": text.count("deadlock detected") // 2,  # psycopg's and SQLAlchemy's line
        "database is locked": text.count("database is locked"),
    }
    return {k: v for k, v in found.items() if v}


def render(
    levels: dict[tuple[str, int], Level],
    ns: list[int],
    clients: int,
    load: tuple,
    hook_s: float,
    verdict_timeout: float,
    errors: dict[str, dict[str, int]],
    at: str,
    commit: str,
) -> str:
    cpus = os.cpu_count() or 1
    peak = max([*load, *(lv.load for lv in levels.values())])
    lines = [
        f"Run {at} UTC · one run per level · {cpus} CPUs · "
        f"Python {platform.python_version()} · {platform.system()} {platform.release()} · "
        f"git {subprocess.run(['git', '--version'], capture_output=True, text=True).stdout.split()[-1]} · "
        f"mergegate {commit} · 1-min load average {load[0]:.2f} before, {load[1]:.2f} after, "
        f"{peak:.2f} at the highest",
        "",
    ]
    if peak > cpus:
        lines += [
            f"**Warning:** the load average exceeded the {cpus} CPUs during this run (other work on the "
            "machine, and the benchmark's own git clients and checks); seconds are inflated and noisy, "
            "the ratios less so.",
            "",
        ]
    lines += [
        f"Server defaults (`check_workers` 2, `hook_wait_s` 10, `worker_poll_s` 0.1); at most {clients} git "
        f"clients at once; starting the hook's interpreter costs {hook_s:.2f} s here (twice per push).",
        "",
        "| concurrent changes | backend | pushes/s | git push p50 | push → verdict p50 | p95 "
        "| push start → verdict p50 | p95 | results |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for n in ns:
        for b in BACKENDS:
            lv = levels[(b, n)]
            res = ", ".join(f"{k} {v}" for k, v in sorted(lv.statuses.items()))
            if lv.failed_pushes:
                res += f", **{lv.failed_pushes} pushes failed**"
            if lv.unrecorded:
                res += f", **{lv.unrecorded} pushes landed but not recorded**"
            if lv.not_seen_open:
                res += f", **{lv.not_seen_open} changes never seen open**"
            if lv.no_verdict:
                res += f", **{lv.no_verdict} without a verdict**"
            lines.append(
                f"| {n} | {b} | {lv.pushes_per_s:.2f} | {pct(lv.push_s, 0.5):.2f} s "
                f"| {secs(lv.verdict(0.5))} | {secs(lv.verdict(0.95))} "
                f"| {secs(lv.verdict(0.5, True))} | {secs(lv.verdict(0.95, True))} | {res} |"
            )
    lines += [
        "",
        "Ratios within the run:",
        "",
        "| concurrent changes | pushes/s PostgreSQL ÷ SQLite | verdict p50 PostgreSQL ÷ SQLite "
        "| verdict p95 PostgreSQL ÷ SQLite |",
        "|---:|---:|---:|---:|",
    ]
    for n in ns:
        s, p = levels[("sqlite", n)], levels[("postgresql", n)]
        lines.append(
            f"| {n} | {p.pushes_per_s / s.pushes_per_s:.2f} | {ratio(p.verdict(0.5), s.verdict(0.5))} "
            f"| {ratio(p.verdict(0.95), s.verdict(0.95))} |"
        )
    lines += [
        "",
        "| backend | " + " | ".join(f"pushes/s {n} ÷ 1 | verdict p50 {n} ÷ 1" for n in ns[1:]) + " |",
        "|---|" + "---:|---:|" * len(ns[1:]),
    ]
    for b in BACKENDS:
        one = levels[(b, ns[0])]
        cells = []
        for n in ns[1:]:
            lv = levels[(b, n)]
            cells += [
                f"{lv.pushes_per_s / one.pushes_per_s:.2f}",
                ratio(lv.verdict(0.5), one.verdict(0.5)),
            ]
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    sweeps = ", ".join(f"{b} N={n}: {levels[(b, n)].poll_sweep_s:.2f} s" for n in ns for b in BACKENDS)
    lines += [
        "",
        f"Latency resolution: one poller sweeps every outstanding change's status in turn (median sweep: {sweeps}).",
        f"A change counts as *without a verdict* when none was visible {verdict_timeout:.0f} s after the last push "
        "of its level returned.",
    ]
    for b in BACKENDS:
        if errors.get(b):
            lines.append(f"\n**{b} server log:** " + "; ".join(f"{k}: {v}" for k, v in errors[b].items()) + ".")
    return "\n".join(lines) + "\n"


def write_doc(table: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"{DOC} lacks the markers {START} / {END}")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{START}\n{table}{END}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="levels 1, 10, 30 instead of 1, 10, 100")
    parser.add_argument("--levels", help="comma-separated concurrency levels (default 1,10,100)")
    parser.add_argument("--clients", type=int, default=100, help="most git clients at once (default 100)")
    parser.add_argument(
        "--verdict-timeout", type=float, default=120, help="seconds after the last push to wait for verdicts"
    )
    parser.add_argument("--write", action="store_true", help=f"update {DOC.relative_to(ROOT)}")
    parser.add_argument("--render", action="store_true", help=f"only re-render {LAST_RUN.name} (no measuring)")
    args = parser.parse_args()
    ns = [int(x) for x in args.levels.split(",")] if args.levels else ([1, 10, 30] if args.quick else [1, 10, 100])
    if args.render:
        saved = json.loads(LAST_RUN.read_text())
        meta = saved.pop("meta")
        levels = {(lv["backend"], lv["n"]): Level(**lv) for lv in saved.values()}
        args_ = (meta["ns"], meta["clients"], tuple(meta["load"]), meta["hook_s"], meta["timeout"], meta["errors"])
        table = render(levels, *args_, meta.get("at", "(time not saved)"), meta.get("commit", "(not saved)"))
        print(table)
        if args.write:
            write_doc(table)
        return

    load_before = os.getloadavg()[0]
    levels: dict[tuple[str, int], Level] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mergegate-server-bench-") as tmp, contextlib.ExitStack() as stack:
        benches = {b: setup(b, Path(tmp) / b, stack) for b in BACKENDS}
        hook_s = hook_cost(benches["sqlite"])
        for b in BACKENDS:  # warm-up: one change each, untimed
            run_level(benches[b], 1, 1, args.verdict_timeout)
        for n in ns:
            for b in BACKENDS:
                lv = run_level(benches[b], n, args.clients, args.verdict_timeout)
                levels[(b, n)] = lv
                print(
                    f"  {b} N={n}: {lv.pushes_per_s:.2f} pushes/s, verdict p50 {secs(lv.verdict(0.5))} "
                    f"p95 {secs(lv.verdict(0.95))}, load {lv.load:.2f}",
                    file=sys.stderr,
                    flush=True,
                )
        errors = {b: server_errors(benches[b].server) for b in BACKENDS}
    print(f"measured in {time.monotonic() - started:.0f} s", file=sys.stderr)
    load = (load_before, os.getloadavg()[0])
    at, commit = f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M}", _commit()  # what was measured, kept for --render
    table = render(levels, ns, args.clients, load, hook_s, args.verdict_timeout, errors, at, commit)
    LAST_RUN.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "ns": ns,
        "clients": args.clients,
        "load": load,
        "hook_s": hook_s,
        "timeout": args.verdict_timeout,
        "at": at,
        "commit": commit,
    }
    saved = {f"{b}-{n}": vars(lv) for (b, n), lv in levels.items()}
    LAST_RUN.write_text(json.dumps({**saved, "meta": {**meta, "errors": errors}}, indent=1))
    print(table)
    if args.write:
        write_doc(table)
        print(f"updated {DOC.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
