from __future__ import annotations

import asyncio
import shutil
import tempfile
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
) -> None:
    """Build a demo repository with an agent-written change and check it.

    The change introduces an SQL injection, weakens a test, leaks an API key and tries
    to relax .mergegate.yml. Exit 0 when mergegate blocks it, as it should; 1 if not.
    """
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
