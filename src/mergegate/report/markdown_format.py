"""Markdown for one pull-request comment (GitHub-flavoured; renders on GitLab too).

What a reviewer needs first comes first: the decision (action, confidence, risk, mode,
reasons), then a warning when test files changed, then a compact agents table, then the
findings grouped by file. The comment is built to be *updated*, not re-posted: it starts
with the hidden marker ``<!-- mergegate:check -->`` so a bot can find its own comment.

Why the escaping: findings quote code, and a PR comment is rendered as Markdown with
inline HTML. Every message, path and detail is HTML-escaped and has its Markdown
punctuation backslash-escaped, so ``<script>``, ``|`` (which would split a table cell),
``*`` or a backtick in a finding shows literally; ``@name`` is broken with a zero-width
space so quoting code never notifies anybody.

Why the truncation: GitHub rejects a comment over 65,536 characters. The decision and
the agents table always fit; findings are added file by file (the most severe files
first) while they fit, and a note says how many were left out and where to find them.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence

from mergegate import __version__
from mergegate.core.finding import Finding
from mergegate.core.globs import match_any
from mergegate.core.policy import Mode
from mergegate.core.results import AgentStatus
from mergegate.core.routing import Action
from mergegate.core.severity import Severity
from mergegate.service.check import CheckReport

MARKER = "<!-- mergegate:check -->"
#: GitHub's maximum comment body, in characters.
MAX_CHARS = 65_536
TEST_FILES_NOTE = "This change modifies test files — review for specification changes vs. implementation fixes."
TEST_INTEGRITY_AGENT = "test-integrity"

ACTION_BADGE = {
    Action.AUTO_APPROVE: ("✅", "AI gate green: auto-approve (a human still approves the merge)"),
    Action.HUMAN_REVIEW: ("👀", "Human review required"),
    Action.REJECT: ("❌", "Rejected"),
    Action.BLOCK_SECURITY: ("🛑", "Blocked: security"),
    Action.ERROR: ("💥", "Error: the change was not fully examined (fail closed)"),
}
STATUS_BADGE = {
    AgentStatus.OK: "✅ ok",
    AgentStatus.SKIPPED: "⏭️ skipped",
    AgentStatus.ERROR: "❌ error",
    AgentStatus.TIMEOUT: "⏱️ timeout",
}
SEVERITY_BADGE = {
    Severity.CRITICAL: "🟣 critical",
    Severity.HIGH: "🔴 high",
    Severity.MEDIUM: "🟠 medium",
    Severity.LOW: "🟡 low",
    Severity.INFO: "⚪ info",
}

#: Reasons shown in the decision block; the rest go into a collapsed section.
MAX_REASONS = 15
#: Long single texts (a reason, an agent's error detail) are cut to this length.
MAX_TEXT = 500
#: A finding's message in the table is cut here (the JSON and SARIF keep it whole).
MAX_MESSAGE = 1_000
#: Findings up to this many are all expanded; beyond it only severe files are.
EXPAND_ALL_UP_TO = 10

_MD_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")


def escape(text: str, limit: int = 0) -> str:
    """Inline text that shows literally in Markdown, in a table cell or in HTML."""
    if limit and len(text) > limit:
        text = text[: limit - 1] + "…"
    # Markdown first, then HTML: the other order would break the entities ("&\#x27;").
    text = _MD_PUNCTUATION.sub(r"\\\1", text)
    text = html.escape(text, quote=False)
    text = text.replace("@", "@&#8203;")
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "<br>")


def escape_html(text: str) -> str:
    """Text inside a raw HTML block (``<summary>``), where Markdown escapes would show."""
    return html.escape(" ".join(text.split()), quote=True).replace("@", "@&#8203;")


def code(text: str) -> str:
    """An inline code span safe inside a table cell (GFM needs ``\\|`` even in code)."""
    text = " ".join(text.split()).replace("|", "\\|")
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def cwe_link(cwe: str | None) -> str:
    match = re.search(r"(\d+)", cwe or "")
    if not match:
        return escape(cwe) if cwe else ""
    n = int(match.group(1))
    return f"[CWE-{n}](https://cwe.mitre.org/data/definitions/{n}.html)"


def changed_test_files(report: CheckReport) -> list[str]:
    patterns = report.policy.policy.test_paths
    return sorted(p for p in report.change.touched_paths() if match_any(patterns, p))


def modifies_tests(report: CheckReport) -> bool:
    """A test-integrity finding, or any touched path matching the policy's test paths."""
    if any(f.agent == TEST_INTEGRITY_AGENT for r in report.results for f in r.findings):
        return True
    return bool(changed_test_files(report))


