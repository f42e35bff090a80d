"""Allowlists and denylists in the syntax teams already use with Claude Code.

A *rule list* is a comma-separated string (or a YAML list) of entries::

    Read, Grep, Glob, Edit(src/**), Bash(pytest:*), Bash(git diff:*), WebFetch(domain:example.com)

An entry is a tool name, optionally followed by a *specifier* in parentheses:

``Bash(<words>:*)``
    the parsed command's argv starts with these words (``Bash(git diff:*)`` admits
    ``git diff``, ``git diff --stat HEAD~1``, never ``git -c x=y diff`` nor ``gitdiff``).
``Bash(<words>)``
    the argv is exactly these words.
``Bash`` / ``Bash(*)``
    any command (the parser's structural refusals and the sandbox still apply).
``Read(<glob>)``, ``Edit(<glob>)``, … (file tools)
    the workspace-relative, symlink-resolved path matches the glob
    (``mergegate.core.globs``: ``*`` within a segment, ``**`` across them).
``WebFetch(domain:<host>)``
    the URL's host is exactly ``<host>``; ``domain:*.example.com`` admits subdomains.

Matching is on *parsed* data, never on the raw string: shell commands are matched word
by word on the argv that ``mergegate.runtime.shell`` produced (and that is exactly
what will run), file paths after the workspace guard resolved them. A deny rule wins
over every allow rule. ``Read(...)`` deny rules also cover the other reading tools
(Grep, Glob, LS, the git tools) and ``Edit(...)`` deny rules cover Write, so a denied path cannot be
reached through a sibling tool.

Parsing is strict: an unknown tool name or a malformed specifier is a policy error,
so a typo cannot silently widen or narrow what an agent may do.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mergegate.core.globs import glob_match
from mergegate.runtime.tools import FILE_TOOLS, FORBIDDEN_TOOLS, TOOLS, canonical_tool_name


class RuleError(ValueError):
    """A rule list that cannot be used; the message names the offending entry."""


#: Which tools a deny rule on the key also covers (a denied path stays denied for siblings).
DENY_COVERS = {
    "Read": ("Read", "Grep", "Glob", "LS", "GitDiff", "GitLog", "GitBlame"),
    "Edit": ("Edit", "Write"),
}


@dataclass(frozen=True)
class Rule:
    """One allow/deny/ask entry, already parsed."""

    tool: str
    #: The specifier as written (inside the parentheses), ``None`` for a bare tool name.
    specifier: str | None = None
    #: Bash only: the words the argv must start with (prefix) or equal (exact).
    words: tuple[str, ...] = ()
    prefix: bool = False
    #: Bash only: ``Bash``/``Bash(*)``, any command.
    any_command: bool = False

    def __str__(self) -> str:
        return self.tool if self.specifier is None else f"{self.tool}({self.specifier})"


def split_entries(text: str) -> list[str]:
    """Split ``"Read, Bash(git diff:*), Edit(a,b)"`` at top-level commas."""
    entries, depth, current = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise RuleError(f"unbalanced ')' in {text!r}")
        if ch == "," and depth == 0:
            entries.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth != 0:
        raise RuleError(f"unbalanced '(' in {text!r}")
    entries.append("".join(current))
    return [e.strip() for e in entries if e.strip()]


def parse_rule(entry: str) -> Rule:
    entry = entry.strip()
    if "(" in entry:
        if not entry.endswith(")"):
            raise RuleError(f"{entry!r}: text after the closing parenthesis")
        name, spec = entry[:-1].split("(", 1)
        name, spec = name.strip(), spec.strip()
        if not spec:
            raise RuleError(f"{entry!r}: empty specifier (write the bare tool name instead)")
    else:
        name, spec = entry, None
    tool = canonical_tool_name(name)
    if tool is None:
        known = ", ".join(sorted(TOOLS))
        raise RuleError(f"{name!r} is not a tool (known: {known})")
    if tool in FORBIDDEN_TOOLS:
        raise RuleError(f"{tool} can never be granted to an agent: {FORBIDDEN_TOOLS[tool]}")
    if spec is None:
        return Rule(tool, any_command=tool == "Bash")
    if tool == "Bash":
        return _bash_rule(spec)
    if tool in FILE_TOOLS:
        if "\x00" in spec or spec.startswith("~"):
            raise RuleError(f"{entry!r}: path specifiers are workspace-relative globs")
        return Rule(tool, spec)
    if tool == "WebFetch":
        if not spec.startswith("domain:") or not spec[len("domain:") :].strip():
            raise RuleError(f"{entry!r}: WebFetch takes domain:<host>, e.g. WebFetch(domain:example.com)")
        return Rule(tool, spec)
    raise RuleError(f"{entry!r}: {tool} takes no specifier")


def _bash_rule(spec: str) -> Rule:
    if spec == "*":
        return Rule("Bash", spec, any_command=True)
    prefix = spec.endswith(":*")
    body = spec[:-2] if prefix else spec
    if "*" in body or ":*" in body:
        raise RuleError(f"Bash({spec}): a wildcard is only allowed as a trailing ':*'")
    try:
        words = tuple(shlex.split(body))
    except ValueError as exc:
        raise RuleError(f"Bash({spec}): {exc}") from None
    if not words:
        raise RuleError(f"Bash({spec}): no command")
    return Rule("Bash", spec, words=words, prefix=prefix)


def parse_rules(value: str | Sequence[str] | None) -> tuple[Rule, ...]:
    """A rule list from a comma-separated string or a list of entries."""
    if value is None:
        return ()
    entries = split_entries(value) if isinstance(value, str) else [e for v in value for e in split_entries(v)]
    return tuple(parse_rule(e) for e in entries)


# --- matching --------------------------------------------------------------------------


def bash_rule_matches(rule: Rule, argv: Sequence[str]) -> bool:
    if rule.tool != "Bash":
        return False
    if rule.any_command:
        return True
    n = len(rule.words)
    return tuple(argv[:n]) == rule.words and (rule.prefix or len(argv) == n)


def path_rule_matches(rule: Rule, rel_path: str) -> bool:
    """``rel_path`` is workspace-relative and resolved; ``""`` is the workspace root."""
    if rule.specifier is None:
        return True
    pattern = rule.specifier.lstrip("/") or "**"
    return glob_match(pattern, rel_path) or (rel_path == "" and pattern in ("**", "."))


def host_rule_matches(rule: Rule, host: str) -> bool:
    if rule.specifier is None:
        return True
    want = rule.specifier[len("domain:") :].strip().lower().rstrip(".")
    host = host.lower().rstrip(".")
    if want.startswith("*."):
        return host.endswith(want[1:])
    return host == want


def rule_matches(
    rule: Rule,
    tool: str,
    *,
    argv: Sequence[str] | None = None,
    path: str | None = None,
    host: str | None = None,
    deny: bool = False,
) -> bool:
    """Whether ``rule`` covers a call of ``tool`` on ``argv``/``path``/``host``."""
    covered = DENY_COVERS.get(rule.tool, (rule.tool,)) if deny else (rule.tool,)
    if tool not in covered:
        return False
    if rule.tool == "Bash":
        return argv is not None and bash_rule_matches(rule, argv)
    if rule.tool == "WebFetch":
        return rule.specifier is None or (host is not None and host_rule_matches(rule, host))
    if rule.specifier is None:
        return True
    if path is None:
        # A path-scoped rule cannot grant a call that has no path; as a deny rule it
        # conservatively covers it.
        return deny
    return path_rule_matches(rule, path)


def first_match(rules: Iterable[Rule], tool: str, *, deny: bool = False, **target) -> Rule | None:
    for rule in rules:
        if rule_matches(rule, tool, deny=deny, **target):
            return rule
    return None
