"""security-scan: bandit (and semgrep, when installed) on changed Python files; only *new* findings count.

Why base and head: a change should answer for what it introduces, not for the debt of the
file it touches. Both versions of every changed ``.py`` file are scanned and a head
finding is *pre-existing* when the base version has a finding with the same

* rule id,
* normalised code: the flagged lines with comments dropped and whitespace collapsed,
* enclosing function or class (qualified name, from ``ast``),

never by line number (lines move). Matching is one-to-one, so a second copy of an old
vulnerable line is new. A head finding on lines the change did not touch also matches
by rule + code alone (a renamed function does not make its old findings new). When the
base version could not be parsed, findings on touched lines count as new. Pre-existing
findings are only counted in the notes.

Severity x confidence (bandit's ratings → ours):

=================  ===============  =============  =============
bandit severity    confidence HIGH  MEDIUM         LOW
=================  ===============  =============  =============
HIGH               high, 0.9        high, 0.7      medium, 0.4
MEDIUM             medium, 0.9      medium, 0.7    low, 0.4
LOW                low, 0.9         low, 0.7       info, 0.4
=================  ===============  =============  =============

Injection-class rules (``INJECTION_RULES``: exec/eval, pickle loads, unsafe yaml.load,
shell commands, string-built SQL) rated MEDIUM are raised to ``high`` when bandit's
confidence is at least MEDIUM: bandit rates B608 (``f"SELECT … {name}"``) MEDIUM/MEDIUM,
but an injection reachable from input is the classic blocking bug, so the default policy
(``blocking_severity: high``) blocks it. (bandit itself rates a constant shell command
LOW; that stays low.) ``B403`` (``import pickle``) is deliberately not in the list: the
import is harmless, B301 flags the call that is not.

Then ``refine`` uses the AST where bandit judges by names alone: string-built SQL that
starts like a query and interpolates a variable is ``high`` even when bandit is unsure;
SQL, ``mark_safe`` or ``urlopen`` fed only constants drop to ``low``; ``random`` used
under security names (token, salt, session, code…) rises to ``medium``; a hard-coded
password rises to ``medium`` only when the literal looks like one. semgrep, when
installed, adds our taint rules for request data reaching files (path traversal), URLs
(SSRF) and HTML (XSS). ``benchmarks/precision.py`` measures all of it against bandit.

Trust: ``# nosec`` comments are ignored by default (``honour_nosec: false``) because the
change under review could add them; skip rules from the base-side ``.mergegate.yml``.
Messages never repeat a hard-coded password's value (bandit's B105-B107 texts do).
"""

from __future__ import annotations

import ast
import asyncio
import io
import json
import os
import re
import shutil
import tokenize
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from mergegate.agents.base import AgentContext, AgentOutput, AgentSkipped
from mergegate.agents.common import dedupe_fingerprints, on_added_line, run_python_tool
from mergegate.core.change import ChangedFile
from mergegate.core.finding import Category, Finding, make_fingerprint
from mergegate.core.secret_patterns import is_placeholder
from mergegate.core.severity import Severity
from mergegate.runtime.process import run_process

NAME = "security-scan"

#: Raised to ``high`` when bandit's confidence is at least MEDIUM (see the module docstring).
INJECTION_RULES = frozenset(
    {
        "B102",  # exec
        "B301",  # pickle / marshal loads
        "B307",  # eval
        "B506",  # yaml.load without a safe loader
        "B602",  # subprocess with shell=True
        "B605",  # os.system / popen with a shell
        "B608",  # SQL built from strings
        "B610",  # Django QuerySet.extra
        "B611",  # Django RawSQL
    }
)

_SEVERITY = {"HIGH": Severity.HIGH, "MEDIUM": Severity.MEDIUM, "LOW": Severity.LOW}
_CONFIDENCE = {"HIGH": 0.9, "MEDIUM": 0.7, "LOW": 0.4}
_ORDER = list(Severity)

