"""Seed a running gate server with the demo: ``mergegate demo --serve``.

Over the server's own API and with the real ``git`` client over HTTP, exactly as a team
would: a repository made from the demo base (``service.demo``), a human maintainer
(``dana``), a second human maintainer (``sam``, who approves: an approval never counts
from the change's author or its last pusher), an agent principal (``coding-agent``), and
four changes:

1. ``clean``: a small, tested feature by dana; green checks, waiting for an approval;
2. ``sqli``: the agent's SQL injection; blocked by the gate's check;
3. ``weak-test``: the agent skips a test and loosens an assertion; blocked by the check;
4. ``policy``: the agent edits ``.mergegate.yml`` to advisory mode; judged by the base
   policy all the same, and it needs an admin's approval (the policy file's owners).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from mergegate.service.demo import AGENT_CHANGES, BASE_FILES

REPO = "demo"
MAINTAINER = "dana"
APPROVER = "sam"
AGENT = "coding-agent"
GATE_CHECK = "mergegate/check"

CLEAN_CHANGE = {
    "app/users.py": BASE_FILES["app/users.py"]
    + "\n\ndef count_users(db):\n"
    + '    (count,) = db.execute("SELECT COUNT(*) FROM users").fetchone()\n'
    + "    return count\n",
    "tests/test_users.py": BASE_FILES["tests/test_users.py"].replace(
        "from app.users import add_user, average_age, connect, find_user",
        "from app.users import add_user, average_age, connect, count_users, find_user",
    )
    + '\n\ndef test_count_users():\n    db = connect()\n    add_user(db, "ada", 36)\n    assert count_users(db) == 1\n',
}


@dataclass(frozen=True)
class DemoChange:
    key: str
    author: str
    branch: str
    title: str
    files: dict[str, str]


CHANGES = (
    DemoChange("clean", MAINTAINER, "dana/count-users", "Count users", CLEAN_CHANGE),
    DemoChange(
        "sqli",
        AGENT,
        "agent/find-user-by-name",
        "Simplify the user lookup",
        {"app/users.py": AGENT_CHANGES["app/users.py"]},
    ),
    DemoChange(
        "weak-test",
        AGENT,
        "agent/fix-flaky-test",
        "Fix a flaky test",
        {"tests/test_users.py": AGENT_CHANGES["tests/test_users.py"]},
    ),
    DemoChange(
        "policy",
        AGENT,
        "agent/relax-policy",
        "Make the gate advisory",
        {".mergegate.yml": AGENT_CHANGES[".mergegate.yml"]},
    ),
)


@dataclass
class Seeded:
    url: str
    repo: str
    #: principal name -> API token
    tokens: dict[str, str]
    #: change key (clean, sqli, weak-test, policy) -> change number
    numbers: dict[str, int]
    #: change key -> the gate's status once its check has a result
    statuses: dict[str, dict[str, Any]]


class SeedError(RuntimeError):
    pass


def _git_env(home: Path, name: str, email: str) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
        GIT_AUTHOR_NAME=name,
        GIT_AUTHOR_EMAIL=email,
        GIT_COMMITTER_NAME=name,
        GIT_COMMITTER_EMAIL=email,
    )
    return env


def _git(cwd: Path, env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise SeedError(f"git {args[0]} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def _ok(r: httpx.Response, what: str) -> dict[str, Any]:
    if r.status_code >= 400:
        raise SeedError(f"{what}: HTTP {r.status_code} {r.text[:500]}")
    return r.json()


def _principal(api: httpx.Client, name: str, kind: str, role: str) -> str:
    _ok(
        api.post("/api/users", json={"name": name, "kind": kind, "role": role, "email": f"{name}@example.com"}),
        f"creating {name}",
    )
    return _ok(api.post(f"/api/users/{name}/tokens", json={"label": "demo"}), f"a token for {name}")["token"]


def checked(status: dict[str, Any]) -> dict[str, Any] | None:
    """The gate's check of the current landing commit, once it has a result."""
    landing = status["landing"]
    ours = [c for c in status["checks"] if c["commit"] == landing["commit"] and c["name"] == GATE_CHECK]
    ours = [c for c in ours if c["producer"] == "mergegate"]
    if landing["commit"] and landing["current"] and ours and all(c["status"] != "pending" for c in ours):
        return ours[-1]
    return None


