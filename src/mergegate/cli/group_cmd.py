"""``mergegate group``: server-defined groups that CODEOWNERS names as ``@group``."""

from __future__ import annotations

import typer

from mergegate.cli.admin_cmd import JSON_OPT, _table, call, emit

app = typer.Typer(help="Groups for CODEOWNERS (@group, @org/team).", no_args_is_help=True)


@app.command("add")
def group_add(
    name: str = typer.Argument(..., help="The group (security, org/team; a leading @ is fine)."),
    members: list[str] = typer.Argument(..., help="Principal names to add."),
    as_json: bool = JSON_OPT,
) -> None:
    """Create the group if needed and add members (human admins)."""
    group = call(lambda c: c.post(f"/api/groups/{name.removeprefix('@')}/members", {"members": members}))
    emit(group, as_json, f"@{group['name']}: {', '.join(group['members'])}")


@app.command("remove")
def group_remove(
    name: str = typer.Argument(..., help="The group."),
    member: str = typer.Argument(..., help="The principal to remove."),
    as_json: bool = JSON_OPT,
) -> None:
    """Remove a member (human admins)."""
    group = call(lambda c: c.delete(f"/api/groups/{name.removeprefix('@')}/members/{member}"))
    emit(group, as_json, f"@{group['name']}: {', '.join(group['members']) or '(no members)'}")


@app.command("list")
def group_list(as_json: bool = JSON_OPT) -> None:
    """Every group and its members."""
    groups = call(lambda c: c.get("/api/groups"))
    rows = [[f"@{g['name']}", ", ".join(g["members"])] for g in groups]
    emit(groups, as_json, lambda: _table(rows, ["GROUP", "MEMBERS"]))
