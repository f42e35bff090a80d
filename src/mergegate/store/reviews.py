"""Reviews as stored, and their conversion to ``core.reviews.Review``."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mergegate.core.reviews import Dismissal, Review, ReviewState
from mergegate.store.models import ReviewRow, utcnow


def add(
    session: Session,
    *,
    change_id: int,
    reviewer_id: int,
    state: str,
    body: str,
    fingerprint: str,
    patchset: int,
    head_sha: str,
    sequence: int,
) -> ReviewRow:
    row = ReviewRow(
        change_id=change_id,
        reviewer_id=reviewer_id,
        state=state,
        body=body,
        fingerprint=fingerprint,
        patchset=patchset,
        head_sha=head_sha,
        sequence=sequence,
        dismissed_by_gate=False,
    )
    session.add(row)
    session.flush()
    return row


def of_change(session: Session, change_id: int, *, lock: bool = False) -> list[ReviewRow]:
    query = select(ReviewRow).where(ReviewRow.change_id == change_id).order_by(ReviewRow.sequence, ReviewRow.id)
    if lock:
        query = query.with_for_update()
    return list(session.execute(query).scalars())


def get(session: Session, review_id: int, *, lock: bool = False) -> ReviewRow | None:
    query = select(ReviewRow).where(ReviewRow.id == review_id)
    if lock:
        query = query.with_for_update()
    return session.execute(query).scalar_one_or_none()


def dismiss(session: Session, row: ReviewRow, *, by: str, by_gate: bool, reason: str, sequence: int) -> None:
    row.dismissed_by = by
    row.dismissed_by_gate = by_gate
    row.dismissal_reason = reason
    row.dismissal_sequence = sequence
    row.dismissed_at = utcnow()
    session.flush()


def to_review(row: ReviewRow, reviewer: str) -> Review:
    dismissal = None
    if row.dismissed_by is not None:
        dismissal = Dismissal(
            by=row.dismissed_by,
            by_gate=bool(row.dismissed_by_gate),
            reason=row.dismissal_reason or "",
            sequence=row.dismissal_sequence or 0,
        )
    return Review(
        reviewer=reviewer,
        state=ReviewState(row.state),
        fingerprint=row.fingerprint,
        sequence=row.sequence,
        submitted_at=row.created_at.isoformat(),
        body=row.body,
        dismissal=dismissal,
    )
