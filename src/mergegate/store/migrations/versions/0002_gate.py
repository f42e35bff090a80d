"""The gate: sequence counter, landing commits, check runs, reviews, groups, merge locks.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02

New columns on ``changes`` are plain (no foreign keys): SQLite can add those with
``ALTER TABLE … ADD COLUMN`` in place, without rebuilding a table other rows point at.
Principals are named there (``merged_by``, ``merge_when_ready_by``); names never change.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)

_CHANGE_COLUMNS = (
    ("last_push_seq", sa.Integer()),
    ("merge_base_sha", sa.String(64)),
    ("fingerprint", sa.String(64)),
    ("merge_method", sa.String(16)),
    ("landing_sha", sa.String(64)),
    ("landing_base_sha", sa.String(64)),
    ("landing_head_sha", sa.String(64)),
    ("landing_method", sa.String(16)),
    ("landing_problem", sa.Text()),
    ("merge_when_ready_by", sa.String(64)),
    ("merged_sha", sa.String(64)),
    ("merged_by", sa.String(128)),
    ("merged_at", TS),
)


def upgrade() -> None:
    for name, type_ in _CHANGE_COLUMNS:
        op.add_column("changes", sa.Column(name, type_, nullable=True))
    op.add_column("patchsets", sa.Column("sequence", sa.Integer(), nullable=True))

    counter = op.create_table(
        "gate_counter",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("value", sa.Integer(), nullable=False),
    )
    op.bulk_insert(counter, [{"id": 1, "value": 0}])

    op.create_table(
        "check_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("repo_id", sa.Integer(), sa.ForeignKey("repos.id"), nullable=False),
        sa.Column("change_id", sa.Integer(), sa.ForeignKey("changes.id"), nullable=True),
        sa.Column("commit_sha", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("producer", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("base_sha", sa.String(64), nullable=True),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("decision", sa.Text(), nullable=True),
        sa.Column("blocking_findings", sa.Integer(), nullable=True),
        sa.Column("event_id", sa.Integer(), sa.ForeignKey("events.id"), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(
            "status IN ('success', 'failure', 'error', 'skipped', 'pending')", name="ck_check_runs_status"
        ),
        sa.CheckConstraint("role IN ('landing', 'head', 'posted')", name="ck_check_runs_role"),
    )
    op.create_index("ix_check_runs_commit", "check_runs", ["repo_id", "commit_sha"])
    op.create_index("ix_check_runs_change_id", "check_runs", ["change_id"])

    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("change_id", sa.Integer(), sa.ForeignKey("changes.id"), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), sa.ForeignKey("principals.id"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("patchset", sa.Integer(), nullable=False),
        sa.Column("head_sha", sa.String(64), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("dismissed_by", sa.String(128), nullable=True),
        sa.Column("dismissed_by_gate", sa.Boolean(), nullable=False),
        sa.Column("dismissal_reason", sa.Text(), nullable=True),
        sa.Column("dismissal_sequence", sa.Integer(), nullable=True),
        sa.Column("dismissed_at", TS, nullable=True),
        sa.CheckConstraint("state IN ('approve', 'request_changes', 'comment')", name="ck_reviews_state"),
    )
    op.create_index("ix_reviews_change_id", "reviews", ["change_id"])

    op.create_table(
        "groups",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(130), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "group_members",
        sa.Column("group_id", sa.Integer(), sa.ForeignKey("groups.id"), primary_key=True),
        sa.Column("principal_id", sa.Integer(), sa.ForeignKey("principals.id"), primary_key=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=True),
    )
    op.create_table(
        "merge_locks",
        sa.Column("repo_id", sa.Integer(), sa.ForeignKey("repos.id"), primary_key=True),
        sa.Column("branch", sa.String(200), primary_key=True),
        sa.Column("tip", sa.String(64), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("merge_locks", "group_members", "groups", "reviews", "check_runs", "gate_counter"):
        op.drop_table(table)
    with op.batch_alter_table("patchsets") as batch:
        batch.drop_column("sequence")
    with op.batch_alter_table("changes") as batch:
        for name, _ in reversed(_CHANGE_COLUMNS):
            batch.drop_column(name)
