"""The store and the event dispatcher in-process, on SQLite and PostgreSQL: the schema the
migrations build is the models' schema, concurrent audit appends cannot fork the chain,
tampering is detected, the database itself guards kind and the audit log, and event
handling is idempotent, retried and resumable."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from mergegate.core.principals import PrincipalKind, Role
from mergegate.forge.local import hooks
from mergegate.forge.local.repos import Forge
from mergegate.service.events import Dispatcher, HandlerContext, handles
from mergegate.store import audit_db, events, migrate, sequence
from mergegate.store import changes as change_store
from mergegate.store import principals as principal_store
from mergegate.store import repos as repo_store
from mergegate.store.db import Database
from mergegate.store.models import Base
from tests.server.conftest import fresh_database


@pytest.fixture(scope="module")
def db(backend: str, tmp_path_factory) -> Iterator[Database]:
    with fresh_database(backend, tmp_path_factory.mktemp(f"store-{backend}")) as url:
        database = Database(url)
        migrate.upgrade(database)
        try:
            yield database
        finally:
            database.dispose()


def test_migrations_build_exactly_the_models_and_rerun_as_a_no_op(db: Database):
    migrate.upgrade(db)
    assert migrate.current_revision(db) == migrate.head_revision()
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_concurrent_appends_never_fork_the_chain(db: Database):
    def append(n: int) -> None:
        for i in range(15):
            with db.write() as session:
                audit_db.append(session, action="test.concurrent", outcome="ok", agent_id=f"w{n}", details={"i": i})

    threads = [threading.Thread(target=append, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with db.read() as session:
        report = audit_db.verify(session)
        rows = session.execute(text("SELECT seq, prev_hash FROM audit_log ORDER BY seq")).all()
    assert report.ok, report
    assert len(rows) == report.entries >= 120
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    assert len({r.prev_hash for r in rows}) == len(rows)


def test_writers_locking_shared_rows_in_opposite_orders_never_deadlock(db: Database):
    # The push handler appends to the audit chain then takes the next sequence number; the
    # check worker does it the other way round. Row locks alone deadlock on PostgreSQL.
    errors: list[BaseException] = []

    def writer(n: int, audit_first: bool) -> None:
        try:
            for i in range(12):
                with db.write() as session:
                    if audit_first:
                        audit_db.append(session, action="test.order", outcome="ok", agent_id=f"a{n}", details={"i": i})
                        sequence.next_value(session)
                    else:
                        sequence.next_value(session)
                        audit_db.append(session, action="test.order", outcome="ok", agent_id=f"b{n}", details={"i": i})
        except BaseException as exc:  # collected: a deadlock raises in one of the threads
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n, n % 2 == 0)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.read() as session:
        assert audit_db.verify(session).ok


def test_an_append_rolls_back_with_its_transaction(db: Database):
    with db.read() as session:
        before = audit_db.head(session)
    with pytest.raises(RuntimeError), db.write() as session:
        audit_db.append(session, action="test.rollback", outcome="ok", agent_id="x")
        raise RuntimeError("the audited act failed")
    with db.read() as session:
        assert audit_db.head(session) == before
        assert audit_db.verify(session).ok


def test_appends_only_inside_write_transactions(db: Database):
    with db.read() as session, pytest.raises(RuntimeError, match="write"):
        audit_db.append(session, action="test.read", outcome="ok", agent_id="x")


def test_the_database_refuses_to_edit_or_delete_audit_entries(db: Database):
    for statement in ("UPDATE audit_log SET outcome = 'ok' WHERE seq = 1", "DELETE FROM audit_log WHERE seq = 1"):
        with pytest.raises(Exception, match="append-only"), db.write() as session:
            session.execute(text(statement))


def test_the_database_refuses_to_change_a_principals_kind(db: Database):
    with db.write() as session:
        principal_store.create(
            session, name="kindbot", kind=PrincipalKind.AGENT, role=Role.CONTRIBUTOR, email=None, created_by=None
        )
    with pytest.raises(Exception, match="kind is fixed at creation"), db.write() as session:
        session.execute(text("UPDATE principals SET kind = 'human' WHERE name = 'kindbot'"))
    with db.read() as session:
        assert principal_store.get(session, "kindbot").kind == "agent"


def _drop_audit_guards(db: Database) -> None:
    """What an attacker with raw database access would do first."""
    with db.write() as session:
        if db.is_sqlite:
            session.execute(text("DROP TRIGGER audit_log_no_update"))
            session.execute(text("DROP TRIGGER audit_log_no_delete"))
        else:
            session.execute(text("DROP TRIGGER audit_log_append_only ON audit_log"))


def test_tampering_is_detected_even_without_the_guards(db: Database):
    with db.write() as session:
        for i in range(3):
            audit_db.append(session, action="test.tamper", outcome="refused", agent_id="bot", details={"i": i})
    _drop_audit_guards(db)
    with db.read() as session:
        seq, _ = audit_db.head(session)
    # Edit an entry's outcome: its hash no longer matches.
    with db.write() as session:
        session.execute(text("UPDATE audit_log SET outcome = 'ok' WHERE seq = :s"), {"s": seq - 1})
    with db.read() as session:
        report = audit_db.verify(session)
    assert not report.ok and "edited" in report.reason
    with db.write() as session:
        session.execute(text("UPDATE audit_log SET outcome = 'refused' WHERE seq = :s"), {"s": seq - 1})
    with db.read() as session:
        assert audit_db.verify(session).ok
    # Edit the details: also caught.
    with db.write() as session:
        session.execute(text("UPDATE audit_log SET details = :d WHERE seq = :s"), {"d": '{"i":9}', "s": seq - 2})
    with db.read() as session:
        assert not audit_db.verify(session).ok
    with db.write() as session:
        session.execute(text("UPDATE audit_log SET details = :d WHERE seq = :s"), {"d": '{"i":0}', "s": seq - 2})
    # Delete the last entry: the recorded head no longer matches.
    with db.write() as session:
        session.execute(text("DELETE FROM audit_log WHERE seq = :s"), {"s": seq})
    with db.read() as session:
        report = audit_db.verify(session)
    assert not report.ok and "removed from the end" in report.reason


# -- the event dispatcher ----------------------------------------------------------------------


def _git(*args: str, cwd: Path | None = None, git_dir: Path | None = None) -> str:
    cmd = ["git", *(["--git-dir", str(git_dir)] if git_dir else []), *args]
    env = {"GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent", "PATH": "/usr/bin:/bin"}
    env |= {f"GIT_{r}_{f}": v for r in ("AUTHOR", "COMMITTER") for f, v in (("NAME", "T"), ("EMAIL", "t@x"))}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def forge(db: Database, tmp_path_factory) -> Forge:
    root = tmp_path_factory.mktemp("forge")
    hooks.install(root / "hooks")
    forge = Forge(root / "repos", root / "hooks")
    forge.create("dispatch")
    with db.write() as session:
        repo_store.create(session, name="dispatch", default_branch="main", created_by="test")
        principal_store.create(
            session, name="pusher", kind=PrincipalKind.AGENT, role=Role.CONTRIBUTOR, email=None, created_by=None
        )
    return forge


def _commit_on_branch(forge: Forge, branch: str, message: str) -> str:
    bare = forge.path("dispatch")
    main = _git("rev-parse", "refs/heads/main", git_dir=bare)
    tree = _git("rev-parse", "refs/heads/main^{tree}", git_dir=bare)
    sha = _git("commit-tree", tree, "-p", main, "-m", message, git_dir=bare)
    _git("update-ref", f"refs/heads/{branch}", sha, git_dir=bare)
    return sha


def _push_event(db: Database, branch: str, sha: str) -> int:
    update = {"ref": f"refs/heads/{branch}", "old": "0" * 40, "new": sha}
    with db.write() as session:
        return events.enqueue(session, "push", {"repo": "dispatch", "pusher": "pusher", "updates": [update]}).id


def test_a_crash_mid_handler_leaves_the_event_pending_and_the_rerun_does_it_once(db: Database, forge: Forge):
    sha = _commit_on_branch(forge, "feature/crash", "Crash test")
    event_id = _push_event(db, "feature/crash", sha)
    dispatcher = Dispatcher(db, HandlerContext(forge, "http://gate"))

    # Run the handler's effects (git refs included), then "crash" before the commit.
    with pytest.raises(RuntimeError), db.write() as session:
        event = events.claim(session)
        assert event.id == event_id
        dispatcher.handlers["push"](session, event, events.payload(event), dispatcher.context)
        raise RuntimeError("kill -9")
    with db.read() as session:
        assert events.get(session, event_id).status == "pending"
        assert change_store.list_changes(session, state="open") == []

    assert dispatcher.drain() >= 1
    with db.read() as session:
        event = events.get(session, event_id)
        assert event.status == "done"
        opened = [c for c in change_store.list_changes(session) if c.source_ref == "refs/heads/feature/crash"]
    assert len(opened) == 1
    change = opened[0]
    assert (change.head_sha, change.patchset, change.state) == (sha, 1, "open")
    assert _git("rev-parse", f"refs/changes/{change.id}/head", git_dir=forge.path("dispatch")) == sha
    assert json.loads(event.result)["changes"][0]["number"] == change.id
    # Done events are never claimed again.
    assert dispatcher.process_one() is False


def test_failing_handlers_are_retried_then_parked_and_audited(db: Database, forge: Forge):
    calls = []

    kind = f"test.always-fails.{db.dialect}"  # one handler per kind, per process

    @handles(kind)
    def _boom(session, event, payload, ctx):
        calls.append(event.id)
        raise ValueError("handler bug")

    dispatcher = Dispatcher(db, HandlerContext(forge, "http://gate"), max_attempts=3, backoff_s=0)
    with db.write() as session:
        event_id = events.enqueue(session, kind, {}).id
        unknown_id = events.enqueue(session, "test.no-such-kind", {}).id
    dispatcher.drain()
    with db.read() as session:
        event, unknown = events.get(session, event_id), events.get(session, unknown_id)
        failures = audit_db.recent(session, action="event.failed")
    assert calls == [event_id] * 3
    assert (event.status, event.attempts) == ("failed", 3)
    assert "handler bug" in event.last_error
    assert (unknown.status, unknown.attempts) == ("failed", 1)
    assert "no handler" in unknown.last_error
    assert {f["details"]["event"] for f in failures} >= {event_id, unknown_id}


def test_a_failed_attempt_rolls_back_the_handlers_writes(db: Database, forge: Forge):
    kind = f"test.half-written.{db.dialect}"

    @handles(kind)
    def _half(session, event, payload, ctx):
        audit_db.append(session, action="test.half", outcome="ok", agent_id="x")
        raise ValueError("after writing")

    dispatcher = Dispatcher(db, HandlerContext(forge, "http://gate"), max_attempts=1, backoff_s=0)
    with db.write() as session:
        events.enqueue(session, kind, {})
    dispatcher.drain()
    with db.read() as session:
        assert audit_db.recent(session, action="test.half") == []