#: CWE by bandit test id, for results without ``issue_cwe`` (older bandit, plugins).
CWE_BY_RULE = {
    "B102": 78,
    "B104": 605,
    "B105": 259,
    "B106": 259,
    "B107": 259,
    "B108": 377,
    "B301": 502,
    "B303": 327,
    "B307": 78,
    "B311": 330,
    "B324": 327,
    "B403": 502,
    "B501": 295,
    "B506": 20,
    "B602": 78,
    "B605": 78,
    "B608": 89,
    "B701": 94,
}
DEFAULT_CWE = 710  # Improper Adherence to Coding Standards: the broadest fit

#: Rules whose bandit message quotes the hard-coded password it found.
_QUOTES_SECRET = frozenset({"B105", "B106", "B107"})


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Rule ids never reported (e.g. ``["B311"]``), set on the base branch.
    skip: list[str] = Field(default_factory=list)
    #: Honour ``# nosec`` comments; off by default because the change could add them.
    honour_nosec: bool = False


def map_rating(rule: str, severity: str, confidence: str) -> tuple[Severity, float]:
    """bandit's severity and confidence ratings → our severity and finding confidence."""
    ours = _SEVERITY.get(severity.upper(), Severity.INFO)
    conf = confidence.upper()
    if conf == "LOW":
        ours = _ORDER[max(0, ours.rank - 1)]
    elif rule in INJECTION_RULES and ours is Severity.MEDIUM:
        ours = Severity.HIGH
    return ours, _CONFIDENCE.get(conf, 0.4)


