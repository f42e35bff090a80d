"""Principals, tokens, repositories, changes, patchsets, comments, events, audit chain.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Besides the tables, two guarantees live in the database itself so that no code path
(ours or a future one) can break them: a principal's ``kind`` cannot be updated, and
audit entries cannot be updated or deleted. Someone with raw database access can still
drop the triggers; the hash chain is what detects that.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64
TS = sa.DateTime(timezone=True)

KIND_FIXED = "a principal's kind is fixed at creation"
AUDIT_APPEND_ONLY = "the audit log is append-only"


def upgrade() -> None:
    op.create_table(
        "principals",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("email_key", sa.String(254), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.CheckConstraint("kind IN ('human', 'agent')", name="ck_principals_kind"),
        sa.CheckConstraint("role IN ('admin', 'maintainer', 'contributor')", name="ck_principals_role"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("email_key"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("public_id", sa.String(32), nullable=False),
        sa.Column("principal_id", sa.Integer(), sa.ForeignKey("principals.id"), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("revoked_by", sa.String(64), nullable=True),
        sa.UniqueConstraint("public_id"),
    )
    op.create_index("ix_api_tokens_principal_id", "api_tokens", ["principal_id"])
    op.create_table(
        "repos",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("default_branch", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("available_at", TS, nullable=False),
        sa.CheckConstraint("status IN ('pending', 'done', 'failed')", name="ck_events_status"),
    )
    op.create_index("ix_events_pending", "events", ["status", "available_at", "id"])
    op.create_table(
        "changes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("repo_id", sa.Integer(), sa.ForeignKey("repos.id"), nullable=False),
        sa.Column("target_branch", sa.String(200), nullable=False),
        sa.Column("source_ref", sa.String(255), nullable=False),
        sa.Column("change_key", sa.String(64), nullable=True),
        sa.Column("open_key", sa.String(320), nullable=True),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("head_sha", sa.String(64), nullable=False),
        sa.Column("patchset", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("author_id", sa.Integer(), sa.ForeignKey("principals.id"), nullable=False),
        sa.Column("last_pusher_id", sa.Integer(), sa.ForeignKey("principals.id"), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint("state IN ('open', 'merged', 'abandoned')", name="ck_changes_state"),
        sa.UniqueConstraint("repo_id", "open_key", name="uq_changes_open_key"),
    )
    op.create_index("ix_changes_repo_state", "changes", ["repo_id", "state"])
    op.create_table(
        "patchsets",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("change_id", sa.Integer(), sa.ForeignKey("changes.id"), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("commit_sha", sa.String(64), nullable=False),
        sa.Column("pusher_id", sa.Integer(), sa.ForeignKey("principals.id"), nullable=False),
        sa.Column("event_id", sa.Integer(), sa.ForeignKey("events.id"), nullable=True),
        sa.Column("ref", sa.String(255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("change_id", "number", name="uq_patchsets_number"),
        sa.UniqueConstraint("event_id", "ref", name="uq_patchsets_event_ref"),
    )
    op.create_index("ix_patchsets_change_id", "patchsets", ["change_id"])
    op.create_table(
        "comments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("change_id", sa.Integer(), sa.ForeignKey("changes.id"), nullable=False),
        sa.Column("author_id", sa.Integer(), sa.ForeignKey("principals.id"), nullable=False),
        sa.Column("patchset", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_comments_change_id", "comments", ["change_id"])
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("timestamp", sa.String(40), nullable=False),
        sa.Column("agent_id", sa.String(128), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("confidence_score", sa.Float(), nullable=True),
        sa.Column("policy_applied", sa.String(500), nullable=True),
        sa.Column("human_reviewer", sa.String(128), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("event_id"),
        sa.UniqueConstraint("prev_hash"),
        sa.UniqueConstraint("hash"),
    )
    op.create_index("ix_audit_log_action", "audit_log", ["action"])
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS_HASH}])

    if op.get_context().dialect.name == "postgresql":
        _postgresql_guards()
    else:
        _sqlite_guards()


def _postgresql_guards() -> None:
    op.execute(
        f"""
        CREATE FUNCTION mergegate_principal_kind_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.kind IS DISTINCT FROM OLD.kind THEN
                RAISE EXCEPTION '{KIND_FIXED.replace("'", "''")}';
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER principals_kind_fixed BEFORE UPDATE ON principals "
        "FOR EACH ROW EXECUTE FUNCTION mergegate_principal_kind_fixed()"
    )
    op.execute(
        f"""
        CREATE FUNCTION mergegate_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '{AUDIT_APPEND_ONLY}';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION mergegate_audit_append_only()"
    )


def _sqlite_guards() -> None:
    kind_fixed = KIND_FIXED.replace("'", "''")
    op.execute(
        "CREATE TRIGGER principals_kind_fixed BEFORE UPDATE OF kind ON principals "
        f"FOR EACH ROW WHEN NEW.kind IS NOT OLD.kind BEGIN SELECT RAISE(ABORT, '{kind_fixed}'); END"
    )
    for verb in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
            f"BEGIN SELECT RAISE(ABORT, '{AUDIT_APPEND_ONLY}'); END"
        )


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS mergegate_audit_append_only()")
        op.execute("DROP TRIGGER IF EXISTS principals_kind_fixed ON principals")
        op.execute("DROP FUNCTION IF EXISTS mergegate_principal_kind_fixed()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
        op.execute("DROP TRIGGER IF EXISTS principals_kind_fixed")
    for table in ("audit_head", "audit_log", "comments", "patchsets", "changes", "events", "repos", "api_tokens"):
        op.drop_table(table)
    op.drop_table("principals")
