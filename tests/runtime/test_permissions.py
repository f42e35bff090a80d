"""Allowlist parsing and matching, and runtime agent declarations in the policy."""

from __future__ import annotations

import pytest

from mergegate.core.policy import PolicyError
from mergegate.runtime.agent_spec import PRESETS, build_agent
from mergegate.runtime.permissions import Rule, RuleError, first_match, parse_rule, parse_rules, split_entries
from mergegate.runtime.sandbox import SandboxMode
from mergegate.runtime.shell import parse
from mergegate.service.policy_source import load_policy_text


def test_split_keeps_commas_inside_parentheses() -> None:
    assert split_entries("Read, Bash(git diff:*), Edit(a,b) ,Grep") == ["Read", "Bash(git diff:*)", "Edit(a,b)", "Grep"]


@pytest.mark.parametrize(
    ("entry", "rule"),
    [
        ("Read", Rule("Read")),
        ("read_file", Rule("Read")),
        ("Read(src/**)", Rule("Read", "src/**")),
        ("Bash", Rule("Bash", any_command=True)),
        ("Bash(*)", Rule("Bash", "*", any_command=True)),
        ("Bash(pytest:*)", Rule("Bash", "pytest:*", words=("pytest",), prefix=True)),
        ("Bash(git diff:*)", Rule("Bash", "git diff:*", words=("git", "diff"), prefix=True)),
        ("Bash(npm run build)", Rule("Bash", "npm run build", words=("npm", "run", "build"))),
        ("WebFetch(domain:example.com)", Rule("WebFetch", "domain:example.com")),
        ("run", Rule("Bash", any_command=True)),
    ],
)
def test_parse_rule(entry: str, rule: Rule) -> None:
    assert parse_rule(entry) == rule


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("Frobnicate", "not a tool"),
        ("bash(pytest:*)", "not a tool"),
        ("Bash(pytest*)", "only allowed as a trailing"),
        ("Bash(py:*test:*)", "only allowed as a trailing"),
        ("Bash()", "empty specifier"),
        ("Bash(pytest:*) extra", "text after"),
        ("Bash(pytest:*", "unbalanced"),
        ("WebFetch(example.com)", "domain:"),
        ("PostComment(x)", "takes no specifier"),
        ("ApproveChange", "can never be granted"),
        ("merge", "can never be granted"),
        ("ApproveToolCall", "can never be granted"),
    ],
)
def test_bad_rules_are_errors(entry: str, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        parse_rules(entry)


def allowed(rules: str, command: str) -> bool:
    parsed = parse_rules(rules)
    return all(first_match(parsed, "Bash", argv=c.argv) for c in parse(command).commands)


@pytest.mark.parametrize(
    ("rules", "command", "ok"),
    [
        ("Bash(pytest:*)", "pytest", True),
        ("Bash(pytest:*)", "pytest -q tests/", True),
        ("Bash(pytest:*)", "pytest-xdist", False),
        ("Bash(pytest:*)", "./pytest", False),
        ("Bash(pytest:*)", "/usr/bin/pytest", False),
        ("Bash(pytest:*)", "'pytest'", True),
        ("Bash(pytest:*)", "pytest && pytest -x", True),
        ("Bash(pytest:*)", "pytest | grep x", False),
        ("Bash(pytest:*), Bash(grep:*)", "pytest | grep x", True),
        ("Bash(pytest:*)", "pytest; curl x", False),
        ("Bash(pytest:*)", "pytest || sh", False),
        ("Bash(git diff:*)", "git diff", True),
        ("Bash(git diff:*)", "git diff --stat HEAD~1", True),
        ("Bash(git diff:*)", "git -c core.pager=sh diff", False),
        ("Bash(git diff:*)", "git --no-pager diff", False),
        ("Bash(git diff:*)", "git log", False),
        ("Bash(git diff:*)", "git", False),
        ("Bash(npm run build)", "npm run build", True),
        ("Bash(npm run build)", "npm run build --x", False),
        ("Bash", "anything at all", True),
    ],
)
def test_bash_rules_match_parsed_argv(rules: str, command: str, ok: bool) -> None:
    assert allowed(rules, command) is ok


@pytest.mark.parametrize(
    ("rules", "tool", "path", "ok"),
    [
        ("Read", "Read", "anything/at/all.py", True),
        ("Read(src/**)", "Read", "src/a/b.py", True),
        ("Read(src/**)", "Read", "tests/a.py", False),
        ("Read(src/**)", "Read", "src", False),
        ("Read(*.md)", "Read", "docs/deep/x.md", True),
        ("Edit(src/**)", "Edit", "src/x.py", True),
        ("Edit(src/**)", "Write", "src/x.py", False),
        ("Read", "Grep", "src", False),
    ],
)
def test_path_rules(rules: str, tool: str, path: str, ok: bool) -> None:
    assert (first_match(parse_rules(rules), tool, path=path) is not None) is ok


def test_read_deny_covers_sibling_readers_and_edit_deny_covers_write() -> None:
    deny = parse_rules("Read(.env), Edit(src/generated/**)")
    for tool in ("Read", "Grep", "Glob", "LS", "GitDiff"):
        assert first_match(deny, tool, path=".env", deny=True), tool
    assert first_match(deny, "Write", path="src/generated/x.py", deny=True)
    assert not first_match(deny, "Read", path="src/generated/x.py", deny=True)


def test_webfetch_domains() -> None:
    rules = parse_rules("WebFetch(domain:example.com), WebFetch(domain:*.python.org)")
    assert first_match(rules, "WebFetch", host="example.com")
    assert first_match(rules, "WebFetch", host="EXAMPLE.com.")
    assert not first_match(rules, "WebFetch", host="evil-example.com")
    assert not first_match(rules, "WebFetch", host="example.com.evil.net")
    assert first_match(rules, "WebFetch", host="docs.python.org")
    assert not first_match(rules, "WebFetch", host="python.org.evil")


# --- declarations ------------------------------------------------------------------------


def test_presets() -> None:
    reviewer, fixer = build_agent("reviewer", None), build_agent("fixer", None)
    assert reviewer.sandbox is SandboxMode.READ_ONLY and not reviewer.protect_tests
    assert {r.tool for r in reviewer.allow} >= {"Read", "Grep", "Glob", "GitDiff"}
    assert not {r.tool for r in reviewer.allow} & {"Edit", "Write"}
    assert fixer.sandbox is SandboxMode.WORKSPACE_WRITE and fixer.protect_tests
    assert Rule("Bash", "pytest:*", words=("pytest",), prefix=True) in fixer.allow
    assert set(PRESETS) == {"reviewer", "fixer"}


def test_declarations_in_the_policy_override_preset_keys() -> None:
    loaded = load_policy_text(
        "agents:\n"
        "  secrets: {entropy: false}\n"
        "  fixer: {max_turns: 5}\n"
        "  qa:\n"
        "    preset: fixer\n"
        '    tools: "Read, Bash(pytest:*)"\n'
        '    deny: "Read(secrets/**)"\n',
        "p.yml",
    )
    assert loaded.runtime_agents["fixer"].max_turns == 5
    assert loaded.runtime_agents["fixer"].protect_tests
    qa = loaded.runtime_agents["qa"]
    assert [str(r) for r in qa.allow] == ["Read", "Bash(pytest:*)"]
    assert qa.sandbox is SandboxMode.WORKSPACE_WRITE
    assert "secrets" not in loaded.runtime_agents


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ('agents:\n  qa:\n    tools: "Read, Frobnicate"\n', "line 3: agents.qa.tools: 'Frobnicate' is not a tool"),
        ("agents:\n  qa:\n    tools: [Read, ApproveChange]\n", "line 3: agents.qa.tools: ApproveChange can never"),
        ("agents:\n  qa:\n    tools: Read\n    colour: red\n", "line 4: agents.qa.colour: unknown key"),
        ("agents:\n  qa:\n    preset: boss\n", "line 3: agents.qa.preset: Value error, unknown preset"),
        ("agents:\n  qa:\n    tools: Edit\n", "line 2: agents.qa: Edit cannot be granted with sandbox: read-only"),
        (
            "agents:\n  qa:\n    tools: Bash\n    sandbox: danger-full-access\n",
            "line 4: agents.qa.sandbox: danger-full-access needs runtime.allow_danger_full_access",
        ),
        ("agents:\n  fixer:\n    sandbox: jail\n", "line 3: agents.fixer.sandbox"),
        ("agents:\n  qa:\n    tools: Read\n    env: {LD_PRELOAD: x.so}\n", "LD_PRELOAD changes how programs"),
        ("agents:\n  nosuch: {x: 1}\n", "line 2: agents.nosuch: unknown agent"),
    ],
)
def test_declaration_errors_name_key_and_line(yaml_text: str, expected: str) -> None:
    with pytest.raises(PolicyError) as exc:
        load_policy_text(yaml_text, "p.yml")
    assert expected.replace("Value error, ", "") in str(exc.value).replace("Value error, ", "")


def test_danger_full_access_needs_the_base_policy_switch() -> None:
    loaded = load_policy_text(
        "runtime: {allow_danger_full_access: true}\nagents:\n  ops: {tools: Bash, sandbox: danger-full-access}\n", "p"
    )
    assert loaded.runtime_agents["ops"].sandbox is SandboxMode.DANGER_FULL_ACCESS
