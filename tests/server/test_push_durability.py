"""A push can never land without becoming a change (issue 4, item 10).

pre-receive records a push intent before git moves a ref, and refuses the push if it
cannot; post-receive confirms it; whatever cuts a push short in between (the hook or the
whole server killed), the server settles the intent from the refs when the push's
request ends or at its next start. Real server over HTTP, real git client, SQLite and
PostgreSQL.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from mergegate.forge.local import hooks, intents
from mergegate.store import events
from mergegate.store.db import Database
from tests.server import test_crash
from tests.server.conftest import GateServer, bare_ref
from tests.server.gate_helpers import CLEAN_CODE, clone, git_bare, make_repo, people, unique, wait_checked, wait_for
from tests.server.test_crash import restart

#: A server of its own per test: these tests kill and restart it.
gate = test_crash.gate

QUIET = {".mergegate.yml": "agents:\n  test-coverage: {enabled: false}\n"}


def _restart_with_crash(gate: GateServer, monkeypatch, where: str | None) -> None:
    gate.stop()
    if where is None:
        monkeypatch.delenv(hooks.CRASH_ENV, raising=False)
    else:
        monkeypatch.setenv(hooks.CRASH_ENV, where)
    restart(gate)


def _setup(gate: GateServer, tmp_path, monkeypatch, crash: str | None):
    who = people(gate, unique("-"))
    repo = make_repo(gate, tmp_path, unique("durable"), QUIET)
    w = clone(gate, repo, who["bot"], tmp_path)
    w.git("checkout", "-q", "-b", "agent/x")
    head = w.commit({"x.py": CLEAN_CODE}, "x")
    if crash is not None:
        _restart_with_crash(gate, monkeypatch, crash)
    return who, repo, w, head


def _the_change(gate: GateServer, repo: str, head: str, pusher: str) -> int:
    [change] = wait_for(lambda: gate.changes(repo), 60, "the change")
    assert (change["source_ref"], change["head_sha"]) == ("refs/heads/agent/x", head)
    assert (change["author"], change["last_pusher"]) == (pusher, pusher)
    n = change["number"]
    opened = [a for a in gate.audit("change.opened") if a["details"].get("change") == n]
    assert len(opened) == 1 and opened[0]["agent_id"] == pusher, opened
    accepted = [a for a in gate.audit("push.accepted") if a["details"].get("repo") == repo]
    assert len(accepted) == 1 and accepted[0]["agent_id"] == pusher, accepted
    assert accepted[0]["details"]["recovered"], accepted
    return n


def test_a_push_whose_server_died_before_recording_it_opens_its_change_at_restart(
    gate: GateServer,
    tmp_path,
    monkeypatch,
):
    who, repo, w, head = _setup(gate, tmp_path, monkeypatch, "post-receive.server")
    w.push("HEAD:refs/heads/agent/x")  # the server, git and the hook die once the ref moved
    wait_for(lambda: gate.proc.poll() is not None, 30, "the server to die")
    assert bare_ref(gate.bare(repo), "refs/heads/agent/x") == head  # landed, unrecorded but for the intent
    db = Database(gate.database_url, pooled=False)
    try:
        with db.read() as session:
            [intent] = intents.held(session)
            assert events.payload(intent)["pusher"] == who["bot"].name
    finally:
        db.dispose()
    _restart_with_crash(gate, monkeypatch, None)
    n = _the_change(gate, repo, head, who["bot"].name)
    st = wait_checked(gate, n)
    assert st["landing"]["commit"], st
    # Settling again (another restart) opens nothing twice.
    gate.stop()
    restart(gate)
    gate.wait_idle(60)
    assert [c["number"] for c in gate.changes(repo)] == [n]


def test_a_push_whose_hook_died_is_recorded_when_its_request_ends(gate: GateServer, tmp_path, monkeypatch):
    who, repo, w, head = _setup(gate, tmp_path, monkeypatch, "post-receive")
    w.push("HEAD:refs/heads/agent/x")  # post-receive dies before it stores anything
    assert bare_ref(gate.bare(repo), "refs/heads/agent/x") == head
    n = _the_change(gate, repo, head, who["bot"].name)
    wait_checked(gate, n)


def _refuse_intents(db: Database, refuse: bool) -> None:
    name = f"refuse_intents_{db.dialect}"
    with db.write() as session:
        if not refuse:
            session.execute(text(f"DROP TRIGGER {name}" + ("" if db.is_sqlite else " ON events")))
        elif db.is_sqlite:
            session.execute(
                text(
                    f"CREATE TRIGGER {name} BEFORE INSERT ON events WHEN NEW.kind = 'push.intent' "
                    "BEGIN SELECT RAISE(ABORT, 'intents refused'); END"
                )
            )
        else:
            session.execute(
                text(
                    f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'intents refused'; END $$"
                )
            )
            session.execute(
                text(
                    f"CREATE TRIGGER {name} BEFORE INSERT ON events FOR EACH ROW "
                    f"WHEN (NEW.kind = 'push.intent') EXECUTE FUNCTION {name}()"
                )
            )


def test_a_push_that_cannot_be_recorded_is_refused_and_lands_nothing(gate: GateServer, tmp_path, monkeypatch):
    who, repo, w, head = _setup(gate, tmp_path, monkeypatch, None)
    db = Database(gate.database_url, pooled=False)
    try:
        _refuse_intents(db, True)
        refused = w.push("HEAD:refs/heads/agent/x")
        assert refused.returncode != 0
        assert "the push could not be recorded" in refused.stderr, refused.stderr
        assert bare_ref(gate.bare(repo), "refs/heads/agent/x") is None
        assert gate.changes(repo) == []
        _refuse_intents(db, False)
    finally:
        db.dispose()
    again = w.push("HEAD:refs/heads/agent/x")  # the client retries
    assert again.returncode == 0, again.stderr
    assert "opened" in again.stderr, again.stderr
    [change] = gate.changes(repo)
    assert (change["head_sha"], change["author"]) == (head, who["bot"].name)


@pytest.mark.parametrize("moved", [False, True])
def test_an_intent_is_settled_from_the_refs_once(gate: GateServer, tmp_path, monkeypatch, moved: bool):
    """An intent left behind (git refused its ref after pre-receive, or the client died)
    is dropped at start, audited; one whose ref moved is confirmed, and only once."""
    who, repo, w, head = _setup(gate, tmp_path, monkeypatch, None)
    gate.stop()
    if moved:
        # What git did before the server died (a fetch runs no receive hooks).
        git_bare(gate, repo, "fetch", "-q", str(w.path), f"{head}:refs/heads/agent/x")
    update = {"ref": "refs/heads/agent/x", "old": "0" * 40, "new": head}
    db = Database(gate.database_url, pooled=False)
    try:
        event = intents.record(db, intents.payload(repo, who["bot"].name, [update], "p1"))
    finally:
        db.dispose()
    restart(gate)
    gate.wait_idle(60)
    if moved:
        _the_change(gate, repo, head, who["bot"].name)
    else:
        assert gate.changes(repo) == []
        [dropped] = [a for a in gate.audit("push.dropped") if a["details"]["event"] == event]
        assert dropped["agent_id"] == who["bot"].name and "none of its refs moved" in dropped["details"]["reason"]
    gate.stop()
    restart(gate)
    gate.wait_idle(60)
    assert len(gate.changes(repo)) == int(moved)
