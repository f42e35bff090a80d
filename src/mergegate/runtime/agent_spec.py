"""Runtime agents as the base branch declares them, and the built-in presets.

In ``.mergegate.yml`` (read from the base ref, never from the change)::

    agents:
      reviewer: {}                                   # the preset as is
      fixer: {max_turns: 10}                         # the preset, one key changed
      triage:
        preset: reviewer
        tools: "Read, Grep, Glob, Bash(git log:*)"
        deny: "Read(secrets/**)"
      qa:
        tools: "Read, Grep, Bash(pytest:*)"
        sandbox: workspace-write
        network: false
        protect_tests: true
        max_turns: 30
        max_usd: 2.0
        limits: {wall_s: 300, memory_mb: 2048, pids: 256}

An entry is a runtime agent when its name is a preset (``reviewer``, ``fixer``) or it
has a ``tools:`` or ``preset:`` key; other names are analysis agents. Keys given replace
the preset's (a ``tools:`` list is not merged with the preset's: what you read is what
the agent gets).

Validation is strict and fail-closed: unknown keys, unknown tool names, malformed rules,
``Edit``/``Write`` in a ``read-only`` agent and tools that are never grantable are
policy errors that name the key and line (through ``mergegate.service.policy_source``).
``danger-full-access`` additionally needs ``runtime: {allow_danger_full_access: true}``
in the same base policy.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mergegate.runtime.limits import Limits
from mergegate.runtime.permissions import Rule, RuleError, parse_rules
from mergegate.runtime.sandbox import SandboxMode
from mergegate.runtime.tools import WRITE_TOOLS

PRESETS: dict[str, dict[str, Any]] = {
    "reviewer": {
        "tools": "Read, LS, Grep, Glob, GitDiff, GitLog, GitBlame, "
        "Bash(git diff:*), Bash(git log:*), Bash(git show:*), Bash(git blame:*), Bash(git status:*)",
        "sandbox": "read-only",
        "network": False,
        "protect_tests": False,
        "max_turns": 30,
        "max_usd": 1.0,
    },
    "fixer": {
        "tools": "Read, LS, Grep, Glob, Edit, Write, Bash(pytest:*), RunTests, GitDiff, GitLog, GitBlame",
        "sandbox": "workspace-write",
        "network": False,
        "protect_tests": True,
        "max_turns": 30,
        "max_usd": 2.0,
    },
}

RuleList = str | list[str] | None


class AgentLimits(BaseModel):
    """Per shell command. Defaults are generous for test suites, hard for bombs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    wall_s: float = Field(300.0, gt=0, le=3600)
    cpu_s: int = Field(300, gt=0, le=3600)
    memory_mb: int = Field(2048, ge=64, le=65536)
    pids: int = Field(256, ge=8, le=8192)
    output_kb: int = Field(1024, ge=1, le=65536)
    file_size_mb: int = Field(512, ge=1, le=65536)
    cpus: float = Field(1.0, gt=0, le=256)

    def to_limits(self) -> Limits:
        return Limits(
            wall_s=self.wall_s,
            cpu_s=self.cpu_s,
            memory_bytes=self.memory_mb * 1024**2,
            pids=self.pids,
            output_bytes=self.output_kb * 1024,
            file_size_bytes=self.file_size_mb * 1024**2,
            cpus=self.cpus,
        )


class AgentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: str | None = None
    tools: RuleList = None
    deny: RuleList = None
    #: Calls matching these rules pause for a human, on top of the tools' defaults.
    ask: RuleList = None
    sandbox: SandboxMode = SandboxMode.READ_ONLY
    network: bool = False
    protect_tests: bool = False
    max_turns: int = Field(30, ge=1, le=10_000)
    max_usd: float = Field(2.0, ge=0)
    #: Tokens (input + output) a model-driven run may use; ``None``: bounded by turns and dollars only.
    max_tokens: int | None = Field(None, ge=1)
    limits: AgentLimits = AgentLimits()
    #: Constant environment variables for shell commands (nothing is passed from the host).
    env: dict[str, str] = Field(default_factory=dict)
    #: Common agent settings (``AgentSettings``): accepted here too.
    enabled: bool = True
    timeout: float | None = Field(None, gt=0)

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str | None) -> str | None:
        if value is not None and value not in PRESETS:
            raise ValueError(f"unknown preset {value!r} (known: {', '.join(sorted(PRESETS))})")
        return value

    @field_validator("tools", "deny", "ask")
    @classmethod
    def _rules(cls, value: RuleList) -> RuleList:
        try:
            parse_rules(value)
        except RuleError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not key.replace("_", "").isalnum() or key[0].isdigit():
                raise ValueError(f"{key!r} is not an environment variable name")
            if key.startswith(("LD_", "BASH_")) or key in ("PATH", "HOME", "IFS", "ENV", "PYTHONSTARTUP"):
                raise ValueError(f"{key} changes how programs are loaded and cannot be set")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> AgentSpec:
        if self.sandbox is SandboxMode.READ_ONLY:
            writers = sorted({r.tool for r in self.allow if r.tool in WRITE_TOOLS})
            if writers:
                names = ", ".join(writers)
                raise ValueError(f"{names} cannot be granted with sandbox: read-only (use workspace-write)")
        return self

    @property
    def allow(self) -> tuple[Rule, ...]:
        return parse_rules(self.tools)

    @property
    def deny_rules(self) -> tuple[Rule, ...]:
        return parse_rules(self.deny)

    @property
    def ask_rules(self) -> tuple[Rule, ...]:
        return parse_rules(self.ask)


def is_runtime_declaration(name: str, raw: Any) -> bool:
    """Whether an ``agents:`` entry declares a runtime agent (not an analysis agent)."""
    return name in PRESETS or (isinstance(raw, dict) and ("tools" in raw or "preset" in raw))


def build_agent(name: str, raw: dict[str, Any] | None) -> AgentSpec:
    """The agent ``name`` from its declaration (``None``: the preset of that name)."""
    raw = dict(raw or {})
    preset = raw.get("preset") or (name if name in PRESETS else None)
    base = dict(PRESETS.get(preset, {})) if isinstance(preset, str) else {}
    if preset is not None:
        base["preset"] = preset
    return AgentSpec.model_validate({**base, **raw})
