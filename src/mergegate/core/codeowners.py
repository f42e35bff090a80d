"""CODEOWNERS with GitHub's semantics, failing closed where GitHub would shrug.

Which file: the first that exists of ``.github/CODEOWNERS``, ``CODEOWNERS``,
``docs/CODEOWNERS``, read from the **base** ref by the caller (``load_codeowners`` takes
the texts; it never sees the change's copy, so editing CODEOWNERS in a change cannot
change who must approve that change).

Lines: ``pattern owner...``. Blank lines and lines starting with ``#`` are comments, as
is everything from a ``#`` that starts a word. The **last** matching pattern wins; a
pattern with no owners makes the paths it matches unowned. Paths are case-sensitive.

Patterns follow gitignore, minus what GitHub documents as not working in CODEOWNERS
("About code owners", syntax exceptions): no ``!`` negation, no ``[ ]`` character
ranges (brackets here match themselves, so ``pages/[id].tsx`` owns that file), and no
``\\#`` escape. Examples from GitHub's documentation, all covered by tests:

- ``*.js``: any ``.js`` file at any depth; ``*``: every file.
- ``docs/*``: direct children of a root ``docs`` only, not ``docs/build-app/x.md``
  (here GitHub departs from gitignore, where the pattern would cover the subdirectory).
- ``apps/``: every file under any ``apps`` directory, at any depth.
- ``/docs/``, ``/build/logs/``: a directory at the root and everything below it.
- ``**/logs``: any ``logs`` directory (or file) at any depth.
- ``/apps/github`` with no owners: that directory becomes unowned.

Why not ``core.globs``: policy globs match file paths only, while a CODEOWNERS pattern
that names a *directory* owns everything below it (``/apps/github`` owns
``apps/github/x.js``), and ``docs/*`` must not descend. One matcher with two meanings
would be wrong for one of its users, so this module compiles its own.

Where GitHub skips an invalid line silently, mergegate **fails closed**: every path the
line could have decided (unless a later valid rule decides it anyway) is blocked, and
the reason names the file and line. An invalid line is a bad owner, a ``!``, an unknown
``\\`` escape, or a pattern that can match nothing; a file over GitHub's 3 MB limit, or a
location the caller did not read, blocks every path.

Always owned: ``.mergegate.yml`` and every CODEOWNERS location. When no rule gives them
an owner they belong to the admins, so a change cannot add a higher-priority CODEOWNERS
file, or edit the policy, without someone answerable approving it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from mergegate.core.policy import POLICY_FILE
from mergegate.core.principals import Directory

#: Where GitHub looks, in order; the first that exists is the only one used.
CODEOWNERS_LOCATIONS = (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS")
#: GitHub does not load a CODEOWNERS file of 3 MB or more.
MAX_CODEOWNERS_BYTES = 3 * 1024 * 1024
#: Paths that always need an owner's approval (the admins' if no rule names anyone).
ALWAYS_OWNED = (POLICY_FILE, *CODEOWNERS_LOCATIONS)


class OwnerKind(StrEnum):
    NAME = "name"  # @user or a server-defined @group: the resolver decides which
    TEAM = "team"  # @org/team
    EMAIL = "email"  # a user's email address
    ADMINS = "admins"  # the implicit owner of ALWAYS_OWNED paths


@dataclass(frozen=True)
class Owner:
    kind: OwnerKind
    value: str

    def __str__(self) -> str:
        if self.kind is OwnerKind.ADMINS:
            return "the admins"
        return self.value if self.kind is OwnerKind.EMAIL else f"@{self.value}"


ADMINS = Owner(OwnerKind.ADMINS, "admins")

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?"
_NAME_RE = re.compile(rf"@({_NAME})")
_TEAM_RE = re.compile(rf"@({_NAME}/{_NAME})")
_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


def parse_owner(token: str) -> Owner | None:
    """``@user``/``@group``, ``@org/team`` or an email address; ``None`` if neither."""
    if m := _TEAM_RE.fullmatch(token):
        return Owner(OwnerKind.TEAM, m.group(1))
    if m := _NAME_RE.fullmatch(token):
        return Owner(OwnerKind.NAME, m.group(1))
    if _EMAIL_RE.fullmatch(token):
        return Owner(OwnerKind.EMAIL, token)
    return None


# -- patterns -------------------------------------------------------------------------


def _segment(seg: str) -> str:
    out = []
    for c in seg:
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(c))  # brackets included: they match themselves
    return "".join(out)


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A regex that ``fullmatch``es every repository path ``pattern`` owns.

    Raises ``ValueError`` for a pattern that can match nothing (``/``, ``a//b``).
    """
    dir_only = pattern.endswith("/")
    body = pattern[:-1] if dir_only else pattern
    anchored = "/" in body  # a leading or middle slash anchors; a trailing one does not
    body = body.removeprefix("/")
    segs = body.split("/")
    if not body or "" in segs:
        raise ValueError("the pattern has an empty path segment, so it can match nothing")
    out = [] if anchored else ["(?:.*/)?"]
    for i, seg in enumerate(segs):
        last = i == len(segs) - 1
        if seg == "**":
            out.append(".*" if last else "(?:[^/]+/)*")
            continue
        out.append(_segment(seg))
        if not last:
            out.append("/")
    if segs[-1] == "**":
        pass  # already everything below
    elif dir_only:
        out.append("/.+")  # a directory: only what is below it
    elif segs[-1] == "*" and len(segs) > 1:
        pass  # GitHub: ``docs/*`` owns direct children only
    else:
        out.append("(?:/.+)?")  # the path itself, or everything below it if a directory
    return re.compile("".join(out))


