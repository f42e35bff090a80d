"""Reading git repositories (the git CLI). Nothing here writes refs."""

from mergegate.vcs.git import GitError, GitRepo

__all__ = ["GitError", "GitRepo"]
