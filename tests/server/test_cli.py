"""The CLI over the API, as a user runs it: ``python -m mergegate user|token|repo|change``
against a running server, with ``--json``, clear errors and documented exit codes
(0 ok, 1 refused, 2 a wrong request or missing configuration, 3 server unreachable)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server.conftest import GateServer, Workdir, free_port, git_env


@pytest.fixture(scope="module")
def backend() -> str:
    return "sqlite"  # the CLI only speaks HTTP; the database is covered elsewhere


def cli(*args: str, token: str | None, url: str, cwd: Path | None = None, config: Path | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MERGEGATE_")}
    env |= {"COLUMNS": "250", "NO_COLOR": "1", "MERGEGATE_CONFIG": str(config or "/nonexistent/config.toml")}
    if url:
        env["MERGEGATE_URL"] = url
    if token:
        env["MERGEGATE_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "mergegate", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def one_line(text: str) -> str:
    return " ".join(text.split())


def test_user_token_repo_and_change_commands(server: GateServer, tmp_path: Path):
    admin = server.admin_token
    made = cli("user", "add", "robo", "--kind", "agent", "--json", token=admin, url=server.url)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout) | {"created_at": None} == {
        "name": "robo",
        "kind": "agent",
        "role": "contributor",
        "email": None,
        "created_at": None,
        "created_by": "admin",
    }
    made = cli("user", "add", "hana", "--kind", "human", "--role", "maintainer", "--email", "hana@example.com",
               token=admin, url=server.url)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "created human hana (maintainer)"

    minted = cli("token", "create", "robo", "--label", "ci", token=admin, url=server.url)
    assert minted.returncode == 0, minted.stderr
    robo = minted.stdout.strip()
    assert re.fullmatch(r"mgt_[0-9a-f]{12}_\S{43}", robo), "stdout is exactly the token"
    assert "shown this once" in minted.stderr

    listed = cli("user", "list", "--json", token=admin, url=server.url)
    assert {"admin", "robo", "hana"} <= {u["name"] for u in json.loads(listed.stdout)}

    # A repository imported from a local path given relative to the caller's directory.
    source = tmp_path / "src"
    env = git_env(tmp_path / "home")
    subprocess.run(["git", "init", "-q", "-b", "trunk", str(source)], env=env, check=True)
    (source / "README").write_text("hi\n")
    subprocess.run(["git", "add", "-A"], cwd=source, env=env, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "first"], cwd=source, env=env, check=True)
    created = cli("repo", "create", "imported", "--from", "src", "--json", token=admin, url=server.url, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    repo = json.loads(created.stdout)
    assert (repo["name"], repo["default_branch"]) == ("imported", "trunk")
    assert repo["clone_url"] == f"{server.url}/git/imported.git"

    w = Workdir(server, "imported", "robo", robo, tmp_path / "w")
    assert (w.path / "README").read_text() == "hi\n"
    w.git("checkout", "-q", "-b", "feature/cli")
    w.commit({"x.txt": "x\n"}, "From the CLI test")
    assert w.push("feature/cli").returncode == 0

    changes = cli("change", "list", "--repo", "imported", "--json", token=robo, url=server.url)
    assert changes.returncode == 0, changes.stderr
    (change,) = json.loads(changes.stdout)
    assert (change["target_branch"], change["author"], change["subject"]) == ("trunk", "robo", "From the CLI test")
    text = cli("change", "list", token=robo, url=server.url).stdout
    assert "feature/cli → trunk" in text

    number = str(change["number"])
    commented = cli("change", "comment", number, "looks fine to me", token=robo, url=server.url)
    assert commented.returncode == 0, commented.stderr
    shown = cli("change", "show", number, "--json", token=robo, url=server.url)
    detail = json.loads(shown.stdout)
    assert [c["body"] for c in detail["comments"]] == ["looks fine to me"]
    assert detail["patchsets"][0]["pusher"] == "robo"
    human = cli("change", "show", number, token=robo, url=server.url).stdout
    assert f"change {number} (open) in imported: From the CLI test" in human


def test_refusals_and_errors_have_clear_messages_and_exit_codes(server: GateServer):
    admin = server.admin_token
    cli("user", "add", "robo2", "--kind", "agent", token=admin, url=server.url)
    robo = cli("token", "create", "robo2", token=admin, url=server.url).stdout.strip()

    refused = cli("user", "add", "sneaky", "--kind", "human", "--role", "admin", token=robo, url=server.url)
    assert refused.returncode == 1
    assert "refused (403): robo2 is an agent; agents can never manage principals" in one_line(refused.stderr)
    assert "Traceback" not in refused.stderr

    refused = cli("token", "create", "admin", token=robo, url=server.url)
    assert refused.returncode == 1
    assert "refused (403)" in refused.stderr

    bad = cli("change", "list", token="mgt_0123456789ab_" + "x" * 43, url=server.url)
    assert bad.returncode == 1
    assert "not authenticated (401)" in bad.stderr

    missing = cli("change", "show", "99999", token=robo, url=server.url)
    assert missing.returncode == 2
    assert "no change 99999" in missing.stderr

    wrong = cli("user", "add", "x", "--kind", "robot", token=admin, url=server.url)
    assert wrong.returncode == 2
    assert "--kind must be human or agent" in one_line(wrong.stderr)

    no_token = cli("change", "list", token=None, url=server.url)
    assert no_token.returncode == 2
    assert "no API token" in no_token.stderr

    unreachable = cli("change", "list", token=robo, url=f"http://127.0.0.1:{free_port()}")
    assert unreachable.returncode == 3
    assert "cannot reach the mergegate server" in one_line(unreachable.stderr)
    assert "Traceback" not in unreachable.stderr


def test_the_config_file_supplies_url_and_token(server: GateServer, tmp_path: Path):
    config = tmp_path / "config.toml"
    config.write_text(f'url = "{server.url}"\ntoken = "{server.admin_token}"\n')
    shown = cli("user", "show", "--json", token=None, url="", config=config)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["name"] == "admin"
    config.write_text("url = [\n")
    broken = cli("user", "show", token=None, url="", config=config)
    assert broken.returncode == 2
    assert str(config) in one_line(broken.stderr)
