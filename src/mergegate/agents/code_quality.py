"""code-quality: ruff on the changed Python files, judged by the base branch's own ruff configuration.

**Configuration comes from the base side.** The repository's ruff configuration is read
from the *base tip* (``change.base``, where ``.mergegate.yml`` and CODEOWNERS are read
too), never from the change: a change that edits ``[tool.ruff]`` or ``ruff.toml`` to
silence a rule is judged by the old file. For every analysed file the nearest
configuration at the base tip applies, as ruff itself resolves it: in each directory
``.ruff.toml`` wins over ``ruff.toml``, which wins over a ``pyproject.toml`` with a
``[tool.ruff]`` table; a directory's configuration (root or nested) covers the files
below it. Each is copied into scratch space and passed with ``--config``, which turns
off ruff's own discovery, so configuration files the change adds or edits (they sit in
the head snapshot next to the code) are never read. ``extend`` is followed at the base
tip too (within the repository only: absolute, ``~`` or ``$VAR`` paths are refused).
Paths in a configuration (``per-file-ignores``, ``exclude``) resolve against the
configuration's directory, and ``exclude`` is honoured (``--force-exclude``); excluded
files are listed in a note. Without a configuration, ruff runs ``--isolated`` with
``DEFAULT_SELECT``, a rule set that finds bugs rather than style. ``select``/``ignore``
in ``.mergegate.yml`` override either. A configuration ruff rejects (bad TOML, unknown
key, unknown rule, an ``extend`` that cannot be read) gives a note quoting ruff's
reason, the default rule set for the files it covers and agent confidence x0.9: the
change is still checked, just not by the rules the repository meant.

``# noqa`` comments are not honoured by default (``honour_noqa: false``): the change
under review could add them. A finding on a line whose ``# noqa`` covers it says so in
``properties["noqa"]``. ``fix = true`` in a configuration is overridden (``--no-fix``).

**Filter modes** (option ``filter``, named as in reviewdog):

============  ========================================================================
``added``     (default) findings that touch a line the change added or changed
``diff_context``  findings within the diff hunks, including their 3 lines of context
``file``      findings anywhere in a changed file
``nofilter``  everything ruff reports for the files it analysed; as only changed files
              are analysed, this is the same set as ``file`` (kept for reviewdog parity)
============  ========================================================================

Every finding carries ``properties["on_changed_line"]``. Outside the changed lines (the
last three modes), ruff is also run on the merge-base version of the file, and a
finding that was there before (same rule, same normalised line; one-to-one) is
``pre_existing: "true"``: reported at ``info`` with confidence ``0.0`` (the chance that
*this change* introduced it; ruff's own rating is kept in ``rule_confidence``), so
debt in a file never weighs on a change. A finding off the changed lines that base did
not have (an import removed, so an old line now has an undefined name) keeps its full
rating: the change caused it. When the base version did not parse, such findings are
``pre_existing: "unknown"`` and capped at ``low``.

**Severity and per-finding confidence** (longest matching code prefix wins):

===========================================================  ========  ==========
rules                                                        severity  confidence
===========================================================  ========  ==========
``invalid-syntax`` (the file does not parse), ``E999``       high      0.95
``F70x`` (``return``/``break``/``yield`` where not allowed)  high      0.9
``F821``-``F823`` undefined names                            medium    0.95
``F50x``/``F52x`` format calls that fail, ``F6xx``           medium    0.85
(``is`` with a literal, assert on a tuple, repeated keys),
``F722``, ``F901``, ``PLE`` (pylint errors)
``F811`` redefined while unused (a test shadowed, never       medium    0.7
run), ``B006`` ``B012`` ``B015`` ``B017`` ``B023``
other ``F`` (unused import/variable, star imports)           low       0.8
other ``B`` (bugbear), ``E722``                              low       0.7
``E7``, ``S`` (security-scan owns security), ``PLW``         low       0.6
``RUF100`` unused ``noqa``                                   info      0.9
anything else: style and conventions (E, W, I, D, N, UP…)    info      0.6
===========================================================  ========  ==========

Every finding is ``quality``; none blocks on its own (only security findings do), they
lower the change's confidence. Fingerprints come from the rule and the normalised
source line, so a finding keeps its id when lines move (repeats are numbered).

**What is not analysed is reported**, never skipped silently: non-Python files,
binary files, deleted files and files excluded by the base configuration are listed in
notes without lowering confidence (not this agent's job, or the repository's choice).
Python files it should have analysed but could not lower the agent's confidence by
``0.3 x share of Python files``: larger than ``max_file_bytes`` (default 1 MiB),
binary, unreadable (not UTF-8) or not parseable (ruff then checks syntax only).

``.pyi`` stubs are analysed (ruff applies its stub rules). Notebooks (``.ipynb``) are
analysed: ruff lints their code cells; since their diff is JSON, changed lines are
found by comparing the code-cell lines of base and head (``difflib``) and findings name
``cell N, line M`` (``properties["cell"]``/``["cell_line"]``) with no file line.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import posixpath
import re
import sys
import tomllib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field
from unidiff import PatchSet

from mergegate.agents.base import AgentContext, AgentOutput, AgentSkipped
from mergegate.agents.common import ToolFailed, dedupe_fingerprints
from mergegate.core.change import ChangedFile
from mergegate.core.finding import Category, Finding, make_fingerprint
from mergegate.core.severity import Severity
from mergegate.runtime.process import run_process
from mergegate.vcs.git import GitRepo

NAME = "code-quality"

#: Without a repository configuration: pyflakes, pycodestyle errors, bugbear, pylint
#: errors and unused ``noqa`` directives (bugs rather than style).
DEFAULT_SELECT = ("E4", "E7", "E9", "F", "B", "PLE", "RUF100")

#: Configuration file names in one directory, in ruff's order of precedence.
CONFIG_NAMES = (".ruff.toml", "ruff.toml", "pyproject.toml")

#: Files ruff analyses.
PYTHON_SUFFIXES = (".py", ".pyi", ".ipynb")

#: The agent's confidence factor when a base configuration could not be used.
INVALID_CONFIG_FACTOR = 0.9
#: Confidence lost per share of Python files that could not be analysed.
UNANALYSED_WEIGHT = 0.3
#: Lines of context around each change in ``diff_context`` mode (git's default).
CONTEXT_LINES = 3
#: ruff output read at most (json-lines: a cut-off keeps every complete line).
MAX_OUTPUT = 64 * 1024 * 1024
_MAX_EXTEND_DEPTH = 8

SYNTAX_RULES = frozenset({"invalid-syntax", "syntax-error", "E999"})
_IO_ERROR = "E902"

_H, _M, _L, _I = Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.INFO
#: (code prefix, severity, confidence); the longest matching prefix wins. See the docstring.
RATINGS: tuple[tuple[str, Severity, float], ...] = (
    ("invalid-syntax", _H, 0.95),
    ("syntax-error", _H, 0.95),
    ("E999", _H, 0.95),
    ("E9", _H, 0.9),
    ("F70", _H, 0.9),
    ("F821", _M, 0.95),
    ("F822", _M, 0.95),
    ("F823", _M, 0.95),
    ("F50", _M, 0.85),
    ("F52", _M, 0.85),
    ("F6", _M, 0.85),
    ("F722", _M, 0.85),
    ("F901", _M, 0.85),
    ("PLE", _M, 0.85),
    ("F811", _M, 0.7),
    ("B006", _M, 0.7),
    ("B012", _M, 0.7),
    ("B015", _M, 0.7),
    ("B017", _M, 0.7),
    ("B023", _M, 0.7),
    ("F", _L, 0.8),
    ("B", _L, 0.7),
    ("E722", _L, 0.7),
    ("E7", _L, 0.6),
    ("S", _L, 0.6),
    ("PLW", _L, 0.6),
    ("RUF100", _I, 0.9),
)
STYLE_RATING = (_I, 0.6)
_BY_LENGTH = sorted(RATINGS, key=lambda r: -len(r[0]))


class Filter(StrEnum):
    ADDED = "added"
    DIFF_CONTEXT = "diff_context"
    FILE = "file"
    NOFILTER = "nofilter"


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Which findings are reported (see the module docstring).
    filter: Filter = Filter.ADDED
    #: Rule selectors replacing the configuration's (or the default) selection.
    select: list[str] | None = None
    #: Rule selectors never reported.
    ignore: list[str] = Field(default_factory=list)
    #: Use the repository's ruff configuration from the base branch (else the defaults).
    use_repo_config: bool = True
    #: Python files larger than this are not analysed (and noted).
    max_file_bytes: int = Field(1024 * 1024, ge=1)
    #: Honour ``noqa`` comments; off by default because the change could add them.
    honour_noqa: bool = False


def rate(code: str) -> tuple[Severity, float]:
    """A ruff rule code's severity and finding confidence (see the module docstring)."""
    for prefix, severity, confidence in _BY_LENGTH:
        if code.startswith(prefix):
            return severity, confidence
    return STYLE_RATING


