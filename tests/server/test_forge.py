"""The embedded forge over real git smart HTTP: clone, pushes that open and update
changes, and the receive hook that refuses every push to a protected branch, whoever
sends it (admins and admin-role agents included). Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.server.conftest import GateServer, Workdir, bare_ref, bare_refs, git_env

PROTECTED_MESSAGE = (
    "remote: mergegate: refs/heads/main is protected; only the gate merges into it. "
    "Push to refs/for/main or a branch to open a change."
)
PEOPLE = {
    # name: (kind, role)
    "dana": ("human", "contributor"),
    "mo": ("human", "maintainer"),
    "bot": ("agent", "contributor"),
    "rootbot": ("agent", "admin"),
}


@pytest.fixture(scope="module")
def tokens(server: GateServer) -> dict[str, str]:
    made = {name: server.add_principal(name, kind, role) for name, (kind, role) in PEOPLE.items()}
    made["admin"] = server.admin_token
    return made


@pytest.fixture(scope="module")
def repo(server: GateServer, tokens) -> str:
    server.create_repo("app")
    return "app"


@pytest.fixture
def clone(server: GateServer, repo: str, tokens, tmp_path: Path):
    def make(who: str, name: str = "w") -> Workdir:
        return Workdir(server, repo, who, tokens[who], tmp_path / f"{who}-{name}")

    return make


def opened(stderr: str) -> int:
    found = re.search(r"change (\d+) opened", stderr)
    assert found, stderr
    return int(found.group(1))


# -- reading ---------------------------------------------------------------------------


def test_clone_needs_a_valid_token(server: GateServer, repo, tokens, tmp_path):
    env = git_env(tmp_path / "home")
    anonymous = subprocess.run(
        ["git", "ls-remote", f"{server.url}/git/{repo}.git"], env=env, capture_output=True, text=True
    )
    assert anonymous.returncode != 0
    wrong = subprocess.run(
        ["git", "ls-remote", server.clone_url(repo, "bot", "mgt_000000000000_" + "x" * 43)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert wrong.returncode != 0
    assert "invalid credentials" in wrong.stderr
    impostor = subprocess.run(
        ["git", "ls-remote", server.clone_url(repo, "dana", tokens["bot"])], env=env, capture_output=True, text=True
    )
    assert impostor.returncode != 0, "a token only authenticates its own principal"
    good = subprocess.run(
        ["git", "ls-remote", server.clone_url(repo, "bot", tokens["bot"])], env=env, capture_output=True, text=True
    )
    assert good.returncode == 0, good.stderr
    assert "refs/heads/main" in good.stdout


def test_only_the_smart_protocol_is_served(server: GateServer, repo, tokens):
    """The dumb protocol would hand out raw files (config, hidden refs): never served."""
    with server.client() as api:
        auth = ("bot", tokens["bot"])
        for path in ("HEAD", "config", "info/refs", "objects/info/packs", "hooks/pre-receive"):
            r = api.get(f"/git/{repo}.git/{path}", auth=auth)
            assert r.status_code in (400, 404), (path, r.status_code)
            assert "smart HTTP only" in r.text
        r = api.get(f"/git/{repo}.git/info/refs", params={"service": "git-upload-pack"}, auth=auth)
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/x-git-upload-pack-advertisement"


def test_a_large_push_streams_through_and_clones_back(server: GateServer, repo, clone, tmp_path):
    """Over 1 MiB git sends the pack chunked, without Content-Length: streamed to git as is."""
    w = clone("dana")
    w.git("checkout", "-q", "-b", "feature/big")
    blob = os.urandom(6 * 1024 * 1024).hex()  # 12 MB of incompressible text
    sha = w.commit({"big.txt": blob}, "A big file")
    push = w.push("feature/big")
    assert push.returncode == 0, push.stderr
    assert opened(push.stderr)
    assert bare_ref(server.bare(repo), "refs/heads/feature/big") == sha
    again = clone("mo", "big")
    again.git("checkout", "-q", "feature/big")
    assert (again.path / "big.txt").read_text() == blob


def test_unknown_repository_is_404(server: GateServer, tokens, tmp_path):
    env = git_env(tmp_path / "home")
    proc = subprocess.run(
        ["git", "ls-remote", server.clone_url("nope", "bot", tokens["bot"])], env=env, capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert "no repository named 'nope'" in proc.stderr


# -- changes from branch pushes -----------------------------------------------------------


def test_branch_push_opens_a_change_and_later_pushes_add_patchsets(server: GateServer, repo, clone):
    w = clone("bot")
    w.git("checkout", "-q", "-b", "feature/login")
    first = w.commit({"login.py": "def login():\n    return True\n"}, "Add login")
    push = w.push("feature/login")
    assert push.returncode == 0, push.stderr
    number = opened(push.stderr)
    change = server.change(number)
    assert change["state"] == "open"
    assert (change["repo"], change["target_branch"], change["source_ref"]) == (repo, "main", "refs/heads/feature/login")
    assert (change["author"], change["last_pusher"], change["patchset"]) == ("bot", "bot", 1)
    assert change["head_sha"] == first
    assert change["subject"] == "Add login"
    assert bare_ref(server.bare(repo), f"refs/changes/{number}/head") == first

    second = w.commit({"login.py": "def login():\n    return False\n"}, "Tighten login")
    push = w.push("feature/login")
    assert push.returncode == 0, push.stderr
    assert f"change {number} updated: patchset 2" in push.stderr
    change = server.change(number)
    assert (change["patchset"], change["head_sha"]) == (2, second)
    assert [p["commit"] for p in change["patchsets"]] == [first, second]

    # A force-push (rewritten history) is a new patchset of the same change.
    w.git("commit", "-q", "--amend", "-m", "Tighten login (amended)")
    third = w.git("rev-parse", "HEAD")
    push = w.push("--force", "feature/login")
    assert push.returncode == 0, push.stderr
    change = server.change(number)
    assert (change["patchset"], change["head_sha"]) == (3, third)
    assert bare_ref(server.bare(repo), f"refs/changes/{number}/head") == third
    assert len([c for c in server.changes(repo) if c["source_ref"] == "refs/heads/feature/login"]) == 1


def test_a_second_pusher_becomes_last_pusher_not_author(server: GateServer, repo, clone):
    agent = clone("bot")
    agent.git("checkout", "-q", "-b", "feature/shared")
    agent.commit({"shared.py": "A = 1\n"}, "Shared start")
    number = opened(agent.push("feature/shared").stderr)
    human = clone("dana")
    human.git("checkout", "-q", "-b", "feature/shared", "origin/feature/shared")
    human.commit({"shared.py": "A = 2\n"}, "Human follow-up")
    assert human.push("feature/shared").returncode == 0
    change = server.change(number)
    assert (change["author"], change["last_pusher"], change["patchset"]) == ("bot", "dana", 2)
    assert [p["pusher"] for p in change["patchsets"]] == ["bot", "dana"]


def test_deleting_a_branch_abandons_its_change(server: GateServer, repo, clone):
    w = clone("dana")
    w.git("checkout", "-q", "-b", "feature/dropme")
    w.commit({"drop.txt": "x\n"}, "To be dropped")
    number = opened(w.push("feature/dropme").stderr)
    push = w.push("--delete", "feature/dropme")
    assert push.returncode == 0, push.stderr
    assert f"change {number} abandoned" in push.stderr
    assert server.change(number)["state"] == "abandoned"
    # Pushing the branch again opens a new change.
    again = opened(w.push("feature/dropme").stderr)
    assert again != number


def test_a_branch_with_nothing_new_opens_no_change(server: GateServer, repo, clone):
    w = clone("dana")
    before = len(server.changes(repo))
    push = w.push("origin/main:refs/heads/feature/empty")
    assert push.returncode == 0, push.stderr
    assert "nothing that is not already on main" in push.stderr
    assert len(server.changes(repo)) == before


# -- changes from refs/for ------------------------------------------------------------------


def test_refs_for_opens_a_change_and_removes_the_magic_ref(server: GateServer, repo, clone):
    w = clone("dana")
    sha = w.commit({"gerrit.txt": "one\n"}, "Gerrit style")
    push = w.push("HEAD:refs/for/main")
    assert push.returncode == 0, push.stderr
    number = opened(push.stderr)
    refs = bare_refs(server.bare(repo))
    assert refs[f"refs/changes/{number}/head"] == sha
    assert not [r for r in refs if r.startswith(("refs/for/", "refs/mergegate/"))], refs
    change = server.change(number)
    assert (change["source_ref"], change["target_branch"], change["author"]) == ("refs/for/main", "main", "dana")
    assert change["change_id"] is None
    # Without a Change-Id the next push to refs/for/main is a new change.
    w.commit({"gerrit.txt": "two\n"}, "Another one")
    again = opened(w.push("HEAD:refs/for/main").stderr)
    assert again != number
    listed = w.git("ls-remote", "origin")
    assert "refs/for/" not in listed and "refs/mergegate/" not in listed


def test_change_id_trailer_updates_the_open_change(server: GateServer, repo, clone):
    change_id = "I" + "4b1d" * 10
    w = clone("bot")
    w.commit({"cid.txt": "v1\n"}, f"With a Change-Id\n\nChange-Id: {change_id}")
    number = opened(w.push("HEAD:refs/for/main").stderr)
    assert server.change(number)["change_id"] == change_id

    (w.path / "cid.txt").write_text("v2\n")
    w.git("commit", "-q", "-a", "--amend", "-m", f"With a Change-Id (v2)\n\nChange-Id: {change_id}")
    v2 = w.git("rev-parse", "HEAD")
    push = w.push("HEAD:refs/for/main")
    assert push.returncode == 0, push.stderr
    assert f"change {number} updated: patchset 2" in push.stderr
    change = server.change(number)
    assert (change["patchset"], change["head_sha"]) == (2, v2)
    assert bare_ref(server.bare(repo), f"refs/changes/{number}/head") == v2

    # The same commit again: no new patchset.
    w.commit({"noise.txt": "x\n"}, f"Unrelated\n\nChange-Id: {'I' + 'f' * 40}")
    w.git("reset", "-q", "--hard", v2)
    push = w.push("HEAD:refs/for/main")
    assert "no new changes" in push.stderr
    assert server.change(number)["patchset"] == 2


def test_refs_for_rules(server: GateServer, repo, clone):
    w = clone("dana")
    w.commit({"x.txt": "x\n"}, "Somewhere")
    push = w.push("HEAD:refs/for/nowhere")
    assert push.returncode != 0
    assert "there is no branch 'nowhere'" in push.stderr
    push = w.push("origin/main:refs/for/main")
    assert push.returncode != 0
    assert "no new changes" in push.stderr


# -- protected branches -------------------------------------------------------------------


@pytest.mark.parametrize("who", ["dana", "mo", "admin", "bot", "rootbot"])
def test_push_to_main_is_refused_for_everyone(server: GateServer, repo, clone, who):
    w = clone(who)
    before = bare_ref(server.bare(repo), "refs/heads/main")
    w.commit({f"{who}.txt": "sneaky\n"}, f"{who} tries main")
    for args in (["HEAD:main"], ["--force", "HEAD:refs/heads/main"]):
        push = w.push(*args)
        assert push.returncode != 0
        assert PROTECTED_MESSAGE in push.stderr
        assert "pre-receive hook declined" in push.stderr
        assert bare_ref(server.bare(repo), "refs/heads/main") == before
    refused = [e for e in server.audit("push.refused") if e["agent_id"] == who]
    assert refused, f"no audit entry for {who}'s refused push"
    entry = refused[0]
    assert entry["details"]["ref"] == "refs/heads/main"
    assert entry["details"]["repo"] == repo
    assert entry["outcome"] == "refused"
    assert "nobody pushes to a protected branch, admins included" in entry["details"]["reason"]
    assert "main" in entry["policy_applied"]


def test_protected_patterns_deletion_tags_and_server_refs(server: GateServer, repo, clone):
    w = clone("admin")
    main = bare_ref(server.bare(repo), "refs/heads/main")
    w.commit({"r.txt": "r\n"}, "Release work")
    cases = {
        ("HEAD:refs/heads/release/1.0",): "refs/heads/release/1.0 is protected",
        ("HEAD:master",): "refs/heads/master is protected",
        ("--delete", "main"): "refs/heads/main is protected; it cannot be deleted",
        ("HEAD:refs/tags/v1.0",): "tags cannot be pushed",
        ("--force", "HEAD:refs/changes/1/head"): "refs/changes/ is written by the server only",
        ("HEAD:refs/mergegate/incoming/1/0",): "internal to the server",
        ("HEAD:refs/notes/commits",): "only branches (refs/heads/...) and refs/for/<branch> may be pushed",
    }
    for args, message in cases.items():
        push = w.push(*args)
        assert push.returncode != 0, args
        assert message in push.stderr, (args, push.stderr)
    refs = bare_refs(server.bare(repo))
    assert refs["refs/heads/main"] == main
    assert not [r for r in refs if r.startswith(("refs/tags/", "refs/heads/release/", "refs/notes/"))]
    assert "refs/heads/master" not in refs


def test_one_refused_ref_refuses_the_whole_push(server: GateServer, repo, clone):
    w = clone("mo")
    w.commit({"both.txt": "b\n"}, "Two refs at once")
    push = w.push("HEAD:refs/heads/feature/ok", "HEAD:main")
    assert push.returncode != 0
    assert "the whole push was refused" in push.stderr
    assert bare_ref(server.bare(repo), "refs/heads/feature/ok") is None


def test_pushing_to_the_bare_repository_directly_is_refused(server: GateServer, repo, clone):
    """On the server machine, bypassing HTTP: the hook finds no server context and refuses."""
    w = clone("dana")
    w.commit({"local.txt": "l\n"}, "Local bypass")
    proc = w.run_git("push", str(server.bare(repo)), "HEAD:refs/heads/feature/bypass")
    assert proc.returncode != 0
    assert "accepts pushes only through the mergegate server" in proc.stderr
    proc = w.run_git("push", str(server.bare(repo)), "HEAD:main")
    assert proc.returncode != 0
    assert bare_ref(server.bare(repo), "refs/heads/feature/bypass") is None


# -- policy from the default branch --------------------------------------------------------


def _source_repo(path: Path, files: dict[str, str]) -> Path:
    env = git_env(path.parent / "home-src")
    path.mkdir(parents=True)
    for args in (["init", "-q", "-b", "main"],):
        subprocess.run(["git", *args], cwd=path, env=env, check=True)
    for rel, text in files.items():
        (path / rel).write_text(text)
    subprocess.run(["git", "add", "-A"], cwd=path, env=env, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "base"], cwd=path, env=env, check=True)
    return path


def test_policy_adds_protected_branches_but_cannot_remove_the_servers(server: GateServer, tokens, tmp_path):
    policy = "gate:\n  protected_branches: ['prod/*']\n"
    source = _source_repo(tmp_path / "src", {".mergegate.yml": policy, "README": "hi\n"})
    info = server.create_repo("withpolicy", source=str(source))
    assert info["default_branch"] == "main"
    w = Workdir(server, "withpolicy", "dana", tokens["dana"], tmp_path / "w")
    w.commit({"p.txt": "p\n"}, "Prod work")
    push = w.push("HEAD:refs/heads/prod/eu")
    assert push.returncode != 0
    assert "refs/heads/prod/eu is protected" in push.stderr
    assert PROTECTED_MESSAGE in w.push("HEAD:main").stderr  # the server's patterns still apply
    assert w.push("HEAD:refs/heads/feature/fine").returncode == 0
    entry = next(e for e in server.audit("push.refused") if e["details"]["ref"] == "refs/heads/prod/eu")
    assert "main:.mergegate.yml" in entry["policy_applied"]


def test_an_invalid_policy_fails_closed(server: GateServer, tokens, tmp_path):
    source = _source_repo(tmp_path / "src", {".mergegate.yml": "gate: [unclosed\n", "README": "hi\n"})
    server.create_repo("badpolicy", source=str(source))
    w = Workdir(server, "badpolicy", "dana", tokens["dana"], tmp_path / "w")
    w.commit({".mergegate.yml": "gate:\n  required_approvals: 1\n"}, "Fix the policy")
    push = w.push("HEAD:refs/heads/feature/anything")
    assert push.returncode != 0
    assert "the protected-branch list cannot be read" in push.stderr
    assert "invalid YAML" in push.stderr
    assert PROTECTED_MESSAGE in w.push("HEAD:main").stderr
    # The fix can still be proposed as a change.
    fix = w.push("HEAD:refs/for/main")
    assert fix.returncode == 0, fix.stderr
    assert opened(fix.stderr)


def test_concurrent_pushes_each_get_their_change(server: GateServer, repo, clone):
    workdirs = []
    for i in range(6):
        w = clone("bot" if i % 2 else "dana", f"conc{i}")
        w.commit({f"conc{i}.txt": f"{i}\n"}, f"Concurrent {i}")
        workdirs.append((w, f"HEAD:refs/heads/feature/conc{i}" if i < 3 else "HEAD:refs/for/main"))
    with ThreadPoolExecutor(len(workdirs)) as pool:
        pushes = list(pool.map(lambda wa: wa[0].push(wa[1]), workdirs))
    for push in pushes:
        # Two pushes to refs/for/main at the same instant may collide on the ref lock;
        # git reports it and the client retries. Everything that landed must be a change.
        assert push.returncode == 0 or "failed to update ref" in push.stderr or "lock" in push.stderr, push.stderr
    server.wait_idle()
    landed = [w.git("rev-parse", "HEAD") for (w, _), p in zip(workdirs, pushes, strict=True) if p.returncode == 0]
    heads = {c["head_sha"] for c in server.changes(repo)}
    assert set(landed) <= heads
    assert len([p for p in pushes if p.returncode == 0]) >= 4
    refs = bare_refs(server.bare(repo))
    assert not [r for r in refs if r.startswith(("refs/for/", "refs/mergegate/"))], refs
    with server.admin() as api:
        assert api.get("/api/audit/verify").json()["ok"]


# -- comments and the audit chain -------------------------------------------------------------


def test_an_agent_may_comment(server: GateServer, repo, clone, tokens):
    w = clone("bot")
    w.git("checkout", "-q", "-b", "feature/commented")
    w.commit({"c.txt": "c\n"}, "Commented")
    number = opened(w.push("feature/commented").stderr)
    with server.client(tokens["bot"]) as api:
        r = api.post(f"/api/changes/{number}/comments", json={"body": "ran the tests: green"})
        assert r.status_code == 201, r.text
        assert r.json()["author"] == "bot"
        assert api.post(f"/api/changes/{number}/comments", json={"body": "  "}).status_code == 422
        assert api.post("/api/changes/999999/comments", json={"body": "x"}).status_code == 404
    with server.client() as anonymous:
        assert anonymous.post(f"/api/changes/{number}/comments", json={"body": "x"}).status_code == 401
    comments = server.change(number)["comments"]
    assert [(c["author"], c["body"], c["patchset"]) for c in comments] == [("bot", "ran the tests: green", 1)]


def test_every_change_event_is_audited_and_the_chain_verifies(server: GateServer, repo):
    server.wait_idle()
    opened_entries = server.audit("change.opened")
    numbers = {e["details"]["change"] for e in opened_entries}
    assert {c["number"] for c in server.changes()} <= numbers
    assert server.audit("push.accepted")
    with server.admin() as api:
        report = api.get("/api/audit/verify").json()
        assert report["ok"], report
        assert report["entries"] >= len(opened_entries)
        assert api.get("/api/events", params={"status": "failed"}).json() == []
