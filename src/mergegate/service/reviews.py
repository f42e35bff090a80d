"""Reviews: approve, request changes, comment; dismissals by maintainers and by the gate.

Who may do what is ``core.principals.authorize``: an agent is refused ``approve``,
``request_changes`` and ``dismiss_review`` whatever its role (HTTP 403, audited).
Agents may comment.

A review records the change's **current review fingerprint** and takes a gate
sequence number (the counter pushes use), so ``core.gate`` can tell whether an
approval is about the content that would land and came after the last push. A
reviewer can pin what they looked at (``expected_head``): if the change moved since,
the review is refused rather than bound to content they have not seen.

**Approvals by the author or the last pusher are refused** (HTTP 403, audited), not
recorded-and-ignored. Such an approval can never count (design invariant 2), so
accepting it would only give the appearance of a review; a clear refusal tells the
person at once that someone else must approve. ``core.gate`` still ignores them if one
ever got into the database by another path (defence in depth), and an approval that
was valid when given stops counting once its reviewer pushes to the change (it then
comes before the last push).

When a push (or a moved base) changes the fingerprint, ``dismiss_stale_for`` dismisses
every approval given for other content. The dismissal is the **gate's** act, audited
with the gate as actor and the push only as its cause: a push is not the pusher
dismissing a human's review.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from mergegate.core.principals import Permission
from mergegate.core.reviews import dismiss_stale, stale_approvals
from mergegate.service.accounts import SERVER_ACTOR
from mergegate.service.authz import Actor, refuse, require
from mergegate.service.errors import Conflict, Invalid, NotFound
from mergegate.store import audit_db, principals, sequence
from mergegate.store import changes as change_store
from mergegate.store import reviews as store
from mergegate.store.db import Database
from mergegate.store.models import ChangeRow, ReviewRow

GATE = SERVER_ACTOR
STATES = {
    "approve": Permission.APPROVE,
    "request_changes": Permission.REQUEST_CHANGES,
    "comment": Permission.COMMENT,
}
MAX_BODY = 65_536


def _names(session: Session, rows: list[ReviewRow]) -> dict[int, str]:
    ids = {r.reviewer_id for r in rows}
    return {i: (p.name if (p := principals.get_by_id(session, i)) else f"#{i}") for i in ids}


def view(row: ReviewRow, reviewer: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "change": row.change_id,
        "reviewer": reviewer,
        "state": row.state,
        "body": row.body,
        "patchset": row.patchset,
        "head": row.head_sha,
        "fingerprint": row.fingerprint,
        "sequence": row.sequence,
        "created_at": row.created_at.isoformat(),
        "dismissed": row.dismissed_by is not None,
        "dismissed_by": row.dismissed_by,
        "dismissed_by_gate": bool(row.dismissed_by_gate),
        "dismissal_reason": row.dismissal_reason,
    }


def list_for_change(db: Database, number: int) -> list[dict[str, Any]]:
    with db.read() as session:
        change = change_store.get(session, number)
        if change is None:
            raise NotFound(f"no change {number}")
        rows = store.of_change(session, change.id)
        names = _names(session, rows)
        return [view(r, names[r.reviewer_id]) for r in rows]


def _why_not_approve(change: ChangeRow, actor: Actor) -> str | None:
    if actor.principal_id == change.author_id:
        return (
            f"{actor.name} is the author of change {change.id}; an approval must come from someone else "
            "(an author's approval never counts)"
        )
    if actor.principal_id == change.last_pusher_id:
        return (
            f"{actor.name} pushed the latest patchset of change {change.id}; an approval must come from "
            "someone who did not (the last pusher's approval never counts)"
        )
    return None


def submit(
    db: Database, actor: Actor, number: int, state: str, body: str = "", *, expected_head: str | None = None
) -> dict[str, Any]:
    from mergegate.service import merge  # auto-merge trigger (merge imports this module)

    if state not in STATES:
        raise Invalid(f"state: one of {', '.join(STATES)}")
    require(db, actor, STATES[state], action=f"review.{state}", details={"change": number})
    if actor.principal_id is None:
        raise Invalid("the local operator cannot review; use a principal's token")
    if len(body) > MAX_BODY:
        raise Invalid(f"the review body is longer than {MAX_BODY} characters")
    if state == "comment" and not body.strip():
        raise Invalid("a comment review needs a body")
    refusal = None
    with db.write() as session:
        change = change_store.get(session, number, lock=True)
        if change is None:
            raise NotFound(f"no change {number}")
        if change.state != "open":
            raise Conflict(f"change {number} is {change.state}; only open changes are reviewed")
        if expected_head and expected_head != change.head_sha:
            raise Conflict(
                f"change {number} moved since you looked: its head is now {change.head_sha[:12]} "
                f"(patchset {change.patchset}), not {expected_head[:12]}; review it again"
            )
        if state == "approve":
            refusal = _why_not_approve(change, actor)
        if refusal is None:
            if not change.fingerprint:
                raise Conflict(
                    f"change {number}'s content fingerprint is unknown (no common history with "
                    f"{change.target_branch}?), so an approval could not be bound to what was reviewed"
                )
            seq = sequence.next_value(session)
            row = store.add(
                session,
                change_id=change.id,
                reviewer_id=actor.principal_id,
                state=state,
                body=body,
                fingerprint=change.fingerprint,
                patchset=change.patchset,
                head_sha=change.head_sha,
                sequence=seq,
            )
            audit_db.append(
                session,
                action=f"review.{state}",
                outcome="recorded",
                agent_id=actor.name,
                human_reviewer=actor.name if state != "comment" else None,
                details={
                    "change": number,
                    "review": row.id,
                    "patchset": change.patchset,
                    "head": change.head_sha,
                    "fingerprint": change.fingerprint,
                    "sequence": seq,
                },
            )
            if state != "comment":
                merge.request_auto_merge(session, change, reason=f"review.{state}")
            return view(row, actor.name)
    raise refuse(db, actor.name, f"review.{state}", refusal, {"change": number})


def dismiss(db: Database, actor: Actor, number: int, review_id: int, reason: str) -> dict[str, Any]:
    """A maintainer (or admin) human takes a review out of play, with a reason."""
    from mergegate.service import merge

    require(db, actor, Permission.DISMISS_REVIEW, action="review.dismiss", details={"change": number})
    reason = reason.strip()
    if not reason:
        raise Invalid("reason: say why the review is dismissed")
    with db.write() as session:
        change = change_store.get(session, number, lock=True)
        if change is None:
            raise NotFound(f"no change {number}")
        row = store.get(session, review_id, lock=True)
        if row is None or row.change_id != change.id:
            raise NotFound(f"change {number} has no review {review_id}")
        if row.state == "comment":
            raise Invalid("comments do not block or approve; there is nothing to dismiss")
        if row.dismissed_by is not None:
            raise Conflict(f"review {review_id} was already dismissed by {row.dismissed_by}")
        reviewer = _names(session, [row])[row.reviewer_id]
        seq = sequence.next_value(session)
        store.dismiss(session, row, by=actor.name, by_gate=False, reason=reason[:4000], sequence=seq)
        audit_db.append(
            session,
            action="review.dismissed",
            outcome="dismissed",
            agent_id=actor.name,
            human_reviewer=actor.name,
            details={
                "change": number,
                "review": row.id,
                "reviewer": reviewer,
                "state": row.state,
                "reason": reason[:1000],
                "by_gate": False,
                "sequence": seq,
            },
        )
        merge.request_auto_merge(session, change, reason="review.dismissed")
        return view(row, reviewer)


def dismiss_stale_for(
    session: Session, change: ChangeRow, fingerprint: str | None, *, cause: dict[str, Any]
) -> list[ReviewRow]:
    """Dismiss, as the gate, every approval bound to other content than ``fingerprint``."""
    rows = store.of_change(session, change.id, lock=True)
    if not rows:
        return []
    names = _names(session, rows)
    before = [store.to_review(r, names[r.reviewer_id]) for r in rows]
    if not stale_approvals(before, fingerprint):
        return []
    seq = sequence.next_value(session)
    after, _ = dismiss_stale(before, fingerprint, gate=GATE, sequence=seq)
    dismissed = []
    for row, old, new in zip(rows, before, after, strict=True):
        if new.dismissal is None or old.dismissal is not None:
            continue
        store.dismiss(session, row, by=GATE, by_gate=True, reason=new.dismissal.reason, sequence=seq)
        audit_db.append(
            session,
            action="review.dismissed",
            outcome="dismissed",
            agent_id=GATE,
            human_reviewer=names[row.reviewer_id],
            details={
                "change": change.id,
                "review": row.id,
                "reviewer": names[row.reviewer_id],
                "state": row.state,
                "reason": new.dismissal.reason,
                "by_gate": True,
                "stale": True,
                "sequence": seq,
                "cause": cause,
            },
        )
        dismissed.append(row)
    return dismissed