def severity_for(code: str) -> Severity:
    return rate(code)[0]


# --- the base side's ruff configuration ----------------------------------------------------


@dataclass
class RepoConfig:
    """One ruff configuration file at the base tip, copied to ``local`` (``error``: unusable)."""

    path: str
    directory: str
    local: Path
    error: str | None = None
    invalid: bool = False  # ruff rejected it (set after running)


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["", *("/".join(parts[: i + 1]) for i in range(len(parts)))]


def _ruff_table(name: str, text: str) -> tuple[bool, dict | None]:
    """(is a ruff configuration, its parsed ruff table or ``None`` when it does not parse)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        # ruff would fail on it; a pyproject.toml only counts when it is meant for ruff.
        return name != "pyproject.toml" or "tool.ruff" in text, None
    if name == "pyproject.toml":
        table = data.get("tool", {}).get("ruff") if isinstance(data.get("tool"), dict) else None
        return isinstance(table, dict), table if isinstance(table, dict) else None
    return True, data


def discover_configs(repo: GitRepo, ref: str, paths: Iterable[str], dest: Path) -> dict[str, RepoConfig]:
    """The ruff configuration of every directory above ``paths`` at ``ref``, by directory.

    Each is written to ``dest`` at its repository path, with the files it ``extend``s.
    """
    dirs = sorted({d for p in paths for d in _ancestors(p)})
    candidates = [posixpath.join(d, n) for d in dirs for n in CONFIG_NAMES]
    blobs = repo.read_blobs(ref, candidates)
    found: dict[str, RepoConfig] = {}
    for d in dirs:
        for name in CONFIG_NAMES:
            path = posixpath.join(d, name)
            data = blobs.get(path)
            if data is None:
                continue
            text = data.decode("utf-8", "replace")
            is_ruff, table = _ruff_table(name, text)
            if not is_ruff:
                continue
            config = RepoConfig(path, d, dest / path)
            _write(dest / path, data)
            config.error = _follow_extend(repo, ref, path, table, dest, [path])
            found[d] = config
            break
    return found


def _write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def _follow_extend(repo: GitRepo, ref: str, path: str, table: dict | None, dest: Path, chain: list[str]) -> str | None:
    """Copy what ``path`` extends (recursively) from ``ref``; a reason when that is impossible."""
    value = (table or {}).get("extend")
    if value is None:
        return None
    if not isinstance(value, str):
        return None  # ruff reports the type error itself
    if value.startswith(("/", "~")) or "$" in value or re.match(r"[A-Za-z]:[\\/]", value):
        return f"`extend = {value!r}` in {path} points outside the repository and is not read"
    target = posixpath.normpath(posixpath.join(posixpath.dirname(path), value))
    if target == ".." or target.startswith("../"):
        return f"`extend = {value!r}` in {path} points outside the repository and is not read"
    if target in chain:
        return f"`extend` in {path} makes a cycle: {' -> '.join([*chain, target])}"
    if len(chain) > _MAX_EXTEND_DEPTH:
        return f"`extend` chains deeper than {_MAX_EXTEND_DEPTH} files from {chain[0]}"
    data = repo.read_blobs(ref, [target])[target]
    if data is None:
        return f"{target}, extended by {path}, does not exist at the base"
    _write(dest / target, data)
    _, extended = _ruff_table(posixpath.basename(target), data.decode("utf-8", "replace"))
    return _follow_extend(repo, ref, target, extended, dest, [*chain, target])


def nearest_config(configs: dict[str, RepoConfig], path: str) -> RepoConfig | None:
    for d in reversed(_ancestors(path)):
        if d in configs:
            return configs[d]
    return None


# --- running ruff ----------------------------------------------------------------------------


@dataclass
class LintRun:
    """What one ruff invocation over some files reported (paths relative to the repository)."""

    items: list[dict] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # path -> why ruff could not lint it
    excluded: list[str] = field(default_factory=list)
    truncated: bool = False


_FAILED_TO_LINT = re.compile(r"^\s*(?:warning|error): Failed to lint (.+?): (.+)$", re.MULTILINE)


def _ruff_args(config: Path | None, opts: Options) -> list[str]:
    args = ["--no-cache", "--no-fix", "--exit-zero", "--output-format", "json-lines"]
    args += ["--isolated"] if config is None else ["--config", str(config), "--force-exclude"]
    select = opts.select if opts.select is not None else (None if config is not None else list(DEFAULT_SELECT))
    if select is not None:
        args += ["--select", ",".join(select)]
    if opts.ignore:
        args += ["--ignore", ",".join(opts.ignore)]
    if not opts.honour_noqa:
        args.append("--ignore-noqa")
    return args


async def _ruff(args: list[str], cwd: Path) -> tuple[int, str, str, bool]:
    # Low priority like every analyser (see ``common.run_python_tool``).
    result = await run_process([sys.executable, "-m", "ruff", *args], cwd=cwd, max_output=MAX_OUTPUT, low_priority=True)
    if result.timed_out:
        raise TimeoutError("ruff did not finish")
    return result.returncode, result.stdout, result.stderr, result.truncated


def ruff_error(stderr: str, scratch: Path) -> str:
    """ruff's reason for refusing a configuration, in one line, with scratch paths removed."""
    text = stderr.replace(str(scratch) + "/", "")
    causes = [m.strip() for m in re.findall(r"Cause:\s*(.+)", text)]
    tail = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith(("|", "Cause:", "^"))]
    tail = [t for t in tail if t not in ("ruff failed",) and not re.fullmatch(r"\d+ \|.*", t)]
    parts = causes[-1:] + [t for t in tail[-1:] if t not in causes and not t.startswith("tip:")]
    reason = ": ".join(parts) or (text.strip().splitlines() or ["no reason given"])[-1]
    reason = re.sub(r", expected one of .*", "", reason)  # ruff lists every valid key
    return reason if len(reason) <= 300 else reason[:297] + "..."


