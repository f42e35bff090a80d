"""Real git repositories for tests: build a base branch, then a change on top of it."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

from mergegate.service.check import CheckReport, run_check
from mergegate.vcs.git import GitRepo

HUMAN = ("Dana Maintainer", "dana@example.com")
AGENT = ("coding-agent[bot]", "agent@agents.mergegate.invalid")


class RepoBuilder:
    """``RepoBuilder(tmp_path).base({...}).change({...})`` makes branches main and change."""

    def __init__(self, root: Path):
        self.path = root / "repo"
        self.path.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str, author: tuple[str, str] = HUMAN) -> str:
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": author[0],
            "GIT_AUTHOR_EMAIL": author[1],
            "GIT_COMMITTER_NAME": author[0],
            "GIT_COMMITTER_EMAIL": author[1],
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        proc = subprocess.run(["git", *args], cwd=self.path, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)}: {proc.stderr}")
        return proc.stdout

    def write(self, files: dict[str, str | None]) -> None:
        """Write files (``None`` deletes one)."""
        for rel, text in files.items():
            target = self.path / rel
            if text is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")

    def commit(self, files: dict[str, str | None], message: str = "commit", author=HUMAN) -> str:
        self.write(files)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message, author=author)
        return self.git("rev-parse", "HEAD").strip()

    def base(self, files: dict[str, str | None], message: str = "base") -> RepoBuilder:
        """Commit ``files`` on main (the first call creates it)."""
        if self.git("branch", "--list", "main").strip():
            self.git("checkout", "-q", "main")
        self.commit(files, message)
        return self

    def change(
        self, files: dict[str, str | None], message: str = "change", author=AGENT, branch: str = "change"
    ) -> RepoBuilder:
        self.git("checkout", "-q", "-B", branch, "main")
        self.commit(files, message, author)
        return self

    def check(
        self, agents: list[str] | None = None, base: str = "main", head: str = "change", audit=None
    ) -> CheckReport:
        return asyncio.run(run_check(GitRepo(self.path), base, head, agents, audit))
