from __future__ import annotations

import pytest

from mergegate.core.change import FileStatus
from mergegate.vcs.git import GitError, GitRepo


def test_change_lists_added_modified_deleted_and_renamed_files(repo):
    repo.base(
        {
            "a.py": "one\ntwo\nthree\n",
            "gone.py": "x = 1\n",
            "old_name.py": "".join(f"line {i}\n" for i in range(20)),
        }
    )
    repo.git("checkout", "-q", "-b", "change")
    repo.git("mv", "old_name.py", "new_name.py")
    repo.commit({"a.py": "one\nTWO\nthree\nfour\n", "gone.py": None, "added.py": "print(1)\n"})
    change = GitRepo(repo.path).change("main", "change")

    by_path = {f.path: f for f in change.files}
    assert by_path["a.py"].status is FileStatus.MODIFIED
    assert by_path["a.py"].added_lines == {2, 4}
    assert by_path["a.py"].removed_lines == {2}
    assert by_path["gone.py"].status is FileStatus.DELETED
    assert by_path["gone.py"].removed_lines == {1}
    assert by_path["added.py"].status is FileStatus.ADDED
    assert by_path["added.py"].old_path is None
    renamed = by_path["new_name.py"]
    assert renamed.status is FileStatus.RENAMED and renamed.old_path == "old_name.py"
    assert renamed.added_lines == frozenset()
    assert change.touched_paths() >= {"old_name.py", "new_name.py"}


def test_change_is_computed_from_the_merge_base(repo):
    repo.base({"a.py": "a = 1\n"})
    repo.change({"b.py": "b = 2\n"})
    repo.git("checkout", "-q", "main")
    repo.commit({"c.py": "c = 3\n"}, "main moves on")
    change = GitRepo(repo.path).change("main", "change")
    assert change.paths == ["b.py"]  # main's own later commit is not part of the change
    assert change.base != change.merge_base


def test_read_blobs_reads_many_paths_with_missing_ones(repo):
    repo.base({"a.txt": "alpha\n", "dir/b.txt": "beta\n"})
    git = GitRepo(repo.path)
    blobs = git.read_blobs("main", ["a.txt", "dir/b.txt", "nope.txt", "dir"])
    assert blobs == {"a.txt": b"alpha\n", "dir/b.txt": b"beta\n", "nope.txt": None, "dir": None}


def test_export_tree_writes_the_tree_without_touching_the_checkout(repo, tmp_path):
    repo.base({"a.txt": "alpha\n", "dir/b.txt": "beta\n"})
    repo.change({"a.txt": "changed\n"})
    repo.git("checkout", "-q", "main")
    dest = tmp_path / "export"
    GitRepo(repo.path).export_tree("change", dest)
    assert (dest / "a.txt").read_text() == "changed\n"
    assert (dest / "dir/b.txt").read_text() == "beta\n"
    assert not (dest / ".git").exists()
    assert (repo.path / "a.txt").read_text() == "alpha\n"
    assert repo.git("status", "--porcelain") == ""


def test_unknown_revision_and_non_repo_errors_are_clear(repo, tmp_path):
    repo.base({"a": "1\n"})
    with pytest.raises(GitError, match="unknown revision 'nope'"):
        GitRepo(repo.path).change("nope")
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(GitError, match="is not a git repository"):
        GitRepo(plain)


def test_unrelated_histories_have_no_merge_base(repo):
    repo.base({"a": "1\n"})
    repo.git("checkout", "-q", "--orphan", "other")
    repo.commit({"b": "2\n"}, "unrelated")
    with pytest.raises(GitError, match="no common history"):
        GitRepo(repo.path).change("main", "other")