def verdict_words(status: dict[str, Any]) -> str:
    """The verdict in a line: mergeable, or which rules block and why."""
    if status["state"] != "open":
        return status["state"]
    if status["mergeable"]:
        return "mergeable"
    blocked = [r for r in status["rules"] if not r["satisfied"]]
    return "; ".join(f"{r['rule']}: {r['reason'].removeprefix('blocked: ')}" for r in blocked)


def seed(url: str, admin_token: str, *, workdir: Path | None = None, timeout: float = 600.0) -> Seeded:
    """Create the demo's principals, repository and changes on the server at ``url``;
    wait until every change has the gate's check result."""
    url = url.rstrip("/")
    root = workdir or Path(tempfile.mkdtemp(prefix="mergegate-demo-seed-"))
    root.mkdir(parents=True, exist_ok=True)
    headers = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as api:
        tokens = {
            MAINTAINER: _principal(api, MAINTAINER, "human", "maintainer"),
            APPROVER: _principal(api, APPROVER, "human", "maintainer"),
            AGENT: _principal(api, AGENT, "agent", "contributor"),
        }
        # The base: the demo's main branch, committed by dana.
        src = root / "base"
        env = _git_env(root / "home-base", "Dana Maintainer", f"{MAINTAINER}@example.com")
        _git(root, env, "init", "-q", "-b", "main", str(src))
        _write(src, BASE_FILES)
        _git(src, env, "add", "-A")
        _git(src, env, "commit", "-q", "-m", "users: store and look up users")
        _ok(api.post("/api/repos", json={"name": REPO, "source": str(src)}), "creating the repository")

        numbers: dict[str, int] = {}
        host = url.split("://", 1)[1]
        scheme = url.split("://", 1)[0]
        for change in CHANGES:
            who = change.author
            email = "agent@agents.mergegate.invalid" if who == AGENT else f"{who}@example.com"
            env = _git_env(root / f"home-{who}", who, email)
            work = root / f"work-{change.key}"
            _git(root, env, "clone", "-q", f"{scheme}://{who}:{tokens[who]}@{host}/git/{REPO}.git", str(work))
            _git(work, env, "checkout", "-q", "-b", change.branch)
            _write(work, change.files)
            _git(work, env, "add", "-A")
            _git(work, env, "commit", "-q", "-m", change.title)
            _git(work, env, "push", "-q", "origin", f"HEAD:refs/heads/{change.branch}")
            numbers[change.key] = _find_change(api, change.branch, timeout=60)

        statuses: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while len(statuses) < len(numbers):
            for key, n in numbers.items():
                if key not in statuses:
                    st = _ok(api.get(f"/api/changes/{n}/status"), f"the status of change {n}")
                    if checked(st):
                        statuses[key] = st
            if len(statuses) < len(numbers):
                if time.monotonic() > deadline:
                    waiting = sorted(set(numbers) - set(statuses))
                    raise SeedError(f"no verdict within {timeout:g}s for: {', '.join(waiting)}")
                time.sleep(0.5)
    return Seeded(url, REPO, tokens, numbers, statuses)


def _find_change(api: httpx.Client, branch: str, *, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        for c in _ok(api.get("/api/changes", params={"repo": REPO}), "listing changes"):
            if c["source_ref"] == f"refs/heads/{branch}" and c["state"] == "open":
                return c["number"]
        if time.monotonic() > deadline:
            raise SeedError(f"no change opened for {branch}")
        time.sleep(0.2)


def short_verdict(status: dict[str, Any], width: int = 90) -> str:
    """The verdict for a table cell: what blocks, besides the approval every change awaits."""
    if status["state"] != "open":
        return status["state"]
    if status["mergeable"]:
        return "mergeable"
    blocked = [r for r in status["rules"] if not r["satisfied"]]
    others = [r for r in blocked if r["rule"] != "approvals"]
    if not others:
        return "blocked only on a human approval (not the author's, not the last pusher's)"
    words = "; ".join(f"{r['rule']}: {r['reason'].removeprefix('blocked: ')}" for r in others)
    if len(words) > width:
        words = words[: width - 1].rstrip() + "…"
    return f"blocked: {words}"


def table(seeded: Seeded) -> list[tuple[str, str, str, str, str]]:
    """Rows of (change, key, author, gate check, verdict in words)."""
    authors = {c.key: c.author for c in CHANGES}
    titles = {c.key: c.title for c in CHANGES}
    rows = []
    for key, n in seeded.numbers.items():
        st = seeded.statuses[key]
        check = checked(st)
        result = check["status"] if check else "pending"
        rows.append((f"{n}", f"{titles[key]} ({key})", authors[key], result, short_verdict(st)))
    return rows