def _findings(report: CheckReport) -> list[Finding]:
    return [f for r in report.results for f in r.findings]


def _decision(report: CheckReport) -> str:
    d, c = report.decision, report.change
    emoji, label = ACTION_BADGE[d.action]
    lines = [f"## {emoji} mergegate: {label}", ""]
    if d.mode is Mode.ADVISORY:
        lines += ["> [!NOTE]", "> Advisory mode: this verdict is reported but does not fail the check.", ""]
    span = f"{c.base_ref or c.base[:12]}..{c.head_ref or c.head[:12]}"
    lines.append(
        f"**Action** {code(d.action.value)} · **confidence** {d.confidence:.2f} · **risk** {d.risk.value} · "
        f"**mode** {d.mode.value} · change {code(span)} ({len(c.files)} file(s), head {code(c.head[:12])})"
    )
    lines.append("")
    shown = d.reasons[:MAX_REASONS]
    lines += [f"- {escape(r, MAX_TEXT)}" for r in shown]
    if len(d.reasons) > len(shown):
        lines.append(f"- … and {len(d.reasons) - len(shown)} more reason(s), below")
    return "\n".join(lines) + "\n"


def _test_warning(report: CheckReport) -> str:
    if not modifies_tests(report):
        return ""
    files = changed_test_files(report)
    lines = ["> [!WARNING]", f"> {TEST_FILES_NOTE}"]
    if files:
        shown = ", ".join(code(p) for p in files[:10])
        more = f" and {len(files) - 10} more" if len(files) > 10 else ""
        lines.append(f"> Test files touched: {shown}{more}")
    return "\n".join(lines) + "\n"


def _agents(report: CheckReport) -> str:
    lines = [
        "### Agents",
        "",
        "| Agent | Status | Findings | Confidence | Time |",
        "|---|---|---:|---:|---:|",
    ]
    for r in report.results:
        status = STATUS_BADGE[r.status]
        if r.detail:
            status += f": {escape(r.detail, MAX_TEXT)}"
        lines.append(f"| {code(r.name)} | {status} | {len(r.findings)} | {r.confidence:.2f} | {r.duration_s:.1f}s |")
    return "\n".join(lines) + "\n"


def _worst(findings: Iterable[Finding]) -> Severity:
    return max((f.severity for f in findings), key=lambda s: s.rank)


def _group(findings: Sequence[Finding]) -> list[tuple[str | None, list[Finding]]]:
    """Findings by file: change-level ones first, then files by worst severity, then path."""
    by_path: dict[str | None, list[Finding]] = {}
    for f in findings:
        by_path.setdefault(f.path, []).append(f)
    for items in by_path.values():
        items.sort(key=lambda f: (f.line or 0, -f.severity.rank, f.rule))
    return sorted(by_path.items(), key=lambda kv: (kv[0] is not None, -_worst(kv[1]).rank, kv[0] or ""))


def _row(f: Finding) -> str:
    rule = code(f"{f.agent}/{f.rule}")
    if f.cwe:
        rule += f" {cwe_link(f.cwe)}"
    line = str(f.line) if f.line else "-"
    if f.line and f.end_line and f.end_line > f.line:
        line = f"{f.line}-{f.end_line}"
    return f"| {SEVERITY_BADGE[f.severity]} | {line} | {rule} | {escape(f.message, MAX_MESSAGE)} |"


