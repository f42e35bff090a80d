"""Bare repositories under the data directory, and the few ref operations the gate needs.

Every repository is configured the same way at creation and again at each server
start (so a hand-edited config cannot switch the guard off): the receive hooks come
from the server's hooks directory (``core.hooksPath``), internal staging refs are
hidden from clients, and pushed objects are fsck'ed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

#: A fixed environment so no user or system config changes what the server's git does.
GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PAGER": "cat",
    "LC_ALL": "C",
    "GIT_AUTHOR_NAME": "mergegate",
    "GIT_AUTHOR_EMAIL": "gate@mergegate.invalid",
    "GIT_COMMITTER_NAME": "mergegate",
    "GIT_COMMITTER_EMAIL": "gate@mergegate.invalid",
}

#: Refs the server keeps for itself while it turns a push into a change.
INCOMING_PREFIX = "refs/mergegate/incoming/"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_SOURCE_SCHEMES = ("http://", "https://", "ssh://", "git://", "file://")


class ForgeError(RuntimeError):
    """A repository operation failed; the message says which and why."""


def validate_repo_name(name: str) -> str:
    """``NAME`` or ``NAME.git`` → ``NAME``; one path segment, no tricks."""
    bare = name.removesuffix(".git")
    if not _NAME.fullmatch(bare) or bare.endswith(".lock") or ".." in bare:
        raise ValueError(
            f"invalid repository name {name!r}: use letters, digits, '.', '_' and '-' "
            "(up to 100, starting with a letter or digit)"
        )
    return bare


def validate_branch_name(name: str) -> str:
    branch = name.removeprefix("refs/heads/")
    proc = subprocess.run(["git", "check-ref-format", "--branch", branch], capture_output=True, env=_env())
    if proc.returncode != 0 or branch.startswith("-"):
        raise ValueError(f"invalid branch name {name!r}")
    return branch


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return {**base, **GIT_ENV, **(extra or {})}


def is_zero(sha: str) -> bool:
    return not sha.strip("0")


@dataclass(frozen=True)
class CommitInfo:
    subject: str
    change_id: str | None


class BareRepo:
    """One bare repository. ``extra_env`` carries git's quarantine variables inside hooks."""

    def __init__(self, path: Path, extra_env: dict[str, str] | None = None):
        self.path = path
        self.extra_env = dict(extra_env or {})

    @property
    def name(self) -> str:
        return self.path.name.removesuffix(".git")

    def git(self, *args: str, input: bytes | None = None, check: bool = True) -> str:
        proc = subprocess.run(
            ["git", "--git-dir", str(self.path), *args],
            input=input,
            capture_output=True,
            env=_env(self.extra_env),
            timeout=600,
        )
        if check and proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip()
            raise ForgeError(f"git {' '.join(args[:2])} in {self.name}: {err or f'exit {proc.returncode}'}")
        return proc.stdout.decode("utf-8", "replace")

    def resolve(self, ref: str) -> str | None:
        out = self.git("rev-parse", "--verify", "--quiet", "--end-of-options", ref, check=False).strip()
        return out or None

    def default_branch(self) -> str:
        return self.git("symbolic-ref", "--short", "HEAD").strip()

    def branches(self) -> list[str]:
        return self.git("for-each-ref", "--format=%(refname:short)", "refs/heads/").split()

    def is_ancestor(self, commit: str, of: str) -> bool:
        proc = subprocess.run(
            ["git", "--git-dir", str(self.path), "merge-base", "--is-ancestor", commit, of],
            capture_output=True,
            env=_env(self.extra_env),
        )
        return proc.returncode == 0

    def commit_info(self, sha: str) -> CommitInfo:
        out = self.git(
            "log", "-1", "--format=%s%x00%(trailers:key=Change-Id,valueonly,separator=%x01)", sha, "--"
        ).rstrip("\n")
        subject, _, trailers = out.partition("\x00")
        ids = [t.strip() for t in trailers.split("\x01") if t.strip()]
        # Gerrit uses the last Change-Id trailer; so do we.
        return CommitInfo(subject=subject[:500], change_id=ids[-1][:64] if ids else None)

    def read_blob(self, ref: str, path: str) -> tuple[bool, str | None]:
        """(exists, text) of ``path`` at ``ref``; (False, None) when there is no such file."""
        sha = self.git("rev-parse", "--verify", "--quiet", f"{ref}:{path}", check=False).strip()
        if not sha:
            return False, None
        return True, self.git("cat-file", "blob", sha)

    def update_refs(self, commands: list[str]) -> None:
        """Apply ``update-ref --stdin`` commands atomically (all or none)."""
        script = "start\n" + "".join(f"{c}\n" for c in commands) + "commit\n"
        self.git("update-ref", "--stdin", input=script.encode())

    def remove_stale_locks(self) -> list[str]:
        """Delete git lock files a killed git left behind (``refs/heads/main.lock`` …).

        git never removes them itself, and while one exists every update of that ref
        fails. Only safe when no git process can be working on this repository: the
        server calls it at start, before it serves anything.
        """
        stale = [p for p in (self.path / "refs").rglob("*.lock") if p.is_file()]
        stale += [self.path / n for n in ("packed-refs.lock", "HEAD.lock", "config.lock", "shallow.lock")]
        removed = []
        for path in stale:
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            removed.append(str(path.relative_to(self.path)))
        return removed

    def set_ref(self, ref: str, sha: str) -> None:
        self.git("update-ref", ref, sha)

    def compare_and_swap(self, ref: str, new: str, old: str) -> bool:
        """Move ``ref`` from ``old`` to ``new``; False (and nothing changed) if it is no
        longer at ``old``. git holds the ref's lock while it compares, so of two racing
        writers exactly one wins. This is the only way the gate writes a protected branch.
        """
        try:
            self.update_refs([f"update {ref} {new} {old}"])
            return True
        except ForgeError:
            if self.resolve(ref) != old:
                return False  # somebody moved it first
            raise

    def delete_ref_if(self, ref: str, expect: str) -> bool:
        """Delete ``ref`` only if it still points at ``expect`` (compare-and-swap)."""
        current = self.resolve(ref)
        if current is None or current != expect:
            return False
        proc = subprocess.run(
            ["git", "--git-dir", str(self.path), "update-ref", "-d", ref, expect],
            capture_output=True,
            env=_env(self.extra_env),
        )
        return proc.returncode == 0

    def refs(self, prefix: str) -> dict[str, str]:
        out = self.git("for-each-ref", "--format=%(refname) %(objectname)", prefix)
        return dict(line.split(" ", 1) for line in out.splitlines() if line)


