"""Approval pauses: who decides whether a call that needs approval may run.

The runner asks an ``ApprovalGate`` and gets one of three answers: ``allow`` (a human
approved this exact call), ``deny`` (a human refused it, or the approval timed out: the
reason goes back to the agent as the tool result) or ``pause`` (nobody has decided yet:
the run stops here and resumes when someone does).

An approval is bound to a *fingerprint* of the agent, the tool and the exact arguments,
so approving ``PostComment "LGTM"`` does not approve ``PostComment "<something else>"``.
Only a human can decide: a decision recorded by the agent itself (or by any ``agent:``
principal) is ignored and the call stays paused, whatever the file or database says.

``FileApprovals`` is the implementation for ``mergegate agent replay``: a JSON file that
lists pending requests and the decisions a human wrote next to them. The durable gate
for live runs keeps the same contract on the server's database (see docs/runtime.md).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol


class Verdict(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    PAUSE = "pause"


@dataclass(frozen=True)
class ApprovalRequest:
    agent: str
    tool: str
    #: Redacted arguments, for the human to read.
    args: dict[str, Any]
    #: Binds a decision to this agent, tool and the exact (unredacted) arguments.
    fingerprint: str
    why: str
    #: Where the call stands in its run, so a durable gate can key the request on
    #: (run, call index, fingerprint) and a resumed run finds its decision again.
    run_id: str | None = None
    index: int | None = None


@dataclass(frozen=True)
class ApprovalDecision:
    verdict: Verdict
    by: str | None = None
    reason: str = ""


def call_fingerprint(agent: str, tool: str, args: dict[str, Any]) -> str:
    blob = json.dumps({"agent": agent, "tool": tool, "args": args}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def is_agent_principal(name: str | None, agent: str) -> bool:
    """Whether ``name`` is an agent (this one or any other) rather than a human."""
    if not name:
        return True
    low = name.strip().lower()
    return low == agent.lower() or low == f"agent:{agent.lower()}" or low.startswith("agent:")


class ApprovalGate(Protocol):
    def decide(self, request: ApprovalRequest) -> ApprovalDecision: ...


class PauseAll:
    """Nobody is there to approve: every call that needs approval pauses."""

    def decide(self, request: ApprovalRequest) -> ApprovalDecision:
        return ApprovalDecision(Verdict.PAUSE, reason="waiting for a human approval")


class FileApprovals:
    """Decisions in a JSON file a human edits; unknown requests are added as pending.

    Format::

        {"pending":   {"<fingerprint>": {"agent": …, "tool": …, "args": …, "requested_at": …}},
         "decisions": {"<fingerprint>": {"decision": "approve" | "deny", "by": "alice",
                                         "reason": "…", "expires": "2030-01-01T00:00:00+00:00"}}}

    An expired decision is a denial. The file must live outside the workspace (the
    caller checks), so the agent cannot write its own approvals.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _load(self, fh) -> dict[str, Any]:
        fh.seek(0)
        raw = fh.read()
        if not raw.strip():
            return {"pending": {}, "decisions": {}}
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError(f"{self.path}: expected a JSON object")
        data.setdefault("pending", {})
        data.setdefault("decisions", {})
        return data

    def decide(self, request: ApprovalRequest) -> ApprovalDecision:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            data = self._load(fh)
            decision = data["decisions"].get(request.fingerprint)
            verdict = self._verdict(decision, request)
            if verdict is not None:
                data["pending"].pop(request.fingerprint, None)
            else:
                data["pending"].setdefault(
                    request.fingerprint,
                    {
                        "agent": request.agent,
                        "tool": request.tool,
                        "args": request.args,
                        "why": request.why,
                        "requested_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    },
                )
            fh.seek(0)
            fh.truncate()
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        if verdict is not None:
            return verdict
        note = ""
        if isinstance(decision, dict) and is_agent_principal(decision.get("by"), request.agent):
            note = f" (a decision by {decision.get('by') or 'nobody'!r} was ignored: only humans approve)"
        return ApprovalDecision(Verdict.PAUSE, reason=f"waiting for a human approval{note}")

    @staticmethod
    def _verdict(decision: Any, request: ApprovalRequest) -> ApprovalDecision | None:
        if not isinstance(decision, dict):
            return None
        by = decision.get("by")
        if is_agent_principal(by, request.agent):
            return None
        reason = str(decision.get("reason") or "")
        expires = decision.get("expires")
        if expires:
            try:
                expired = datetime.fromisoformat(str(expires)) <= datetime.now(UTC)
            except ValueError:
                expired = True
            if expired:
                why = "the approval expired (an approval that times out is a denial)"
                return ApprovalDecision(Verdict.DENY, by, why)
        kind = decision.get("decision")
        if kind == "approve":
            return ApprovalDecision(Verdict.ALLOW, by, reason)
        if kind == "deny":
            return ApprovalDecision(Verdict.DENY, by, reason or "denied")
        return None
