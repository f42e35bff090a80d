"""The landing commit: exactly the commit the gate would write to the target branch.

Checks count only on this commit (design invariant 2, "strict"): not on the change's
head, whose tree can differ from what lands as soon as the base has moved. Each method
gives one commit whose tree is the three-way merge of the base tip and the head:

- ``merge``: ``git merge-tree --write-tree <base tip> <head>``, then ``commit-tree``
  with both parents (base tip first).
- ``squash``: the same tree, one parent (the base tip).
- ``rebase``: the change's commits (``merge-base..head``, merges skipped) replayed one
  by one onto the base tip, keeping each commit's author and message. The final tree
  must equal the merge tree; when it does not (the history has merge resolutions or
  reverts a replay cannot reproduce), rebasing is treated as a conflict: landing
  something other than what a merge would give is never silent.

The gate authors and commits merge and squash commits (``GIT_ENV`` in
``forge.local.repos``) and commits the replayed ones. Nothing here touches a branch:
the commit is kept alive by ``refs/changes/<N>/landing`` and moves onto the branch
only by the merge's compare-and-swap (``service.merge``).

Replaying a commit needs a three-way merge against an arbitrary base, which
``merge-tree --merge-base`` offers only from git 2.40. For older gits (Debian 12 ships
2.39) each step merges two synthetic commits that share one synthetic parent holding
the replayed commit's parent tree: their merge base is then exactly that tree, and the
result is the cherry-pick. The synthetic commits are unreferenced and garbage-collected.
"""

from __future__ import annotations

from dataclasses import dataclass

from mergegate.forge.local.repos import BareRepo

MERGE_METHODS = ("merge", "squash", "rebase")
DEFAULT_METHOD = "merge"


@dataclass(frozen=True)
class Landing:
    method: str
    base: str
    head: str
    #: The landing commit, or ``None`` when it cannot be made (see ``problem``).
    commit: str | None
    tree: str | None = None
    #: Why there is no landing commit, in words (a conflict, unrelated histories).
    problem: str | None = None
    conflicts: tuple[str, ...] = ()


def validate_method(method: str) -> str:
    if method not in MERGE_METHODS:
        raise ValueError(f"unknown merge method {method!r}: {', '.join(MERGE_METHODS)}")
    return method


def landing_ref(number: int) -> str:
    return f"refs/changes/{number}/landing"


def _merge_tree(repo: BareRepo, ours: str, theirs: str) -> tuple[str | None, list[str], list[str]]:
    """(tree or None, conflicting paths, git's CONFLICT messages)."""
    out = repo.git("merge-tree", "--write-tree", "--name-only", "--messages", ours, theirs, check=False)
    lines = out.splitlines()
    if not lines or len(lines[0]) < 40:
        return None, [], [out.strip() or "git merge-tree failed"]
    tree = lines[0].strip()
    paths: list[str] = []
    rest = lines[1:]
    while rest and rest[0]:
        paths.append(rest.pop(0))
    messages = [line for line in rest if line.startswith("CONFLICT")]
    if paths or messages:
        return None, sorted(set(paths)), messages
    return tree, [], []


def _conflict(method: str, base: str, head: str, paths: list[str], messages: list[str], what: str) -> Landing:
    listed = ", ".join(paths) if paths else "(no paths reported)"
    problem = f"{what} conflicts in {listed}"
    if messages:
        problem += ": " + "; ".join(messages[:5])
    return Landing(method, base, head, None, problem=problem, conflicts=tuple(paths))


def make(repo: BareRepo, *, base: str, head: str, method: str, number: int, subject: str) -> Landing:
    """Make the landing commit of change ``number`` (head ``head``) onto ``base``."""
    validate_method(method)
    proc_base = repo.git("merge-base", base, head, check=False).strip()
    if not proc_base:
        return Landing(method, base, head, None, problem="the change and its target branch have no common history")
    tree, paths, messages = _merge_tree(repo, base, head)
    if tree is None:
        return _conflict(method, base, head, paths, messages, "merging the change into the base tip")
    if method == "merge":
        message = f"Merge change {number}: {subject}\n\nLanded by the mergegate gate.\n"
        commit = repo.git("commit-tree", tree, "-p", base, "-p", head, input=message.encode()).strip()
    elif method == "squash":
        message = f"{subject}\n\nSquashed change {number}; landed by the mergegate gate.\n"
        commit = repo.git("commit-tree", tree, "-p", base, input=message.encode()).strip()
    else:
        replayed = _replay(repo, base=base, head=head, merge_base=proc_base, number=number)
        if isinstance(replayed, Landing):
            return replayed
        commit = replayed
        final_tree = repo.git("rev-parse", f"{commit}^{{tree}}").strip()
        if final_tree != tree:
            return Landing(
                method,
                base,
                head,
                None,
                problem=(
                    "rebasing the change's commits onto the base tip gives a different tree than merging it "
                    "(its history has merges or resolutions a replay cannot reproduce); use merge or squash"
                ),
            )
    return Landing(method, base, head, commit, tree)


def _replay(repo: BareRepo, *, base: str, head: str, merge_base: str, number: int) -> str | Landing:
    commits = repo.git("rev-list", "--reverse", "--topo-order", "--no-merges", f"{merge_base}..{head}").split()
    empty_tree = repo.git("mktree", input=b"").strip()
    current = base
    current_tree = repo.git("rev-parse", f"{base}^{{tree}}").strip()
    for commit in commits:
        parent = repo.resolve(f"{commit}^")
        parent_tree = repo.git("rev-parse", f"{parent}^{{tree}}").strip() if parent else empty_tree
        commit_tree = repo.git("rev-parse", f"{commit}^{{tree}}").strip()
        stub = repo.git("commit-tree", parent_tree, "-m", "mergegate replay base").strip()
        ours = repo.git("commit-tree", current_tree, "-p", stub, "-m", "mergegate replay ours").strip()
        theirs = repo.git("commit-tree", commit_tree, "-p", stub, "-m", "mergegate replay theirs").strip()
        tree, paths, messages = _merge_tree(repo, ours, theirs)
        if tree is None:
            return _conflict("rebase", base, head, paths, messages, f"replaying commit {commit[:12]} onto the base tip")
        if tree == current_tree:
            continue  # already on the base: git rebase drops such commits too
        author = repo.git("log", "-1", "--format=%an%x00%ae%x00%ad", "--date=raw", commit).rstrip("\n").split("\x00")
        message = repo.git("log", "-1", "--format=%B", commit)
        replayer = BareRepo(
            repo.path,
            {
                **repo.extra_env,
                "GIT_AUTHOR_NAME": author[0],
                "GIT_AUTHOR_EMAIL": author[1],
                "GIT_AUTHOR_DATE": author[2],
            },
        )
        current = replayer.git("commit-tree", tree, "-p", current, input=message.encode()).strip()
        current_tree = tree
    if current == base:
        return Landing("rebase", base, head, None, problem="every commit of the change is already on the base tip")
    return current


def store_ref(repo: BareRepo, number: int, landing: Landing) -> None:
    """Keep the landing commit reachable (and fetchable) at ``refs/changes/<N>/landing``."""
    if landing.commit:
        repo.set_ref(landing_ref(number), landing.commit)
    else:
        repo.git("update-ref", "-d", landing_ref(number), check=False)
