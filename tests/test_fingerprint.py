"""The review fingerprint on real repositories: what an approval is bound to.

Stable when only history changes (messages, squashes, re-applying onto the same merge
base); different whenever the reviewed content or the merge base changes.
"""

from __future__ import annotations

import pytest

from mergegate.vcs.git import GitError, GitRepo
from tests.gitrepo import RepoBuilder

PADDING = "".join(f"# line {i}\n" for i in range(30))
CODE = PADDING + "def allowed(user):\n    if user.admin:\n        log(user)\n    return True\n" + PADDING


def fingerprint(repo: RepoBuilder, head: str = "change") -> str:
    g = GitRepo(repo.path)
    return g.review_fingerprint(g.merge_base("main", head), head)


@pytest.fixture
def changed(repo: RepoBuilder) -> RepoBuilder:
    repo.base({"app.py": CODE, "README.md": "hello\n"})
    repo.change({"app.py": CODE.replace("return True", "return user.active"), "new.txt": "new\n"})
    return repo


def test_is_a_stable_hex_digest(changed):
    fp = fingerprint(changed)
    assert len(fp) == 64 and int(fp, 16) >= 0
    assert fingerprint(changed) == fp


def test_same_after_a_commit_message_only_amend(changed):
    before = fingerprint(changed)
    old_head = changed.git("rev-parse", "change").strip()
    changed.git("commit", "--amend", "-q", "-m", "a different message")
    assert changed.git("rev-parse", "change").strip() != old_head
    assert fingerprint(changed) == before


def test_same_after_a_rebase_onto_an_unchanged_merge_base(changed):
    before = fingerprint(changed)
    old_head = changed.git("rev-parse", "change").strip()
    changed.git("rebase", "-q", "--force-rebase", "main")  # new commits, same base, same content
    assert changed.git("rev-parse", "change").strip() != old_head
    assert fingerprint(changed) == before


def test_same_after_squashing_the_same_content(repo):
    repo.base({"app.py": CODE})
    repo.change({"app.py": CODE + "# one\n"})
    repo.commit({"app.py": CODE + "# one\n# two\n"}, "second")
    two_commits = fingerprint(repo)
    repo.git("reset", "--soft", "main")
    repo.git("commit", "-q", "-m", "squashed")
    assert fingerprint(repo) == two_commits


def test_same_for_a_ref_name_and_its_commit_id(changed):
    g = GitRepo(changed.path)
    mb = g.merge_base("main", "change")
    assert g.review_fingerprint(mb, "change") == g.review_fingerprint(mb, g.rev_parse("change"))


def test_changes_when_code_changes(changed):
    before = fingerprint(changed)
    changed.commit({"app.py": CODE.replace("return True", "return user.active and True")}, "more")
    assert fingerprint(changed) != before


def test_changes_when_only_indentation_changes(repo):
    """``git patch-id --stable`` alone ignores whitespace; here it must not: moving
    ``audit()`` out of the ``if`` changes what the code does."""
    repo.base({"README.md": "x\n"})
    repo.change({"gate.py": "if ok:\n    allow()\n    audit()\n"})
    before = fingerprint(repo)
    repo.commit({"gate.py": "if ok:\n    allow()\naudit()\n"}, "dedent")
    assert fingerprint(repo) != before


def test_changes_when_only_the_file_mode_changes(changed):
    before = fingerprint(changed)
    (changed.path / "new.txt").chmod(0o755)
    changed.git("add", "new.txt")
    changed.git("commit", "-q", "-m", "make it executable")
    assert fingerprint(changed) != before


def test_changes_when_binary_content_changes(repo):
    repo.base({"README.md": "x\n"})
    repo.git("checkout", "-q", "-B", "change", "main")
    (repo.path / "blob.bin").write_bytes(b"\x00\x01binary")
    repo.git("add", "blob.bin")
    repo.git("commit", "-q", "-m", "bin")
    before = fingerprint(repo)
    (repo.path / "blob.bin").write_bytes(b"\x00\x02binary")
    repo.git("commit", "-q", "-am", "bin 2")
    assert fingerprint(repo) != before


def test_changes_when_the_merge_base_changes_even_if_the_patch_does_not(changed):
    before = fingerprint(changed)
    changed.base({"README.md": "hello, world\n"}, "main moves")
    changed.git("checkout", "-q", "change")
    changed.git("rebase", "-q", "main")
    g = GitRepo(changed.path)
    assert g.merge_base("main", "change") == g.rev_parse("main")
    assert fingerprint(changed) != before


def test_an_empty_diff_has_a_defined_fingerprint_tied_to_its_base(repo):
    repo.base({"README.md": "x\n"})
    repo.git("checkout", "-q", "-B", "change", "main")
    repo.git("commit", "-q", "--allow-empty", "-m", "nothing")
    empty = fingerprint(repo)
    assert len(empty) == 64 and fingerprint(repo) == empty
    repo.base({"README.md": "y\n"}, "main moves")
    repo.git("checkout", "-q", "-B", "change", "main")
    repo.git("commit", "-q", "--allow-empty", "-m", "nothing")
    assert fingerprint(repo) != empty


def test_user_diff_config_does_not_change_it(changed):
    before = fingerprint(changed)
    for key, value in (
        ("diff.noprefix", "true"),
        ("diff.mnemonicPrefix", "true"),
        ("diff.algorithm", "patience"),
        ("diff.context", "10"),
        ("diff.renames", "false"),
    ):
        changed.git("config", key, value)
    assert fingerprint(changed) == before


def test_revisions_cannot_be_read_as_options(changed):
    g = GitRepo(changed.path)
    with pytest.raises(GitError):
        g.review_fingerprint("--output=/tmp/pwned", "change")
