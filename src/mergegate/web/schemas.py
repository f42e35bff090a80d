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


class ChangeCostOut(BaseModel):
    """What models cost for the change, in USD (exact decimal text)."""

    agent_runs: int
    agent_runs_usd: str
    checks_usd: str = Field(description="The gate checks' LLM review, as their reports state it.")
    total_usd: str


class ChangeDetailOut(ChangeOut):
    patchsets: list[PatchsetOut]
    comments: list[CommentOut]
    cost: ChangeCostOut | None = None


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


# -- the gate: reviews, checks, verdicts, merges, groups ------------------------------------


class ReviewIn(_In):
    state: str = Field(description="approve, request_changes or comment.")
    body: str = ""
    expected_head: str | None = Field(
        None, description="The head commit you reviewed; refused (409) if the change has moved since."
    )


class ReviewOut(BaseModel):
    id: int
    change: int
    reviewer: str
    state: str
    body: str
    patchset: int
    head: str
    fingerprint: str
    sequence: int
    created_at: str
    dismissed: bool
    dismissed_by: str | None
    dismissed_by_gate: bool
    dismissal_reason: str | None


class DismissIn(_In):
    reason: str


class CheckIn(_In):
    name: str
    status: str = Field(description="success, failure, error, skipped or pending.")
    commit: str | None = Field(None, description="Defaults to the commit that would land.")
    summary: str = ""


class CheckOut(BaseModel):
    id: int
    name: str
    producer: str
    commit: str
    base: str | None
    role: str
    status: str
    summary: str
    sequence: int
    blocking_findings: int | None
    counts: bool = Field(description="Whether the gate counts it: produced by the gate on the landing commit.")
    created_at: str
    updated_at: str


class RuleOut(BaseModel):
    rule: str
    satisfied: bool
    reason: str
    details: list[str]


class LandingOut(BaseModel):
    commit: str | None
    method: str | None
    base: str | None
    head: str | None
    problem: str | None
    current: bool


class StatusOut(BaseModel):
    change: int
    repo: str
    state: str
    target_branch: str
    base_tip: str | None
    head: str
    patchset: int
    fingerprint: str | None
    last_push_sequence: int | None
    landing: LandingOut
    merge_method: str | None
    merge_when_ready_by: str | None
    merged_sha: str | None
    merged_by: str | None
    policy: str
    mergeable: bool
    summary: str
    rules: list[RuleOut]
    approvers: list[str]
    checks: list[CheckOut]
    reviews: list[ReviewOut]


class MergeIn(_In):
    method: str | None = Field(None, description="merge, squash or rebase (changing it re-makes the landing commit).")


class MergeOut(BaseModel):
    change: int
    merged: bool
    branch: str
    commit: str
    tree: str
    old: str
    method: str | None
    approvers: list[str]
    merged_by: str
    requested_by: str


class WhenReadyOut(BaseModel):
    change: int
    merge_when_ready_by: str | None
    method: str
    note: str | None


class GroupMembersIn(_In):
    members: list[str] = Field(default_factory=list)


class GroupOut(BaseModel):
    name: str
    members: list[str]
    created_by: str | None
