"""A thin adapter over the git CLI for reading commits, trees and diffs.

The git CLI is the reference implementation and handles every repository format;
one ``cat-file --batch`` process serves many blob reads so cost follows the diff.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from unidiff import PatchSet

from mergegate.core.change import Change, ChangedFile, FileStatus

#: A fixed, minimal environment so user config (pagers, external diff, hooks) never
#: changes what we read.
_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PAGER": "cat",
    "LC_ALL": "C",
}


class GitError(RuntimeError):
    """A git command failed; the message says which and why, in git's words."""


class GitRepo:
    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()
        if not self.path.exists():
            raise GitError(f"{self.path}: no such directory")
        try:
            top = self.git("rev-parse", "--show-toplevel", "--git-dir").splitlines()
        except GitError:
            raise GitError(f"{self.path} is not a git repository") from None
        self.git_dir = (self.path / top[1]).resolve() if len(top) > 1 else self.path / ".git"
        self.path = Path(top[0]).resolve() if top and top[0] else self.path

    # -- plumbing -------------------------------------------------------------------

    def git(self, *args: str, input: bytes | None = None, check: bool = True) -> str:
        return self.git_bytes(*args, input=input, check=check).decode("utf-8", "replace")

    def git_bytes(self, *args: str, input: bytes | None = None, check: bool = True) -> bytes:
        env = {**os.environ, **_GIT_ENV}
        proc = subprocess.run(
            ["git", "-c", "core.quotepath=off", *args],
            cwd=self.path,
            input=input,
            capture_output=True,
            env=env,
        )
        if check and proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip()
            raise GitError(f"git {' '.join(args[:3])} failed: {err or f'exit {proc.returncode}'}")
        return proc.stdout

    # -- refs and commits -----------------------------------------------------------

    def rev_parse(self, ref: str) -> str:
        try:
            return self.git("rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}").strip()
        except GitError:
            raise GitError(f"unknown revision {ref!r} in {self.path}") from None

    def try_rev_parse(self, ref: str) -> str | None:
        try:
            return self.rev_parse(ref)
        except GitError:
            return None

    def merge_base(self, a: str, b: str) -> str:
        try:
            return self.git("merge-base", a, b).strip()
        except GitError:
            raise GitError(f"{a[:12]} and {b[:12]} have no common history") from None

    def author(self, commit: str) -> str:
        return self.git("show", "-s", "--format=%an <%ae>", commit).strip()

    def default_base(self) -> str:
        """The usual base branch: the upstream of HEAD, else origin/HEAD, main or master."""
        for ref in ("@{upstream}", "origin/HEAD", "origin/main", "main", "origin/master", "master"):
            sha = self.try_rev_parse(ref)
            if sha and sha != self.try_rev_parse("HEAD"):
                return ref
        raise GitError("cannot tell the base branch; pass --base REF")

    # -- contents ---------------------------------------------------------------------

    def read_blobs(self, ref: str, paths: list[str]) -> dict[str, bytes | None]:
        """Contents of ``paths`` at ``ref`` (``None`` where the path does not exist)."""
        if not paths:
            return {}
        request = "".join(f"{ref}:{p}\n" for p in paths).encode()
        out = self.git_bytes("cat-file", "--batch", input=request)
        result: dict[str, bytes | None] = {}
        pos = 0
        for path in paths:
            end = out.index(b"\n", pos)
            header = out[pos:end].decode()
            pos = end + 1
            if header.endswith(" missing") or header.endswith(" ambiguous"):
                result[path] = None
                continue
            _, kind, size_s = header.split(" ")
            size = int(size_s)
            result[path] = out[pos : pos + size] if kind == "blob" else None
            pos += size + 1
        return result

    def read_text(self, ref: str, path: str) -> str | None:
        data = self.read_blobs(ref, [path])[path]
        return None if data is None else data.decode("utf-8", "replace")

    def export_tree(self, ref: str, dest: Path) -> None:
        """Write the tree of ``ref`` into ``dest`` without touching the repo's index or HEAD."""
        dest.mkdir(parents=True, exist_ok=True)
        index = dest.parent / f".{dest.name}.index"
        env = {**os.environ, **_GIT_ENV, "GIT_INDEX_FILE": str(index)}
        for args in (
            ["read-tree", ref],
            ["checkout-index", "--all", "--force", f"--prefix={dest}/"],
        ):
            proc = subprocess.run(["git", *args], cwd=self.path, env=env, capture_output=True)
            if proc.returncode != 0:
                raise GitError(f"git {args[0]} failed: {proc.stderr.decode(errors='replace').strip()}")
        index.unlink(missing_ok=True)

    def git_detached(
        self, work_tree: Path, index: Path, *args: str, check: bool = True, pass_fds: tuple[int, ...] = ()
    ) -> subprocess.CompletedProcess:
        """Run git on a work tree of our own with an index of its own (``GIT_INDEX_FILE``).

        The repository's own index, HEAD and work tree are never touched. The settings
        that decide whether a file counts as changed are pinned, so user or repository
        config (an fsmonitor, an untracked cache, sparse checkout, ``trustctime=false``)
        cannot make a modified tree look clean. ``pass_fds`` are inherited by git (e.g. a
        lock that must outlive us if we are killed while git writes).
        """
        pinned = [
            *("-c", "core.fileMode=true", "-c", "core.trustctime=true", "-c", "core.checkStat=default"),
            *("-c", "core.symlinks=true", "-c", "core.ignoreCase=false", "-c", "core.sparseCheckout=false"),
            *("-c", "core.fsmonitor=false", "-c", "core.untrackedCache=false", "-c", "core.splitIndex=false"),
        ]
        proc = subprocess.run(
            ["git", *pinned, f"--git-dir={self.git_dir}", f"--work-tree={work_tree}", *args],
            cwd=work_tree,
            capture_output=True,
            env={**os.environ, **_GIT_ENV, "GIT_INDEX_FILE": str(index)},
            pass_fds=pass_fds,
        )
        if check and proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip()
            raise GitError(f"git {' '.join(args[:3])} failed: {err or f'exit {proc.returncode}'}")
        return proc

    # -- the change --------------------------------------------------------------------

    def diff_text(self, base: str, head: str, context: int = 0) -> str:
        return self.git(
            "diff",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--find-renames",
            f"--unified={context}",
            base,
            head,
            "--",
        )

    def review_fingerprint(self, merge_base: str, head: str) -> str:
        """What a reviewer approved: the patch-id of ``merge_base..head`` plus the merge base.

        Stable across commit-message edits, squashes and rebases that keep the merge base
        and the resulting content; different whenever the content or the merge base
        changes. ``--verbatim`` keeps whitespace (plain ``--stable`` ignores it, and an
        indentation change can move a Python statement out of an ``if``). The diff flags
        are explicit so that user config (algorithm, context, prefixes) cannot change the
        id. Mode changes and binary blobs (by full index) are part of the patch-id.
        Both revisions are resolved to full commit ids first, so a ref name and its sha
        give the same fingerprint and no argument can be read as an option.
        """
        merge_base, head = self.rev_parse(merge_base), self.rev_parse(head)
        diff = self.git_bytes(
            "-c",
            "diff.noprefix=false",
            "-c",
            "diff.mnemonicPrefix=false",
            "diff",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--full-index",
            "--find-renames",
            "--diff-algorithm=myers",
            "--unified=3",
            "--no-relative",
            merge_base,
            head,
            "--",
        )
        if not diff.strip():
            patch_id = "empty"
        else:
            try:
                out = self.git_bytes("patch-id", "--verbatim", input=diff)
                patch_id = out.split()[0].decode() if out.strip() else ""
            except GitError:
                patch_id = ""
            if not patch_id:  # git < 2.39 has no --verbatim: hash the exact diff instead
                patch_id = "sha256-diff:" + hashlib.sha256(diff).hexdigest()
        return hashlib.sha256(f"mergegate-review-v1\n{merge_base}\n{patch_id}\n".encode()).hexdigest()

    def change(self, base_ref: str, head_ref: str = "HEAD") -> Change:
        base = self.rev_parse(base_ref)
        head = self.rev_parse(head_ref)
        merge_base = self.merge_base(base, head)
        files = parse_diff(self.diff_text(merge_base, head))
        return Change(
            base=base,
            head=head,
            merge_base=merge_base,
            files=tuple(files),
            head_author=self.author(head),
            base_ref=base_ref,
            head_ref=head_ref,
        )


def _strip_prefix(path: str | None) -> str | None:
    if path is None or path == "/dev/null":
        return None
    return path[2:] if path[:2] in ("a/", "b/") else path


def parse_diff(text: str) -> list[ChangedFile]:
    """Parse ``git diff`` output into changed files with exact added/removed line numbers."""
    files = []
    for pf in PatchSet(text):
        source = _strip_prefix(pf.source_file)
        target = _strip_prefix(pf.target_file)
        if pf.is_added_file:
            status = FileStatus.ADDED
        elif pf.is_removed_file:
            status = FileStatus.DELETED
        elif pf.is_rename or (source and target and source != target):
            status = FileStatus.RENAMED
        else:
            status = FileStatus.MODIFIED
        path = target if status is not FileStatus.DELETED else source
        path = path or pf.path
        added = frozenset(line.target_line_no for hunk in pf for line in hunk if line.is_added)
        removed = frozenset(line.source_line_no for hunk in pf for line in hunk if line.is_removed)
        files.append(
            ChangedFile(
                path=path,
                status=status,
                old_path=source if status is FileStatus.RENAMED else (None if status is FileStatus.ADDED else source),
                added_lines=added,
                removed_lines=removed,
                binary=pf.is_binary_file,
            )
        )
    return files
