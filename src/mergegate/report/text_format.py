"""The human report for terminals (Rich). Also used for plain-text files."""

from __future__ import annotations

import io

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from mergegate.core.routing import Action
from mergegate.core.severity import Severity
from mergegate.service.check import CheckReport

ACTION_STYLE = {
    Action.AUTO_APPROVE: ("AUTO-APPROVE (AI gate green; a human still approves the merge)", "bold green"),
    Action.HUMAN_REVIEW: ("HUMAN REVIEW required", "bold yellow"),
    Action.REJECT: ("REJECTED", "bold red"),
    Action.BLOCK_SECURITY: ("BLOCKED: security", "bold white on red"),
    Action.ERROR: ("ERROR: the change was not fully examined (fail closed)", "bold white on red"),
}

SEVERITY_STYLE = {
    Severity.CRITICAL: "bold red",
    Severity.HIGH: "red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}

STATUS_STYLE = {"ok": "green", "skipped": "dim", "error": "bold red", "timeout": "bold red"}


def build(report: CheckReport) -> Group:
    c, d = report.change, report.decision
    header = Text.assemble(
        ("mergegate check  ", "bold"),
        f"{c.base_ref or c.base[:12]}..{c.head_ref or c.head[:12]}  ",
        (f"merge base {c.merge_base[:12]}, head {c.head[:12]}, {len(c.files)} file(s)", "dim"),
        "\n",
        ("policy: ", "dim"),
        f"{report.policy.source} ({d.mode.value} mode)",
    )

    agents = Table(title="Agents", title_justify="left", expand=False)
    for col in ("agent", "status", "findings", "confidence", "time"):
        agents.add_column(col)
    for r in report.results:
        status = Text(r.status.value, style=STATUS_STYLE[r.status.value])
        if r.detail:
            status.append(f"  {r.detail}", style="dim")
        agents.add_row(r.name, status, str(len(r.findings)), f"{r.confidence:.2f}", f"{r.duration_s:.1f}s")

    parts = [header, agents]
    findings = sorted(
        (f for r in report.results for f in r.findings),
        key=lambda f: (-f.severity.rank, f.path or "", f.line or 0),
    )
    if findings:
        table = Table(title="Findings", title_justify="left", expand=False, show_lines=False)
        for col in ("severity", "where", "agent / rule", "message"):
            table.add_column(col, overflow="fold")
        for f in findings:
            where = f"{f.path}:{f.line}" if f.path and f.line else (f.path or "-")
            rule = f"{f.agent} {f.rule}" + (f" ({f.cwe})" if f.cwe else "")
            table.add_row(Text(f.severity.value, SEVERITY_STYLE[f.severity]), where, rule, f.message)
        parts.append(table)
    notes = [f"{r.name}: {n}" for r in report.results for n in r.notes]
    if notes:
        parts.append(Text("Notes\n", style="bold") + Text("\n".join(f"  - {n}" for n in notes), style="dim"))

    label, style = ACTION_STYLE[d.action]
    body = Text.assemble(
        (label, style),
        "\n",
        f"confidence {d.confidence:.2f} · risk {d.risk.value} · {d.mode.value} mode\n",
        *(f"\n  - {r}" for r in d.reasons),
    )
    parts.append(Panel(body, title="Decision", title_align="left", border_style=style.split()[-1]))
    return Group(*parts)


def render(report: CheckReport) -> str:
    # Print into a throwaway buffer (capture() would bypass the recording export_text reads).
    console = Console(file=io.StringIO(), record=True, width=120, force_terminal=False, color_system=None)
    console.print(build(report))
    return console.export_text()
