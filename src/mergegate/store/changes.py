"""Changes, their patchsets and comments."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mergegate.store.models import ChangeRow, CommentRow, PatchsetRow, RepoRow, utcnow


def branch_key(source_ref: str) -> str:
    """``open_key`` of a change opened by pushing a branch."""
    return f"branch:{source_ref}"


def change_id_key(target_branch: str, change_id: str) -> str:
    """``open_key`` of a change opened through ``refs/for/<target>`` with a Change-Id."""
    return f"cid:{target_branch}:{change_id}"


def get(session: Session, number: int, *, lock: bool = False) -> ChangeRow | None:
    query = select(ChangeRow).where(ChangeRow.id == number)
    if lock:
        query = query.with_for_update()
    return session.execute(query).scalar_one_or_none()


def find_open(session: Session, repo: RepoRow, open_key: str) -> ChangeRow | None:
    query = select(ChangeRow).where(ChangeRow.repo_id == repo.id, ChangeRow.open_key == open_key)
    return session.execute(query.with_for_update()).scalar_one_or_none()


def list_changes(session: Session, *, repo: RepoRow | None = None, state: str | None = None) -> list[ChangeRow]:
    query = select(ChangeRow).order_by(ChangeRow.id)
    if repo is not None:
        query = query.where(ChangeRow.repo_id == repo.id)
    if state is not None:
        query = query.where(ChangeRow.state == state)
    return list(session.execute(query).scalars())


def patchset_for(session: Session, event_id: int, ref: str) -> PatchsetRow | None:
    query = select(PatchsetRow).where(PatchsetRow.event_id == event_id, PatchsetRow.ref == ref)
    return session.execute(query).scalar_one_or_none()


def patchsets(session: Session, change: ChangeRow) -> list[PatchsetRow]:
    query = select(PatchsetRow).where(PatchsetRow.change_id == change.id).order_by(PatchsetRow.number)
    return list(session.execute(query).scalars())


def open_change(
    session: Session,
    *,
    repo: RepoRow,
    target_branch: str,
    source_ref: str,
    open_key: str | None,
    change_key: str | None,
    subject: str,
    head_sha: str,
    pusher_id: int,
    event_id: int | None,
    ref: str,
) -> ChangeRow:
    change = ChangeRow(
        repo_id=repo.id,
        target_branch=target_branch,
        source_ref=source_ref,
        open_key=open_key,
        change_key=change_key,
        subject=subject,
        head_sha=head_sha,
        patchset=1,
        state="open",
        author_id=pusher_id,
        last_pusher_id=pusher_id,
    )
    session.add(change)
    session.flush()
    session.add(
        PatchsetRow(change_id=change.id, number=1, commit_sha=head_sha, pusher_id=pusher_id, event_id=event_id, ref=ref)
    )
    session.flush()
    return change


def add_patchset(
    session: Session,
    change: ChangeRow,
    *,
    head_sha: str,
    subject: str,
    pusher_id: int,
    event_id: int | None,
    ref: str,
) -> PatchsetRow:
    change.patchset += 1
    change.head_sha = head_sha
    change.subject = subject
    change.last_pusher_id = pusher_id
    change.updated_at = utcnow()
    row = PatchsetRow(
        change_id=change.id,
        number=change.patchset,
        commit_sha=head_sha,
        pusher_id=pusher_id,
        event_id=event_id,
        ref=ref,
    )
    session.add(row)
    session.flush()
    return row


def close(session: Session, change: ChangeRow, state: str) -> None:
    change.state = state
    change.open_key = None
    change.updated_at = utcnow()
    session.flush()


def add_comment(session: Session, change: ChangeRow, *, author_id: int, body: str) -> CommentRow:
    row = CommentRow(change_id=change.id, author_id=author_id, patchset=change.patchset, body=body)
    session.add(row)
    session.flush()
    return row


def comments(session: Session, change: ChangeRow) -> list[CommentRow]:
    query = select(CommentRow).where(CommentRow.change_id == change.id).order_by(CommentRow.id)
    return list(session.execute(query).scalars())
