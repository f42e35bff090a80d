"""The ``mergegate`` command: a thin Typer layer over the services.

Exit codes (documented in the README and ``--help``):
0 pass (or advisory mode), 1 blocked / rejected / below ``--require``,
2 usage or configuration error, 3 fail-closed internal error.
"""

from __future__ import annotations

import typer

from mergegate import __version__
from mergegate.cli import (
    admin_cmd,
    agent_cmd,
    approvals_cmd,
    audit_cmd,
    change_cmd,
    check_cmd,
    config_cmd,
    demo_cmd,
    group_cmd,
    serve_cmd,
)

app = typer.Typer(
    name="mergegate",
    help="The outer loop for AI coding agents: analysis agents, confidence routing and a merge gate no agent can open.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("check")(check_cmd.check)
app.command("init")(config_cmd.init)
app.command("agents")(check_cmd.list_agents)
app.command("demo")(demo_cmd.demo)
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(config_cmd.app, name="config")
app.command("serve")(serve_cmd.serve)
app.add_typer(admin_cmd.user_app, name="user")
app.add_typer(admin_cmd.token_app, name="token")
app.add_typer(admin_cmd.repo_app, name="repo")
app.add_typer(change_cmd.app, name="change")
app.add_typer(group_cmd.app, name="group")
app.add_typer(agent_cmd.app, name="agent")
app.add_typer(approvals_cmd.app, name="approvals")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mergegate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    pass


def main() -> None:
    app()
