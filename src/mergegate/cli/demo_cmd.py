from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import typer
from rich.console import Console

from mergegate.cli.check_cmd import LiveProgress, Require, exit_code
from mergegate.cli.console import err, fail
from mergegate.core.routing import Action
from mergegate.report.text_format import build
from mergegate.service.check import default_audit_path, run_check
from mergegate.service.demo import build_demo_repo
from mergegate.store.audit_log import AuditLog
from mergegate.vcs.git import GitRepo


def demo(
    where: Path | None = typer.Option(
        None, "--dir", help="Build the demo repository here (must be empty). Default: a new temporary directory."
    ),
    serve: bool = typer.Option(
        False, "--serve", help="Start a gate server seeded with the demo (principals, a repository, four changes)."
    ),
    data: Path | None = typer.Option(
        None, "--data", help="With --serve: the server's data directory (new or empty). Default: a temporary one."
    ),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="With --serve: the port to listen on."),
) -> None:
    """Build a demo repository with an agent-written change and check it.

    The change introduces an SQL injection, weakens a test, leaks an API key and tries
    to relax .mergegate.yml. Exit 0 when mergegate blocks it, as it should; 1 if not.

    With --serve: start a gate server, seed it with a human maintainer (dana), a second
    human (sam), an agent (coding-agent) and four changes, print every verdict and the
    commands to approve and merge, and serve until Ctrl-C.
    """
    if serve:
        serve_demo(data, port)
        return
    out = Console()
    if where and where.exists() and any(where.iterdir()):
        raise fail(f"{where} is not empty")
    workdir = where or Path(tempfile.mkdtemp(prefix="mergegate-demo-")) / "repo"
    base, head = build_demo_repo(workdir)
    # The Quickstart runs us from .venv/bin, which is not on the user's PATH: show the real path.
    mg = shutil.which("mergegate") or "mergegate"
    out.rule("[bold]mergegate demo")
    out.print(
        f"Demo repository: {workdir}\n"
        f"An agent (coding-agent[bot]) pushed [bold]{head}[/]: it adds an SQL injection, leaks an API key,\n"
        f"skips and loosens tests, and edits .mergegate.yml to advisory mode.\n"
        f"Running: [bold]{mg} check --repo {workdir} --base {base} --head {head}[/]\n"
    )
    repo = GitRepo(workdir)
    audit = AuditLog(default_audit_path(repo))
    live = LiveProgress() if err.is_terminal else None
    if live:
        with live.live:
            report = asyncio.run(run_check(repo, base, head, None, audit, live))
    else:
        report = asyncio.run(run_check(repo, base, head, None, audit))
    out.print(build(report))
    code = exit_code(report, Require.pass_)
    out.print(
        f"\n`mergegate check` would exit {int(code)}. The policy came from [bold]{report.policy.source}[/]: the\n"
        "change's own edit to .mergegate.yml (advisory mode) was ignored.\n"
        f"Audit log: {audit.path}  (verify: {mg} audit verify {audit.path})\n"
        f"Try a format: {mg} check --repo {workdir} --base {base} --head {head} --format markdown"
    )
    blocked = report.decision.action in (Action.BLOCK_SECURITY, Action.REJECT)
    raise typer.Exit(0 if blocked else 1)


def serve_demo(data: Path | None, port: int) -> None:
    from rich.table import Table

    from mergegate.service import demo_server

    out = Console()
    if data and data.exists() and any(data.iterdir()):
        raise fail(f"{data} is not empty: the demo seeds a new server")
    root = Path(tempfile.mkdtemp(prefix="mergegate-demo-serve-"))
    data_dir = (data or root / "data").resolve()
    url = f"http://127.0.0.1:{port}"
    printed = root / "serve.out"
    cmd = [sys.executable, "-m", "mergegate", "serve", "--data", str(data_dir), "--port", str(port)]
    cmd += ["--log-level", "warning"]
    with open(printed, "wb") as stdout:
        proc = subprocess.Popen(cmd, stdout=stdout, env={**os.environ, "COLUMNS": "250", "NO_COLOR": "1"})
    try:
        token = _wait_started(proc, url, printed)
        out.rule("[bold]mergegate demo --serve")
        out.print(
            f"Gate server: [bold]{url}[/]  (data: {data_dir})\nSeeding: dana, sam, coding-agent and four changes…"
        )
        seeded = demo_server.seed(url, token, workdir=root / "seed")
        table = Table("change", "title", "author", "gate check", "verdict in words")
        for row in demo_server.table(seeded):
            table.add_row(*row)
        out.print(table)
        beside = Path(sys.executable).parent / "mergegate"
        mg = shutil.which("mergegate") or (str(beside) if beside.exists() else f"{sys.executable} -m mergegate")
        n = seeded.numbers
        sam = seeded.tokens[demo_server.APPROVER]
        out.print(
            f"\nAs sam (a human maintainer, neither the author nor the pusher of change {n['clean']}):\n"
            f"  export MERGEGATE_URL={url} MERGEGATE_TOKEN={sam}\n"
            f"  {mg} change status {n['clean']}      # green checks, waiting for one approval\n"
            f"  {mg} change approve {n['clean']}\n"
            f"  {mg} change merge {n['clean']}\n"
            "The agent's changes cannot be merged, whoever asks:\n"
            f"  {mg} change status {n['sqli']}      # the gate's check found an SQL injection\n"
            f"  {mg} change status {n['weak-test']}      # a skipped test and a loosened assertion\n"
            f"  {mg} change status {n['policy']}      # judged by the base policy; needs an admin\n"
            f"  {mg} change merge {n['sqli']}       # refused: blocked\n"
            f"As the agent (its token can never approve or merge):\n"
            f"  MERGEGATE_TOKEN={seeded.tokens[demo_server.AGENT]} {mg} change approve {n['sqli']}\n"
            f"Clone the repository: git clone http://sam:{sam}@127.0.0.1:{port}/git/{seeded.repo}.git\n"
            f"\nServing until Ctrl-C.",
            soft_wrap=True,
            highlight=False,
        )
        proc.wait()
    except KeyboardInterrupt:
        out.print("\nstopping the server")
    except demo_server.SeedError as exc:
        raise fail(f"seeding the demo failed: {exc}") from None
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_started(proc: subprocess.Popen, url: str, printed: Path, timeout: float = 60.0) -> str:
    """Wait for /healthz; return the admin token the first start printed."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise fail(f"the server exited with {proc.returncode}: {printed.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                found = re.search(r"admin token: (\S+)", printed.read_text())
                if not found:
                    raise fail("the server did not print an admin token (is its data directory new?)")
                return found.group(1)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise fail(f"the server did not start within {timeout:g}s")
