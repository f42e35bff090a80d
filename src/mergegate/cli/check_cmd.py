from __future__ import annotations

import asyncio
from enum import StrEnum
from pathlib import Path

import typer
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from mergegate.agents import registry
from mergegate.cli.console import err, fail
from mergegate.cli.exit_codes import ExitCode
from mergegate.core.policy import Mode, PolicyError
from mergegate.core.results import AgentResult
from mergegate.core.routing import Action
from mergegate.report import renderer
from mergegate.report.text_format import STATUS_STYLE, build
from mergegate.service.check import CheckReport, UsageError, default_audit_path, run_check
from mergegate.store.audit_log import AuditLog
from mergegate.vcs.git import GitError, GitRepo


class Format(StrEnum):
    text = "text"
    json = "json"
    sarif = "sarif"
    markdown = "markdown"
    junit = "junit"


class Require(StrEnum):
    pass_ = "pass"
    auto_approve = "auto_approve"


class LiveProgress:
    """Live per-agent status on stderr while the agents run."""

    def __init__(self) -> None:
        self.state: dict[str, AgentResult | None] = {}
        self.live = Live(self._table(), console=err, refresh_per_second=8, transient=True)

    def _table(self) -> Table:
        table = Table.grid(padding=(0, 2))
        for name, result in self.state.items():
            if result is None:
                table.add_row(Spinner("dots"), name, Text("running", style="dim"))
            else:
                table.add_row(
                    Text("•"),
                    name,
                    Text(
                        f"{result.status.value} in {result.duration_s:.1f}s, {len(result.findings)} finding(s)",
                        style=STATUS_STYLE[result.status.value],
                    ),
                )
        return table

    def agent_started(self, name: str) -> None:
        self.state[name] = None
        self.live.update(self._table())

    def agent_finished(self, result: AgentResult) -> None:
        self.state[result.name] = result
        self.live.update(self._table())


def exit_code(report: CheckReport, require: Require) -> ExitCode:
    action = report.decision.action
    if action is Action.ERROR:
        return ExitCode.INTERNAL
    if report.decision.mode is Mode.ADVISORY:
        return ExitCode.PASS
    if action in (Action.REJECT, Action.BLOCK_SECURITY):
        return ExitCode.BLOCKED
    if require is Require.auto_approve and action is not Action.AUTO_APPROVE:
        return ExitCode.BLOCKED
    return ExitCode.PASS


def check(
    repo: Path = typer.Option(Path("."), "--repo", help="The git repository to check."),
    base: str | None = typer.Option(
        None, "--base", help="The branch the change goes into. Default: the upstream, origin/HEAD, main or master."
    ),
    head: str = typer.Option("HEAD", "--head", help="The change's head commit."),
    agents: str | None = typer.Option(
        None, "--agents", help="Run only these agents (comma-separated). Default: all enabled in the policy."
    ),
    fmt: Format = typer.Option(Format.text, "--format", "-f", help="Output format."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the report here instead of stdout."),
    audit_log: Path | None = typer.Option(
        None, "--audit-log", help="Audit log to append to. Default: .git/mergegate/audit.jsonl in the repository."
    ),
    require: Require = typer.Option(
        Require.pass_,
        "--require",
        help="'pass': exit 1 only when blocked or rejected. 'auto_approve': also exit 1 when a human review is needed.",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show live agent progress on stderr."),
    also_write: list[str] = typer.Option(
        [],
        "--also-write",
        metavar="FORMAT=FILE",
        help="Also write the report in another format (repeatable), e.g. markdown=summary.md. "
        "One run feeds several consumers (SARIF upload, job summary, JUnit) without re-running the agents.",
    ),
) -> None:
    """Analyse the change merge-base(BASE, HEAD)..HEAD and route it.

    The policy (.mergegate.yml) is read from BASE, never from the change.

    Exit codes: 0 pass (or advisory mode), 1 blocked / rejected (or not auto_approve
    with --require auto_approve), 2 usage or configuration error, 3 fail-closed error
    (an agent failed or timed out, so the change was not fully examined).
    """
    extra_outputs = _parse_also_write(also_write)
    try:
        git_repo = GitRepo(repo)
        base_ref = base or git_repo.default_base()
        names = [n.strip() for n in agents.split(",") if n.strip()] if agents else None
    except GitError as exc:
        raise fail(str(exc)) from None
    audit = AuditLog(audit_log or default_audit_path(git_repo))
    live = LiveProgress() if progress and err.is_terminal else None
    try:
        if live:
            with live.live:
                report = asyncio.run(run_check(git_repo, base_ref, head, names, audit, live))
        else:
            report = asyncio.run(run_check(git_repo, base_ref, head, names, audit))
    except PolicyError as exc:
        raise fail(f"invalid policy\n{exc}") from None
    except (UsageError, GitError) as exc:
        raise fail(str(exc)) from None
    except Exception as exc:  # a bug must not look like a pass
        raise fail(
            f"internal error, nothing was judged (fail closed): {type(exc).__name__}: {exc}", ExitCode.INTERNAL
        ) from None

    if fmt is Format.text and output is None:
        from rich.console import Console

        Console().print(build(report))
    else:
        text = renderer(fmt.value)(report)
        if output is None:
            typer.echo(text, nl=False)
        else:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text, encoding="utf-8")
            err.print(f"wrote {fmt.value} report to {output} (decision: {report.decision.action.value})")
    for extra_fmt, path in extra_outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(renderer(extra_fmt.value)(report), encoding="utf-8")
    raise typer.Exit(int(exit_code(report, require)))


def _parse_also_write(values: list[str]) -> list[tuple[Format, Path]]:
    """Validate ``--also-write FORMAT=FILE`` values before any agent runs (usage error: exit 2)."""
    parsed = []
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not path or name not in Format.__members__:
            choices = ", ".join(Format.__members__)
            raise fail(f"--also-write expects FORMAT=FILE with FORMAT one of {choices}: {value!r}")
        parsed.append((Format(name), Path(path)))
    return parsed


def list_agents(
    fmt: Format = typer.Option(Format.text, "--format", "-f", help="text or json."),
) -> None:
    """List the available analysis agents."""
    agents = registry()
    if fmt is Format.json:
        import json

        typer.echo(
            json.dumps(
                [
                    {
                        "name": a.name,
                        "description": a.description,
                        "default_timeout": a.default_timeout,
                        "options": a.Options.model_json_schema(),
                    }
                    for a in agents.values()
                ],
                indent=2,
            )
        )
        return
    table = Table("agent", "timeout", "description")
    for a in agents.values():
        table.add_row(a.name, f"{a.default_timeout:g}s", a.description)
    from rich.console import Console

    Console().print(table)
