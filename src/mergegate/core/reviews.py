"""Reviews, and the two questions the gate asks of them: which approvals went stale, and
which requests for changes still block.

Ordering uses the server's event ``sequence`` (a monotonically increasing number per
change), never a wall clock: clocks skew and can be set, sequence numbers are assigned
by the one writer that stores events. ``submitted_at`` is kept for people to read.

A stale approval is dismissed *by the gate*, and the record says so. A push that makes
someone's approval stale is not an act of the pusher against the reviewer; recording it
as the pusher's would let an agent appear in the audit log as having dismissed a human.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from mergegate.core.principals import Directory, may_dismiss_reviews


class ReviewState(StrEnum):
    APPROVE = "approve"
    REQUEST_CHANGES = "request_changes"
    COMMENT = "comment"


@dataclass(frozen=True)
class Dismissal:
    """Who took a review out of play, and why.

    ``by_gate`` is true when the gate itself dismissed the review (a stale approval);
    ``by`` is then the gate's identity. Otherwise ``by`` is the principal's name.
    """

    by: str
    by_gate: bool
    reason: str
    sequence: int


@dataclass(frozen=True)
class Review:
    """One review as submitted. ``fingerprint`` is the review fingerprint of the content
    the reviewer saw (see ``GitRepo.review_fingerprint``)."""

    reviewer: str
    state: ReviewState
    fingerprint: str
    sequence: int
    submitted_at: str | None = None
    body: str = ""
    dismissal: Dismissal | None = None

    @property
    def dismissed(self) -> bool:
        return self.dismissal is not None

    @property
    def decisive(self) -> bool:
        """Approvals and requests for changes decide; comments do not."""
        return self.state is not ReviewState.COMMENT


def short(sha_or_fingerprint: str) -> str:
    return f"{sha_or_fingerprint[:10]}…" if len(sha_or_fingerprint) > 10 else sha_or_fingerprint


def stale_approvals(reviews: Iterable[Review], current_fingerprint: str | None) -> tuple[Review, ...]:
    """Approvals still in play that were given for other content than the change has now.

    An unknown current fingerprint makes every approval stale: what was approved cannot
    be shown to be what would land.
    """
    return tuple(
        r
        for r in reviews
        if r.state is ReviewState.APPROVE
        and not r.dismissed
        and (not current_fingerprint or r.fingerprint != current_fingerprint)
    )


def dismiss_stale(
    reviews: Iterable[Review], current_fingerprint: str | None, *, gate: str, sequence: int
) -> tuple[tuple[Review, ...], tuple[Review, ...]]:
    """Dismiss stale approvals as a gate event. Returns (all reviews, the newly dismissed).

    Requests for changes never go stale: new code does not answer an objection; the
    reviewer approving, or a maintainer dismissing it, does.
    """
    all_reviews = tuple(reviews)
    stale = set(map(id, stale_approvals(all_reviews, current_fingerprint)))
    out: list[Review] = []
    dismissed: list[Review] = []
    for r in all_reviews:
        if id(r) in stale:
            now = short(current_fingerprint) if current_fingerprint else "unknown"
            reason = (
                f"stale: {r.reviewer} approved content {short(r.fingerprint)}, the change is now {now}; "
                "dismissed by the gate"
            )
            r = replace(r, dismissal=Dismissal(by=gate, by_gate=True, reason=reason, sequence=sequence))
            dismissed.append(r)
        out.append(r)
    return tuple(out), tuple(dismissed)


def latest_decisive(reviews: Iterable[Review]) -> dict[str, Review]:
    """Each reviewer's latest approval or request for changes (comments do not count).

    A later review replaces an earlier one of the same reviewer, even when the later one
    was dismissed afterwards: dismissing a stale approval does not revive the request for
    changes it answered. On a tie in sequence, a request for changes wins (fail closed).
    """
    latest: dict[str, Review] = {}
    for r in sorted(
        (r for r in reviews if r.decisive),
        key=lambda r: (r.sequence, r.state is ReviewState.REQUEST_CHANGES),
    ):
        latest[r.reviewer] = r
    return latest


def dismissal_clears_request(review: Review, directory: Directory) -> tuple[bool, str]:
    """Whether ``review``'s dismissal clears its request for changes, and why (not).

    Only a human maintainer or admin can clear another person's objection. A gate
    dismissal does not (the gate only dismisses stale approvals), nor does one by an
    agent or an unknown principal, whatever was recorded.
    """
    d = review.dismissal
    if d is None:
        return False, "not dismissed"
    if d.by_gate:
        return False, "the gate dismissed it, and only a maintainer can clear a request for changes"
    principal = directory.get(d.by)
    if principal is None:
        return False, f"it was dismissed by {d.by}, who is not a known principal"
    if not may_dismiss_reviews(principal):
        return False, f"it was dismissed by {principal.describe()}, who may not dismiss reviews"
    return True, f"dismissed by {principal.name}: {d.reason}" if d.reason else f"dismissed by {principal.name}"


def outstanding_change_requests(reviews: Iterable[Review], directory: Directory) -> tuple[Review, ...]:
    """Requests for changes that still block: the reviewer's latest decisive review asks
    for changes and no maintainer has dismissed it. Another reviewer's approval does not
    clear it."""
    return tuple(
        r
        for r in sorted(latest_decisive(reviews).values(), key=lambda r: r.sequence)
        if r.state is ReviewState.REQUEST_CHANGES and not dismissal_clears_request(r, directory)[0]
    )