def _file_block(
    path: str | None, rows: Sequence[str], total: int, worst: Severity, expand: bool, partial: bool = False
) -> str:
    title = f"<code>{escape_html(path)}</code>" if path else "Change-level findings (no single file)"
    if partial or len(rows) < total:
        shown = f"{total if partial else len(rows)} of {total} finding(s)"
    else:
        shown = f"{total} finding(s)"
    return "\n".join(
        [
            f"<details{' open' if expand else ''}>",
            f"<summary>{title}: {shown}, worst {worst.value}</summary>",
            "",
            "| Severity | Line | Rule | Message |",
            "|---|---:|---|---|",
            *rows,
            "",
            "</details>",
            "",
        ]
    )


def _extra_reasons(report: CheckReport) -> str:
    rest = report.decision.reasons[MAX_REASONS:]
    if not rest:
        return ""
    items = "\n".join(f"- {escape(r, MAX_TEXT)}" for r in rest)
    return f"<details>\n<summary>{len(rest)} more reason(s)</summary>\n\n{items}\n\n</details>\n"


def _notes(report: CheckReport) -> str:
    notes = [f"- {code(r.name)}: {escape(n, MAX_TEXT)}" for r in report.results for n in r.notes]
    if not notes:
        return ""
    return f"<details>\n<summary>Agent notes ({len(notes)})</summary>\n\n" + "\n".join(notes) + "\n\n</details>\n"


def _footer(report: CheckReport) -> str:
    p = report.policy
    return (
        f"<sub>mergegate {__version__} · policy {code(p.source)} ({code(p.digest)}), read from the base "
        "branch · auto-approve never merges: a human approves.</sub>\n"
    )


def _truncation_note(left_out: int, files: int) -> str:
    return (
        f"> [!CAUTION]\n> {left_out} finding(s) in {files} file group(s) are not shown: GitHub limits a comment "
        f"to {MAX_CHARS:,} characters. The full list is in the JSON or SARIF report.\n"
    )


def render(report: CheckReport, max_chars: int = MAX_CHARS) -> str:
    head = "\n".join(part for part in (MARKER, _decision(report), _test_warning(report), _agents(report)) if part)
    footer = _footer(report)
    findings = _findings(report)
    groups = _group(findings)
    extras = [x for x in (_extra_reasons(report), _notes(report)) if x]

    # Reserve room for the truncation note (worst case) and the closing parts up front,
    # so that whatever is cut, the decision and the note always fit.
    reserve = len(_truncation_note(len(findings), len(groups))) + len(footer) + sum(len(x) + 1 for x in extras) + 64
    budget = max_chars - len(head) - reserve
    parts: list[str] = []
    if findings:
        parts.append(f"### Findings ({len(findings)})\n")
        budget -= len(parts[0]) + 1
    left_out = files_cut = 0
    for path, items in groups:
        expand = (
            len(findings) <= EXPAND_ALL_UP_TO or _worst(items) >= Severity.HIGH or any(f.is_security for f in items)
        )
        rows = [_row(f) for f in items]
        block = _file_block(path, rows, len(items), _worst(items), expand)
        if len(block) + 1 > budget:
            # Keep as many of this file's rows as fit, then stop: later files are less severe
            # and a list that skips around would mislead. (The "k of n" title is measured
            # with n rows kept, the longest it can be.)
            room = budget - 1 - len(_file_block(path, [], len(items), _worst(items), expand, partial=True))
            keep = 0
            while keep < len(rows) and len(rows[keep]) + 1 <= room:
                room -= len(rows[keep]) + 1
                keep += 1
            if keep:
                parts.append(_file_block(path, rows[:keep], len(items), _worst(items), expand))
            left_out += len(items) - keep
            files_cut += 1
            budget = -1
            continue
        parts.append(block)
        budget -= len(block) + 1
    if left_out:
        parts.append(_truncation_note(left_out, files_cut))
    out = "\n".join([head, *parts, *extras, footer])
    if len(out) > max_chars:  # only if the head alone is enormous: cut hard, keep the marker
        note = "\n\n*(comment cut at GitHub's size limit; see the JSON or SARIF report)*\n"
        out = out[: max_chars - len(note)] + note
    return out
