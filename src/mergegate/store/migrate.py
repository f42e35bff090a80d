"""Apply the schema migrations shipped inside the package (Alembic, run in-process).

The server upgrades its database at every start, so an upgrade of mergegate never
needs a separate step; running it twice is a no-op.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from mergegate.store.db import Database, DatabaseError, redact

MIGRATIONS = Path(__file__).parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head() or ""


def current_revision(db: Database) -> str | None:
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(db: Database) -> None:
    """Bring the database to the latest schema, or say precisely why not."""
    config = _config()
    known = {s.revision for s in ScriptDirectory.from_config(config).walk_revisions()}
    try:
        current = current_revision(db)
    except Exception as exc:
        raise DatabaseError(f"cannot connect to {redact(db.url)}: {_first_line(exc)}") from None
    if current is not None and current not in known:
        raise DatabaseError(
            f"{redact(db.url)} is at schema revision {current!r}, which this mergegate does not know: "
            "it was created by a newer version"
        )
    try:
        with db.write_connection() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except DatabaseError:
        raise
    except Exception as exc:
        raise DatabaseError(f"migrating {redact(db.url)} failed: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
