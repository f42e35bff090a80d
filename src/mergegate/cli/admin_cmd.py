"""``mergegate user|token|repo``: principals, tokens and repositories over the API.

Exit codes: 0 done, 1 refused (401/403), 2 a wrong request, 3 the server is
unreachable or failed. ``token create --data DIR`` works without the server (for a
lost admin token): whoever can read the data directory could edit the database anyway,
so it acts as the local operator, audited as ``local:<os user>``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from mergegate.cli.api_client import ApiClient, ApiError
from mergegate.cli.console import err, fail

user_app = typer.Typer(help="Principals (humans and agents).", no_args_is_help=True)
token_app = typer.Typer(help="API tokens (shown once, stored hashed).", no_args_is_help=True)
repo_app = typer.Typer(help="Repositories served by the gate.", no_args_is_help=True)

JSON_OPT = typer.Option(False, "--json", help="Print the result as JSON.")


def call(fn: Callable[[ApiClient], Any]) -> Any:
    """Run one API call, turning every failure into a clear message and exit code."""
    try:
        return fn(ApiClient.from_environment())
    except ApiError as exc:
        raise fail(exc.message, exc.code) from None


def emit(data: Any, as_json: bool, text: str | Callable[[], None]) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
    elif callable(text):
        text()
    else:
        typer.echo(text)


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


# -- users ------------------------------------------------------------------------------


@user_app.command("add")
def user_add(
    name: str = typer.Argument(..., help="Unique name (letters, digits, '.', '_', '-')."),
    kind: str = typer.Option(..., "--kind", help="human or agent (fixed forever)."),
    role: str = typer.Option("contributor", "--role", help="admin, maintainer or contributor."),
    email: str | None = typer.Option(None, "--email", help="Email address (CODEOWNERS may name it)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Create a principal (needs manage_principals: human admins only)."""
    if kind not in ("human", "agent"):
        raise fail(f"--kind must be human or agent, not {kind!r}")
    body = {"name": name, "kind": kind, "role": role, "email": email}
    user = call(lambda c: c.post("/api/users", body))
    emit(user, as_json, f"created {user['kind']} {user['name']} ({user['role']})")


@user_app.command("list")
def user_list(as_json: bool = JSON_OPT) -> None:
    """List principals (admins only)."""
    users = call(lambda c: c.get("/api/users"))
    emit(
        users,
        as_json,
        lambda: _table(
            [[u["name"], u["kind"], u["role"], u["email"] or ""] for u in users], ["NAME", "KIND", "ROLE", "EMAIL"]
        ),
    )


@user_app.command("show")
def user_show(name: str = typer.Argument(None, help="Default: yourself."), as_json: bool = JSON_OPT) -> None:
    """Show a principal (yourself, or anyone if you are an admin)."""
    user = call(lambda c: c.get(f"/api/users/{name}" if name else "/api/me"))
    email = f", {user['email']}" if user["email"] else ""
    emit(user, as_json, f"{user['name']}: {user['kind']}, {user['role']}{email}")


@user_app.command("set-role")
def user_set_role(name: str, role: str, as_json: bool = JSON_OPT) -> None:
    """Change a principal's role (admins only). A principal's kind can never change."""
    user = call(lambda c: c.request("PATCH", f"/api/users/{name}", json={"role": role}))
    emit(user, as_json, f"{user['name']} is now {user['role']}")


# -- tokens -----------------------------------------------------------------------------


@token_app.command("create")
def token_create(
    name: str = typer.Argument(..., help="The principal the token is for."),
    label: str = typer.Option("", "--label", help="What the token is for (shown in listings)."),
    data: Path | None = typer.Option(
        None, "--data", help="Mint directly in this server data directory, without the API (local operator)."
    ),
    database: str | None = typer.Option(None, "--database", help="With --data: the server's database URL."),
    as_json: bool = JSON_OPT,
) -> None:
    """Mint a token for NAME; it is printed once, on stdout. Stored only as a SHA-256 hash."""
    if database and data is None:
        raise fail("--database needs --data (local mode)")
    if data is not None:
        issued = _local_token(data, database, name, label)
    else:
        issued = call(lambda c: c.post(f"/api/users/{name}/tokens", {"label": label}))
    if as_json:
        emit(issued, True, "")
        return
    err.print(f"token {issued['id']} for {issued['principal']}: shown this once, store it now", highlight=False)
    typer.echo(issued["token"])


def _local_token(data: Path, database: str | None, name: str, label: str) -> dict[str, Any]:
    from mergegate.service import accounts
    from mergegate.service.authz import Actor
    from mergegate.service.errors import ServiceError
    from mergegate.service.settings import ServerSettings, SettingsError
    from mergegate.store import migrate
    from mergegate.store.db import Database, DatabaseError

    if not data.is_dir():
        raise fail(f"{data}: no such data directory")
    try:
        settings = ServerSettings.load(data, database_url=database)
        db = Database(settings.database_url)
        if migrate.current_revision(db) is None:
            raise fail(f"{data}: no mergegate database here; start `mergegate serve --data {data}` once")
        issued = accounts.issue_token(db, Actor.local_operator(), name, label=label or "minted locally")
    except (SettingsError, DatabaseError) as exc:
        raise fail(str(exc)) from None
    except ServiceError as exc:
        raise fail(exc.reason) from None
    return {"id": issued.id, "principal": issued.principal, "label": issued.label, "token": issued.token}


@token_app.command("list")
def token_list(name: str, as_json: bool = JSON_OPT) -> None:
    """List a principal's tokens (yours, or anyone's if you are an admin)."""
    tokens = call(lambda c: c.get(f"/api/users/{name}/tokens"))
    emit(
        tokens,
        as_json,
        lambda: _table(
            [[str(t["id"]), t["prefix"], t["label"], t["created_at"], t["revoked_at"] or "live"] for t in tokens],
            ["ID", "TOKEN", "LABEL", "CREATED", "REVOKED"],
        ),
    )


@token_app.command("revoke")
def token_revoke(token_id: int, as_json: bool = JSON_OPT) -> None:
    """Revoke a token by id (your own, or anyone's if you are an admin)."""
    token = call(lambda c: c.request("DELETE", f"/api/tokens/{token_id}"))
    emit(token, as_json, f"token {token['id']} of {token['principal']} revoked")


# -- repositories -----------------------------------------------------------------------


@repo_app.command("create")
def repo_create(
    name: str = typer.Argument(..., help="Repository name (served at /git/NAME.git)."),
    source: str | None = typer.Option(None, "--from", help="Import a local path or URL (bare clone)."),
    default_branch: str | None = typer.Option(None, "--default-branch", help="Default: the source's, or main."),
    as_json: bool = JSON_OPT,
) -> None:
    """Create a repository on the server (admins only)."""
    if source and "://" not in source and Path(source).expanduser().exists():
        source = str(Path(source).expanduser().resolve())  # the server resolves paths from its own directory
    body = {"name": name, "source": source, "default_branch": default_branch}
    repo = call(lambda c: c.post("/api/repos", body))
    text = f"created {repo['name']} (default branch {repo['default_branch']}): git clone {repo['clone_url']}"
    emit(repo, as_json, text)


@repo_app.command("list")
def repo_list(as_json: bool = JSON_OPT) -> None:
    """List repositories."""
    repos = call(lambda c: c.get("/api/repos"))
    emit(
        repos,
        as_json,
        lambda: _table(
            [[r["name"], r["default_branch"], r["clone_url"]] for r in repos], ["NAME", "DEFAULT", "CLONE URL"]
        ),
    )
