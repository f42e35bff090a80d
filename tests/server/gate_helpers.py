"""Helpers for the gate's tests: repositories with a base policy, changes pushed with real
git, and the gate's answers read over HTTP."""

from __future__ import annotations

import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.server.conftest import GateServer, Workdir, bare_ref, git_env

#: The checks' cost follows the agents: coverage runs the project's tests, which is not
#: the point of these tests, so the base policy switches it off.
BASE_POLICY = "agents:\n  test-coverage: {enabled: false}\n"
CLEAN_CODE = "def add(a, b):\n    return a + b\n"
SQL_INJECTION = (
    "def find(conn, name):\n    return conn.execute(\"SELECT * FROM users WHERE name = '%s'\" % name).fetchall()\n"
)


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Person:
    name: str
    token: str


def people(server: GateServer, suffix: str) -> dict[str, Person]:
    """alice and bob (human maintainers), carol (human contributor), bot (an agent) and
    rootbot (an agent with the admin role), named ``<name><suffix>``."""
    roles = {
        "alice": ("human", "maintainer"),
        "bob": ("human", "maintainer"),
        "carol": ("human", "contributor"),
        "bot": ("agent", "contributor"),
        "rootbot": ("agent", "admin"),
    }
    out = {}
    for short, (kind, role) in roles.items():
        name = f"{short}{suffix}"
        out[short] = Person(name, server.add_principal(name, kind, role, email=f"{name}@example.com"))
    return out


def make_repo(server: GateServer, root: Path, name: str, files: dict[str, str] | None = None) -> str:
    """A repository imported from a fresh local one whose main has ``files``."""
    src = root / f"src-{name}"
    env = git_env(root / "home-src")
    subprocess.run(["git", "init", "-q", "-b", "main", str(src)], env=env, check=True)
    for rel, text in {".mergegate.yml": BASE_POLICY, "README.md": "hello\n", **(files or {})}.items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    subprocess.run(["git", "add", "-A"], cwd=src, env=env, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "Initial"], cwd=src, env=env, check=True)
    server.create_repo(name, str(src))
    return name


def clone(server: GateServer, repo: str, who: Person, root: Path) -> Workdir:
    return Workdir(server, repo, who.name, who.token, root / unique(f"w-{who.name}-"))


def push_change(w: Workdir, branch: str, files: dict[str, str], message: str) -> int:
    """Commit ``files`` on ``branch`` (from origin's ``branch`` if it exists, else from
    origin/main), push, return the change's number."""
    if branch not in w.git("branch", "--list", branch):
        w.git("fetch", "-q", "origin")
        start = (
            f"origin/{branch}"
            if w.run_git("rev-parse", "-q", "--verify", f"origin/{branch}").returncode == 0
            else "origin/main"
        )
        w.git("checkout", "-q", "-b", branch, start)
    else:
        w.git("checkout", "-q", branch)
    w.commit(files, message)
    proc = w.push("-f", f"HEAD:refs/heads/{branch}")
    assert proc.returncode == 0, proc.stderr
    w.server.wait_idle(120)
    repo = w.git("remote", "get-url", "origin").rsplit("/", 1)[-1].removesuffix(".git")
    for change in w.server.changes(repo):
        if change["source_ref"] == f"refs/heads/{branch}" and change["state"] == "open":
            return change["number"]
    raise AssertionError(f"no open change for {branch}: {proc.stderr}")


def status(server: GateServer, n: int, token: str | None = None) -> dict:
    with server.client(token or server.admin_token) as api:
        r = api.get(f"/api/changes/{n}/status")
        assert r.status_code == 200, r.text
        return r.json()


def rule(st: dict, name: str) -> dict:
    return next(r for r in st["rules"] if r["rule"] == name)


def review(server: GateServer, token: str, n: int, state: str = "approve", body: str = "", **extra):
    with server.client(token) as api:
        return api.post(f"/api/changes/{n}/reviews", json={"state": state, "body": body, **extra})


def merge(server: GateServer, token: str, n: int, method: str | None = None):
    with server.client(token) as api:
        return api.post(f"/api/changes/{n}/merge", json={"method": method})


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def wait_checked(server: GateServer, n: int, timeout: float = 120.0) -> dict:
    """The status once the gate's check of the current landing commit has a result."""

    def done():
        st = status(server, n)
        landing = st["landing"]["commit"]
        ours = [c for c in st["checks"] if c["commit"] == landing and c["producer"] == "mergegate"]
        if landing and st["landing"]["current"] and ours and all(c["status"] != "pending" for c in ours):
            return st
        return None

    return wait_for(done, timeout, f"the gate's landing check of change {n}")


def branch_tip(server: GateServer, repo: str, branch: str = "main") -> str | None:
    return bare_ref(server.bare(repo), f"refs/heads/{branch}")


def git_bare(server: GateServer, repo: str, *args: str) -> str:
    proc = subprocess.run(
        ["git", "--git-dir", str(server.bare(repo)), *args], capture_output=True, text=True, check=True
    )
    return proc.stdout.strip()


def audit(server: GateServer, action: str) -> list[dict]:
    return server.audit(action)