@dataclass(frozen=True)
class RawFinding:
    """One tool result, before new-vs-existing matching."""

    tool: str
    rule: str
    path: str
    line: int
    end_line: int
    severity: Severity
    confidence: float
    cwe: str
    message: str
    properties: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceMap:
    """What matching needs of one file: comment-free lines and function/class spans."""

    lines: list[str]
    scopes: list[tuple[int, int, str]]  # (first line, last line, qualified name), outer first
    parsed: bool
    tree: ast.Module | None = None

    @classmethod
    def of(cls, source: str | None) -> SourceMap:
        if source is None:
            return cls([], [], False)
        lines = source.splitlines()
        try:
            for tok in tokenize.generate_tokens(io.StringIO(source).readline):
                if tok.type == tokenize.COMMENT:
                    row, col = tok.start
                    lines[row - 1] = lines[row - 1][:col]
            tree = ast.parse(source)
        except (SyntaxError, tokenize.TokenError, ValueError):
            return cls(lines, [], False)
        scopes: list[tuple[int, int, str]] = []

        def visit(node: ast.AST, prefix: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    name = prefix + child.name
                    first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                    scopes.append((first, child.end_lineno or child.lineno, name))
                    visit(child, name + ".")
                else:
                    visit(child, prefix)

        visit(tree, "")
        return cls(lines, scopes, True, tree)

    def code(self, line: int, end_line: int) -> str:
        return " ".join(" ".join(self.lines[n - 1].split()) for n in range(line, end_line + 1) if n <= len(self.lines))

    def scope(self, line: int) -> str:
        name = "<module>"
        for first, last, qualname in self.scopes:  # outer first, so the last hit is innermost
            if first <= line <= last:
                name = qualname
        return name

    def nodes(self, line: int, end_line: int, kind: type | tuple[type, ...]) -> list[ast.AST]:
        """Nodes of ``kind`` starting within ``line..end_line``, outermost first."""
        if self.tree is None:
            return []
        found = [n for n in ast.walk(self.tree) if isinstance(n, kind) and line <= n.lineno <= end_line]
        return sorted(found, key=lambda n: (n.lineno, n.col_offset, -(n.end_col_offset or 0)))


def match_key(f: RawFinding, source: SourceMap) -> tuple[str, str, str]:
    return (f.rule, source.code(f.line, f.end_line), source.scope(f.line))


def split_new(
    head: list[RawFinding],
    base: list[RawFinding],
    head_src: SourceMap,
    base_src: SourceMap | None,
    changed: ChangedFile | None,
) -> tuple[list[RawFinding], int]:
    """Head findings of one file that base does not have, and how many it does have."""
    if base_src is None:  # a new file: everything in it is new
        return head, 0
    touched = [on_added_line(changed, f.line, f.end_line) for f in head]
    if not base_src.parsed:  # base unknown: judge by what the change touched
        return [f for f, t in zip(head, touched, strict=True) if t], sum(1 for t in touched if not t)
    exact = Counter(match_key(f, base_src) for f in base)
    loose = Counter(k[:2] for k in exact.elements())
    new, old = [], 0
    # Untouched findings claim their base counterparts first, so that of two equal lines
    # the one the change added is the new one.
    for f, t in sorted(zip(head, touched, strict=True), key=lambda p: p[1]):
        key = match_key(f, head_src)
        if exact[key] > 0:
            exact[key] -= 1
            loose[key[:2]] -= 1
            old += 1
        elif not t and loose[key[:2]] > 0:
            loose[key[:2]] -= 1
            old += 1
        else:
            new.append(f)
    return sorted(new, key=lambda f: f.line), old


def _cwe(item: dict) -> str:
    cwe = (item.get("issue_cwe") or {}).get("id") or CWE_BY_RULE.get(item["test_id"], DEFAULT_CWE)
    return f"CWE-{cwe}"


def parse_bandit(stdout: str, skip: Iterable[str] = ()) -> tuple[list[RawFinding], dict[str, str]]:
    """bandit's JSON → findings, and the files it could not analyse (path → reason)."""
    data = json.loads(stdout or "{}")
    skipped = set(skip)
    errors = {os.path.normpath(e["filename"]): e.get("reason", "error") for e in data.get("errors", [])}
    out = []
    for item in data.get("results", []):
        rule = item["test_id"]
        if rule in skipped:
            continue
        severity, confidence = map_rating(rule, item["issue_severity"], item["issue_confidence"])
        line = item["line_number"]
        end = max([line, *item.get("line_range", [])])
        message = item["issue_text"]
        if rule in _QUOTES_SECRET:
            message = message.split(":", 1)[0] + " (value not shown)"
        out.append(
            RawFinding(
                tool="bandit",
                rule=rule,
                path=os.path.normpath(item["filename"]),
                line=line,
                end_line=end,
                severity=severity,
                confidence=confidence,
                cwe=_cwe(item),
                message=message,
                properties={
                    "tool": "bandit",
                    "bandit_severity": item["issue_severity"],
                    "bandit_confidence": item["issue_confidence"],
                    "help": item.get("more_info", ""),
                },
            )
        )
    return out, errors


async def run_bandit(root: Path, paths: list[str], opts: Options) -> tuple[list[RawFinding], dict[str, str]]:
    if not paths:
        return [], {}
    args = ["-f", "json", "-q", "--exit-zero"]
    if not opts.honour_nosec:
        args.append("--ignore-nosec")
    # "./" keeps a path like "-x.py" from being read as an option.
    result = await run_python_tool("bandit", [*args, *(f"./{p}" for p in paths)], cwd=root)
    return await asyncio.to_thread(parse_bandit, result.stdout, opts.skip)


Scan = tuple[list[RawFinding], dict[str, str]]


async def run_bandit_both(
    head: Path, head_paths: list[str], base: Path, base_paths: list[str], opts: Options
) -> tuple[Scan, Scan]:
    """bandit on the head and base files in one process, results split back per side.

    Each bandit process pays the interpreter's and bandit's start-up (a few tenths of a
    CPU-second, far more than analysing a diff's files), so both sides share one when
    they are sibling directories (as the check writes them).
    """
    root = head.parent
    if base.parent != root or head.name == base.name or not base_paths:
        scans = await asyncio.gather(run_bandit(head, head_paths, opts), run_bandit(base, base_paths, opts))
        return scans[0], scans[1]
    found, errors = await run_bandit(
        root, [f"{head.name}/{p}" for p in head_paths] + [f"{base.name}/{p}" for p in base_paths], opts
    )

    def side(name: str) -> Scan:
        prefix = f"{name}/"
        return (
            [replace(f, path=f.path[len(prefix) :]) for f in found if f.path.startswith(prefix)],
            {p[len(prefix) :]: reason for p, reason in errors.items() if p.startswith(prefix)},
        )

    return side(head.name), side(base.name)


# --- semgrep (optional extra) -------------------------------------------------------------

#: Rules we ship for semgrep; ``fix:`` only where the rewrite is safe without review.
SEMGREP_RULES = """
rules:
  - id: mergegate.sql-fstring
    languages: [python]
    severity: ERROR
    message: SQL query built with an f-string; pass parameters to execute() instead
    metadata: {cwe: ["CWE-89"], confidence: MEDIUM}
    pattern-either:
      - pattern: $CUR.execute(f"...", ...)
      - pattern: $CUR.execute("..." % $X, ...)
      - pattern: $CUR.execute("..." + $X, ...)
  - id: mergegate.yaml-load
    languages: [python]
    severity: ERROR
    message: yaml.load can construct arbitrary objects; use yaml.safe_load
    metadata: {cwe: ["CWE-502"], confidence: HIGH}
    pattern: yaml.load($DATA)
    fix: yaml.safe_load($DATA)
  - id: mergegate.requests-no-verify
    languages: [python]
    severity: WARNING
    message: TLS certificate verification disabled
    metadata: {cwe: ["CWE-295"], confidence: HIGH}
    pattern: requests.$M(..., verify=False, ...)
  - id: mergegate.flask-render-string
    languages: [python]
    severity: WARNING
    message: template rendered from a string built at runtime (XSS / template injection)
    metadata: {cwe: ["CWE-79"], confidence: MEDIUM}
    pattern: flask.render_template_string(f"...", ...)
  - id: mergegate.flask-path-traversal
    mode: taint
    languages: [python]
    severity: ERROR
    message: a path built from request data reaches the file system (path traversal); check the resolved path
    metadata: {cwe: ["CWE-22"], confidence: MEDIUM}
    pattern-sources:
      - pattern: flask.request.$ATTR
    pattern-sanitizers:
      - pattern: werkzeug.utils.secure_filename(...)
      - pattern: os.path.basename(...)
    pattern-sinks:
      - pattern: open(...)
      - pattern: flask.send_file(...)
      - pattern: $F.save(...)
      - pattern: pathlib.Path(...)
      - patterns:
          - pattern: $BASE / $PART
          - focus-metavariable: $PART
  - id: mergegate.flask-ssrf
    mode: taint
    languages: [python]
    severity: ERROR
    message: a URL built from request data is fetched by the server (SSRF); allowlist the host
    metadata: {cwe: ["CWE-918"], confidence: MEDIUM}
    pattern-sources:
      - pattern: flask.request.$ATTR
    pattern-sinks:
      - pattern: requests.$METHOD(...)
      - pattern: httpx.$METHOD(...)
      - pattern: urllib.request.urlopen(...)
  - id: mergegate.flask-xss
    mode: taint
    languages: [python]
    severity: ERROR
    message: request data is rendered as HTML without escaping (XSS); use a template or markupsafe.escape
    metadata: {cwe: ["CWE-79"], confidence: MEDIUM}
    pattern-sources:
      - pattern: flask.request.$ATTR
    pattern-sanitizers:
      - pattern: markupsafe.escape(...)
      - pattern: flask.escape(...)
      - pattern: html.escape(...)
    pattern-sinks:
      - pattern: flask.render_template_string(...)
      - pattern: markupsafe.Markup(...)
      - patterns:
          - pattern: return $HTML
          - metavariable-regex:
              metavariable: $HTML
              regex: ^f["'].*<
"""

_SEMGREP_SEVERITY = {"ERROR": "HIGH", "WARNING": "MEDIUM", "INFO": "LOW"}


def parse_semgrep(stdout: str) -> list[RawFinding]:
    out = []
    for item in json.loads(stdout or "{}").get("results", []):
        extra = item.get("extra", {})
        meta = extra.get("metadata", {})
        rule = item["check_id"].rsplit(".", 1)[-1]
        severity, confidence = map_rating(
            "", _SEMGREP_SEVERITY.get(extra.get("severity", ""), "LOW"), meta.get("confidence", "MEDIUM")
        )
        cwe = (meta.get("cwe") or [f"CWE-{DEFAULT_CWE}"])[0].split(":")[0]
        props = {"tool": "semgrep"}
        if extra.get("fix"):
            props["fix"] = extra["fix"]
        out.append(
            RawFinding(
                tool="semgrep",
                rule=f"semgrep.{rule}",
                path=os.path.normpath(item["path"]),
                line=item["start"]["line"],
                end_line=item["end"]["line"],
                severity=severity,
                confidence=confidence,
                cwe=cwe,
                message=extra.get("message", rule),
                properties=props,
            )
        )
    return out


async def run_semgrep(exe: str, root: Path, paths: list[str], rules: Path) -> list[RawFinding]:
    if not paths:
        return []
    argv = [exe, "scan", "--json", "--quiet", "--metrics=off", "--disable-version-check", "--config", str(rules)]
    result = await run_process([*argv, "--", *paths], cwd=root, low_priority=True)
    if result.returncode not in (0, 1):
        raise RuntimeError(f"semgrep exited {result.returncode}: {result.stderr.strip()[-300:]}")
    return await asyncio.to_thread(parse_semgrep, result.stdout)


def merge_duplicates(bandit: list[RawFinding], semgrep: list[RawFinding]) -> list[RawFinding]:
    """Fold each semgrep finding into an earlier finding on the same line (the worse severity wins).

    The tools name the same bug differently (B506 is CWE-20, our yaml rule CWE-502), so
    the line is the join key; semgrep's rule id and any ``fix`` travel along.
    """
    out = list(bandit)
    for s in semgrep:
        i = next((i for i, b in enumerate(out) if (b.path, b.line) == (s.path, s.line)), None)
        if i is None:
            out.append(s)
            continue
        b = out[i]
        also = ", ".join(filter(None, [b.properties.get("also_reported_by"), s.rule]))
        props = {
            **b.properties,
            "also_reported_by": also,
            **({"fix": s.properties["fix"]} if "fix" in s.properties else {}),
        }
        out[i] = replace(b, severity=max(b.severity, s.severity, key=lambda v: v.rank), properties=props)
    return out


# --- context bandit does not use ----------------------------------------------------------
#
# Where bandit judges a call by its name alone, the code around it often says more. These
# adjustments only move a finding by what the AST shows; each says why in ``properties``.

_CONST_NAME = re.compile(r"_?[A-Z][A-Z0-9_]*")
_SQL_START = re.compile(r"\s*\(?\s*(select|insert|update|delete|with|replace|merge)\b", re.IGNORECASE)
_SECURITY_WORDS = re.compile(
    r"token|secret|passw|pwd|nonce|salt|otp|session|csrf|api_?key|\bkey\b|auth|reset|verif|\bcode\b|\bpin\b",
    re.IGNORECASE,
)
#: Rules about a call that is harmless when every argument is a constant.
_CONSTANT_ARGS_SAFE = {
    "B308": ("mark_safe",),
    "B703": ("mark_safe",),
    "B310": ("urlopen", "urlretrieve", "Request"),
}


def constant_like(node: ast.AST) -> bool:
    """Built only from literals and UPPER_CASE names (module constants): not attacker-controlled."""
    return all(_CONST_NAME.fullmatch(n.id) for n in ast.walk(node) if isinstance(n, ast.Name))


def _string_parts(node: ast.AST) -> tuple[str, list[ast.AST]] | None:
    """The literal text and the interpolated expressions of a string-building expression."""
    if isinstance(node, ast.JoinedStr):
        text = "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
        return text, [v.value for v in node.values if isinstance(v, ast.FormattedValue)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant):
        return str(node.left.value), [node.right]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        operands, stack = [], [node]
        while stack:
            n = stack.pop()
            if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Add):
                stack += [n.right, n.left]
            else:
                operands.append(n)
        text = "".join(o.value for o in operands if isinstance(o, ast.Constant) and isinstance(o.value, str))
        return text, [o for o in operands if not isinstance(o, ast.Constant)]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
        and isinstance(node.func.value, ast.Constant)
    ):
        return str(node.func.value.value), [*node.args, *(k.value for k in node.keywords)]
    return None