# -- the file -------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    line: int
    pattern: str
    owners: tuple[Owner, ...]
    regex: re.Pattern[str] = field(compare=False, repr=False)

    def matches(self, path: str) -> bool:
        return self.regex.fullmatch(path) is not None


@dataclass(frozen=True)
class Problem:
    """An invalid line (``line`` set) or an unusable file (``line`` is ``None``).

    ``cover`` is what the line could have decided: its pattern when only the owners
    are bad; ``None`` when the pattern itself is unusable, which covers every path.
    """

    source: str
    line: int | None
    problem: str
    cover: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def could_cover(self, path: str) -> bool:
        return self.cover is None or self.cover.fullmatch(path) is not None

    def where(self) -> str:
        return f"{self.source} line {self.line}" if self.line is not None else self.source

    def __str__(self) -> str:
        return f"{self.where()}: {self.problem}"


class _Invalid(ValueError):
    pass


def _tokens(line: str) -> list[str]:
    """Split on unescaped whitespace, stop at a word starting with ``#``.

    ``\\ `` is a space inside a pattern; any other backslash escape is invalid (GitHub
    documents that ``\\#`` does not work, and unknown escapes mean nothing).
    """
    tokens: list[str] = []
    cur: list[str] = []
    started = False
    i = 0
    while i < len(line):
        c = line[i]
        if c == "\\":
            nxt = line[i + 1] if i + 1 < len(line) else ""
            if nxt == " ":
                cur.append(" ")
                started = True
                i += 2
                continue
            if nxt == "#":
                raise _Invalid("escaping '#' with '\\' does not work in CODEOWNERS (GitHub syntax exception)")
            raise _Invalid(f"unknown escape '\\{nxt}'" if nxt else "a '\\' ends the line")
        if c.isspace():
            if started:
                tokens.append("".join(cur))
                cur, started = [], False
        elif c == "#" and not started:
            break
        else:
            cur.append(c)
            started = True
        i += 1
    if started:
        tokens.append("".join(cur))
    return tokens


def _parse_line(raw: str, number: int, source: str) -> Rule | Problem | None:
    stripped = raw.strip()
    if not stripped or stripped.startswith("#"):
        return None
    try:
        tokens = _tokens(stripped)
    except _Invalid as exc:
        return Problem(source, number, str(exc))
    if not tokens:
        return None
    pattern, owner_tokens = tokens[0], tokens[1:]
    if "!" in pattern:
        problem = "'!' negation does not work in CODEOWNERS (GitHub syntax exception)"
        cover = None
        if pattern.startswith("!") and "!" not in pattern[1:]:
            # The line meant to change ownership of what the rest matches.
            try:
                cover = compile_pattern(pattern[1:])
            except ValueError:
                cover = None
        return Problem(source, number, problem, cover)
    try:
        regex = compile_pattern(pattern)
    except ValueError as exc:
        return Problem(source, number, f"pattern {pattern!r}: {exc}")
    owners = []
    for token in owner_tokens:
        owner = parse_owner(token)
        if owner is None:
            return Problem(
                source,
                number,
                f"owner {token!r} is not @user, @group, @org/team or an email address",
                regex,
            )
        owners.append(owner)
    return Rule(number, pattern, tuple(owners), regex)


