"""What a use case can answer instead of doing the thing; the web layer maps each to
an HTTP status and the CLI to an exit code, with the same words."""

from __future__ import annotations


class ServiceError(Exception):
    status = 400

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Invalid(ServiceError):
    """The request is malformed or names something impossible (HTTP 422)."""

    status = 422


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    """The request clashes with existing state, e.g. a name already taken (HTTP 409)."""

    status = 409


class Blocked(Conflict):
    """The gate said no: a rule is not satisfied, or the base moved and the change is
    being re-tested (HTTP 409 with ``error: blocked``; the CLI exits 1)."""

    error = "blocked"


class Refused(ServiceError):
    """A permission decision said no (HTTP 403). Always audited before it is raised."""

    status = 403


class Unauthenticated(ServiceError):
    """No valid credentials (HTTP 401)."""

    status = 401
