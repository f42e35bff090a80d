"""The gate's database: one engine, explicit read and write transactions, migrations.

SQLite is the embedded default and PostgreSQL the choice for many nodes; both go
through SQLAlchemy 2 so the repository functions are written once.

Why write transactions are explicit: on SQLite a deferred transaction that reads and
then writes can fail with ``SQLITE_BUSY_SNAPSHOT`` when another process (a git hook)
committed in between, and no busy timeout helps. ``Database.write()`` therefore starts
SQLite transactions with ``BEGIN IMMEDIATE``, taking the write lock up front, which also
serialises audit appends so the hash chain cannot fork. PostgreSQL write transactions
get the same semantics from one transaction-scoped advisory lock taken first: writers
lock rows in different orders (the audit chain head, the gate's sequence counter, merge
locks), and one lock taken before all of them makes deadlocks impossible. Writes are
short (checks run outside transactions), so serialising them costs little; row locks
(``SELECT … FOR UPDATE``) and unique constraints still guard each invariant on their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

#: How long a SQLite connection waits for the write lock before giving up (ms). Hooks
#: and the server share one file, so waiting is normal; failing fast is not useful.
SQLITE_BUSY_TIMEOUT_MS = 30_000

_WRITE = "mergegate_write"
#: pg_advisory_xact_lock key shared by every mergegate write transaction ("mgwrite").
_PG_WRITE_LOCK = 0x6D67_7772_6974_65


class DatabaseError(RuntimeError):
    """The database cannot be used as configured; the message says why."""


def normalize_url(url: str) -> str:
    """Accept the URLs people type: ``postgresql://`` means psycopg 3 (the driver we ship)."""
    url = url.strip()
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid database URL>"


class Database:
    """An engine plus the two kinds of transaction the code needs.

    ``pooled=False`` is for short-lived processes (git hooks): no pool to keep alive.
    """

    def __init__(self, url: str, *, pooled: bool = True):
        self.url = normalize_url(url)
        try:
            parsed = make_url(self.url)
        except ArgumentError:
            raise DatabaseError(f"not a database URL: {self.url!r}") from None
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise DatabaseError(f"unsupported database {self.dialect!r}: use sqlite:///PATH or postgresql://…")
        kwargs: dict = {}
        if not pooled:
            kwargs["poolclass"] = NullPool
        if self.dialect == "sqlite":
            if not parsed.database or parsed.database == ":memory:":
                raise DatabaseError("SQLite needs a file (sqlite:///PATH): hooks and the server share it")
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        else:
            kwargs["pool_pre_ping"] = True
        try:
            self.engine: Engine = create_engine(self.url, **kwargs)
        except Exception as exc:  # missing driver, bad options
            raise DatabaseError(f"cannot use {redact(self.url)}: {exc}") from None
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine)
        else:
            _configure_postgresql(self.engine)
        self._write_engine = self.engine.execution_options(**{_WRITE: True})

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction that may write: committed on success, rolled back on any error."""
        session = Session(self._write_engine, expire_on_commit=False, autoflush=True)
        session.info[_WRITE] = True
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction (never committed).

        Closed, not rolled back, at the end: a rollback would expire the loaded rows, and
        callers use them after the block (closing still ends the transaction).
        """
        session = Session(self.engine, expire_on_commit=False)
        try:
            yield session
        finally:
            session.close()

    def write_connection(self):
        """A connection whose transaction takes the write lock (for migrations)."""
        return self._write_engine.begin()

    def dispose(self) -> None:
        self.engine.dispose()


def is_write_session(session: Session) -> bool:
    return bool(session.info.get(_WRITE))


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Take transaction control away from pysqlite so "begin" below decides the mode.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        immediate = connection.get_execution_options().get(_WRITE)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _configure_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        if connection.get_execution_options().get(_WRITE):
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_WRITE_LOCK})")
