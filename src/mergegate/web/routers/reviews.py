"""Reviews of a change: approve, request changes, comment; dismissals by maintainers."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from mergegate.service import reviews
from mergegate.web.auth import CurrentActor
from mergegate.web.schemas import DismissIn, ReviewIn, ReviewOut

router = APIRouter(prefix="/api/changes", tags=["reviews"])


@router.get("/{number}/reviews", response_model=list[ReviewOut])
def list_reviews(number: int, request: Request, actor: CurrentActor):
    return reviews.list_for_change(request.app.state.server.db, number)


@router.post("/{number}/reviews", response_model=ReviewOut, status_code=status.HTTP_201_CREATED)
def submit_review(number: int, body: ReviewIn, request: Request, actor: CurrentActor):
    """Review the change's current content. ``approve`` and ``request_changes`` need a
    human (agents: 403, audited); the author and the last pusher cannot approve (403)."""
    return reviews.submit(
        request.app.state.server.db, actor, number, body.state, body.body, expected_head=body.expected_head
    )


@router.post("/{number}/reviews/{review_id}/dismiss", response_model=ReviewOut)
def dismiss_review(number: int, review_id: int, body: DismissIn, request: Request, actor: CurrentActor):
    """Take a review out of play. Needs ``dismiss_review`` (human maintainers and admins)."""
    return reviews.dismiss(request.app.state.server.db, actor, number, review_id, body.reason)
