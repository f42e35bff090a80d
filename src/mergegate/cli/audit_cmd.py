from __future__ import annotations

import json
from pathlib import Path

import typer

from mergegate.cli.console import err, fail
from mergegate.cli.exit_codes import ExitCode
from mergegate.service.check import default_audit_path
from mergegate.store.audit_log import AuditLog
from mergegate.vcs.git import GitError, GitRepo

app = typer.Typer(help="Inspect the hash-chained audit log.", no_args_is_help=True)


@app.command("verify")
def verify(
    file: Path | None = typer.Argument(None, help="The log. Default: .git/mergegate/audit.jsonl of --repo."),
    repo: Path = typer.Option(Path("."), "--repo", help="Repository whose default log to verify."),
    expect_head: str | None = typer.Option(
        None, "--expect-head", help="The last entry's hash as recorded elsewhere (detects a truncated tail)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Verify the chain. Exit 0 if intact, 1 naming the first bad line, 2 if unreadable."""
    if file is None:
        try:
            file = default_audit_path(GitRepo(repo))
        except GitError as exc:
            raise fail(str(exc)) from None
    if not file.is_file():
        raise fail(f"{file}: no such audit log")
    report = AuditLog(file).verify(expect_head)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "entries": report.entries,
                    "head": report.head,
                    "bad_line": report.bad_line,
                    "reason": report.reason,
                }
            )
        )
    elif report.ok:
        err.print(f"[green]ok[/]: {file}: {report.entries} entries, chain intact, head {report.head}")
    else:
        where = f"line {report.bad_line}" if report.bad_line else "end of log"
        err.print(f"[bold red]tampered[/]: {file}: {where}: {report.reason}", highlight=False)
    raise typer.Exit(int(ExitCode.PASS if report.ok else ExitCode.BLOCKED))
