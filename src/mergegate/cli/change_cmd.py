"""``mergegate change``: changes over the API (list, show, comment).

Reviews, status and merge join this group as the gate grows.
"""

from __future__ import annotations

import typer

from mergegate.cli.admin_cmd import JSON_OPT, _table, call, emit

app = typer.Typer(help="Changes (opened by pushing a branch or refs/for/<branch>).", no_args_is_help=True)


@app.command("list")
def change_list(
    repo: str | None = typer.Option(None, "--repo", help="Only this repository."),
    state: str | None = typer.Option(None, "--state", help="open, merged or abandoned."),
    as_json: bool = JSON_OPT,
) -> None:
    """List changes, oldest first."""
    changes = call(lambda c: c.get("/api/changes", repo=repo, state=state))
    rows = [
        [str(c["number"]), c["repo"] or "", c["state"], str(c["patchset"]), _route(c), c["author"], c["subject"]]
        for c in changes
    ]
    emit(changes, as_json, lambda: _table(rows, ["N", "REPO", "STATE", "PS", "ROUTE", "AUTHOR", "SUBJECT"]))


def _route(change: dict) -> str:
    source = change["source_ref"].removeprefix("refs/heads/")
    return f"{source} → {change['target_branch']}"


@app.command("show")
def change_show(number: int = typer.Argument(..., help="The change number."), as_json: bool = JSON_OPT) -> None:
    """Show a change with its patchsets and comments."""
    change = call(lambda c: c.get(f"/api/changes/{number}"))

    def text() -> None:
        typer.echo(f"change {change['number']} ({change['state']}) in {change['repo']}: {change['subject']}")
        typer.echo(f"  route:       {_route(change)}")
        typer.echo(f"  author:      {change['author']}   last pusher: {change['last_pusher']}")
        typer.echo(f"  head:        {change['head_sha']}  ({change['head_ref']}, patchset {change['patchset']})")
        if change["change_id"]:
            typer.echo(f"  Change-Id:   {change['change_id']}")
        for ps in change["patchsets"]:
            typer.echo(f"  patchset {ps['number']}: {ps['commit'][:12]} by {ps['pusher']} at {ps['created_at']}")
        for cm in change["comments"]:
            typer.echo(f"  comment by {cm['author']} on patchset {cm['patchset']}: {cm['body']}")

    emit(change, as_json, text)


@app.command("comment")
def change_comment(
    number: int = typer.Argument(..., help="The change number."),
    message: str = typer.Argument(..., help="The comment."),
    as_json: bool = JSON_OPT,
) -> None:
    """Comment on a change (agents may)."""
    comment = call(lambda c: c.post(f"/api/changes/{number}/comments", {"body": message}))
    emit(comment, as_json, f"commented on change {number} (patchset {comment['patchset']})")
