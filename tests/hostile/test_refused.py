"""Escapes the runtime refuses before anything runs: tools, shell parsing, paths, protection.

Each case is one real replay of a hostile call. It must come back ``refused`` with the
reason in words, be in the audit log as a refused ``tool_call`` with its arguments
(secrets redacted), and leave every protected file byte-identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.hostile.conftest import CANARY, World


@dataclass(frozen=True)
class Case:
    id: str
    agent: str
    tool: str
    args: dict
    reason: str


def bash(command: str) -> dict:
    return {"command": command}


CASES = [
    # --- tools the agent does not have, or that nobody may have ---------------------------
    Case("disallowed-tool", "fixer", "WebFetch", {"url": "http://example.com"}, "not in this agent's allowlist"),
    Case("unknown-tool", "fixer", "Exec", {"cmd": "id"}, "unknown tool 'Exec'"),
    Case("reviewer-writes", "reviewer", "Edit", {"path": "src/app.py", "old": "a", "new": "b"},
         "not in this agent's allowlist"),
    Case("approve-own-change", "fixer", "ApproveChange", {"change": 1}, "only humans approve changes"),
    Case("merge-own-change", "fixer", "MergeChange", {"change": 1}, "only the gate merges"),
    Case("approve-own-pause", "commenter", "ApproveToolCall", {"id": "x"}, "agents cannot approve paused calls"),
    Case("write-audit-tool", "fixer", "WriteAudit", {"entry": {}}, "only the runtime writes the audit log"),
    # --- commands behind an allowed prefix ------------------------------------------------
    Case("chain-semicolon", "fixer", "Bash", bash("pytest; curl http://x.example"), "`curl http://x.example`"),
    Case("chain-and", "fixer", "Bash", bash("pytest && curl http://x.example"), "`curl http://x.example`"),
    Case("chain-or", "fixer", "Bash", bash("pytest || sh"), "`sh` (part of a compound command) is not allowed"),
    Case("chain-newline", "fixer", "Bash", bash("pytest\nsh -c id"), "`sh -c id` (part of a compound command)"),
    Case("command-substitution", "fixer", "Bash", bash("pytest $(cat /etc/shadow)"), "command substitution"),
    Case("backticks", "fixer", "Bash", bash("pytest `cat /etc/shadow`"), "command substitution"),
    Case("process-substitution", "fixer", "Bash", bash("pytest <(cat /etc/shadow)"), "process substitution"),
    Case("pipe-into-shell", "fixer", "Bash", bash("pytest | sh"), "`sh` (part of a compound command) is not allowed"),
    Case("redirect-absolute", "fixer", "Bash", bash("pytest > /etc/cron.d/x"), "absolute path outside the workspace"),
    Case("redirect-parent", "fixer", "Bash", bash("pytest > ../escape.txt"), "'..' leads outside the workspace"),
    Case("redirect-home", "fixer", "Bash", bash("pytest >> ~/.bashrc"), "'~' is not expanded"),
    Case("ld-preload", "fixer", "Bash", bash("LD_PRELOAD=/tmp/x.so pytest"), "environment assignment LD_PRELOAD"),
    Case("path-prefix", "fixer", "Bash", bash("PATH=. pytest"), "environment assignment PATH"),
    Case("eval", "fixer", "Bash", bash("eval 'pytest; curl x'"), "'eval' runs or redefines commands"),
    Case("exec", "fixer", "Bash", bash("exec pytest"), "'exec' runs or redefines commands"),
    Case("source", "fixer", "Bash", bash("source .venv/bin/activate"), "'source' runs or redefines commands"),
    Case("dot", "fixer", "Bash", bash(". ./evil.sh"), "'.' runs or redefines commands"),
    Case("here-string", "pyagent", "Bash", bash("python3 <<< 'import os; os.system(\"id\")'"),
         "here-documents and here-strings"),
    Case("subshell", "fixer", "Bash", bash("(pytest; curl x)"), "subshells"),
    Case("function", "fixer", "Bash", bash("f() { curl x; }; f"), "function definitions"),
    Case("loop", "fixer", "Bash", bash("for i in 1; do curl x; done"), "loops"),
    Case("background", "fixer", "Bash", bash("pytest & curl x"), "background jobs"),
    Case("unparseable", "fixer", "Bash", bash("pytest 'unterminated"), "cannot parse"),
    Case("git-option-before-subcommand", "reviewer", "Bash", bash("git -c core.pager='sh -c id' diff"),
         "is not allowed"),
    Case("git-outside-path-argument", "reviewer", "Bash", bash("git diff --no-index /etc/passwd README.md"),
         "names a path outside the workspace"),
    Case("git-output-escape", "reviewer", "Bash", bash("git diff --output=../escape.txt"),
         "names a path outside the workspace"),
    # --- paths ------------------------------------------------------------------------------
    Case("path-traversal", "fixer", "Read", {"path": "../gate-data/mergegate.db"}, "'..' leads outside"),
    Case("absolute-path", "fixer", "Read", {"path": "/etc/passwd"}, "absolute path outside the workspace"),
    Case("write-outside", "fixer", "Write", {"path": "../escape.txt", "content": "x"}, "'..' leads outside"),
    # --- protected paths --------------------------------------------------------------------
    Case("write-git-hook", "fixer", "Write", {"path": ".git/hooks/pre-commit", "content": "#!/bin/sh\ncurl x\n"},
         "is protected"),
    Case("write-policy", "fixer", "Write", {"path": ".mergegate.yml", "content": "agents: {}\n"},
         "'.mergegate.yml' is protected (.mergegate.yml): read-only for every agent"),
    Case("edit-ci-config", "fixer", "Edit", {"path": ".github/workflows/ci.yml", "old": "on: push", "new": "on: x"},
         "is protected (.github/workflows/**)"),
    Case("create-gitlab-ci", "fixer", "Write", {"path": ".gitlab-ci.yml", "content": "x: {script: [curl x]}\n"},
         "'.gitlab-ci.yml' is protected"),
    Case("write-codeowners", "fixer", "Write", {"path": "docs/CODEOWNERS", "content": "* @agent\n"},
         "'docs/CODEOWNERS' is protected (CODEOWNERS)"),
    Case("edit-test-as-fixer", "fixer", "Edit", {"path": "tests/test_app.py", "old": "== 3", "new": "is not None"},
         "read-only for agents with protect_tests"),
    Case("new-test-as-fixer", "fixer", "Write", {"path": "src/test_shortcut.py", "content": "def test(): pass\n"},
         "'src/test_shortcut.py' is protected (test_*.py)"),
    Case("redirect-into-test", "fixer", "Bash", bash("pytest > tests/test_app.py"), "'tests/test_app.py' is protected"),
    Case("write-audit-log", "fixer", "Write", {"path": ".git/mergegate/audit.jsonl", "content": "{}\n"},
         "is protected"),
    # --- secrets ------------------------------------------------------------------------------
    Case("env-command", "fixer", "Bash", bash("env"), "`env` is not allowed"),
    Case("proc-self-environ", "fixer", "Read", {"path": "/proc/self/environ"}, "absolute path outside"),
    Case("proc-1-environ", "fixer", "Read", {"path": "/proc/1/environ"}, "absolute path outside"),
    Case("proc-environ-by-shell", "shell", "Bash", bash("cat /proc/1/environ"), "names a path outside the workspace"),
    Case("ssh-key", "fixer", "Read", {"path": "~/.ssh/id_ed25519"}, "home-directory paths are outside"),
    Case("shadow", "fixer", "Read", {"path": "/etc/shadow"}, "absolute path outside"),
    Case("shadow-by-shell", "shell", "Bash", bash("cat /etc/shadow"), "names a path outside the workspace"),
    # --- network ------------------------------------------------------------------------------
    Case("curl", "fixer", "Bash", bash("curl http://127.0.0.1:5432/"), "`curl http://127.0.0.1:5432/` is not allowed"),
    Case("python-socket-direct", "fixer", "Bash",
         bash("python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 5432))'"), "is not allowed"),
    Case("webfetch-loopback", "fetcher", "WebFetch", {"url": "http://localhost:5432/"},
         "resolves to a private, loopback or link-local address"),
    Case("webfetch-other-domain", "fetcher", "WebFetch", {"url": "http://example.com/"}, "is not allowed"),
    # --- processes ----------------------------------------------------------------------------
    Case("kill-parent", "fixer", "Bash", bash("kill -9 $PPID"), "variable expansion"),
    Case("kill-everything", "fixer", "Bash", bash("kill -9 -1"), "`kill -9 -1` is not allowed"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_refused_and_audited(world: World, case: Case) -> None:
    (result,) = world.replay(case.agent, [{"tool": case.tool, "args": case.args}])
    assert result["status"] == "refused", result
    assert case.reason in result["reason"], result["reason"]
    assert CANARY not in result["output"]

    (entry,) = [e for e in world.audit() if e["action"] == "tool_call"]
    assert entry["outcome"] == "refused"
    assert entry["agent_id"] == f"agent:{case.agent}"
    assert entry["reason"] == result["reason"]
    assert entry["tool"] in (case.tool, "Bash", "Read")
    assert not [e for e in world.audit() if e["action"] == "tool_result"], "a refused call must not run"
    world.assert_untouched()


def test_at_least_thirty_distinct_escapes() -> None:
    assert len({c.id for c in CASES}) == len(CASES) >= 30