@dataclass(frozen=True)
class Ownership:
    """Who must approve one path, decided by the base's CODEOWNERS.

    ``owners`` empty means unowned (no rule, or a rule with no owners). ``problems`` are
    the invalid lines that could have decided this path: any one makes the path
    blocked, because what its owners should be is unknown.
    """

    path: str
    owners: tuple[Owner, ...]
    rule: Rule | None
    problems: tuple[Problem, ...] = ()
    by_default: bool = False  # owned by the admins because the path is ALWAYS_OWNED

    @property
    def owned(self) -> bool:
        return bool(self.owners)

    @property
    def decided(self) -> bool:
        return not self.problems

    def describe_owners(self) -> str:
        return " ".join(str(o) for o in self.owners)


@dataclass(frozen=True)
class CodeOwners:
    """The parsed CODEOWNERS of the base ref. ``source`` is ``None`` when there is none."""

    source: str | None = None
    rules: tuple[Rule, ...] = ()
    problems: tuple[Problem, ...] = ()

    def ownership(self, path: str) -> Ownership:
        rule = next((r for r in reversed(self.rules) if r.matches(path)), None)
        after = rule.line if rule else 0
        problems = tuple(p for p in self.problems if (p.line is None or p.line > after) and p.could_cover(path))
        owners = rule.owners if rule else ()
        by_default = False
        if not owners and path in ALWAYS_OWNED:
            owners, by_default = (ADMINS,), True
        return Ownership(path, owners, rule, problems, by_default)


def parse_codeowners(text: str, source: str = "CODEOWNERS") -> CodeOwners:
    if len(text.encode("utf-8", "replace")) >= MAX_CODEOWNERS_BYTES:
        return CodeOwners(source, (), (Problem(source, None, "the file is 3 MB or more; GitHub does not load it"),))
    rules: list[Rule] = []
    problems: list[Problem] = []
    text = text.removeprefix("\ufeff")  # a BOM would otherwise become part of the first pattern
    for number, raw in enumerate(text.splitlines(), start=1):
        parsed = _parse_line(raw, number, source)
        if isinstance(parsed, Rule):
            rules.append(parsed)
        elif isinstance(parsed, Problem):
            problems.append(parsed)
    return CodeOwners(source, tuple(rules), tuple(problems))


def load_codeowners(texts: Mapping[str, str | None]) -> CodeOwners:
    """The CODEOWNERS in effect, given ``{location: text or None}`` read from the base.

    Every location must be present in ``texts`` (``None`` meaning "no such file"): if
    the caller did not look at a higher-priority location, which file is in effect is
    unknown, and every path is blocked.
    """
    for location in CODEOWNERS_LOCATIONS:
        if location not in texts:
            return CodeOwners(
                location,
                (),
                (Problem(location, None, "was not read from the base, so which CODEOWNERS applies is unknown"),),
            )
        text = texts[location]
        if text is not None:
            return parse_codeowners(text, location)
    return CodeOwners()


# -- owners to principals ---------------------------------------------------------------

#: Maps an owner to the principal names who may approve for it, or ``None`` if unknown.
OwnerResolver = Callable[[Owner], frozenset[str] | None]


def directory_resolver(directory: Directory) -> OwnerResolver:
    """Resolve owners against the server's principals.

    ``@name`` is the principal of that name and/or the members of the server group of
    that name; ``@org/team`` is the members of the group ``org/team``; an email is the
    one principal with that address. Names match exactly (case-sensitive).
    """

    def resolve(owner: Owner) -> frozenset[str] | None:
        if owner.kind is OwnerKind.ADMINS:
            names = {p.name for p in directory.admins()}
        elif owner.kind is OwnerKind.EMAIL:
            p = directory.by_email(owner.value)
            names = {p.name} if p else set()
        else:
            names = {p.name for p in directory.in_group(owner.value)}
            if owner.kind is OwnerKind.NAME and (p := directory.get(owner.value)):
                names.add(p.name)
        return frozenset(names) or None

    return resolve