async def lint(
    root: Path, directory: str, paths: list[str], config: Path | None, opts: Options
) -> tuple[int, LintRun, str]:
    """ruff over ``paths`` (repository paths below ``directory``) in the snapshot ``root``.

    Returns ruff's exit code (2: it refused to run, e.g. a bad configuration), what it
    reported and its stderr.
    """
    cwd = root / directory if directory else root
    prefix = f"{directory}/" if directory else ""
    rel = [p[len(prefix) :] for p in paths]
    args = _ruff_args(config, opts)
    jobs = [_ruff(["check", *args, "--", *rel], cwd)]
    if config is not None:
        show = ["check", "--no-cache", "--config", str(config), "--force-exclude", "--show-files", "--", *rel]
        jobs.append(_ruff(show, cwd))
    outcomes = await asyncio.gather(*jobs)
    code, stdout, stderr, truncated = outcomes[0]
    if code != 0:
        return code, LintRun(), stderr
    run = LintRun(truncated=truncated)
    real = cwd.resolve()
    for line in stdout.splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            run.truncated = True  # the cut-off line
            continue
        try:
            item["path"] = prefix + Path(item["filename"]).resolve().relative_to(real).as_posix()
        except ValueError:
            continue
        if item.get("code") == _IO_ERROR:
            run.failed[item["path"]] = item.get("message") or "cannot be read"
        else:
            run.items.append(item)
    for name, reason in _FAILED_TO_LINT.findall(stderr):
        run.failed.setdefault(prefix + name.strip(), reason.strip())
    if config is not None:
        s_code, listed, _, _ = outcomes[1]
        if s_code != 0:  # the same configuration just worked for linting
            raise ToolFailed(f"ruff --show-files exited {s_code}")
        shown = {Path(ln.strip()).resolve() for ln in listed.splitlines() if ln.strip()}
        run.excluded = [p for p, r in zip(paths, rel, strict=True) if (cwd / r).resolve() not in shown]
    return code, run, stderr


