"""Parse an agent's shell command into argv vectors, refusing whatever could hide a command.

The agent's string is **never handed to a shell**. It is parsed with ``bashlex`` (a port
of bash's own grammar), reduced to a small language — simple commands joined by pipes,
``&&``, ``||`` and ``;``, with file redirections — and every word is reduced to the
literal string it denotes by our own quote-removal (``_literal``). The command that runs
is then *re-rendered* from those argv vectors with every word single-quoted
(``render``), so the shell performs no expansion at all: what runs is exactly what the
allowlist was matched against. A parser that misreads an exotic construct can therefore
only produce a different argv, which is itself checked; it cannot smuggle a second command
past the check.

Refused (``ShellRefused``), whatever the allowlist says, because each would let one
allowed word run something else:

- command and process substitution (``$(…)``, backticks, ``<(…)``), parameter and
  arithmetic expansion (``$X``, ``${X}``, ``$((…))``), ANSI-C quotes (``$'…'``): any ``$``
  or backtick outside single quotes;
- unquoted globs, braces and a leading ``~`` (they are not expanded; quote them, or use
  the Glob tool);
- environment-assignment prefixes (``LD_PRELOAD=x pytest``, ``PATH=. pytest``);
- background jobs (``&``), negation (``!``), subshells, groups, functions, loops, ``if``,
  ``case``, ``[[``, ``time``, coprocesses;
- here-documents and here-strings (``<<``, ``<<<``: a script fed to an interpreter),
  ``<>``, ``<&``, closing descriptors;
- builtins that run or redefine commands (``exec``, ``eval``, ``source``, ``.``,
  ``command``, ``builtin``, ``alias``, ``trap``, ``export`` …);
- control characters, NUL, and anything bashlex cannot parse.

What is *left* to the caller: matching each simple command against the allowlist, and
checking redirection targets and path-like arguments against the workspace (see
``mergegate.runtime.runner``).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

MAX_COMMAND_LENGTH = 16_384

#: Builtins whose job is to run, load or redefine other commands, or to change how the
#: shell interprets what follows. Never allowed, whatever the allowlist says.
FORBIDDEN_BUILTINS = frozenset(
    {
        ".",
        "source",
        "eval",
        "exec",
        "command",
        "builtin",
        "enable",
        "alias",
        "unalias",
        "trap",
        "export",
        "declare",
        "typeset",
        "local",
        "readonly",
        "set",
        "unset",
        "shopt",
        "hash",
        "fc",
        "bind",
        "complete",
        "compgen",
        "coproc",
        "function",
        "let",
        "mapfile",
        "readarray",
        "read",
        "ulimit",
        "umask",
        "wait",
        "disown",
        "jobs",
        "fg",
        "bg",
        "history",
    }
)

#: Redirection operators we keep, mapped to how we render them.
_FILE_REDIRECTS = {">": ">", ">|": ">", ">>": ">>", "<": "<", "&>": "&>", "&>>": "&>>"}


class ShellRefused(ValueError):
    """The command is outside the language we run; ``str()`` says why in words."""


@dataclass(frozen=True)
class Redirect:
    """``fd op target``: a file redirection (``target`` a path) or a dup (``target`` a fd)."""

    fd: int | None
    op: str
    target: str | int

    @property
    def writes(self) -> bool:
        return self.op in (">", ">>", "&>", "&>>")

    @property
    def is_file(self) -> bool:
        return isinstance(self.target, str)

    def render(self) -> str:
        fd = "" if self.fd is None else str(self.fd)
        if isinstance(self.target, int):
            return f"{fd}>&{self.target}"
        return f"{fd}{self.op}{shlex.quote(self.target)}"


@dataclass(frozen=True)
class SimpleCommand:
    argv: tuple[str, ...]
    redirects: tuple[Redirect, ...] = ()

    def render(self) -> str:
        return " ".join([*(shlex.quote(w) for w in self.argv), *(r.render() for r in self.redirects)])

    def __str__(self) -> str:
        return shlex.join(self.argv)


@dataclass(frozen=True)
class Pipeline:
    commands: tuple[SimpleCommand, ...]

    def render(self) -> str:
        return " | ".join(c.render() for c in self.commands)


@dataclass(frozen=True)
class CommandList:
    """Pipelines joined by ``ops`` (``&&``, ``||``, ``;``); ``len(ops) == len(pipelines) - 1``."""

    pipelines: tuple[Pipeline, ...]
    ops: tuple[str, ...]

    @property
    def commands(self) -> tuple[SimpleCommand, ...]:
        return tuple(c for p in self.pipelines for c in p.commands)

    def render(self) -> str:
        """The script that runs: every word single-quoted, so no expansion happens."""
        out = [self.pipelines[0].render()]
        for op, pipeline in zip(self.ops, self.pipelines[1:], strict=True):
            out.append(op if op != ";" else ";")
            out.append(pipeline.render())
        return " ".join(out)


def parse(command: str) -> CommandList:
    """Parse ``command`` or raise ``ShellRefused`` (fail closed on anything unusual)."""
    if not command.strip():
        raise ShellRefused("empty command")
    if len(command) > MAX_COMMAND_LENGTH:
        raise ShellRefused(f"command longer than {MAX_COMMAND_LENGTH} characters")
    bad = next((c for c in command if (ord(c) < 32 and c not in "\t\n") or ord(c) == 127), None)
    if bad is not None:
        raise ShellRefused(f"control character {bad!r} in the command")
    # Imported here: building bashlex's parser tables costs ~0.3 s, which every CLI
    # command would otherwise pay at start-up.
    import bashlex
    import bashlex.errors

    try:
        trees = bashlex.parse(command)
    except (
        bashlex.errors.ParsingError,
        NotImplementedError,
        AssertionError,
        IndexError,
        ValueError,
        TypeError,
        AttributeError,
        KeyError,
        RecursionError,
    ) as exc:
        raise ShellRefused(f"cannot parse the command ({type(exc).__name__}: {exc})") from None
    pipelines: list[Pipeline] = []
    ops: list[str] = []
    for tree in trees:
        if pipelines:
            ops.append(";")  # separate lines
        _top(tree, command, pipelines, ops)
    if not pipelines:
        raise ShellRefused("no command")
    if len(ops) != len(pipelines) - 1:
        raise ShellRefused("dangling operator")
    return CommandList(tuple(pipelines), tuple(ops))


def _top(node, src: str, pipelines: list[Pipeline], ops: list[str]) -> None:
    kind = node.kind
    if kind == "list":
        expect_command = True
        for part in node.parts:
            if part.kind == "operator":
                if expect_command:
                    raise ShellRefused(f"unexpected operator {part.op!r}")
                if part.op == "&":
                    raise ShellRefused("background jobs ('&') are not allowed")
                if part.op not in ("&&", "||", ";", "\n"):
                    raise ShellRefused(f"operator {part.op!r} is not allowed")
                ops.append(";" if part.op == "\n" else part.op)
                expect_command = True
            else:
                if not expect_command:
                    raise ShellRefused("two commands without an operator")
                pipelines.append(_pipeline(part, src))
                expect_command = False
        # A trailing ';' leaves one operator too many.
        if expect_command and ops and len(ops) == len(pipelines):
            if ops[-1] != ";":
                raise ShellRefused(f"command ends with {ops[-1]!r}")
            ops.pop()
    else:
        pipelines.append(_pipeline(node, src))


def _pipeline(node, src: str) -> Pipeline:
    if node.kind == "command":
        return Pipeline((_command(node, src),))
    if node.kind != "pipeline":
        raise ShellRefused(_construct(node))
    commands = []
    for part in node.parts:
        if part.kind == "pipe":
            if part.pipe != "|":
                raise ShellRefused(f"pipe {part.pipe!r} is not allowed (use '2>&1 |')")
        elif part.kind == "command":
            commands.append(_command(part, src))
        else:
            raise ShellRefused(_construct(part))
    return Pipeline(tuple(commands))


def _construct(node) -> str:
    kind = node.kind
    if kind == "reservedword" and getattr(node, "word", "") == "!":
        return "negation ('!') is not allowed"
    if kind == "function":
        return "function definitions are not allowed"
    if kind == "compound":
        return "subshells, groups, loops and conditionals are not allowed (one simple command per stage)"
    return f"shell construct {kind!r} is not allowed"


def _command(node, src: str) -> SimpleCommand:
    argv: list[str] = []
    redirects: list[Redirect] = []
    for part in node.parts:
        if part.kind == "assignment":
            raise ShellRefused(f"environment assignment {part.word.split('=', 1)[0]}=… is not allowed")
        if part.kind == "word":
            argv.append(_word(part, src))
        elif part.kind == "redirect":
            redirects.append(_redirect(part, src))
        else:
            raise ShellRefused(_construct(part))
    if not argv:
        raise ShellRefused("a redirection without a command")
    if argv[0] in FORBIDDEN_BUILTINS:
        raise ShellRefused(f"'{argv[0]}' runs or redefines commands and is never allowed")
    if not argv[0]:
        raise ShellRefused("empty command name")
    return SimpleCommand(tuple(argv), tuple(redirects))


def _word(node, src: str) -> str:
    """The literal value of a word, from its source text: our quote removal decides.

    bashlex supplies where the word starts and ends; its own idea of the word's value
    and parts is not used. It is wrong in places that matter for matching (``'a'\\''b'``,
    ``"a\\nb"``, ``$'…'``, substitutions it "sees" inside single quotes), whereas our
    scanner follows bash's quoting rules and refuses every ``$`` and backtick outside
    single quotes. If bashlex got a boundary wrong, the slice contains an unquoted
    operator or blank, which the scanner refuses too.
    """
    start, end = node.pos
    return _literal(src[start:end])


def _redirect(node, src: str) -> Redirect:
    op = node.type
    fd = getattr(node, "input", None)
    if fd is not None and not isinstance(fd, int):
        raise ShellRefused(f"redirection {op!r} with descriptor {fd!r} is not allowed")
    if op in ("<<", "<<-", "<<<"):
        raise ShellRefused("here-documents and here-strings are not allowed")
    target = getattr(node, "output", None)
    if op == ">&":
        if isinstance(target, int):
            if target not in (1, 2) or fd not in (None, 1, 2):
                raise ShellRefused("only descriptors 1 and 2 may be duplicated onto each other")
            return Redirect(fd, op, target)
        if target == "-" or target is None:
            raise ShellRefused("closing descriptors is not allowed")
        # '>&file' means '&>file'.
        return Redirect(None, "&>", _word(target, src))
    if op not in _FILE_REDIRECTS:
        raise ShellRefused(f"redirection {op!r} is not allowed")
    if target is None or isinstance(target, int) or getattr(target, "kind", None) != "word":
        raise ShellRefused(f"redirection {op!r} needs a file name")
    if fd is not None and fd not in (0, 1, 2):
        raise ShellRefused("only descriptors 0, 1 and 2 may be redirected")
    if op in ("&>", "&>>") and fd is not None:
        raise ShellRefused(f"redirection {op!r} with a descriptor is not allowed")
    return Redirect(fd, _FILE_REDIRECTS[op], _word(target, src))


def _literal(raw: str) -> str:
    """What a shell word denotes, refusing every form of expansion.

    Single quotes are literal; inside double quotes only ``\\"``, ``\\\\``, ``\\$`` and
    ``\\``` are escapes and any ``$`` or backtick is refused; outside quotes a backslash
    escapes the next character, and ``$``, backticks, globs, braces and a leading ``~``
    are refused.
    """
    out: list[str] = []
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c == "'":
            j = raw.find("'", i + 1)
            if j < 0:
                raise ShellRefused("unterminated single quote")
            out.append(raw[i + 1 : j])
            i = j + 1
        elif c == '"':
            i += 1
            while True:
                if i >= n:
                    raise ShellRefused("unterminated double quote")
                c = raw[i]
                if c == '"':
                    i += 1
                    break
                if c in "$`":
                    raise ShellRefused(_expansion(raw, i) + " (even inside double quotes)")
                if c == "\\" and i + 1 < n and raw[i + 1] in '$`"\\\n':
                    if raw[i + 1] != "\n":
                        out.append(raw[i + 1])
                    i += 2
                    continue
                out.append(c)
                i += 1
        elif c == "\\":
            if i + 1 >= n:
                raise ShellRefused("trailing backslash")
            if raw[i + 1] != "\n":
                out.append(raw[i + 1])
            i += 2
        elif c in "$`":
            raise ShellRefused(_expansion(raw, i))
        elif c in "*?[":
            raise ShellRefused(f"unquoted glob {raw!r} is not expanded; quote it or use the Glob tool")
        elif c in "{}":
            raise ShellRefused(f"unquoted brace in {raw!r}; quote it")
        elif c == "~" and i == 0:
            raise ShellRefused("'~' is not expanded; write the path relative to the workspace")
        elif c in "<>" and raw[i + 1 : i + 2] == "(":
            raise ShellRefused("process substitution (<(…), >(…)) is not allowed")
        elif c in " \t\n;&|<>()":
            raise ShellRefused(f"unexpected {c!r} inside the word {raw!r}")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _expansion(raw: str, i: int) -> str:
    if raw[i] == "`" or (raw.startswith("$(", i) and not raw.startswith("$((", i)):
        return "command substitution ($(…), backticks) is not allowed"
    if raw.startswith("$((", i) or raw.startswith("$[", i):
        return "arithmetic expansion is not allowed"
    if raw.startswith("$'", i) or raw.startswith('$"', i):
        return "ANSI-C and locale quoting ($'…', $\"…\") is not allowed"
    return "variable expansion ($…) is not allowed"
