"""``mergegate agent …``: the agent runtime from the command line.

``mergegate agent replay TRAJECTORY.jsonl --agent NAME --workspace DIR`` runs a recorded
sequence of tool calls through the runtime with that agent's allowlist, sandbox and
approvals, and reports per call: allowed, refused (why) or paused.

Exit codes: 0 every call allowed; 1 at least one refused or paused; 2 usage or
configuration error (bad trajectory, unknown agent, invalid policy); 3 internal error.

On the gate server: ``mergegate agent start NAME --change N (--prompt TEXT | --calls
FILE.jsonl)`` runs an agent there (its paused calls wait in ``mergegate approvals``),
``mergegate agent runs [ID]`` shows them.
"""

from __future__ import annotations

import asyncio
import json
import os
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mergegate.cli.admin_cmd import JSON_OPT, _table, call, emit
from mergegate.cli.console import err, fail
from mergegate.cli.exit_codes import ExitCode
from mergegate.core.policy import PolicyError
from mergegate.runtime.agent_spec import AgentSpec
from mergegate.runtime.approvals import ApprovalGate, FileApprovals, PauseAll
from mergegate.runtime.replay import TrajectoryError, exit_code, load_trajectory, replay
from mergegate.runtime.runner import CallResult
from mergegate.runtime.workspace import Workspace
from mergegate.service.check import default_audit_path
from mergegate.service.policy_source import LoadedPolicy, load_policy, load_policy_text
from mergegate.service.runtime_agents import UnknownAgent, build_runner, find_agent
from mergegate.store.audit_log import AuditLog
from mergegate.vcs.git import GitError, GitRepo

app = typer.Typer(help="Run agents inside the runtime: allowlists, sandbox, approvals.", no_args_is_help=True)


class Format(StrEnum):
    text = "text"
    json = "json"


STATUS_STYLE = {"allowed": "green", "refused": "bold red", "paused": "yellow"}


def _inside(path: Path, root: Path) -> bool:
    path, root = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    return path == root or root in path.parents


def _policy(workspace: Path, policy_file: Path | None, base: str | None) -> LoadedPolicy:
    """The policy from ``--policy`` or from the base ref; never the work tree's copy."""
    if policy_file is not None:
        if _inside(policy_file, workspace):
            err.print(
                f"[yellow]warning:[/] {policy_file} is inside the workspace, where the agent can write; "
                "prefer --base REF",
                highlight=False,
            )
        try:
            text = policy_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise fail(f"{policy_file}: {exc.strerror or exc}") from None
        return load_policy_text(text, str(policy_file))
    try:
        repo = GitRepo(workspace)
    except GitError:
        if base is not None:
            raise fail(f"{workspace} is not a git repository, so --base {base} cannot be read") from None
        return load_policy_text(None, "built-in defaults")
    try:
        ref = base or repo.default_base()
        commit = repo.rev_parse(ref)
    except GitError as exc:
        raise fail(f"{exc} (the policy is read from the base ref: pass --base REF or --policy FILE)") from None
    return load_policy(repo, commit, ref)


def _agent(loaded: LoadedPolicy, name: str) -> AgentSpec:
    try:
        return find_agent(loaded, name)
    except UnknownAgent as exc:
        raise fail(str(exc)) from None


def _audit_path(workspace: Path, audit: Path | None) -> Path:
    if audit is not None:
        return audit
    try:
        return default_audit_path(GitRepo(workspace))
    except GitError:
        raise fail(f"{workspace} is not a git repository: pass --audit FILE for the audit log") from None


def _render_text(results: list[CallResult]) -> None:
    table = Table(title="agent replay", show_lines=False)
    for column in ("#", "tool", "status", "reason", "output"):
        table.add_column(column, overflow="fold")
    for r in results:
        output = r.output.strip().splitlines()
        preview = (output[-1] if output else "")[:80]
        table.add_row(str(r.index), r.tool, f"[{STATUS_STYLE[str(r.status)]}]{r.status}[/]", r.reason, preview)
    Console().print(table)


