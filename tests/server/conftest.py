"""A real gate server for tests: ``python -m mergegate serve`` in a subprocess, on SQLite
and on PostgreSQL (a fresh ``mg_<uuid>`` database per module), driven over HTTP with
httpx and with the real git CLI.

PostgreSQL comes from ``MERGEGATE_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``). When it is unreachable the
PostgreSQL half is skipped, unless ``MERGEGATE_REQUIRE_SERVICES=1`` (CI), where it fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import httpx
import pytest

from tests.conftest import REQUIRE_SERVICES

PG_ADMIN_URL = os.environ.get("MERGEGATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ("sqlite", "postgresql")


@cache
def postgres_problem() -> str | None:
    """None when PostgreSQL is usable, else why not."""
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"PostgreSQL at {PG_ADMIN_URL} is unreachable: {type(exc).__name__}: {str(exc).strip()[:200]}"
    return None


def require_postgres() -> None:
    problem = postgres_problem()
    if problem:
        if REQUIRE_SERVICES:
            pytest.fail(f"{problem} (MERGEGATE_REQUIRE_SERVICES=1)")
        pytest.skip(problem)


@contextlib.contextmanager
def fresh_database(backend: str, directory: Path) -> Iterator[str]:
    """A database URL nobody else uses; PostgreSQL ones are dropped afterwards."""
    if backend == "sqlite":
        directory.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{directory / 'mergegate.db'}"
        return
    require_postgres()
    import psycopg

    name = f"mg_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        # Plain postgresql:// on purpose: the server must pick the psycopg 3 driver itself.
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git_env(home: Path) -> dict[str, str]:
    """git as a user with no config of their own and no prompts."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "Test Author",
            "GIT_AUTHOR_EMAIL": "author@example.com",
            "GIT_COMMITTER_NAME": "Test Author",
            "GIT_COMMITTER_EMAIL": "author@example.com",
            "LC_ALL": "C",
        }
    )
    return env


@dataclass
class GateServer:
    """One ``mergegate serve`` process and helpers to talk to it."""

    data_dir: Path
    database_url: str
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    admin_token: str = ""
    log_path: Path | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> str:
        """Start and wait for /healthz; returns what the server printed on stdout."""
        self.starts += 1
        out = self.data_dir.parent / f"serve-{self.starts}.out"
        self.log_path = self.data_dir.parent / f"serve-{self.starts}.err"
        cmd = [sys.executable, "-m", "mergegate", "serve", "--data", str(self.data_dir), "--port", str(self.port)]
        cmd += ["--database", self.database_url, "--log-level", "warning"]
        env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1"}
        with open(out, "wb") as stdout, open(self.log_path, "wb") as stderr:
            self.proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError(f"server did not become healthy: {self.log_path.read_text()}")
        printed = out.read_text()
        found = re.search(r"admin token: (\S+)", printed)
        if found:
            self.admin_token = found.group(1)
        return printed

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    # -- API -------------------------------------------------------------------------------

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def admin(self) -> httpx.Client:
        return self.client(self.admin_token)

    def add_principal(self, name: str, kind: str, role: str = "contributor", email: str | None = None) -> str:
        """Create a principal and return a fresh token for it."""
        with self.admin() as api:
            r = api.post("/api/users", json={"name": name, "kind": kind, "role": role, "email": email})
            assert r.status_code == 201, r.text
            r = api.post(f"/api/users/{name}/tokens", json={"label": "test"})
            assert r.status_code == 201, r.text
            return r.json()["token"]

    def create_repo(self, name: str, source: str | None = None) -> dict:
        with self.admin() as api:
            r = api.post("/api/repos", json={"name": name, "source": source})
            assert r.status_code == 201, r.text
            return r.json()

    def audit(self, action: str | None = None) -> list[dict]:
        with self.admin() as api:
            r = api.get("/api/audit", params={"action": action, "limit": 1000} if action else {"limit": 1000})
            assert r.status_code == 200, r.text
            return r.json()

    def changes(self, repo: str | None = None) -> list[dict]:
        with self.admin() as api:
            r = api.get("/api/changes", params={"repo": repo} if repo else {})
            assert r.status_code == 200, r.text
            return r.json()

    def change(self, number: int) -> dict:
        with self.admin() as api:
            r = api.get(f"/api/changes/{number}")
            assert r.status_code == 200, r.text
            return r.json()

    def wait_idle(self, timeout: float = 15.0) -> None:
        """Wait until the event inbox has nothing pending."""
        deadline = time.monotonic() + timeout
        with self.admin() as api:
            while time.monotonic() < deadline:
                if not api.get("/api/events", params={"status": "pending"}).json():
                    return
                time.sleep(0.05)
        raise AssertionError("events still pending")

    def bare(self, repo: str) -> Path:
        return self.data_dir / "repos" / f"{repo}.git"

    def clone_url(self, repo: str, user: str, token: str) -> str:
        return f"http://{user}:{token}@127.0.0.1:{self.port}/git/{repo}.git"


class Workdir:
    """A clone of a server repository, pushing as one principal."""

    def __init__(self, server: GateServer, repo: str, user: str, token: str, path: Path):
        self.server = server
        self.path = path
        self.env = git_env(path.parent / f"home-{user}")
        proc = self.run_git("clone", "-q", server.clone_url(repo, user, token), str(path), cwd=path.parent)
        assert proc.returncode == 0, proc.stderr

    def run_git(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args], cwd=cwd or self.path, env=self.env, capture_output=True, text=True, timeout=120
        )

    def git(self, *args: str) -> str:
        proc = self.run_git(*args)
        assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
        return proc.stdout.strip()

    def commit(self, files: dict[str, str], message: str) -> str:
        for rel, text in files.items():
            target = self.path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def push(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run_git("push", "origin", *args)


def bare_ref(bare: Path, ref: str) -> str | None:
    proc = subprocess.run(
        ["git", "--git-dir", str(bare), "rev-parse", "--verify", "--quiet", ref], capture_output=True, text=True
    )
    return proc.stdout.strip() or None


def bare_refs(bare: Path) -> dict[str, str]:
    out = subprocess.run(
        ["git", "--git-dir", str(bare), "for-each-ref", "--format=%(refname) %(objectname)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request) -> str:
    if request.param == "postgresql":
        require_postgres()
    return request.param


@pytest.fixture(scope="module")
def server(backend: str, tmp_path_factory) -> Iterator[GateServer]:
    """A running server with a fresh database, shared by one test module."""
    root = tmp_path_factory.mktemp(f"gate-{backend}")
    with fresh_database(backend, root / "db") as url:
        gate = GateServer(data_dir=root / "data", database_url=url)
        gate.start()
        try:
            yield gate
        finally:
            gate.stop()
