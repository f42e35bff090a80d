"""Server administration: the audit chain and the event inbox."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import select

from mergegate.core.principals import Permission
from mergegate.service.authz import refuse, require
from mergegate.service.errors import Invalid
from mergegate.store import audit_db
from mergegate.store import events as event_store
from mergegate.store.models import EventRow
from mergegate.web.auth import CurrentActor
from mergegate.web.schemas import AuditVerifyOut, EventOut

router = APIRouter(prefix="/api", tags=["administration"])


@router.get("/audit/verify", response_model=AuditVerifyOut)
def verify_audit(request: Request, actor: CurrentActor):
    """Verify the whole hash chain against the recorded head. Admins only (``manage_principals``)."""
    db = request.app.state.server.db
    require(db, actor, Permission.MANAGE_PRINCIPALS, action="audit.verify")
    with db.read() as session:
        report = audit_db.verify(session)
    return AuditVerifyOut(
        ok=report.ok, entries=report.entries, head=report.head, bad_entry=report.bad_line, reason=report.reason
    )


@router.get("/audit")
def recent_audit(
    request: Request, actor: CurrentActor, action: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The newest audit entries (optionally one ``action``, e.g. ``push.refused``). Admins only."""
    db = request.app.state.server.db
    require(db, actor, Permission.MANAGE_PRINCIPALS, action="audit.read")
    with db.read() as session:
        return audit_db.recent(session, action=action, limit=max(1, min(limit, 1000)))


#: Why no API writes the audit log, for whoever tries (an agent that found a token, say).
AUDIT_WRITE_REFUSAL = (
    "the audit log is append-only and only the gate writes it, in the transaction of the act it records; "
    "no API adds, changes or deletes entries"
)


@router.api_route("/audit", methods=["POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
@router.api_route("/audit/{rest:path}", methods=["POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
def write_audit(request: Request, actor: CurrentActor):
    """Refused for everyone, admins included, and audited: trying is itself worth a trail."""
    db = request.app.state.server.db
    raise refuse(
        db, actor.name, "audit.write", AUDIT_WRITE_REFUSAL, {"request": f"{request.method} {request.url.path}"}
    )


@router.get("/events", response_model=list[EventOut])
def list_events(request: Request, actor: CurrentActor, status: str | None = None, limit: int = 100):
    """The event inbox, newest first (e.g. ``?status=failed``). Admins only."""
    db = request.app.state.server.db
    require(db, actor, Permission.MANAGE_PRINCIPALS, action="events.list")
    if status is not None and status not in ("pending", "done", "failed"):
        raise Invalid(f"invalid status {status!r}: pending, done or failed")
    query = select(EventRow).order_by(EventRow.id.desc()).limit(max(1, min(limit, 1000)))
    if status:
        query = query.where(EventRow.status == status)
    with db.read() as session:
        return [
            EventOut(
                id=e.id,
                kind=e.kind,
                status=e.status,
                attempts=e.attempts,
                payload=event_store.payload(e),
                result=event_store.result(e),
                last_error=e.last_error,
                created_at=e.created_at.isoformat(),
            )
            for e in session.execute(query).scalars()
        ]
