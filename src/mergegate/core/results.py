"""What an agent run produced, as the aggregation and every output format see it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mergegate.core.finding import Finding


class AgentStatus(StrEnum):
    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"

    @property
    def failed(self) -> bool:
        """An agent that did not finish leaves the change unexamined: fail closed."""
        return self in (AgentStatus.ERROR, AgentStatus.TIMEOUT)


@dataclass(frozen=True)
class AgentResult:
    """One agent's run.

    ``confidence`` is the agent's confidence in its own analysis (0..1): 1.0 when it
    examined everything it is responsible for, lower when it had to leave parts out
    (see ``notes``). It is not a judgement of the change; findings carry that.
    """

    name: str
    status: AgentStatus
    findings: tuple[Finding, ...] = ()
    confidence: float = 1.0
    duration_s: float = 0.0
    detail: str = ""
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"agent confidence must be within 0..1, got {self.confidence}")