@app.command("replay")
def replay_cmd(
    trajectory: Path = typer.Argument(..., help='JSON lines, one tool call each: {"tool": …, "args": {…}}.'),
    agent: str = typer.Option(..., "--agent", help="The runtime agent (declared in the policy, or a preset)."),
    workspace: Path = typer.Option(..., "--workspace", help="The work tree the calls act on."),
    fmt: Format = typer.Option(Format.text, "--format", help="text (a table) or json (one object per call)."),
    policy_file: Path | None = typer.Option(None, "--policy", help="Policy file with the agent declarations."),
    base: str | None = typer.Option(None, "--base", help="Read the policy from this ref of the workspace's repo."),
    audit: Path | None = typer.Option(None, "--audit", help="Audit log. Default: .git/mergegate/audit.jsonl."),
    approvals: Path | None = typer.Option(
        None, "--approvals", help="JSON file of human decisions on paused calls (outside the workspace)."
    ),
) -> None:
    """Replay recorded tool calls through the runtime. Exit 0 all allowed, 1 any refused/paused, 2 usage."""
    if policy_file is not None and base is not None:
        raise fail("give --policy or --base, not both")
    if not workspace.is_dir():
        raise fail(f"{workspace}: not a directory")
    try:
        calls = load_trajectory(trajectory)
        loaded = _policy(workspace, policy_file, base)
    except (TrajectoryError, PolicyError) as exc:
        raise fail(str(exc)) from None
    spec = _agent(loaded, agent)
    gate: ApprovalGate = PauseAll()
    if approvals is not None:
        if _inside(approvals, workspace):
            raise fail(f"{approvals}: the approvals file must be outside the workspace (the agent could write it)")
        gate = FileApprovals(approvals)
    runner = build_runner(loaded, agent, spec, Workspace(workspace), AuditLog(_audit_path(workspace, audit)), gate)
    try:
        results = asyncio.run(replay(calls, runner))
    except Exception as exc:  # fail closed, but say what happened
        raise fail(f"replay stopped: {type(exc).__name__}: {exc}", ExitCode.INTERNAL) from None
    if fmt is Format.json:
        for r in results:
            typer.echo(json.dumps(r.to_json(), ensure_ascii=False))
    else:
        _render_text(results)
    raise typer.Exit(exit_code(results))


# -- hosted runs on the gate server ------------------------------------------------------------


def _print_run(run: dict) -> None:
    console = Console(soft_wrap=True, highlight=False)
    console.print(
        f"agent run {run['id']}: {run['agent']} as {run['principal']} on change {run['change']} "
        f"({run['kind']}) — [bold]{run['status']}[/]" + (f": {escape(run['reason'])}" if run["reason"] else "")
    )
    console.print(
        f"  started by {run['started_by']}; {run['turns']} call(s), {run['requests']} model request(s), "
        f"{run['input_tokens'] + run['output_tokens']} tokens, ${run['cost_usd']}"
    )
    for r in run["results"]:
        style = STATUS_STYLE.get(r["status"], "")
        console.print(f"  #{r['index']} {r['tool']} [{style}]{r['status']}[/] {escape(r['reason'])}")
    if run["pending_approvals"]:
        ids = ", ".join(map(str, run["pending_approvals"]))
        console.print(f"  waiting on approval request(s) {ids}: mergegate approvals show ID")


@app.command("start")
def start_cmd(
    name: str = typer.Argument(..., help="The runtime agent, as the base branch's .mergegate.yml declares it."),
    change: int = typer.Option(..., "--change", help="The change it works on."),
    prompt: str | None = typer.Option(None, "--prompt", help="A model run: what to do."),
    calls: Path | None = typer.Option(None, "--calls", help="A scripted run: a trajectory (JSON lines)."),
    principal: str | None = typer.Option(None, "--principal", help="The agent principal (default: NAME)."),
    approval_timeout: int | None = typer.Option(
        None, "--approval-timeout", help="Seconds its paused calls wait for a human (default: the server's)."
    ),
    as_json: bool = JSON_OPT,
) -> None:
    """Start an agent on a change on the gate server (human maintainers and admins).

    Exit 0 started, 1 refused, 2 a wrong request, 3 the server is unreachable."""
    if (prompt is None) == (calls is None):
        raise fail("give --prompt TEXT (a model run) or --calls FILE.jsonl (a scripted run)")
    body: dict = {"change": change, "agent": name, "principal": principal, "approval_timeout_s": approval_timeout}
    if calls is not None:
        try:
            body["calls"] = [{"tool": c.tool, "args": c.args} for c in load_trajectory(calls)]
        except TrajectoryError as exc:
            raise fail(str(exc)) from None
    else:
        body["prompt"] = prompt
    run = call(lambda c: c.post("/api/agent-runs", body))
    emit(run, as_json, f"started agent run {run['id']} ({run['agent']} on change {change}): {run['status']}")


@app.command("runs")
def runs_cmd(
    run_id: int | None = typer.Argument(None, help="One run, in detail."),
    change: int | None = typer.Option(None, "--change", help="Only the runs on this change."),
    as_json: bool = JSON_OPT,
) -> None:
    """Hosted agent runs on the gate server (status, calls, spend, pending approvals)."""
    if run_id is not None:
        run = call(lambda c: c.get(f"/api/agent-runs/{run_id}"))
        emit(run, as_json, lambda: _print_run(run))
        return
    runs = call(lambda c: c.get("/api/agent-runs", change=change))
    rows = [
        [str(r["id"]), str(r["change"] or ""), r["agent"], r["kind"], r["status"], str(r["turns"]), r["cost_usd"]]
        for r in runs
    ]
    emit(runs, as_json, lambda: _table(rows, ["ID", "CHANGE", "AGENT", "KIND", "STATUS", "CALLS", "COST_USD"]))
