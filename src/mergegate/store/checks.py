"""Check runs: one result of one named check, by one producer, on one exact commit."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mergegate.store import sequence
from mergegate.store.models import CheckRunRow, utcnow


def add(
    session: Session,
    *,
    repo_id: int,
    change_id: int | None,
    commit: str,
    name: str,
    producer: str,
    status: str,
    role: str,
    base_sha: str | None = None,
    summary: str = "",
    event_id: int | None = None,
) -> CheckRunRow:
    row = CheckRunRow(
        repo_id=repo_id,
        change_id=change_id,
        commit_sha=commit,
        name=name,
        producer=producer,
        status=status,
        role=role,
        base_sha=base_sha,
        sequence=sequence.next_value(session),
        summary=summary,
        event_id=event_id,
    )
    session.add(row)
    session.flush()
    return row


def finish(
    session: Session,
    row: CheckRunRow,
    *,
    status: str,
    summary: str,
    decision: str | None = None,
    blocking_findings: int | None = None,
) -> None:
    """Record a pending run's result; it takes a new sequence number (a later fact)."""
    row.status = status
    row.summary = summary
    row.decision = decision
    row.blocking_findings = blocking_findings
    row.sequence = sequence.next_value(session)
    row.updated_at = utcnow()
    session.flush()


def get(session: Session, run_id: int, *, lock: bool = False) -> CheckRunRow | None:
    query = select(CheckRunRow).where(CheckRunRow.id == run_id)
    if lock:
        query = query.with_for_update()
    return session.execute(query).scalar_one_or_none()


def on_commits(session: Session, repo_id: int, commits: list[str]) -> list[CheckRunRow]:
    commits = [c for c in commits if c]
    if not commits:
        return []
    query = (
        select(CheckRunRow)
        .where(CheckRunRow.repo_id == repo_id, CheckRunRow.commit_sha.in_(commits))
        .order_by(CheckRunRow.sequence)
    )
    return list(session.execute(query).scalars())


def of_change(session: Session, change_id: int) -> list[CheckRunRow]:
    query = select(CheckRunRow).where(CheckRunRow.change_id == change_id).order_by(CheckRunRow.sequence)
    return list(session.execute(query).scalars())
