"""The event dispatcher: one handler per event kind, run by a worker in the server.

The contract every handler keeps (the checks, review and merge handlers built on this
will rely on it):

- **Stored first.** Whatever produces work (a push, later a review or a CI result)
  writes an ``events`` row and commits it before anything acts on it.
- **One transaction.** The dispatcher claims the event and runs its handler inside one
  write transaction, then marks it done *in that transaction*: the handler's database
  effects and the ``done`` status commit together. A crash anywhere leaves the event
  pending, and it runs again at the next start.
- **Idempotent.** Effects outside the database (git refs) must be safe to repeat, and a
  handler must recognise work it already did (e.g. a patchset row keyed by event + ref).
- **Failures are retried, then parked.** An exception rolls the handler back (a
  savepoint), counts an attempt and retries with back-off; after ``max_attempts`` the
  event is ``failed``, with the error stored and audited. Unknown kinds fail at once.
  When the transaction itself fails (marking the event done, the commit, a lost
  connection), the attempt is counted the same way in a transaction of its own, so an
  event that can never be committed does not block the events behind it.

Ordering: one worker handles events in id order, which keeps pushes to one change in
sequence. Several server processes on PostgreSQL share the inbox (``SKIP LOCKED``) and
would then need per-repository ordering; that is future work.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from mergegate.forge.local.repos import Forge
from mergegate.store import audit_db
from mergegate.store import events as store
from mergegate.store.db import Database
from mergegate.store.models import EventRow

log = logging.getLogger("mergegate.events")


@dataclass(frozen=True)
class HandlerContext:
    forge: Forge
    public_url: str
    #: The merge method a change gets unless it asks for another (``server.toml``).
    merge_method: str = "merge"


Handler = Callable[[Session, EventRow, dict[str, Any], HandlerContext], dict[str, Any]]

_HANDLERS: dict[str, Handler] = {}


def handles(kind: str) -> Callable[[Handler], Handler]:
    """Register the handler of ``kind`` (one per kind)."""

    def register(fn: Handler) -> Handler:
        if kind in _HANDLERS and _HANDLERS[kind] is not fn:
            raise ValueError(f"event kind {kind!r} already has a handler")
        _HANDLERS[kind] = fn
        return fn

    return register


def handlers() -> dict[str, Handler]:
    # Importing the modules that define handlers registers them.
    from mergegate.service import changes, merge, refresh  # noqa: F401

    return dict(_HANDLERS)


#: Kinds that are not handled inside a claiming transaction (see ``service.checks``,
#: ``service.agent_runs``).
LEASED_KINDS = ("check", "agent_run")


def describe(exc: BaseException) -> str:
    """An exception as one stored line: its type and message, no traceback."""
    return "".join(traceback.format_exception_only(exc)).strip()


def audit_failure(session: Session, event: EventRow) -> None:
    """Audit that ``event`` was parked as ``failed``: nothing will act on it again."""
    audit_db.append(
        session,
        action="event.failed",
        outcome="error",
        agent_id="mergegate",
        details={"event": event.id, "kind": event.kind, "attempts": event.attempts, "error": event.last_error},
    )


class Dispatcher:
    def __init__(self, db: Database, context: HandlerContext, *, max_attempts: int = 5, backoff_s: float = 1.0):
        self.db = db
        self.context = context
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.handlers = handlers()

    def process_one(self) -> bool:
        """Handle the oldest due pending event; False when there was none."""
        event_id = None
        try:
            with self.db.write() as session:
                event = store.claim(session, exclude=LEASED_KINDS)
                if event is None:
                    return False
                event_id = event.id
                self._handle(session, event)
                return True
        except Exception as exc:
            if event_id is None:
                raise  # nothing was claimed (e.g. the database is unreachable): nothing to count
            # The transaction itself failed (at the event's ``done`` write, at commit, or
            # a lost connection), after the handler's own errors were dealt with. Left
            # alone, the event would stay first in line and be retried at once, forever,
            # holding up every later event: count the attempt and back off instead.
            self._failed_transaction(event_id, exc)
            return True

    def _handle(self, session: Session, event: EventRow) -> None:
        handler = self.handlers.get(event.kind)
        if handler is None:
            store.record_failure(
                session, event, f"no handler for event kind {event.kind!r}", max_attempts=1, backoff_s=0
            )
            audit_failure(session, event)
            return
        try:
            with session.begin_nested():
                outcome = handler(session, event, store.payload(event), self.context)
        except Exception as exc:
            log.warning("event %s (%s) failed: %s", event.id, event.kind, exc)
            if store.record_failure(
                session, event, describe(exc), max_attempts=self.max_attempts, backoff_s=self.backoff_s
            ):
                audit_failure(session, event)
            return
        store.finish(session, event, outcome)

    def _failed_transaction(self, event_id: int, exc: Exception) -> None:
        log.warning("event %s: its transaction failed: %s", event_id, exc)
        with self.db.write() as session:  # if this fails too, the worker logs it and polls again
            event = store.lock(session, event_id)
            if event is None or event.status != "pending":
                return  # the commit went through after all (the error came after it)
            error = f"the event's transaction failed: {describe(exc)}"
            if store.record_failure(session, event, error, max_attempts=self.max_attempts, backoff_s=self.backoff_s):
                audit_failure(session, event)

    def drain(self, limit: int = 1000) -> int:
        done = 0
        while done < limit and self.process_one():
            done += 1
        return done


class Worker:
    """Runs the dispatcher in a background thread of the server process.

    It drains at start (resuming whatever a previous run left pending), then whenever
    ``wake()`` is called or every ``poll_s`` seconds, which picks up events written by
    other processes (the git hooks).
    """

    def __init__(self, dispatcher: Dispatcher, poll_s: float = 0.2):
        self.dispatcher = dispatcher
        self.poll_s = poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mergegate-events", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                while not self._stop.is_set() and self.dispatcher.process_one():
                    pass
            except Exception:
                log.exception("the event worker hit an error; retrying")
            self._wake.wait(self.poll_s)
            self._wake.clear()
