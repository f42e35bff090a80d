"""``vcs.git.GitRepo`` over one of the forge's bare repositories.

The check pipeline (``service.check.run_check``) and the review fingerprint read a
repository through ``GitRepo``, which expects a work tree: its constructor asks git for
the top level, and exporting a tree uses ``checkout-index``, which git refuses in a bare
repository. The gate's repositories are bare (nobody may have a checkout of a protected
branch), so this adapter names the bare directory as both path and git dir and gives
``checkout-index`` an explicit ``--work-tree``: the destination it writes to anyway.
Everything else (blobs, diffs, merge bases, patch-ids) works in a bare repository as is.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from mergegate.vcs.git import _GIT_ENV, GitError, GitRepo


class BareGitRepo(GitRepo):
    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()
        if not (self.path / "HEAD").is_file():
            raise GitError(f"{self.path} is not a bare git repository")
        self.git_dir = self.path

    def export_tree(self, ref: str, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        index = dest.parent / f".{dest.name}.index"
        env = {**os.environ, **_GIT_ENV, "GIT_INDEX_FILE": str(index)}
        for args in (
            ["read-tree", ref],
            [f"--work-tree={dest}", "checkout-index", "--all", "--force", f"--prefix={dest}/"],
        ):
            proc = subprocess.run(["git", *args], cwd=self.path, env=env, capture_output=True)
            if proc.returncode != 0:
                raise GitError(f"git {args[0]} failed: {proc.stderr.decode(errors='replace').strip()}")
        index.unlink(missing_ok=True)