# --- where findings are: lines, cells, what the change touched -------------------------------


def _cells(text: str | None) -> list[tuple[int, int, str]] | None:
    """(cell number as ruff counts it: 1-based over all cells, row, text) of a notebook's code."""
    if text is None:
        return None
    try:
        nb = json.loads(text)
        out = []
        for n, cell in enumerate(nb.get("cells", []), start=1):
            if cell.get("cell_type") != "code":
                continue
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else str(source)
            out += [(n, row, line) for row, line in enumerate(source.splitlines(), start=1)]
        return out
    except (ValueError, AttributeError, TypeError):
        return None


@dataclass
class FileView:
    """One analysed file: its line texts and which lines the change added or shows as context."""

    path: str
    notebook: bool
    texts: dict[tuple[int | None, int], str]
    added: set[tuple[int | None, int]] | None  # None: every line (a new file)
    context: set[tuple[int | None, int]] | None

    def text(self, cell: int | None, row: int) -> str:
        return self.texts.get((cell, row), "")

    def _span(self, cell: int | None, row: int, end: int | None) -> list[tuple[int | None, int]]:
        last = end if end and end >= row else row
        return [(cell, n) for n in range(row, last + 1)]

    def is_added(self, cell: int | None, row: int, end: int | None) -> bool:
        return self.added is None or any(k in self.added for k in self._span(cell, row, end))

    def in_context(self, cell: int | None, row: int, end: int | None) -> bool:
        return self.context is None or any(k in self.context for k in self._span(cell, row, end))


