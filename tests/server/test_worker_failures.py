"""When the database refuses a worker's transaction: the check worker and the event
dispatcher, in-process, on SQLite and PostgreSQL, with the failures made real by the
database itself (a trigger that refuses the write, SQLite's write lock held by another
connection), never by replacing our own code.

- a check whose result cannot be stored is retried, then given back at once (not left
  leased for ``LEASE_S``) and run again; once the database accepts it, it is recorded
  once;
- a check whose success can never be stored ends as ``error`` (fail closed), and one
  whose every result is refused is parked as ``failed`` and audited, its run still
  ``pending`` (which blocks the merge);
- an event whose transaction fails after its handler succeeded counts an attempt and
  backs off, instead of being retried at once forever ahead of every later event;
- a hosted agent run whose transactions the database refuses is given back at once (not
  left leased), continues once they are accepted, and is parked (audited) after
  ``MAX_ATTEMPTS`` claims if they never are.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from mergegate.core.principals import PrincipalKind, Role
from mergegate.forge.local import hooks
from mergegate.forge.local.refrules import RefUpdate
from mergegate.forge.local.repos import Forge
from mergegate.service import agent_runs, checks, leased
from mergegate.service.agent_runs import AgentRunWorker
from mergegate.service.authz import Actor
from mergegate.service.checks import CHECK_KIND, CheckWorker
from mergegate.service.events import Dispatcher, HandlerContext, handles
from mergegate.service.leased import LeasedWorker
from mergegate.store import audit_db, events, migrate
from mergegate.store import db as db_module
from mergegate.store import principals as principal_store
from mergegate.store import repos as repo_store
from mergegate.store.db import Database
from mergegate.store.models import AgentRunRow, CheckRunRow, EventRow
from tests.server.conftest import fresh_database

#: Only the two cheap agents: the checks here are about the worker, not the analysers.
POLICY = (
    "agents:\n"
    "  test-coverage: {enabled: false}\n"
    "  security-scan: {enabled: false}\n"
    "  secrets: {enabled: false}\n"
    "  llm-review: {enabled: false}\n"
)
REPO = "failures"
#: A trigger condition: any result written over a pending run.
ANY_RESULT = "OLD.status = 'pending' AND NEW.status <> 'pending'"


def _git(*args: str, git_dir: Path, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    base = {"GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent", "PATH": "/usr/bin:/bin"}
    base |= {f"GIT_{r}_{f}": v for r in ("AUTHOR", "COMMITTER") for f, v in (("NAME", "T"), ("EMAIL", "t@x"))}
    proc = subprocess.run(
        ["git", "--git-dir", str(git_dir), *args],
        env=base | (env or {}),
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


def _commit(bare: Path, parent: str, files: dict[str, str], message: str, index: Path) -> str:
    """A commit on top of ``parent`` adding ``files``, made with plumbing (no hooks run)."""
    env = {"GIT_INDEX_FILE": str(index)}
    _git("read-tree", parent, git_dir=bare, env=env)
    for name, body in files.items():
        blob = _git("hash-object", "-w", "--stdin", git_dir=bare, stdin=body)
        _git("update-index", "--add", "--cacheinfo", f"100644,{blob},{name}", git_dir=bare, env=env)
    tree = _git("write-tree", git_dir=bare, env=env)
    return _git("commit-tree", tree, "-p", parent, "-m", message, git_dir=bare)


@pytest.fixture(scope="module")
def db(backend: str, tmp_path_factory) -> Iterator[Database]:
    with fresh_database(backend, tmp_path_factory.mktemp(f"failures-{backend}")) as url:
        database = Database(url)
        migrate.upgrade(database)
        yield database  # pytest resumes fixtures after failures too
        database.dispose()


@pytest.fixture(scope="module")
def forge(db: Database, tmp_path_factory) -> Forge:
    root = tmp_path_factory.mktemp("forge")
    hooks.install(root / "hooks")
    forge = Forge(root / "repos", root / "hooks")
    _repo(db, forge, REPO, POLICY, root)
    with db.write() as session:
        _principal(session, "pusher", PrincipalKind.AGENT, Role.CONTRIBUTOR)
    return forge


def _repo(db: Database, forge: Forge, name: str, policy: str, root: Path) -> None:
    """A repository whose main holds ``policy``, known to the gate."""
    forge.create(name)
    bare = forge.path(name)
    main = _commit(bare, "refs/heads/main", {".mergegate.yml": policy}, "policy", root / "index")
    _git("update-ref", "refs/heads/main", main, git_dir=bare)
    with db.write() as session:
        repo_store.create(session, name=name, default_branch="main", created_by="test")


def _principal(session, name: str, kind: PrincipalKind, role: Role):
    return principal_store.create(session, name=name, kind=kind, role=role, email=None, created_by=None)


@pytest.fixture
def context(forge: Forge) -> HandlerContext:
    return HandlerContext(forge, "http://gate")


def _open_change(
    db: Database, forge: Forge, context: HandlerContext, branch: str, tmp_path: Path, repo: str = REPO
) -> list[int]:
    """Push ``branch`` (one new file) through the real push handler; the runs it queued."""
    bare = forge.path(repo)
    sha = _commit(bare, "refs/heads/main", {f"{branch}.py": "VALUE = 1\n"}, branch, tmp_path / "index")
    _git("update-ref", f"refs/heads/{branch}", sha, git_dir=bare)
    update = {"ref": f"refs/heads/{branch}", "old": "0" * 40, "new": sha}
    with db.write() as session:
        event_id = events.enqueue(session, "push", {"repo": repo, "pusher": "pusher", "updates": [update]}).id
    Dispatcher(db, context).drain()
    with db.read() as session:
        push = events.get(session, event_id)
        assert push.status == "done", push.last_error
        [change] = events.result(push)["changes"]
        runs = session.execute(select(CheckRunRow.id).where(CheckRunRow.change_id == change["number"])).scalars()
        return list(runs)


# -- the database refusing a write: a trigger, on either database ---------------------------------


def _refuse(db: Database, name: str, table: str, when: str, message: str) -> None:
    """Make the database refuse ``UPDATE``s of ``table`` rows matching ``when`` (on
    PostgreSQL as a serialization failure, the error a busy database really gives)."""
    with db.write() as session:
        if db.is_sqlite:
            session.execute(
                text(
                    f"CREATE TRIGGER {name} BEFORE UPDATE ON {table} WHEN {when} "
                    f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
                )
            )
        else:
            session.execute(
                text(
                    f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
                    f"$$ BEGIN RAISE EXCEPTION '{message}' USING ERRCODE = '40001'; END $$"
                )
            )
            session.execute(
                text(
                    f"CREATE TRIGGER {name} BEFORE UPDATE ON {table} FOR EACH ROW WHEN ({when}) "
                    f"EXECUTE FUNCTION {name}()"
                )
            )


def _allow(db: Database, name: str, table: str) -> None:
    with db.write() as session:
        if db.is_sqlite:
            session.execute(text(f"DROP TRIGGER {name}"))
        else:
            session.execute(text(f"DROP TRIGGER {name} ON {table}"))
            session.execute(text(f"DROP FUNCTION {name}()"))


@pytest.fixture
def fast_retries(monkeypatch) -> None:
    """Pauses of milliseconds instead of seconds; the logic is the same."""
    monkeypatch.setattr(checks, "RECORD_BACKOFF_S", 0.01)
    monkeypatch.setattr(checks, "RELEASE_BACKOFF_S", 0.01)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _state(db: Database, run_id: int) -> tuple[CheckRunRow, EventRow]:
    with db.read() as session:
        run = session.get(CheckRunRow, run_id)
        return run, session.get(EventRow, run.event_id)


def _completed(db: Database, run_id: int) -> list[dict]:
    with db.read() as session:
        return [
            a for a in audit_db.recent(session, action="check.completed", limit=1000) if a["details"]["run"] == run_id
        ]


def _process_until_recorded(worker: CheckWorker, db: Database, run_id: int, timeout: float = 60) -> None:
    _process_until_settled(worker, lambda: _state(db, run_id)[1], timeout)


def _process_until_settled(worker: LeasedWorker, event: Callable[[], EventRow], timeout: float = 60) -> None:
    """Let ``worker`` process events until ``event()`` is no longer pending."""
    deadline = time.monotonic() + timeout
    while event().status == "pending":
        assert time.monotonic() < deadline, event().last_error
        if not worker.process_one():
            time.sleep(0.05)


def test_a_result_the_database_refuses_is_given_back_at_once_and_recorded_later(db, forge, context, tmp_path):
    runs = _open_change(db, forge, context, "refused-once", tmp_path)
    assert len(runs) == 2  # the head and the landing commit
    worker = CheckWorker(db, forge, workers=1)
    trigger = f"refuse_results_{db.dialect}"
    _refuse(db, trigger, "check_runs", ANY_RESULT, "results are refused")
    try:
        started = time.monotonic()
        assert worker.process_one() is True
        took = time.monotonic() - started
    finally:
        _allow(db, trigger, "check_runs")
    [given_back] = [(r, e) for r, e in map(lambda i: _state(db, i), runs) if e.attempts == 1]
    run, event = given_back
    # Tried RECORD_TRIES times with back-off, then given back: due again within seconds, not LEASE_S.
    assert took >= sum(checks.RECORD_BACKOFF_S * 2**i for i in range(checks.RECORD_TRIES - 1))
    assert (run.status, event.status) == ("pending", "pending")
    assert "results are refused" in event.last_error
    assert _aware(event.available_at) - datetime.now(UTC) < timedelta(seconds=checks.RELEASE_BACKOFF_S + 1)
    assert _completed(db, run.id) == []

    for run_id in runs:
        _process_until_recorded(worker, db, run_id)
    run, event = _state(db, given_back[0].id)
    assert (run.status, event.status, event.attempts) == ("success", "done", 2)
    assert len(_completed(db, run.id)) == 1


def _checks_under_refusal(db, forge, context, tmp_path, branch: str, when: str, message: str) -> list[int]:
    """Open a change and work its checks off while the database refuses ``when``."""
    runs = _open_change(db, forge, context, branch, tmp_path)
    worker = CheckWorker(db, forge, workers=1)
    trigger = f"refuse_{branch.replace('-', '_')}_{db.dialect}"
    _refuse(db, trigger, "check_runs", when, message)
    try:
        for run_id in runs:
            _process_until_recorded(worker, db, run_id)
    finally:
        _allow(db, trigger, "check_runs")
    return runs


def test_a_success_that_cannot_be_stored_ends_as_an_error_never_a_success(db, forge, context, tmp_path, fast_retries):
    when = "NEW.status = 'success'"
    runs = _checks_under_refusal(db, forge, context, tmp_path, "no-success", when, "success cannot be stored")
    for run_id in runs:
        run, event = _state(db, run_id)
        assert (run.status, event.status, event.attempts) == ("error", "done", checks.MAX_ATTEMPTS + 1)
        assert "without a recorded result" in run.summary and "success cannot be stored" in run.summary
        [audited] = _completed(db, run_id)
        assert audited["outcome"] == "error"


def test_a_check_whose_every_result_is_refused_is_parked_and_audited(db, forge, context, tmp_path, fast_retries):
    runs = _checks_under_refusal(db, forge, context, tmp_path, "no-result", ANY_RESULT, "nothing can be stored")
    with db.read() as session:
        failures = {a["details"]["event"]: a for a in audit_db.recent(session, action="event.failed", limit=1000)}
    for run_id in runs:
        run, event = _state(db, run_id)
        # Never a result it did not get: the run stays pending, which the gate counts as not green.
        assert (run.status, event.status, event.attempts) == ("pending", "failed", checks.MAX_ATTEMPTS + 1)
        assert "nothing can be stored" in event.last_error
        assert failures[event.id]["details"]["kind"] == CHECK_KIND
        assert _completed(db, run_id) == []


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # only this backend has it
def test_a_check_result_waiting_for_sqlites_write_lock_is_retried_then_given_back(
    db, forge, context, tmp_path, monkeypatch
):
    runs = _open_change(db, forge, context, "locked", tmp_path)
    # A worker whose connections give up on the write lock after 0.2 s instead of 30 s.
    monkeypatch.setattr(db_module, "SQLITE_BUSY_TIMEOUT_MS", 200)
    impatient = Database(db.url)
    worker = CheckWorker(impatient, forge, workers=1)
    gave_back, claimed, release = threading.Event(), threading.Event(), threading.Event()

    class _Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "giving it back" in record.getMessage():
                gave_back.set()

    def hold_the_write_lock() -> None:
        # Wait (reading: WAL readers never wait) until a check is claimed, then hold the lock
        # while it runs, so its result transaction cannot get in.
        path = db.url.removeprefix("sqlite:///")
        while not claimed.is_set():
            if any(event.attempts == 1 for _, event in map(lambda i: _state(db, i), runs)):
                claimed.set()
            time.sleep(0.01)
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        release.wait(60)
        conn.execute("ROLLBACK")
        conn.close()

    watch = _Watch()
    logging.getLogger("mergegate.checks").addHandler(watch)
    holder = threading.Thread(target=hold_the_write_lock, daemon=True)
    holder.start()
    try:
        processing = threading.Thread(target=worker.process_one, daemon=True)
        processing.start()
        assert gave_back.wait(60), "the worker never gave the check back"
        release.set()  # the lock is free again: the lease can be given back now
        processing.join(60)
    finally:
        release.set()
        claimed.set()
        holder.join(10)
        logging.getLogger("mergegate.checks").removeHandler(watch)
    [(run, event)] = [(r, e) for r, e in map(lambda i: _state(db, i), runs) if e.attempts == 1]
    assert (run.status, event.status) == ("pending", "pending")
    assert "database is locked" in event.last_error
    assert _aware(event.available_at) - datetime.now(UTC) < timedelta(seconds=checks.RELEASE_BACKOFF_S + 1)
    for run_id in runs:
        _process_until_recorded(worker, impatient, run_id)
    assert _state(db, run.id)[0].status == "success"
    impatient.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # only this backend has it
def test_a_result_transaction_whose_connection_is_killed_is_retried_on_a_new_one(db, forge, context, tmp_path):
    runs = _open_change(db, forge, context, "killed", tmp_path)
    with db.write() as session:
        # The first result written kills its own server connection (pg_terminate_backend),
        # mid-transaction; a sequence counts the writes outside any transaction.
        session.execute(text("CREATE SEQUENCE kill_once"))
        session.execute(
            text(
                "CREATE FUNCTION kill_once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF nextval('kill_once') = 1 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF; "
                "RETURN NEW; END $$"
            )
        )
        session.execute(
            text(f"CREATE TRIGGER kill_once BEFORE UPDATE ON check_runs FOR EACH ROW WHEN ({ANY_RESULT}) "
                 "EXECUTE FUNCTION kill_once()")
        )  # fmt: skip
    try:
        worker = CheckWorker(db, forge, workers=1)
        assert worker.process_one() is True
    finally:
        _allow(db, "kill_once", "check_runs")
        with db.write() as session:
            writes = session.execute(text("SELECT last_value FROM kill_once")).scalar_one()
            session.execute(text("DROP SEQUENCE kill_once"))
    assert writes == 2  # killed once, then written on a new connection
    [(run, event)] = [(r, e) for r, e in map(lambda i: _state(db, i), runs) if e.status == "done"]
    assert (run.status, event.attempts) == ("success", 1)  # no second run was needed
    assert len(_completed(db, run.id)) == 1
    for run_id in runs:
        _process_until_recorded(worker, db, run_id)


# -- leases: renewed while a check runs, run out when its server is gone -------------------------


def _leased(db: Database, event_id: int) -> bool:
    with db.read() as session:
        event = session.get(EventRow, event_id)
        return event.status == "pending" and _aware(event.available_at) > datetime.now(UTC)


def test_a_running_checks_lease_is_renewed_and_a_dead_workers_runs_out(db, forge, context, tmp_path):
    runs = _open_change(db, forge, context, "renewed", tmp_path)
    holder = CheckWorker(db, forge, workers=1, lease_s=0.6)
    claimed = holder._claim()
    assert claimed is not None and claimed.payload["run"] in runs
    with holder._lease_kept(claimed):  # the check "runs" for 2 s, more than three leases long
        for _ in range(10):
            time.sleep(0.2)
            assert _leased(db, claimed.event_id)
    # Its worker is gone (nothing recorded, nothing given back): the lease runs out on its own.
    time.sleep(0.7)
    assert not _leased(db, claimed.event_id)
    other = CheckWorker(db, forge, workers=1)
    for run_id in runs:
        _process_until_recorded(other, db, run_id)
    run, event = _state(db, claimed.payload["run"])
    assert (run.status, event.status, event.attempts) == ("success", "done", 2)


def test_a_start_takes_back_leases_on_sqlite_only(db, forge, context, tmp_path):
    # SQLite: one server per database file, so a lease found at start is its previous
    # run's. PostgreSQL may be shared by several servers: a start must not take a live
    # peer's check (leases have no owner); a dead server's leases run out instead.
    runs = _open_change(db, forge, context, "peer", tmp_path)
    live = CheckWorker(db, forge, workers=1)
    claimed = live._claim()
    assert claimed is not None and _leased(db, claimed.event_id)
    CheckWorker(db, forge, workers=0).start()
    assert _leased(db, claimed.event_id) is (not db.is_sqlite)
    live._record(claimed, live._execute(claimed))  # the live worker finishes its check
    for run_id in runs:
        _process_until_recorded(live, db, run_id)
    assert _state(db, claimed.payload["run"])[1].attempts == 1  # run once, by its holder


# -- the event dispatcher ---------------------------------------------------------------------


def test_an_event_whose_transaction_fails_backs_off_and_does_not_block_the_ones_behind_it(db, forge, context):
    poison, fine = f"test.uncommittable.{db.dialect}", f"test.fine.{db.dialect}"

    @handles(poison)
    def _poison(session, event, payload, ctx):
        audit_db.append(session, action="test.uncommittable", outcome="ok", agent_id="x")
        return {"ok": True}

    @handles(fine)
    def _fine(session, event, payload, ctx):
        return {"ok": True}

    trigger = f"refuse_done_{db.dialect}"
    _refuse(db, trigger, "events", f"NEW.status = 'done' AND NEW.kind = '{poison}'", "cannot mark it done")
    try:
        with db.write() as session:
            first = events.enqueue(session, poison, {}).id
            second = events.enqueue(session, fine, {}).id
        dispatcher = Dispatcher(db, context, max_attempts=3, backoff_s=30)
        assert dispatcher.process_one() is True  # the poison event: its transaction fails
        assert dispatcher.process_one() is True  # the next one is not held up behind it
        with db.read() as session:
            stuck, done = events.get(session, first), events.get(session, second)
            assert (stuck.status, stuck.attempts) == ("pending", 1)
            assert "cannot mark it done" in stuck.last_error
            assert _aware(stuck.available_at) > datetime.now(UTC) + timedelta(seconds=20)
            assert done.status == "done"
            assert audit_db.recent(session, action="test.uncommittable") == []  # rolled back with it
        # Without back-off it is tried max_attempts times, then parked and audited.
        dispatcher.backoff_s = 0
        with db.write() as session:
            events.get(session, first).available_at = datetime.now(UTC)
        dispatcher.drain()
        with db.read() as session:
            stuck = events.get(session, first)
            failures = [a for a in audit_db.recent(session, action="event.failed") if a["details"]["event"] == first]
        assert (stuck.status, stuck.attempts) == ("failed", 3)
        assert len(failures) == 1
    finally:
        _allow(db, trigger, "events")


# -- the post-receive hook -----------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # only this backend has it
def test_a_push_waits_out_a_write_lock_held_past_the_busy_timeout(db, forge, context, tmp_path, monkeypatch, capsys):
    # The benchmark's lost changes: at 100 concurrent pushes on SQLite, a post-receive hook
    # waited past its busy timeout for the write lock, and the push (its ref already moved)
    # was never stored, so no change ever opened for it.
    bare = forge.path(REPO)
    sha = _commit(bare, "refs/heads/main", {"late.py": "VALUE = 2\n"}, "late", tmp_path / "index")
    _git("update-ref", "refs/heads/late", sha, git_dir=bare)  # what receive-pack did before the hook
    monkeypatch.setattr(db_module, "SQLITE_BUSY_TIMEOUT_MS", 200)
    holder = sqlite3.connect(db.url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    unlock = threading.Timer(1.5, lambda: holder.execute("ROLLBACK"))
    unlock.start()
    ctx = hooks.HookContext(db.url, REPO, "pusher", "agent", "contributor", (), "http://gate", wait_s=0)
    started = time.monotonic()
    try:
        assert hooks.post_receive(ctx, [RefUpdate("refs/heads/late", "0" * 40, sha)]) == 0
    finally:
        unlock.join()
        holder.close()
    assert time.monotonic() - started >= 1.0  # it really waited for the lock, several busy timeouts long
    said = capsys.readouterr().err
    assert "could not be recorded" not in said and "the push was recorded (event" in said, said
    Dispatcher(db, context).drain()
    with db.read() as session:
        opened = [
            a for a in audit_db.recent(session, action="change.opened") if a["details"]["source"] == "refs/heads/late"
        ]
        accepted = [
            a for a in audit_db.recent(session, action="push.accepted") if a["details"]["updates"][0]["new"] == sha
        ]
    assert len(opened) == 1 and len(accepted) == 1


# -- hosted agent runs: leased the same way ---------------------------------------------------

RUNS_REPO = "runs"
RUNS_POLICY = POLICY + '  reader:\n    tools: "Read"\n    sandbox: read-only\n'


@pytest.fixture(scope="module")
def runs(db: Database, forge: Forge, tmp_path_factory) -> tuple[Actor, Path]:
    """A repository whose base policy declares the ``reader`` agent; a maintainer to start
    runs, the agent principal they act as, and the data directory of their workspaces."""
    root = tmp_path_factory.mktemp("runs")
    _repo(db, forge, RUNS_REPO, RUNS_POLICY, root)
    with db.write() as session:
        _principal(session, "reader", PrincipalKind.AGENT, Role.CONTRIBUTOR)
        maintainer = _principal(session, "maint", PrincipalKind.HUMAN, Role.MAINTAINER)
        actor = Actor.of(maintainer)
    return actor, root / "data"


@pytest.fixture
def fast_leases(monkeypatch) -> None:
    monkeypatch.setattr(leased, "RECORD_BACKOFF_S", 0.01)
    monkeypatch.setattr(leased, "RELEASE_BACKOFF_S", 0.01)


def _start_run(db, forge, context, runs, branch: str, tmp_path: Path) -> int:
    actor, data_dir = runs
    check_runs = _open_change(db, forge, context, branch, tmp_path, repo=RUNS_REPO)
    with db.read() as session:
        change = session.get(CheckRunRow, check_runs[0]).change_id
    calls = [{"tool": "Read", "args": {"path": f"{branch}.py"}}]
    started = agent_runs.start(
        db, forge, data_dir, 3600, actor, agent_runs.StartRequest(change=change, agent="reader", calls=calls)
    )
    return started["id"]


def _run_state(db: Database, run_id: int) -> tuple[AgentRunRow, EventRow]:
    with db.read() as session:
        run = session.get(AgentRunRow, run_id)
        return run, session.get(EventRow, run.event_id)


def _advance_until_done(worker: AgentRunWorker, db: Database, run_id: int) -> None:
    _process_until_settled(worker, lambda: _run_state(db, run_id)[1])


def test_an_agent_run_whose_transactions_are_refused_is_given_back_and_continues(
    db, forge, context, runs, tmp_path, fast_leases
):
    run_id = _start_run(db, forge, context, runs, "run-refused-once", tmp_path)
    worker = AgentRunWorker(db, forge, runs[1])
    trigger = f"refuse_run_moves_{db.dialect}"
    # Neither progress ("running") nor any outcome, the fail-closed "error" included.
    _refuse(db, trigger, "agent_runs", "NEW.status <> OLD.status", "runs cannot move")
    try:
        assert worker.process_one() is True
    finally:
        _allow(db, trigger, "agent_runs")
    run, event = _run_state(db, run_id)
    # Given back at once (due again within seconds, not LEASE_S), the run untouched.
    assert (run.status, event.status, event.attempts) == ("queued", "pending", 1)
    assert "runs cannot move" in event.last_error
    assert _aware(event.available_at) - datetime.now(UTC) < timedelta(seconds=1)
    _advance_until_done(worker, db, run_id)
    run, event = _run_state(db, run_id)
    assert (run.status, event.status, event.attempts) == ("done", "done", 2), run.reason
    assert [r["status"] for r in json.loads(run.state)["results"]] == ["allowed"]


def test_an_agent_run_that_can_never_be_stored_is_parked_and_audited(db, forge, context, runs, tmp_path, fast_leases):
    run_id = _start_run(db, forge, context, runs, "run-never", tmp_path)
    worker = AgentRunWorker(db, forge, runs[1])
    trigger = f"refuse_run_never_{db.dialect}"
    _refuse(db, trigger, "agent_runs", "NEW.status <> OLD.status", "runs never move")
    try:
        _advance_until_done(worker, db, run_id)
    finally:
        _allow(db, trigger, "agent_runs")
    run, event = _run_state(db, run_id)
    assert (run.status, event.status, event.attempts) == ("queued", "failed", leased.MAX_ATTEMPTS + 1)
    assert "runs never move" in event.last_error
    with db.read() as session:
        [parked] = [a for a in audit_db.recent(session, action="event.failed") if a["details"]["event"] == event.id]
    assert parked["details"]["kind"] == agent_runs.RUN_KIND
