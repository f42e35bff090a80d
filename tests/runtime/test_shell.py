"""The shell parser: what it admits, what it refuses, and that what runs is what was checked."""

from __future__ import annotations

import subprocess

import pytest

from mergegate.runtime.shell import CommandList, Redirect, ShellRefused, parse


def argvs(command: str) -> list[tuple[str, ...]]:
    return [c.argv for c in parse(command).commands]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("pytest -q", [("pytest", "-q")]),
        ("pytest -k 'not slow' tests/test_a.py", [("pytest", "-k", "not slow", "tests/test_a.py")]),
        ('pytest -k "a and b"', [("pytest", "-k", "a and b")]),
        ("git diff --stat HEAD~1", [("git", "diff", "--stat", "HEAD~1")]),
        ("pytest 'tests/*.py'", [("pytest", "tests/*.py")]),
        ("echo a\\ b", [("echo", "a b")]),
        ('echo "it\'s"', [("echo", "it's")]),
        ('echo "a\\"b"', [("echo", 'a"b')]),
        ("echo '$HOME'", [("echo", "$HOME")]),
        ("echo \\$HOME", [("echo", "$HOME")]),
        ("pytest ''", [("pytest", "")]),
        ("pytest && pytest -x", [("pytest",), ("pytest", "-x")]),
        ("pytest | tee out.txt", [("pytest",), ("tee", "out.txt")]),
        ("pytest;", [("pytest",)]),
        ("pytest\npytest -x", [("pytest",), ("pytest", "-x")]),
        ("pytest # a comment", [("pytest",)]),
    ],
)
def test_admitted_commands_become_literal_argv(command: str, expected: list[tuple[str, ...]]) -> None:
    assert argvs(command) == expected


def test_operators_are_kept_in_order() -> None:
    parsed = parse("a && b || c ; d")
    assert parsed.ops == ("&&", "||", ";")
    assert [p.commands[0].argv[0] for p in parsed.pipelines] == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("command", "redirects"),
    [
        ("pytest > out.txt", (Redirect(None, ">", "out.txt"),)),
        ("pytest >> out.txt", (Redirect(None, ">>", "out.txt"),)),
        ("pytest 2>&1", (Redirect(2, ">&", 1),)),
        ("pytest > /dev/null 2>&1", (Redirect(None, ">", "/dev/null"), Redirect(2, ">&", 1))),
        ("pytest &> log", (Redirect(None, "&>", "log"),)),
        ("pytest >&log", (Redirect(None, "&>", "log"),)),
        ("pytest < in.txt", (Redirect(None, "<", "in.txt"),)),
        ("pytest 2> err.txt", (Redirect(2, ">", "err.txt"),)),
    ],
)
def test_redirections_are_parsed(command: str, redirects: tuple[Redirect, ...]) -> None:
    assert parse(command).commands[0].redirects == redirects


@pytest.mark.parametrize(
    ("command", "why"),
    [
        ("pytest $(cat /etc/shadow)", "substitution"),
        ("pytest `id`", "substitution"),
        ('pytest "`id`"', "substitution"),
        ('pytest --x="$(id)"', "substitution"),
        ("cat <(ls)", "substitution"),
        ("pytest $HOME", "expansion"),
        ("pytest ${HOME}", "expansion"),
        ('pytest "$HOME"', "expansion"),
        ("echo $'\\x41'", "ANSI-C"),
        ("echo $((1+2))", "parse"),
        ("LD_PRELOAD=/tmp/x.so pytest", "environment assignment"),
        ("PATH=. pytest", "environment assignment"),
        ("a=1", "environment assignment"),
        ("x=$(id) pytest", "environment assignment"),
        ("pytest &", "background"),
        ("! pytest", "negation"),
        ("(pytest; curl x)", "subshells"),
        ("{ pytest; }", "subshells"),
        ("f() { curl x; }; f", "function"),
        ("for i in 1; do curl x; done", "subshells"),
        ("if true; then curl x; fi", "subshells"),
        ("case x in a) ls;; esac", "parse"),
        ("[[ -f x ]]", "parse"),
        ("time pytest", "parse"),
        ("coproc curl x", "parse"),
        ("python <<< 'import os'", "here-"),
        ("python <<EOF\nimport os\nEOF\n", "here-"),
        ("pytest <> f", "not allowed"),
        ("pytest 3<&0", "not allowed"),
        ("pytest 2>&-", "closing"),
        ("pytest 3> f", "descriptors"),
        ("pytest 2>&3", "descriptors"),
        ("pytest >&5", "descriptors"),
        ("exec pytest", "never allowed"),
        ("eval 'pytest; curl x'", "never allowed"),
        ("source evil.sh", "never allowed"),
        (". evil.sh", "never allowed"),
        ("command curl x", "never allowed"),
        ("builtin eval x", "never allowed"),
        ("export X=1", "never allowed"),
        ("pytest *.py", "glob"),
        ("pytest tests/test_?.py", "glob"),
        ("echo a{b,c}", "brace"),
        ("cat ~/.ssh/id_rsa", "~"),
        ("pytest 'unterminated", "parse"),
        ("pytest &&", "parse"),
        ("pytest |& cat", "pipe"),
        ("pytest\x00", "control"),
        ("pytest\x1b[2J", "control"),
        ("", "empty"),
        ("   ", "empty"),
        ("> out.txt", "without a command"),
    ],
)
def test_refused(command: str, why: str) -> None:
    with pytest.raises(ShellRefused) as exc:
        parse(command)
    assert why in str(exc.value)


def test_overlong_command_is_refused() -> None:
    with pytest.raises(ShellRefused, match="longer"):
        parse("pytest " + "x" * 20_000)


@pytest.mark.parametrize(
    "command",
    [
        "printf '%s\\n' 'a b' \"c'd\" e\\ f",
        "printf '%s\\n' '$(id)' '`id`' '*' '~' '{a,b}'",
        "printf '%s|' 'x' && printf '%s\\n' 'y' || printf 'no'",
        "printf '%s\\n' 'it'\\''s' \"a\\nb\" a\\\\b \"a\\\\b\" 'a'\"'\"'b'",
        "printf 'a\\nb\\n' | sort -r",
    ],
)
def test_render_runs_exactly_the_checked_argv(command: str) -> None:
    """The rendered script, run by a real bash, prints what the argv says, unexpanded."""
    parsed = parse(command)
    rendered = parsed.render()
    real = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True).stdout
    ours = subprocess.run(["bash", "--noprofile", "--norc", "-c", rendered], capture_output=True, text=True).stdout
    assert ours == real


def test_render_quotes_every_word() -> None:
    parsed = parse("git log --format='%H $(id)' -- src")
    assert isinstance(parsed, CommandList)
    script = parsed.render()
    out = subprocess.run(["bash", "-c", "printf '%s\\n' " + script.split(" ", 1)[1]], capture_output=True, text=True)
    assert "--format=%H $(id)" in out.stdout.splitlines()
