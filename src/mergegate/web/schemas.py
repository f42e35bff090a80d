"""Request and response bodies of the REST API (they make the OpenAPI document)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Problem(BaseModel):
    """Every error: a machine word and a reason in words."""

    error: str
    reason: str


class UserIn(_In):
    name: str = Field(description="Unique, case-sensitive: letters, digits, '.', '_', '-'.")
    kind: str = Field(description="human or agent. Fixed forever once created.")
    role: str = Field("contributor", description="admin, maintainer or contributor.")
    email: str | None = None


class UserOut(_Out):
    name: str
    kind: str
    role: str
    email: str | None
    created_at: str
    created_by: str | None


class TokenIn(_In):
    label: str = Field("", max_length=100)


class IssuedTokenOut(_Out):
    id: int
    principal: str
    label: str
    token: str = Field(description="Shown once. Only its SHA-256 is stored.")


class TokenOut(_Out):
    id: int
    principal: str
    label: str
    prefix: str
    created_at: str
    created_by: str | None
    revoked_at: str | None


class RepoIn(_In):
    name: str
    source: str | None = Field(None, description="A local path or URL to import (a bare clone).")
    default_branch: str | None = None


class RepoOut(_Out):
    name: str
    default_branch: str
    clone_url: str
    created_at: str
    created_by: str | None


class ChangeOut(BaseModel):
    number: int
    repo: str | None
    target_branch: str
    source_ref: str
    change_id: str | None
    subject: str
    head_sha: str
    head_ref: str
    patchset: int
    state: str
    author: str
    last_pusher: str
    created_at: str
    updated_at: str


class PatchsetOut(BaseModel):
    number: int
    commit: str
    pusher: str
    ref: str
    created_at: str


class CommentIn(_In):
    body: str


class CommentOut(BaseModel):
    id: int
    change: int | None = None
    author: str
    patchset: int
    body: str
    created_at: str


class ChangeDetailOut(ChangeOut):
    patchsets: list[PatchsetOut]
    comments: list[CommentOut]


class AuditVerifyOut(BaseModel):
    ok: bool
    entries: int
    head: str
    bad_entry: int | None
    reason: str


class EventOut(BaseModel):
    id: int
    kind: str
    status: str
    attempts: int
    payload: dict[str, Any]
    result: dict[str, Any] | None
    last_error: str | None
    created_at: str
