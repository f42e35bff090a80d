"""Shared terminal helpers: one stderr console for progress and errors."""

from __future__ import annotations

import typer
from rich.console import Console

from mergegate.cli.exit_codes import ExitCode

# soft_wrap: never break a message (paths, "line N") across lines when piped to a log.
err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: ExitCode = ExitCode.USAGE) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(int(code))