def _text_lines(text: str | None, notebook: bool) -> dict[tuple[int | None, int], str]:
    if text is None:
        return {}
    if notebook:
        return {(c, r): t for c, r, t in _cells(text) or []}
    return {(None, n): t for n, t in enumerate(text.splitlines(), start=1)}


def view(ctx: AgentContext, f: ChangedFile, hunks: dict[str, set[int]] | None) -> FileView:
    notebook = f.path.endswith(".ipynb")
    head = ctx.head_text(f.path)
    texts = _text_lines(head, notebook)
    if not notebook:
        added = {(None, n) for n in f.added_lines}
        context = {(None, n) for n in hunks.get(f.path, ())} if hunks is not None else set()
        return FileView(f.path, False, texts, added, context)
    head_cells = _cells(head)
    base_cells = _cells(ctx.base_text(f.base_path)) if f.exists_at_base else []
    if head_cells is None or base_cells is None:
        return FileView(f.path, True, texts, None, None)  # cannot compare: every line counts
    matcher = difflib.SequenceMatcher(None, [t for *_, t in base_cells], [t for *_, t in head_cells], autojunk=False)
    keys = [(c, r) for c, r, _ in head_cells]
    added = {keys[j] for tag, _, _, j1, j2 in matcher.get_opcodes() if tag != "equal" for j in range(j1, j2)}
    context = {
        keys[j]
        for group in matcher.get_grouped_opcodes(CONTEXT_LINES)
        for _, _, _, j1, j2 in group
        for j in range(j1, j2)
    }
    return FileView(f.path, True, texts, added, context)


def diff_hunks(repo: GitRepo, merge_base: str, head: str) -> dict[str, set[int]]:
    """Head lines inside each file's diff hunks with ``CONTEXT_LINES`` of context."""
    out: dict[str, set[int]] = {}
    for pf in PatchSet(repo.diff_text(merge_base, head, context=CONTEXT_LINES)):
        if pf.is_removed_file:
            continue
        lines = out.setdefault(pf.path, set())
        for hunk in pf:
            lines.update(range(hunk.target_start, hunk.target_start + hunk.target_length))
    return out


