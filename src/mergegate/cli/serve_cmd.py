"""``mergegate serve``: the gate server (REST API, git smart HTTP, event worker)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from mergegate.cli.console import err, fail
from mergegate.cli.exit_codes import ExitCode

DEFAULT_DATA = Path("mergegate-data")


def default_data_dir() -> Path:
    return Path(os.environ.get("MERGEGATE_DATA", DEFAULT_DATA))


def serve(
    data: Path = typer.Option(
        None,
        "--data",
        help="Data directory (repositories, hooks, SQLite database). Default: $MERGEGATE_DATA or ./mergegate-data.",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port to listen on."),
    database: str | None = typer.Option(
        None,
        "--database",
        help="Database URL, e.g. postgresql://user@host/db. Default: SQLite in the data directory.",
        envvar="MERGEGATE_DATABASE_URL",
    ),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
) -> None:
    """Run the gate server. Prints the admin token on the first start only."""
    import uvicorn

    from mergegate.service.server import prepare
    from mergegate.web.app import create_app

    data_dir = data or default_data_dir()
    # The server stack (SQLAlchemy, FastAPI) loads only when serving, not for every command.
    from mergegate.service.settings import ServerSettings, SettingsError
    from mergegate.store.db import DatabaseError, redact

    try:
        settings = ServerSettings.load(data_dir, host=host, port=port, database_url=database)
        server = prepare(settings)
    except (SettingsError, DatabaseError, OSError) as exc:
        raise fail(str(exc)) from None
    except ValueError as exc:  # e.g. an invalid admin_name in server.toml
        raise fail(str(getattr(exc, "reason", exc))) from None

    url = settings.url
    typer.echo(f"mergegate serving {url}  (API docs: {url}/docs)")
    typer.echo(f"  data:     {settings.data_dir}")
    typer.echo(f"  database: {redact(settings.database_url)}")
    typer.echo(f"  protected branches: {', '.join(settings.protected_branches)} (plus each repository's policy)")
    admin = server.admin
    if admin.token:
        typer.echo(f"First start: created the human admin {admin.admin!r}. Its token is shown this once; keep it:")
        typer.echo(f"  admin token: {admin.token}")
        typer.echo(f"  export MERGEGATE_URL={url} MERGEGATE_TOKEN={admin.token}")
    else:
        typer.echo(
            f"Admin {admin.admin!r} exists (created {admin.created_at}); its first token was printed at that start. "
            f"Lost it? mergegate token create {admin.admin} --data {settings.data_dir}"
        )
    for name in server.missing_repos:
        err.print(f"[yellow]warning:[/] repository {name} has no directory under {settings.repos_dir}", highlight=False)
    import sys

    sys.stdout.flush()
    app = create_app(settings, server)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level)
    raise typer.Exit(int(ExitCode.PASS))
