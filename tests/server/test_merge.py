"""Merging, on SQLite and PostgreSQL: the three methods each land exactly the tested
commit, a moved base means re-testing (never an untested merge), two racing merges
cannot both land, and merge-when-ready lets the gate merge on a human's request."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mergegate.forge.local.repos import BareRepo
from tests.server.conftest import GateServer
from tests.server.gate_helpers import (
    CLEAN_CODE,
    audit,
    branch_tip,
    clone,
    git_bare,
    make_repo,
    merge,
    people,
    push_change,
    review,
    status,
    unique,
    wait_checked,
    wait_for,
)


@pytest.fixture(scope="module")
def crew(server: GateServer):
    return people(server, "m")


def _green_approved(server: GateServer, crew, w, branch: str, files: dict[str, str], message: str) -> int:
    n = push_change(w, branch, files, message)
    wait_checked(server, n)
    assert review(server, crew["bob"].token, n).status_code == 201
    return n


def _merge_tree(server: GateServer, repo: str, base: str, head: str) -> str:
    return git_bare(server, repo, "merge-tree", "--write-tree", base, head).splitlines()[0]


@pytest.mark.parametrize("method", ["merge", "squash", "rebase"])
def test_each_method_lands_the_tested_commit(server: GateServer, crew, tmp_path: Path, method: str):
    alice, bob = crew["alice"], crew["bob"]
    repo = make_repo(server, tmp_path, unique(method))
    w = clone(server, repo, alice, tmp_path)
    n = push_change(w, "feature/two", {"calc.py": CLEAN_CODE}, "First commit")
    push_change(w, "feature/two", {"more.py": "VALUE = 2\n"}, "Second commit")
    st = wait_checked(server, n)
    assert review(server, bob.token, n).status_code == 201
    base, head = st["base_tip"], st["head"]

    if method != "merge":
        # Asking for another method re-makes the landing commit: it must be tested first.
        r = merge(server, bob.token, n, method)
        assert r.status_code == 409, r.text
        assert r.json()["reason"].startswith(f"retesting: the merge method changed from merge to {method}")
        assert branch_tip(server, repo) == base
        st = wait_checked(server, n)
        assert st["landing"]["method"] == method
    st = status(server, n)
    landing = st["landing"]["commit"]
    assert st["mergeable"], st["summary"]
    r = merge(server, bob.token, n, method)
    assert r.status_code == 200, r.text
    assert r.json()["method"] == method and r.json()["commit"] == landing
    assert branch_tip(server, repo) == landing
    tree = git_bare(server, repo, "rev-parse", "refs/heads/main^{tree}")
    assert tree == _merge_tree(server, repo, base, head) == r.json()["tree"]
    tested = [c for c in st["checks"] if c["commit"] == landing and c["producer"] == "mergegate"]
    assert tested and tested[-1]["status"] == "success"

    log = git_bare(server, repo, "log", "--format=%P|%an|%cn|%s", f"{base}..refs/heads/main", "--first-parent")
    lines = log.splitlines()
    if method == "merge":
        assert lines == [f"{base} {head}|mergegate|mergegate|Merge change {n}: Second commit"]
    elif method == "squash":
        assert lines == [f"{base}|mergegate|mergegate|Second commit"]
    else:  # the change's commits, replayed on the base with their authors; committed by the gate
        assert [line.split("|", 1)[1] for line in lines] == [
            "Test Author|mergegate|Second commit",
            "Test Author|mergegate|First commit",
        ]
        assert lines[-1].split("|")[0] == base


def test_a_moved_base_means_retesting_never_an_untested_merge(server: GateServer, crew, tmp_path: Path):
    alice, bob = crew["alice"], crew["bob"]
    repo = make_repo(server, tmp_path, unique("moved"))
    w = clone(server, repo, alice, tmp_path)
    n = _green_approved(server, crew, w, "feature/moved", {"calc.py": CLEAN_CODE}, "Change")
    before = status(server, n)
    assert before["mergeable"]

    # Between the check and the merge, main moves (another writer: another gate node).
    old = branch_tip(server, repo)
    tree = git_bare(server, repo, "rev-parse", f"{old}^{{tree}}")
    moved = git_bare(server, repo, "commit-tree", tree, "-p", old, "-m", "Landed elsewhere")
    git_bare(server, repo, "update-ref", "refs/heads/main", moved, old)

    st = status(server, n)
    assert not st["mergeable"] and not st["landing"]["current"]
    assert "the commit that would land has not been re-made on it yet" in next(
        r["reason"] for r in st["rules"] if r["rule"] == "landing"
    )
    checks = next(r for r in st["rules"] if r["rule"] == "checks")
    assert "is stale (the base moved)" in checks["reason"]

    r = merge(server, bob.token, n)
    assert r.status_code == 409 and r.json()["error"] == "blocked"
    assert r.json()["reason"].startswith(f"retesting: base moved: main is now at {moved[:12]}")
    assert branch_tip(server, repo) == moved, "nothing untested landed"

    st = wait_checked(server, n)
    new_landing = st["landing"]["commit"]
    assert new_landing != before["landing"]["commit"]
    assert git_bare(server, repo, "log", "-1", "--format=%P", new_landing).split()[0] == moved
    # The approval still counts: the reviewed content (merge base + patch) did not change.
    assert st["fingerprint"] == before["fingerprint"] and st["mergeable"], st["summary"]
    r = merge(server, bob.token, n)
    assert r.status_code == 200, r.text
    assert branch_tip(server, repo) == new_landing


def test_merging_one_change_re_lands_the_others(server: GateServer, crew, tmp_path: Path):
    alice, bob = crew["alice"], crew["bob"]
    repo = make_repo(server, tmp_path, unique("relands"))
    w = clone(server, repo, alice, tmp_path)
    first = _green_approved(server, crew, w, "feature/a", {"a.py": CLEAN_CODE}, "A")
    second = _green_approved(server, crew, w, "feature/b", {"b.py": CLEAN_CODE}, "B")
    old_landing = status(server, second)["landing"]["commit"]

    assert merge(server, bob.token, first).status_code == 200
    main_after_first = branch_tip(server, repo)
    r = merge(server, bob.token, second)
    if r.status_code == 200:  # the re-landing and its check were already done: it must be the new one
        assert r.json()["old"] == main_after_first and r.json()["commit"] != old_landing
    else:
        assert r.status_code == 409 and r.json()["reason"].startswith(("retesting: base moved", "blocked"))
        st = wait_checked(server, second)
        assert st["landing"]["base"] == main_after_first and st["mergeable"], st["summary"]
        r = merge(server, bob.token, second)
        assert r.status_code == 200, r.text
    main = branch_tip(server, repo)
    assert git_bare(server, repo, "log", "-1", "--format=%P", main).split()[0] == main_after_first
    tested = [
        e for e in audit(server, "check.completed") if e["details"]["commit"] == main and e["outcome"] == "success"
    ]
    assert tested, "the commit on main was checked by the gate"


def test_two_racing_merges_into_one_branch_land_exactly_one(server: GateServer, crew, tmp_path: Path):
    alice, bob = crew["alice"], crew["bob"]
    repo = make_repo(server, tmp_path, unique("race"))
    w = clone(server, repo, alice, tmp_path)
    changes = [
        _green_approved(server, crew, w, f"feature/r{i}", {f"r{i}.py": CLEAN_CODE}, f"Race {i}") for i in range(2)
    ]
    landings = {n: status(server, n)["landing"]["commit"] for n in changes}
    base = branch_tip(server, repo)
    results: dict[int, object] = {}
    barrier = threading.Barrier(len(changes))

    def go(n: int) -> None:
        barrier.wait()
        results[n] = merge(server, bob.token, n)

    threads = [threading.Thread(target=go, args=(n,)) for n in changes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    codes = sorted(r.status_code for r in results.values())
    assert codes == [200, 409], {n: r.text for n, r in results.items()}
    winner = next(n for n, r in results.items() if r.status_code == 200)
    loser = next(n for n in changes if n != winner)
    assert branch_tip(server, repo) == landings[winner]
    assert git_bare(server, repo, "log", "-1", "--format=%P", landings[winner]).split()[0] == base
    assert server.change(loser)["state"] == "open"
    merged = [e for e in audit(server, "change.merged") if e["details"]["change"] in changes]
    assert [e["details"]["change"] for e in merged] == [winner]


def test_merge_when_ready_is_done_by_the_gate_on_a_humans_request(server: GateServer, crew, tmp_path: Path):
    alice, bob, carol = crew["alice"], crew["bob"], crew["carol"]
    repo = make_repo(server, tmp_path, unique("ready"))
    n = push_change(clone(server, repo, alice, tmp_path), "feature/ready", {"calc.py": CLEAN_CODE}, "Ready")
    with server.client(bob.token) as api:
        r = api.post(f"/api/changes/{n}/merge-when-ready", json={})
        assert r.status_code == 200, r.text
        assert r.json()["merge_when_ready_by"] == bob.name
    st = wait_checked(server, n)
    assert st["state"] == "open" and st["merge_when_ready_by"] == bob.name, "no approval yet: it waits"
    assert review(server, carol.token, n).status_code == 201
    wait_for(lambda: server.change(n)["state"] == "merged", 60, "the gate to merge")
    st = status(server, n)
    assert branch_tip(server, repo) == st["landing"]["commit"] == st["merged_sha"]
    (entry,) = [e for e in audit(server, "change.merged") if e["details"]["change"] == n]
    assert entry["agent_id"] == "mergegate" and entry["details"]["requested_by"] == bob.name
    assert entry["human_reviewer"] == carol.name


def test_compare_and_swap_refuses_a_moved_ref(tmp_path: Path, server: GateServer):
    repo = make_repo(server, tmp_path, unique("cas"))
    bare = BareRepo(server.bare(repo))
    tip = bare.resolve("refs/heads/main")
    tree = bare.git("rev-parse", f"{tip}^{{tree}}").strip()
    one = bare.git("commit-tree", tree, "-p", tip, "-m", "one").strip()
    two = bare.git("commit-tree", tree, "-p", tip, "-m", "two").strip()
    assert bare.compare_and_swap("refs/heads/main", one, tip)
    assert not bare.compare_and_swap("refs/heads/main", two, tip), "main is no longer at tip"
    assert bare.resolve("refs/heads/main") == one
