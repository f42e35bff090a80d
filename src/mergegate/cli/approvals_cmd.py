"""``mergegate approvals``: the calls hosted agent runs wait on, and the humans' decisions.

``list`` (default: pending ones), ``show ID``, ``approve ID``, ``deny ID --reason …``;
every command takes ``--json``. Only a human who is neither the run's agent principal
nor the author of the change it acts on can decide. Exit codes: 0 done, 1 refused
(403: an agent, the change's author), 2 a wrong request (unknown id, already decided or
expired, no reason for a denial), 3 the server is unreachable.
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mergegate.cli.admin_cmd import JSON_OPT, call, emit

app = typer.Typer(help="Paused agent calls waiting for a human: list, show, approve, deny.", no_args_is_help=True)

STYLE = {"pending": "yellow", "approved": "green", "denied": "bold red", "expired": "red"}
_ID = typer.Argument(..., help="The approval request's id (see `mergegate approvals list`).")


def _args(args: dict[str, Any], width: int = 80) -> str:
    text = json.dumps(args, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= width else text[: width - 1] + "…"


@app.command("list")
def approvals_list(
    state: str = typer.Option("pending", "--state", help="pending, approved, denied, expired, or all."),
    run: int | None = typer.Option(None, "--run", help="Only this agent run's requests."),
    as_json: bool = JSON_OPT,
) -> None:
    """List approval requests (pending ones unless --state says otherwise)."""
    rows = call(lambda c: c.get("/api/approvals", state=None if state == "all" else state, run=run))

    def text() -> None:
        if not rows:
            typer.echo(f"no {'' if state == 'all' else state + ' '}approval requests")
            return
        table = Table(show_lines=False)
        for column in ("ID", "STATUS", "RUN", "CHANGE", "AGENT", "TOOL", "ARGS", "EXPIRES"):
            table.add_column(column, overflow="fold")
        for r in rows:
            table.add_row(
                str(r["id"]),
                f"[{STYLE.get(r['status'], '')}]{r['status']}[/]",
                str(r["run"]),
                str(r["change"] or ""),
                escape(r["agent"]),
                escape(r["tool"]),
                escape(_args(r["args"])),
                r["expires_at"][:19],
            )
        Console(soft_wrap=True).print(table)

    emit(rows, as_json, text)


def _describe(r: dict[str, Any]) -> None:
    console = Console(soft_wrap=True, highlight=False)
    console.print(f"approval request {r['id']}: [{STYLE.get(r['status'], '')}]{r['status']}[/]")
    console.print(f"  run {r['run']} of agent {escape(r['agent'])} on change {r['change']} ({escape(r['repo'] or '')})")
    console.print(f"  call {r['call_index']}: {escape(r['tool'])} {escape(json.dumps(r['args'], ensure_ascii=False))}")
    console.print(f"  why: {escape(r['why'])}")
    console.print(f"  requested {r['requested_at']}, expires {r['expires_at']}")
    if r["status"] != "pending":
        by = f" by {r['decided_by']}" if r["decided_by"] else ""
        console.print(f"  {r['status']}{by} at {r['decided_at']}" + (f": {escape(r['reason'])}" if r["reason"] else ""))


@app.command("show")
def approvals_show(request_id: int = _ID, as_json: bool = JSON_OPT) -> None:
    """Show one request: the exact call, why it needs approval, its state."""
    row = call(lambda c: c.get(f"/api/approvals/{request_id}"))
    emit(row, as_json, lambda: _describe(row))


@app.command("approve")
def approvals_approve(
    request_id: int = _ID,
    reason: str = typer.Option("", "--reason", "-m", help="A note recorded with the approval."),
    as_json: bool = JSON_OPT,
) -> None:
    """Approve the paused call: it runs, and the agent run resumes."""
    row = call(lambda c: c.post(f"/api/approvals/{request_id}/approve", {"reason": reason}))
    emit(row, as_json, f"approved request {request_id}: {row['tool']} of agent {row['agent']} (run {row['run']})")


@app.command("deny")
def approvals_deny(
    request_id: int = _ID,
    reason: str = typer.Option(..., "--reason", "-m", help="Why; the agent receives it as the call's result."),
    as_json: bool = JSON_OPT,
) -> None:
    """Deny the paused call: the agent gets the reason as the tool result and carries on."""
    row = call(lambda c: c.post(f"/api/approvals/{request_id}/deny", {"reason": reason}))
    emit(row, as_json, f"denied request {request_id}: {row['tool']} of agent {row['agent']} (run {row['run']})")