class Forge:
    """The repositories directory of one server."""

    def __init__(self, repos_dir: Path, hooks_dir: Path):
        self.repos_dir = repos_dir
        self.hooks_dir = hooks_dir

    def path(self, name: str) -> Path:
        return self.repos_dir / f"{validate_repo_name(name)}.git"

    def exists(self, name: str) -> bool:
        return (self.path(name) / "HEAD").is_file()

    def open(self, name: str) -> BareRepo:
        path = self.path(name)
        if not (path / "HEAD").is_file():
            raise ForgeError(f"repository {name!r} has no directory at {path}")
        return BareRepo(path)

    def configure(self, repo: BareRepo) -> None:
        settings = {
            "core.hooksPath": str(self.hooks_dir),
            "http.receivepack": "true",
            "receive.fsckObjects": "true",
            "core.logAllRefUpdates": "always",
        }
        for key, value in settings.items():
            repo.git("config", key, value)
        repo.git("config", "--replace-all", "transfer.hideRefs", INCOMING_PREFIX.rstrip("/"))

    def create(self, name: str, *, default_branch: str | None = None, source: str | None = None) -> BareRepo:
        """Create ``name`` (empty but for an initial commit, or a bare clone of ``source``).

        Built in a temporary directory and renamed into place, so a failure leaves nothing.
        """
        final = self.path(name)
        if final.exists():
            raise ForgeError(f"repository {name!r} already exists at {final}")
        self.repos_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.repos_dir / f".tmp-{uuid.uuid4().hex}.git"
        try:
            repo = self._clone(tmp, source, default_branch) if source else self._init(tmp, default_branch or "main")
            self.configure(repo)
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return BareRepo(final)

    def _init(self, path: Path, branch: str) -> BareRepo:
        branch = validate_branch_name(branch)
        subprocess.run(
            ["git", "init", "-q", "--bare", "-b", branch, str(path)], check=True, capture_output=True, env=_env()
        )
        repo = BareRepo(path)
        # The default branch is protected, so nobody could ever push its first commit:
        # the gate creates it, empty, the way Gerrit offers an initial empty commit.
        tree = repo.git("mktree", input=b"").strip()
        commit = repo.git("commit-tree", tree, "-m", "Initial empty commit").strip()
        repo.git("update-ref", f"refs/heads/{branch}", commit, "0" * len(commit))
        return repo

    def _clone(self, path: Path, source: str, branch: str | None) -> BareRepo:
        if source.startswith(_SOURCE_SCHEMES):
            origin = source
        elif "://" in source or source.startswith("ext::"):
            raise ForgeError(f"--from {source!r}: only http(s)://, ssh://, git://, file:// URLs or a local path")
        else:
            local = Path(source).expanduser()
            if not local.exists():
                raise ForgeError(f"--from {source}: no such path")
            origin = str(local.resolve())
        proc = subprocess.run(
            ["git", "clone", "-q", "--bare", "--no-hardlinks", "--", origin, str(path)],
            capture_output=True,
            env=_env(),
            timeout=3600,
        )
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip()
            raise ForgeError(f"cloning {source} failed: {err or f'exit {proc.returncode}'}")
        repo = BareRepo(path)
        repo.git("remote", "remove", "origin", check=False)
        if branch:
            branch = validate_branch_name(branch)
            if repo.resolve(f"refs/heads/{branch}") is None:
                raise ForgeError(f"{source} has no branch {branch!r}")
            repo.git("symbolic-ref", "HEAD", f"refs/heads/{branch}")
        if repo.resolve("HEAD") is None:
            have = ", ".join(repo.branches()) or "none"
            raise ForgeError(f"{source} has no default branch to gate (branches: {have}); pass --default-branch")
        return repo