def _looks_like_credential(value: str) -> bool:
    return len(value) >= 6 and not re.fullmatch(r"[a-z_.\-]+", value) and not is_placeholder(value)


def refine(r: RawFinding, src: SourceMap, scope: str) -> RawFinding:
    """Adjust a bandit finding by what its code shows (see the comment above)."""
    if r.tool != "bandit" or src.tree is None:
        return r
    lo, mid, hi = (Severity.LOW, 0.4), (Severity.MEDIUM, 0.7), (Severity.HIGH, 0.7)
    verdict: tuple[tuple[Severity, float], str] | None = None
    if r.rule == "B608":
        for node in src.nodes(r.line, r.end_line, (ast.JoinedStr, ast.BinOp, ast.Call)):
            parts = _string_parts(node)
            if parts is None:
                continue
            text, values = parts
            if all(constant_like(v) for v in values):
                verdict = lo, "only constants are interpolated into the query"
            elif _SQL_START.match(text):
                verdict = hi, "a query string starting with SQL interpolates a variable"
            break
    elif r.rule in _CONSTANT_ARGS_SAFE:
        for call in src.nodes(r.line, r.end_line, ast.Call):
            func = call.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in _CONSTANT_ARGS_SAFE[r.rule]:
                if all(constant_like(a) for a in [*call.args, *(k.value for k in call.keywords)]):
                    verdict = lo, "every argument is a constant"
                break
    elif r.rule == "B311":
        if _SECURITY_WORDS.search(scope) or _SECURITY_WORDS.search(src.code(r.line, r.end_line)):
            verdict = mid, "the random value is used for a security purpose (by its names)"
    elif r.rule in _QUOTES_SECRET:
        strings = [n.value for n in src.nodes(r.line, r.end_line, ast.Constant) if isinstance(n.value, str)]
        if any(_looks_like_credential(v) for v in strings):
            verdict = mid, "the literal looks like a real credential"
    if verdict is None:
        return r
    (severity, confidence), why = verdict
    return replace(r, severity=severity, confidence=confidence, properties={**r.properties, "context": why})