def _location(item: dict) -> tuple[int | None, int, int | None]:
    row = (item.get("location") or {}).get("row") or 1
    end = (item.get("end_location") or {}).get("row")
    return item.get("cell"), row, end


_NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:[\s,]+[A-Z]+[0-9]+)*))?", re.IGNORECASE)


def noqa_covers(line: str, code: str) -> bool:
    m = _NOQA.search(line)
    if m is None:
        return False
    codes = m.group("codes")
    return codes is None or code.upper() in {c.upper() for c in re.split(r"[\s,]+", codes)}


# --- the agent -----------------------------------------------------------------------------


def _listing(paths: list[str], limit: int = 10) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


@dataclass
class Group:
    """Files analysed with one configuration (``config`` None: the defaults)."""

    directory: str
    config: RepoConfig | None
    paths: list[str]


class CodeQuality:
    name: ClassVar[str] = NAME
    description: ClassVar[str] = "ruff with the base branch's configuration, on the lines the change touched"
    Options: ClassVar[type[BaseModel]] = Options
    default_timeout: ClassVar[float] = 120.0

    async def run(self, ctx: AgentContext) -> AgentOutput:
        opts: Options = ctx.options  # type: ignore[assignment]
        notes: list[str] = []
        python = [f for f in ctx.change.files if f.exists_at_head and f.path.endswith(PYTHON_SUFFIXES)]
        others = [f.path for f in ctx.head_files() if not f.path.endswith(PYTHON_SUFFIXES)]
        binary = [f.path for f in ctx.change.files if f.exists_at_head and f.binary]
        deleted = [f.path for f in ctx.change.files if not f.exists_at_head]
        if not python:
            listed = [f"{_listing(p, 5)} ({why})" for p, why in ((others, "not Python"), (binary, "binary")) if p]
            raise AgentSkipped("no Python files changed" + (f"; not analysed: {'; '.join(listed)}" if listed else ""))
        for paths, why in ((others, "not Python"), (binary, "binary"), (deleted, "deleted")):
            if paths:
                notes.append(f"not analysed ({why}): {_listing(paths)}")

        unanalysed: set[str] = {f.path for f in python if f.binary}
        too_large = []
        for f in python:
            size = (ctx.head_dir / f.path).stat().st_size if (ctx.head_dir / f.path).is_file() else 0
            if not f.binary and size > opts.max_file_bytes:
                too_large.append(f"{f.path} ({size} bytes)")
                unanalysed.add(f.path)
        if too_large:
            notes.append(f"not analysed (larger than max_file_bytes={opts.max_file_bytes}): {_listing(too_large)}")
        files = [f for f in python if f.path not in unanalysed]

        confidence = 1.0
        findings: list[Finding] = []
        if files:
            confidence, findings = await self._analyse(ctx, opts, files, notes, unanalysed)
        confidence *= 1.0 - UNANALYSED_WEIGHT * len(unanalysed) / len(python)
        return AgentOutput(findings=dedupe_fingerprints(findings), confidence=round(confidence, 3), notes=notes)

    async def _analyse(
        self, ctx: AgentContext, opts: Options, files: list[ChangedFile], notes: list[str], unanalysed: set[str]
    ) -> tuple[float, list[Finding]]:
        confidence = 1.0
        off_lines = opts.filter is not Filter.ADDED
        base_files = [f for f in files if off_lines and f.exists_at_base and (ctx.base_dir / f.base_path).is_file()]
        configs: dict[str, RepoConfig] = {}
        paths = [f.path for f in files] + [f.base_path for f in base_files]
        if opts.use_repo_config:
            configs = await asyncio.to_thread(
                discover_configs, ctx.repo, ctx.change.base, paths, ctx.scratch / "ruff-config"
            )

        head_run = await self._lint_groups(ctx, ctx.head_dir, [f.path for f in files], configs, opts)
        base_run = await self._lint_groups(ctx, ctx.base_dir, [f.base_path for f in base_files], configs, opts)
        hunks = None
        if opts.filter is Filter.DIFF_CONTEXT:
            hunks = await asyncio.to_thread(diff_hunks, ctx.repo, ctx.change.merge_base, ctx.change.head)

        # Only the configurations that govern some file (a root one shadowed by nested ones does not).
        governing = {c.path: c for p in paths for c in [nearest_config(configs, p)] if c is not None}
        used = sorted(p for p, c in governing.items() if c.error is None and not c.invalid)
        bad = sorted((c for c in governing.values() if c.error or c.invalid), key=lambda c: c.path)
        short = ctx.change.base[:12]
        override = ", ".join(
            f"{k}: {','.join(v)}" for k, v in (("select", opts.select), ("ignore", opts.ignore)) if v is not None and v
        )
        if used:
            notes.append(
                f"ruff configuration from the base branch ({short}): {', '.join(used)}"
                + (f"; overridden by .mergegate.yml {override}" if override else "")
            )
        for c in bad:
            notes.append(
                f"base ruff configuration {c.path} ({short}) cannot be used, so the default rule set "
                f"({','.join(DEFAULT_SELECT)}) was applied to the files it covers: {c.error}"
            )
        if bad:
            confidence *= INVALID_CONFIG_FACTOR
        elif not used:
            rules = ",".join(opts.select) if opts.select is not None else ",".join(DEFAULT_SELECT)
            where = "no ruff configuration at the base" if opts.use_repo_config else "use_repo_config: false"
            ignored = f"; ignore: {','.join(opts.ignore)}" if opts.ignore else ""
            notes.append(f"{where}; rules: {rules}{ignored}")
        if head_run.excluded:
            notes.append(f"not analysed (excluded by the base ruff configuration): {_listing(head_run.excluded)}")
        if head_run.truncated or base_run.truncated:
            notes.append(f"ruff's output exceeded {MAX_OUTPUT // (1024 * 1024)} MiB; findings after that were not read")
            confidence *= 1.0 - UNANALYSED_WEIGHT

        for path, reason in sorted(head_run.failed.items()):
            notes.append(f"{path}: not analysed, ruff could not lint it: {reason}")
            unanalysed.add(path)
        syntax = sorted({i["path"] for i in head_run.items if (i.get("code") or "invalid-syntax") in SYNTAX_RULES})
        for path in syntax:
            notes.append(f"{path}: does not parse, so ruff checked its syntax only; other findings in it are unknown")
            unanalysed.add(path)

        views = {f.path: view(ctx, f, hunks) for f in files}
        base_keys, base_unknown = self._base_keys(ctx, base_files, base_run)
        findings: list[Finding] = []
        hidden = pre_existing = 0
        # Findings off the changed lines claim their base counterparts first.
        items = sorted(head_run.items, key=lambda i: (i["path"], _location(i)[1]))
        placed = []
        for item in items:
            v = views.get(item["path"])
            if v is None:
                continue
            cell, row, end = _location(item)
            placed.append((item, v, cell, row, end, v.is_added(cell, row, end)))
        for item, v, cell, row, end, on_line in sorted(placed, key=lambda p: p[5]):
            code = item.get("code") or "invalid-syntax"
            keep = on_line or opts.filter in (Filter.FILE, Filter.NOFILTER)
            keep = keep or (opts.filter is Filter.DIFF_CONTEXT and v.in_context(cell, row, end))
            if not keep:
                hidden += 1
                continue
            text = v.text(cell, row)
            severity, conf = rate(code)
            props = {"on_changed_line": "true" if on_line else "false", "filter": opts.filter.value}
            if not on_line:
                key = (code, " ".join(text.split()))
                counter = base_keys.get(v.path)
                if v.path in base_unknown:
                    props["pre_existing"] = "unknown"
                    severity = min(severity, Severity.LOW, key=lambda s: s.rank)
                elif counter is not None and counter[key] > 0:
                    counter[key] -= 1
                    props["pre_existing"] = "true"
                    props["rule_confidence"] = f"{conf:g}"
                    severity, conf = Severity.INFO, 0.0
                    pre_existing += 1
                else:
                    props["pre_existing"] = "false"
            config = nearest_config(configs, v.path)
            props["config"] = config.path if config and not (config.error or config.invalid) else "default"
            if not opts.honour_noqa and noqa_covers(text, code):
                props["noqa"] = "not honoured (honour_noqa: false)"
            if item.get("url"):
                props["help"] = item["url"]
            message = item.get("message") or code
            if v.notebook:
                props.update(cell=str(cell), cell_line=str(row))
                message = f"cell {cell}, line {row}: {message}"
            findings.append(
                Finding(
                    agent=self.name,
                    rule=code,
                    severity=severity,
                    confidence=conf,
                    message=message,
                    category=Category.QUALITY,
                    path=v.path,
                    line=None if v.notebook else row,
                    end_line=None if v.notebook else end,
                    fingerprint=make_fingerprint(self.name, code, v.path, text or message),
                    properties=props,
                )
            )
        if hidden:
            where = "outside the diff hunks"
            if opts.filter is Filter.ADDED:
                where = "on lines the change did not add or change"
            notes.append(f"{hidden} finding(s) {where} are not reported (filter: {opts.filter})")
        if pre_existing:
            notes.append(
                f"{pre_existing} pre-existing finding(s) outside the changed lines: reported at info, not weighed"
            )
        findings.sort(
            key=lambda f: (
                f.path or "",
                f.line or 0,
                int(f.properties.get("cell", 0)),
                int(f.properties.get("cell_line", 0)),
                f.rule,
            )
        )
        return confidence, findings

    def _base_keys(
        self, ctx: AgentContext, base_files: list[ChangedFile], run: LintRun
    ) -> tuple[dict[str, Counter[tuple[str, str]]], set[str]]:
        """Per head path: (rule, normalised line) of each base finding, and files whose base is unknown."""
        keys: dict[str, Counter[tuple[str, str]]] = {}
        unknown: set[str] = set()
        by_path: dict[str, list[dict]] = {}
        for item in run.items:
            by_path.setdefault(item["path"], []).append(item)
        for f in base_files:
            texts = _text_lines(ctx.base_text(f.base_path), f.path.endswith(".ipynb"))
            counter: Counter[tuple[str, str]] = Counter()
            for item in by_path.get(f.base_path, []):
                code = item.get("code") or "invalid-syntax"
                if code in SYNTAX_RULES:
                    unknown.add(f.path)
                cell, row, _ = _location(item)
                counter[(code, " ".join(texts.get((cell, row), "").split()))] += 1
            if f.base_path in run.failed:
                unknown.add(f.path)
            keys[f.path] = counter
        return keys, unknown

    async def _lint_groups(
        self, ctx: AgentContext, root: Path, paths: list[str], configs: dict[str, RepoConfig], opts: Options
    ) -> LintRun:
        """ruff over ``paths`` in ``root``, once per configuration; bad configurations fall back."""
        groups: dict[str, Group] = {}
        for p in paths:
            c = nearest_config(configs, p)
            if c is not None and (c.error or c.invalid):
                c = None
            key = c.directory if c is not None else "\0default"
            groups.setdefault(key, Group(c.directory if c else "", c, [])).paths.append(p)

        async def one(g: Group) -> LintRun:
            if g.config is not None:
                code, run, stderr = await lint(root, g.directory, g.paths, g.config.local, opts)
                if code == 0:
                    return run
                # Did ruff refuse the configuration, or something else? Try without it.
                d_code, d_run, d_err = await lint(root, "", g.paths, None, opts)
                if d_code != 0:
                    raise ToolFailed(f"ruff exited {d_code}: {ruff_error(d_err, ctx.scratch)}")
                g.config.invalid = True
                g.config.error = ruff_error(stderr, ctx.scratch / "ruff-config")
                return d_run
            code, run, stderr = await lint(root, "", g.paths, None, opts)
            if code != 0:
                raise ToolFailed(f"ruff exited {code}: {ruff_error(stderr, ctx.scratch)}")
            return run

        merged = LintRun()
        for run in await asyncio.gather(*(one(g) for g in groups.values())):
            merged.items += run.items
            merged.failed.update(run.failed)
            merged.excluded += run.excluded
            merged.truncated |= run.truncated
        merged.excluded.sort()
        return merged


AGENT = CodeQuality()
