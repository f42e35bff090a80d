"""Leased work: inbox events too long to handle inside the transaction that claims them.

A check or an agent run takes seconds to minutes; inside a transaction it would hold
SQLite's write lock that long. So ``LeasedWorker`` handles such an event (its subclasses:
``service.checks.CheckWorker``, ``service.agent_runs.AgentRunWorker``) in three steps:

1. claim it and push its ``available_at`` past the lease (``LEASE_S``), in one short
   transaction; the claim counts an attempt;
2. ``work`` it outside any transaction, while a helper thread renews the lease every
   ``lease_s / 3``: a live worker's lease never runs out, a dead server's does;
3. ``record`` the outcome in one short transaction, tried ``RECORD_TRIES`` times with
   back-off (a lock timeout, a serialization failure, a lost connection).

If step 3 still fails, or anything else (``KeyboardInterrupt`` included) stops the
worker between claim and record, it gives the event back at once, due again after
``RELEASE_BACKOFF_S`` (doubling with its attempts), instead of leaving it leased with
nothing done. Renewing and giving back both check the claim count: a slow worker whose
lease ran out never touches an event another worker has claimed since.

Fail closed: ``work`` turns an event claimed more than ``MAX_ATTEMPTS`` times into its
fail-closed outcome (an ``error``), and if even that cannot be recorded the event is
parked as ``failed`` (audited).

At start, on SQLite (one server per database file) every lease of the worker's kind is
released at once: they were its previous run's. On PostgreSQL several servers may share
the database and leases have no owner, so a start leaves them to run out rather than
take a live peer's work.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from mergegate.service.events import audit_failure, describe
from mergegate.store import events as event_store
from mergegate.store.db import Database

#: How long a claimed event stays out of other workers' reach unless its worker renews
#: it (every lease_s / 3 while it works): what a dead server's work waits at most.
LEASE_S = 60.0
#: An event claimed more than this many times without a recorded outcome fails closed.
MAX_ATTEMPTS = 3
#: Tries of a record transaction before the event is given back; the first pause
#: between tries (doubling each time).
RECORD_TRIES = 4
RECORD_BACKOFF_S = 0.25
#: A given-back event is due again after this (doubling with its attempts).
RELEASE_BACKOFF_S = 1.0

Outcome = TypeVar("Outcome")


@dataclass(frozen=True)
class Limits:
    max_attempts: int
    record_tries: int
    record_backoff_s: float
    release_backoff_s: float


@dataclass(frozen=True)
class Claimed:
    event_id: int
    #: The claim count when this worker claimed it: the lease is ours while it still is.
    attempts: int
    payload: dict[str, Any]
    last_error: str | None = None


class LeasedWorker(Generic[Outcome]):
    """``workers`` threads that claim, work and record events of ``kind``.

    A subclass gives ``work`` (outside any transaction; it must return the fail-closed
    outcome once ``claimed.attempts > limits().max_attempts``) and ``record`` (one write
    transaction that finishes the event, unless it is no longer pending)."""

    kind: ClassVar[str]
    #: What the events are, in logs ("check", "agent run").
    noun: ClassVar[str]

    def __init__(self, db: Database, log: logging.Logger, *, workers: int, poll_s: float, lease_s: float):
        self.db = db
        self.log = log
        self.workers = workers
        self.poll_s = poll_s
        self.lease_s = lease_s
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._threads: list[threading.Thread] = []

    def limits(self) -> Limits:
        # Read at each use, so that a test can shorten the pauses.
        return Limits(MAX_ATTEMPTS, RECORD_TRIES, RECORD_BACKOFF_S, RELEASE_BACKOFF_S)

    def work(self, claimed: Claimed) -> Outcome:
        raise NotImplementedError

    def record(self, claimed: Claimed, outcome: Outcome) -> None:
        raise NotImplementedError

    def before_claim(self) -> None:
        """Runs before each claim (agent runs expire overdue approvals here)."""

    def recorded(self, claimed: Claimed) -> None:
        """Runs after ``record`` committed (agent runs remove an ended run's workspace)."""

    # -- threads ------------------------------------------------------------------------------

    def start(self) -> None:
        if self.db.is_sqlite:  # see the module's docstring: PostgreSQL leases just run out
            with self.db.write() as session:
                released = event_store.release_leases(session, (self.kind,))
            if released:
                self.log.warning("resuming %d %s(s) left running by the previous start", released, self.noun)
        for i in range(self.workers):
            thread = threading.Thread(target=self._run, name=f"mergegate-{self.kind}-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.wake()
        for thread in self._threads:
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                while not self._stop.is_set() and self.process_one():
                    pass
            except Exception:
                self.log.exception("the %s worker hit an error; retrying", self.noun)
            with self._wake:
                self._wake.wait(self.poll_s)

    # -- one event ------------------------------------------------------------------------------

    def process_one(self) -> bool:
        """Claim, work and record one due event; False when there was none."""
        self.before_claim()
        claimed = self._claim()
        if claimed is None:
            return False
        try:
            with self._lease_kept(claimed):
                outcome = self.work(claimed)
                self._retrying(
                    lambda: self.record(claimed, outcome), f"storing {self.noun} event {claimed.event_id}'s outcome"
                )
        except BaseException as exc:
            # Whatever stopped us between claim and record, the event must not sit leased
            # for lease_s with nothing done: give it back now.
            self._give_back(claimed, exc)
            if not isinstance(exc, Exception):
                raise  # the thread is being torn down: let it go
            return True
        self.recorded(claimed)
        return True

    def _claim(self) -> Claimed | None:
        # Look before locking: an idle poll then costs a read, not SQLite's write lock.
        with self.db.read() as session:
            if not event_store.due(session, self.kind):
                return None
        with self.db.write() as session:
            event = event_store.claim(session, kinds=(self.kind,))
            if event is None:
                return None
            event_store.lease(session, event, self.lease_s)
            return Claimed(event.id, event.attempts, event_store.payload(event), event.last_error)

    @contextmanager
    def _lease_kept(self, claimed: Claimed) -> Iterator[None]:
        """Renew the claim's lease until the block ends (and no renewal is in flight)."""
        done = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(claimed, done), name=f"mergegate-lease-{claimed.event_id}", daemon=True
        )
        renewer.start()
        try:
            yield
        finally:
            done.set()
            renewer.join()

    def _renew(self, claimed: Claimed, done: threading.Event) -> None:
        while not done.wait(self.lease_s / 3):
            try:
                with self.db.write() as session:
                    if not event_store.renew(session, claimed.event_id, claimed.attempts, self.lease_s):
                        return  # recorded, or claimed again by another worker: no longer ours
            except Exception as exc:  # the next tick tries again; the lease has time left
                self.log.warning(
                    "%s event %s: renewing its lease failed: %s", self.noun, claimed.event_id, describe(exc)
                )

    def _retrying(self, fn: Callable[[], None], what: str) -> None:
        limits = self.limits()
        for attempt in range(limits.record_tries):
            try:
                return fn()
            except Exception as exc:  # a lock timeout, a serialization failure, a lost connection
                if attempt == limits.record_tries - 1:
                    raise
                self.log.warning("%s failed (%s); trying again", what, describe(exc))
                time.sleep(limits.record_backoff_s * 2**attempt)

    def _give_back(self, claimed: Claimed, exc: BaseException) -> None:
        error = f"no result recorded: {describe(exc)}"[:4000]
        self.log.warning("%s event %s: %s; giving it back", self.noun, claimed.event_id, error)
        try:
            self._retrying(lambda: self._release(claimed, error), f"giving back {self.noun} event {claimed.event_id}")
        except Exception:
            self.log.exception("%s event %s stays leased until its lease runs out", self.noun, claimed.event_id)

    def _release(self, claimed: Claimed, error: str) -> None:
        limits = self.limits()
        with self.db.write() as session:
            event = event_store.lock(session, claimed.event_id)
            if event is None or event.status != "pending" or event.attempts != claimed.attempts:
                return  # recorded after all, or another worker claimed it since (its lease ran out)
            if claimed.attempts > limits.max_attempts:
                # Not even the fail-closed outcome could be stored: park the event (audited).
                event_store.fail(session, event, error)
                audit_failure(session, event)
            else:
                delay = limits.release_backoff_s * 2 ** (claimed.attempts - 1)
                event_store.release(session, event, error, delay_s=delay)