# --- the agent ----------------------------------------------------------------------------


def _listing(paths: list[str], limit: int = 10) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


class SecurityScan:
    name: ClassVar[str] = NAME
    description: ClassVar[str] = "bandit (and semgrep) findings the change introduces, matched against its base"
    Options: ClassVar[type[BaseModel]] = Options
    default_timeout: ClassVar[float] = 180.0

    async def run(self, ctx: AgentContext) -> AgentOutput:
        files = ctx.head_files(".py")
        if not files:
            raise AgentSkipped("no Python files changed")
        opts: Options = ctx.options  # type: ignore[assignment]
        notes: list[str] = []
        others = [f.path for f in ctx.head_files() if not f.path.endswith(".py")]
        if others:
            notes.append(f"not analysed (not Python): {_listing(others)}")

        head_paths = [f.path for f in files]
        base_paths = [f.base_path for f in files if f.exists_at_base and (ctx.base_dir / f.base_path).is_file()]
        scans = [run_bandit_both(ctx.head_dir, head_paths, ctx.base_dir, base_paths, opts)]
        semgrep = shutil.which("semgrep")
        if semgrep:
            rules = ctx.scratch / "semgrep-rules.yml"
            rules.write_text(SEMGREP_RULES, encoding="utf-8")
            scans += [run_semgrep(semgrep, ctx.head_dir, head_paths, rules)]
            scans += [run_semgrep(semgrep, ctx.base_dir, base_paths, rules)]
        else:
            notes.append("semgrep is not installed (optional extra mergegate[semgrep]): bandit only")
        bandit, *results = await asyncio.gather(*scans, return_exceptions=True)
        if isinstance(bandit, BaseException):
            raise bandit  # bandit is the required analyser: fail closed
        (head_found, head_errors), (base_found, base_errors) = bandit  # type: ignore[misc]
        confidence = 1.0
        if semgrep:
            failed = next((r for r in results if isinstance(r, BaseException)), None)
            if failed is None:
                head_found = merge_duplicates(head_found, results[0])
                base_found = merge_duplicates(base_found, results[1])
            else:  # optional: report it, keep bandit's answer
                notes.append(f"semgrep failed, bandit only: {str(failed)[:200]}")
                confidence = 0.9

        maps = await asyncio.to_thread(_source_maps, ctx, files)
        findings: list[Finding] = []
        pre_existing = 0
        for f in files:
            head_src, base_src = maps[f.path]
            if base_src is not None and f.base_path in base_errors:
                base_src = SourceMap(base_src.lines, [], False)
            new, old = split_new(
                [r for r in head_found if r.path == f.path],
                [r for r in base_found if r.path == f.base_path],
                head_src,
                base_src,
                ctx.change.file(f.path),
            )
            pre_existing += old
            findings += [
                self._finding(refine(r, head_src, head_src.scope(r.line)), head_src, ctx)
                for r in new
                if not (r.rule == "B101" and ctx.is_test_path(f.path))  # asserts are how tests work
            ]

        if head_errors:
            for path, reason in sorted(head_errors.items()):
                notes.append(f"{path}: not analysed, bandit reported: {reason}")
        if pre_existing:
            notes.append(f"{pre_existing} pre-existing finding(s) in changed files, not blocking")
        confidence *= 1.0 - 0.5 * len(head_errors) / len(files)
        return AgentOutput(findings=dedupe_fingerprints(findings), confidence=round(confidence, 3), notes=notes)

    def _finding(self, r: RawFinding, src: SourceMap, ctx: AgentContext) -> Finding:
        rule, code, scope = match_key(r, src)
        return Finding(
            agent=self.name,
            rule=rule,
            severity=r.severity,
            confidence=r.confidence,
            message=r.message,
            category=Category.SECURITY,
            path=r.path,
            line=r.line,
            end_line=r.end_line,
            cwe=r.cwe,
            fingerprint=make_fingerprint(self.name, rule, r.path, f"{scope}\x1f{code}"),
            properties={**r.properties, "function": scope},
        )


def _source_maps(ctx: AgentContext, files: list[ChangedFile]) -> dict[str, tuple[SourceMap, SourceMap | None]]:
    """Per head path: its source map at head and at base (``None`` when new in the change)."""
    out = {}
    for f in files:
        base = ctx.base_text(f.base_path) if f.exists_at_base else None
        out[f.path] = (SourceMap.of(ctx.head_text(f.path)), SourceMap.of(base) if base is not None else None)
    return out


AGENT = SecurityScan()
