"""The one protocol every analysis agent implements, and what it is given to work with.

An agent is a module in ``mergegate.agents`` that defines ``AGENT``: an object with a
``name``, a ``description``, an ``Options`` model for its keys under ``agents.<name>``
in ``.mergegate.yml``, a ``default_timeout`` and ``async def run(ctx) -> AgentOutput``.
Adding an agent is adding one module (third-party packages register the same object
under the ``mergegate.agents`` entry point group).

Agents never decide the verdict: they report findings and their own confidence. The
runner (``mergegate.service.check``) times them out, turns exceptions into an
``error`` result (fail closed) and records every run in the audit log.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from mergegate.core.change import Change, ChangedFile
from mergegate.core.finding import Finding
from mergegate.core.globs import match_any
from mergegate.core.policy import Policy
from mergegate.runtime.sandbox import Sandbox
from mergegate.store.audit_log import AuditLog
from mergegate.vcs.git import GitRepo


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class AgentOutput:
    findings: list[Finding] = field(default_factory=list)
    #: The agent's confidence in its own analysis (1.0: it examined everything).
    confidence: float = 1.0
    #: What the agent could not analyse, or other facts worth showing (never secrets).
    notes: list[str] = field(default_factory=list)


class AgentSkipped(Exception):
    """Raised by an agent with nothing to do; the reason is shown to the user.

    ``confidence`` says what the missing analysis costs the change's confidence
    (1.0: nothing, e.g. no Python files changed; lower when something is unknown).
    """

    def __init__(self, reason: str, confidence: float = 1.0):
        super().__init__(reason)
        self.reason = reason
        self.confidence = confidence


@runtime_checkable
class Agent(Protocol):
    name: ClassVar[str]
    description: ClassVar[str]
    Options: ClassVar[type[BaseModel]]
    default_timeout: ClassVar[float]

    async def run(self, ctx: AgentContext) -> AgentOutput: ...


@dataclass
class AgentContext:
    """Everything an agent may look at. Shared read-only by agents running concurrently.

    ``base_dir`` and ``head_dir`` hold the *changed* files only, at the merge base and
    at head (so cost follows the diff); ``full_tree()`` exports the whole head tree
    once, lazily, for agents that must run the project (tests).
    """

    repo: GitRepo
    change: Change
    policy: Policy
    options: BaseModel
    base_dir: Path
    head_dir: Path
    scratch: Path
    sandbox_factory: object  # () -> Sandbox; raises SandboxUnavailable when it cannot run
    #: The check's audit log and policy label, for agents that audit their own steps
    #: (e.g. the tool calls of an LLM agent). ``None`` when the check is not audited.
    audit: AuditLog | None = None
    policy_applied: str = ""
    _tree_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _tree: Path | None = None

    def is_test_path(self, path: str) -> bool:
        return match_any(self.policy.test_paths, path) is not None

    def head_files(self, suffix: str | None = None) -> list[ChangedFile]:
        """Changed files that exist at head (optionally with a given suffix)."""
        return [
            f
            for f in self.change.files
            if f.exists_at_head and not f.binary and (suffix is None or f.path.endswith(suffix))
        ]

    def head_text(self, path: str) -> str | None:
        p = self.head_dir / path
        return p.read_text("utf-8", "replace") if p.is_file() else None

    def base_text(self, path: str) -> str | None:
        p = self.base_dir / path
        return p.read_text("utf-8", "replace") if p.is_file() else None

    def sandbox(self) -> Sandbox:
        return self.sandbox_factory()  # type: ignore[operator]

    async def full_tree(self) -> Path:
        async with self._tree_lock:
            if self._tree is None:
                dest = self.scratch / "tree"
                await asyncio.to_thread(self.repo.export_tree, self.change.head, dest)
                self._tree = dest
            return self._tree
