"""``mergegate change``: changes over the API.

``list``, ``show``, ``comment``; the gate's ``status`` (every rule, ✓ or ✗, with its
reason); reviews (``approve``, ``request-changes``, ``dismiss``); ``merge`` (now, or
``--when-ready``). Every command takes ``--json``. Exit codes: 0 done (``status``:
mergeable), 1 refused or blocked (``status``: not mergeable), 2 a wrong request,
3 the server is unreachable.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from mergegate.cli.admin_cmd import JSON_OPT, _table, call, emit
from mergegate.cli.exit_codes import ExitCode

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
        if cost := change.get("cost"):
            typer.echo(
                f"  model cost:  ${cost['total_usd']} (agent runs: {cost['agent_runs']}, ${cost['agent_runs_usd']}; "
                f"checks: ${cost['checks_usd']})"
            )

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


# -- the gate -----------------------------------------------------------------------------

_NUMBER = typer.Argument(..., help="The change number.")


def _out() -> Console:
    # soft_wrap: a reason is one line, never broken mid-path when piped to a log.
    return Console(soft_wrap=True, highlight=False)


def print_status(status: dict[str, Any]) -> None:
    console = _out()
    verdict = "[bold green]mergeable[/]" if status["mergeable"] else "[bold red]blocked[/]"
    console.print(
        f"change {status['change']} ({status['state']}) → {escape(status['target_branch'])} in "
        f"{escape(status['repo'])}: {verdict}"
    )
    landing = status["landing"]
    if landing["commit"]:
        console.print(f"  landing commit: {landing['commit']} ({landing['method']})")
    console.print(f"  head: {status['head']} (patchset {status['patchset']})")
    for rule in status["rules"]:
        mark = "[green]✓[/]" if rule["satisfied"] else "[red]✗[/]"
        console.print(f"  {mark} {rule['rule']}: {escape(rule['reason'])}")
        if len(rule["details"]) > 1:
            for detail in rule["details"]:
                console.print(f"      - {escape(detail)}")
    if status.get("merge_when_ready_by"):
        console.print(f"  merge when ready: asked by {status['merge_when_ready_by']}")


@app.command("status")
def change_status(number: int = _NUMBER, as_json: bool = JSON_OPT) -> None:
    """The gate's verdict: every rule, satisfied (✓) or not (✗), with the reason.
    Exits 0 when the change is mergeable, 1 when it is blocked."""
    status = call(lambda c: c.get(f"/api/changes/{number}/status"))
    emit(status, as_json, lambda: print_status(status))
    if not status["mergeable"]:
        raise typer.Exit(int(ExitCode.BLOCKED))


def _review(number: int, state: str, body: str, head: str | None, as_json: bool, done: str) -> None:
    payload = {"state": state, "body": body, "expected_head": head}
    review = call(lambda c: c.post(f"/api/changes/{number}/reviews", payload))
    emit(review, as_json, f"{done} change {number} (patchset {review['patchset']}, {review['head'][:12]})")


_BODY = typer.Option("", "--message", "-m", help="What you say with the review.")
_HEAD = typer.Option(None, "--head", help="The head commit you reviewed; refused if the change moved since.")


@app.command("approve")
def change_approve(number: int = _NUMBER, message: str = _BODY, head: str | None = _HEAD, as_json: bool = JSON_OPT):
    """Approve the change's current content (humans; not its author or last pusher)."""
    _review(number, "approve", message, head, as_json, "approved")


@app.command("request-changes")
def change_request_changes(
    number: int = _NUMBER, message: str = _BODY, head: str | None = _HEAD, as_json: bool = JSON_OPT
):
    """Request changes: blocks the merge until you approve or a maintainer dismisses it."""
    _review(number, "request_changes", message, head, as_json, "requested changes on")


@app.command("dismiss")
def change_dismiss(
    number: int = _NUMBER,
    review: int = typer.Argument(..., help="The review id (see `change status`)."),
    reason: str = typer.Option(..., "--reason", "-m", help="Why the review is dismissed."),
    as_json: bool = JSON_OPT,
) -> None:
    """Dismiss a review (human maintainers and admins)."""
    row = call(lambda c: c.post(f"/api/changes/{number}/reviews/{review}/dismiss", {"reason": reason}))
    emit(row, as_json, f"dismissed {row['reviewer']}'s {row['state']} review {review} on change {number}")


@app.command("merge")
def change_merge(
    number: int = _NUMBER,
    method: str | None = typer.Option(None, "--method", help="merge, squash or rebase."),
    when_ready: bool = typer.Option(False, "--when-ready", help="Let the gate merge once every rule holds."),
    cancel: bool = typer.Option(False, "--cancel", help="With --when-ready: withdraw the request."),
    as_json: bool = JSON_OPT,
) -> None:
    """Merge the change now (exit 1 with every reason if the gate says no), or --when-ready."""
    if method is not None and method not in ("merge", "squash", "rebase"):
        from mergegate.cli.console import fail

        raise fail(f"--method must be merge, squash or rebase, not {method!r}")
    if when_ready:
        if cancel:
            result = call(lambda c: c.delete(f"/api/changes/{number}/merge-when-ready"))
            emit(result, as_json, f"change {number}: merge when ready withdrawn")
            return
        result = call(lambda c: c.post(f"/api/changes/{number}/merge-when-ready", {"method": method}))
        text = f"change {number}: the gate merges it ({result['method']}) as soon as every rule holds"
        if result.get("note"):
            text += f"\n  {result['note']}"
        emit(result, as_json, text)
        return
    result = call(lambda c: c.post(f"/api/changes/{number}/merge", {"method": method}))
    emit(
        result,
        as_json,
        f"merged change {number} into {result['branch']}: {result['commit']} ({result['method']}; "
        f"approved by {', '.join(result['approvers'])})",
    )
