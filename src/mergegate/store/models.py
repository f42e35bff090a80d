"""The gate's tables (SQLAlchemy 2 declarative). The migrations create exactly these.

Design notes, so later work keeps the shape:

- ``changes.id`` *is* the change number: numbers are global across repositories (like
  Gerrit), so ``/api/changes/42`` and ``refs/changes/42/head`` are unambiguous.
- ``changes.open_key`` is a uniqueness guard that works on SQLite and PostgreSQL
  alike: ``branch:<ref>`` for a change opened by a branch push, ``cid:<target>:<Change-Id>``
  for one opened through ``refs/for``; ``NULL`` once the change is closed. A unique
  (repo, open_key) means two racing pushes can never open two changes for one branch.
- ``events`` is the durable inbox: every push is stored here before anything acts on
  it, and handlers mark it done in the same transaction as their effects.
- ``audit_log`` holds the hash chain; ``audit_head`` is its single head row, locked by
  each append, and ``prev_hash`` is unique so a fork is impossible even by accident.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite returns naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: use datetime.now(UTC)")
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime}


KINDS = ("human", "agent")
ROLES = ("admin", "maintainer", "contributor")
CHANGE_STATES = ("open", "merged", "abandoned")
EVENT_STATUSES = ("pending", "done", "failed")
MERGE_METHODS = ("merge", "squash", "rebase")
CHECK_STATUSES = ("success", "failure", "error", "skipped", "pending")
#: ``landing``: the gate's check of the commit that would land (the one that counts);
#: ``head``: the gate's informational check of the change's head; ``posted``: a result
#: some principal posted through the API (shown, never counted).
CHECK_ROLES = ("landing", "head", "posted")
REVIEW_STATES = ("approve", "request_changes", "comment")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class PrincipalRow(Base):
    __tablename__ = "principals"
    __table_args__ = (
        CheckConstraint(_in("kind", KINDS), name="ck_principals_kind"),
        CheckConstraint(_in("role", ROLES), name="ck_principals_role"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    #: Fixed at creation: a database trigger refuses any UPDATE that changes it.
    kind: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(16))
    email: Mapped[str | None] = mapped_column(String(254))
    #: ``lower(email)``, unique, so an address names at most one principal.
    email_key: Mapped[str | None] = mapped_column(String(254), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(64))


class TokenRow(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: The non-secret part of the token, used to find the row before comparing hashes.
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id"), index=True)
    #: SHA-256 of the whole token. The token itself is never stored.
    secret_hash: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None] = mapped_column()
    revoked_by: Mapped[str | None] = mapped_column(String(64))


class RepoRow(Base):
    __tablename__ = "repos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    default_branch: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(64))


class ChangeRow(Base):
    __tablename__ = "changes"
    __table_args__ = (
        CheckConstraint(_in("state", CHANGE_STATES), name="ck_changes_state"),
        UniqueConstraint("repo_id", "open_key", name="uq_changes_open_key"),
        Index("ix_changes_repo_state", "repo_id", "state"),
    )

    #: The change number (global across repositories).
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id"))
    target_branch: Mapped[str] = mapped_column(String(200))
    #: What was pushed to open it: ``refs/heads/feature/x`` or ``refs/for/main``.
    source_ref: Mapped[str] = mapped_column(String(255))
    #: Gerrit's ``Change-Id:`` trailer of the first patchset, if it had one.
    change_key: Mapped[str | None] = mapped_column(String(64))
    open_key: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(500), default="")
    head_sha: Mapped[str] = mapped_column(String(64))
    patchset: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[str] = mapped_column(String(16), default="open")
    author_id: Mapped[int] = mapped_column(ForeignKey("principals.id"))
    last_pusher_id: Mapped[int] = mapped_column(ForeignKey("principals.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # -- the gate's facts (revision 0002) ----------------------------------------------
    #: The gate sequence number of the last push (approvals must come after it).
    last_push_seq: Mapped[int | None] = mapped_column(Integer)
    merge_base_sha: Mapped[str | None] = mapped_column(String(64))
    #: The review fingerprint of the current head (``GitRepo.review_fingerprint``).
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    #: The merge method asked for (``None``: the server's default).
    merge_method: Mapped[str | None] = mapped_column(String(16))
    #: The commit that would land, and what it was made from (``None`` while it cannot be made).
    landing_sha: Mapped[str | None] = mapped_column(String(64))
    landing_base_sha: Mapped[str | None] = mapped_column(String(64))
    landing_head_sha: Mapped[str | None] = mapped_column(String(64))
    landing_method: Mapped[str | None] = mapped_column(String(16))
    #: Why no landing commit could be made (a conflict, in words).
    landing_problem: Mapped[str | None] = mapped_column(Text)
    #: The human who asked the gate to merge as soon as every rule is satisfied.
    merge_when_ready_by: Mapped[str | None] = mapped_column(String(64))
    merged_sha: Mapped[str | None] = mapped_column(String(64))
    merged_by: Mapped[str | None] = mapped_column(String(128))
    merged_at: Mapped[datetime | None] = mapped_column()


class PatchsetRow(Base):
    """One push that set a change's head. Reviews will bind to these."""

    __tablename__ = "patchsets"
    __table_args__ = (
        UniqueConstraint("change_id", "number", name="uq_patchsets_number"),
        # A push event touches a ref once: re-running its handler finds this row.
        UniqueConstraint("event_id", "ref", name="uq_patchsets_event_ref"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    change_id: Mapped[int] = mapped_column(ForeignKey("changes.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    commit_sha: Mapped[str] = mapped_column(String(64))
    pusher_id: Mapped[int] = mapped_column(ForeignKey("principals.id"))
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id"))
    ref: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: The gate sequence number of this push (revision 0002).
    sequence: Mapped[int | None] = mapped_column(Integer)


class CommentRow(Base):
    __tablename__ = "comments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    change_id: Mapped[int] = mapped_column(ForeignKey("changes.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("principals.id"))
    patchset: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EventRow(Base):
    """The durable inbox. ``payload`` and ``result`` are JSON text (portable, exact)."""

    __tablename__ = "events"
    __table_args__ = (
        CheckConstraint(_in("status", EVENT_STATUSES), name="ck_events_status"),
        Index("ix_events_pending", "status", "available_at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    available_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditRow(Base):
    """One sealed entry: the fields of ``core.audit.AUDIT_FIELDS`` plus details and hashes.

    ``timestamp`` is kept as the exact ISO text that was hashed, and ``details`` as its
    canonical JSON, so verification rebuilds byte-identical entries.
    """

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    timestamp: Mapped[str] = mapped_column(String(40))
    agent_id: Mapped[str | None] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64), index=True)
    confidence_score: Mapped[float | None] = mapped_column(Float)
    policy_applied: Mapped[str | None] = mapped_column(String(500))
    human_reviewer: Mapped[str | None] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(32))
    details: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHeadRow(Base):
    """The chain head: a single row (id 1), locked by every append."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class GateCounterRow(Base):
    """The gate's one sequence counter (a single row, id 1), locked by each increment.

    Pushes, reviews, dismissals and check results all take their ``sequence`` from it,
    so "this approval came after that push" is a comparison of two numbers assigned in
    commit order (the row lock serialises the transactions that take them), never of
    two wall clocks.
    """

    __tablename__ = "gate_counter"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    value: Mapped[int] = mapped_column(Integer)


class CheckRunRow(Base):
    """One check result on one exact commit, keyed by (name, producer, commit).

    Re-runs add rows; the highest ``sequence`` for a key is the result. Only rows whose
    producer is the gate itself can satisfy a required check (see ``core.gate``).
    """

    __tablename__ = "check_runs"
    __table_args__ = (
        CheckConstraint(_in("status", CHECK_STATUSES), name="ck_check_runs_status"),
        CheckConstraint(_in("role", CHECK_ROLES), name="ck_check_runs_role"),
        Index("ix_check_runs_commit", "repo_id", "commit_sha"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id"))
    change_id: Mapped[int | None] = mapped_column(ForeignKey("changes.id"), index=True)
    commit_sha: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    producer: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(16))
    #: The base tip the gate checked against (for landing and head checks).
    base_sha: Mapped[str | None] = mapped_column(String(64))
    sequence: Mapped[int] = mapped_column(Integer)
    summary: Mapped[str] = mapped_column(Text, default="")
    #: The check report as JSON (``report.json_format``), for the gate's own runs.
    decision: Mapped[str | None] = mapped_column(Text)
    #: Security findings at or above the policy's blocking severity (gate runs only).
    blocking_findings: Mapped[int | None] = mapped_column(Integer)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReviewRow(Base):
    """A review as submitted, bound to the review fingerprint the reviewer saw.

    The dismissal columns are written once: by a maintainer, or by the gate when the
    fingerprint moved on (``dismissed_by_gate``).
    """

    __tablename__ = "reviews"
    __table_args__ = (CheckConstraint(_in("state", REVIEW_STATES), name="ck_reviews_state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    change_id: Mapped[int] = mapped_column(ForeignKey("changes.id"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("principals.id"))
    state: Mapped[str] = mapped_column(String(16))
    body: Mapped[str] = mapped_column(Text, default="")
    fingerprint: Mapped[str] = mapped_column(String(64))
    patchset: Mapped[int] = mapped_column(Integer)
    head_sha: Mapped[str] = mapped_column(String(64))
    sequence: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    dismissed_by: Mapped[str | None] = mapped_column(String(128))
    dismissed_by_gate: Mapped[bool] = mapped_column(Boolean, default=False)
    dismissal_reason: Mapped[str | None] = mapped_column(Text)
    dismissal_sequence: Mapped[int | None] = mapped_column(Integer)
    dismissed_at: Mapped[datetime | None] = mapped_column()


class GroupRow(Base):
    """A server-defined group that CODEOWNERS can name (``@security``, ``@org/team``)."""

    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(130), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(64))


class GroupMemberRow(Base):
    __tablename__ = "group_members"

    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id"), primary_key=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(64))


class MergeLockRow(Base):
    """One row per (repository, branch) that the gate merges into, locked by each merge.

    ``SELECT … FOR UPDATE`` on it serialises merges into one branch on PostgreSQL even
    across server processes (SQLite's write lock already does); ``tip`` records what
    the last merge left the branch at.
    """

    __tablename__ = "merge_locks"

    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id"), primary_key=True)
    branch: Mapped[str] = mapped_column(String(200), primary_key=True)
    tip: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


RUN_KINDS = ("model", "scripted")
#: ``queued`` → ``running`` → ``paused`` ⇄ ``running`` → one of the end states.
RUN_STATUSES = ("queued", "running", "paused", "done", "error", "skipped", "budget_exceeded", "refused")
APPROVAL_STATUSES = ("pending", "approved", "denied", "expired")


class AgentRunRow(Base):
    """A runtime agent run hosted by the server (revision 0003).

    ``state`` is the JSON a resumed run continues from: for a model run the pydantic-ai
    conversation (``ModelMessagesTypeAdapter``) and the calls it waits on; for a scripted
    run the call list and the position in it. Spend is kept here so budgets hold across
    pauses and restarts; ``cost_usd`` is exact decimal text.
    """

    __tablename__ = "agent_runs"
    __table_args__ = (
        CheckConstraint(_in("kind", RUN_KINDS), name="ck_agent_runs_kind"),
        CheckConstraint(_in("status", RUN_STATUSES), name="ck_agent_runs_status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id"))
    change_id: Mapped[int | None] = mapped_column(ForeignKey("changes.id"), index=True)
    #: The runtime agent's name in the base policy.
    agent: Mapped[str] = mapped_column(String(100))
    #: The agent principal the run acts as (comments are posted under it).
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id"))
    #: The human who started it.
    started_by: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(32), default="queued")
    reason: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(Text, default="{}")
    #: The commits the workspace was checked out at (the change head, the base tip).
    head_sha: Mapped[str | None] = mapped_column(String(64))
    base_sha: Mapped[str | None] = mapped_column(String(64))
    policy_applied: Mapped[str | None] = mapped_column(String(500))
    #: How long its approval requests wait for a human before they expire (a denial).
    approval_timeout_s: Mapped[int] = mapped_column(Integer)
    turns: Mapped[int] = mapped_column(Integer, default=0)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[str] = mapped_column(String(32), default="0")
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()


class ApprovalRequestRow(Base):
    """A call that waits for a human (revision 0003); ``id`` is the number users type.

    Unique per (run, call index, fingerprint): a resumed run asking again about the same
    call finds its request instead of adding one.
    """

    __tablename__ = "approval_requests"
    __table_args__ = (
        CheckConstraint(_in("status", APPROVAL_STATUSES), name="ck_approval_requests_status"),
        UniqueConstraint("run_id", "call_index", "fingerprint", name="uq_approval_requests_call"),
        Index("ix_approval_requests_status", "status", "expires_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("agent_runs.id"), index=True)
    call_index: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[str] = mapped_column(String(64))
    agent: Mapped[str] = mapped_column(String(100))
    tool: Mapped[str] = mapped_column(String(64))
    #: Redacted arguments as JSON, for the human to read.
    args: Mapped[str] = mapped_column(Text)
    why: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    decided_by: Mapped[str | None] = mapped_column(String(128))
    decided_at: Mapped[datetime | None] = mapped_column()
    reason: Mapped[str | None] = mapped_column(Text)


class AgentRunDeliveryRow(Base):
    """An external effect of a hosted run that the gate carried out (revision 0004): a
    comment posted, a change proposed.

    Recorded in the transaction that makes the effect, unique per (run, call index,
    digest of what the call asked for): a run that resumes from a state saved before the
    effect finds the row and does not act twice.
    """

    __tablename__ = "agent_run_deliveries"
    __table_args__ = (UniqueConstraint("run_id", "call_index", "digest", name="uq_agent_run_deliveries_call"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("agent_runs.id"), index=True)
    call_index: Mapped[int] = mapped_column(Integer)
    #: SHA-256 of the outbox item (its kind and arguments) as canonical JSON.
    digest: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    #: What the delivery did, as JSON: the comment's id, the push event and commit, or why not.
    outcome: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
