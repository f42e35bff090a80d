"""The policy (``.mergegate.yml``): validated, with errors that name the key and line.

Parsing is pure: it takes the file's text. Which text to parse (always the base ref's,
never the change's) is decided by the caller, see ``mergegate.service.policy_source``.
"""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mergegate.core.severity import Severity

POLICY_FILE = ".mergegate.yml"


class Mode(StrEnum):
    ENFORCE = "enforce"
    ADVISORY = "advisory"


class SandboxKind(StrEnum):
    BUBBLEWRAP = "bubblewrap"
    NONE = "none"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Thresholds(_Strict):
    """Confidence at or above ``auto_approve`` routes to auto_approve; at or above
    ``human_review`` to human_review; below it to reject."""

    auto_approve: float = Field(0.90, ge=0.0, le=1.0)
    human_review: float = Field(0.70, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.human_review > self.auto_approve:
            raise ValueError("human_review must not be above auto_approve")
        return self


class ActionThresholds(_Strict):
    """Minimum confidence for an agent to take an action of each risk tier on its own.

    low: comments, tagging. medium: running tests, staging deploys.
    high: production deploys, infrastructure.
    """

    low: float = Field(0.60, ge=0.0, le=1.0)
    medium: float = Field(0.75, ge=0.0, le=1.0)
    high: float = Field(0.90, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> ActionThresholds:
        if not self.low <= self.medium <= self.high:
            raise ValueError("action thresholds must satisfy low <= medium <= high")
        return self


class TestsConfig(_Strict):
    """How to run the change's tests (always inside the sandbox)."""

    setup: str | None = None
    command: str | None = "pytest -q"
    timeout: float = Field(600.0, gt=0)
    setup_timeout: float = Field(900.0, gt=0)


class AgentSettings(BaseModel):
    """Settings common to every agent; agent-specific keys are validated by the agent."""

    model_config = ConfigDict(extra="allow", frozen=True)

    enabled: bool = True
    timeout: float | None = Field(None, gt=0)

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


DEFAULT_SENSITIVE_PATHS = (
    "**/auth/**",
    "**/migrations/**",
    "**/payments/**",
    ".github/workflows/**",
    ".gitlab-ci.yml",
    POLICY_FILE,
    "CODEOWNERS",
    ".github/CODEOWNERS",
    "docs/CODEOWNERS",
)

DEFAULT_TEST_PATHS = (
    "tests/**",
    "test/**",
    "test_*.py",
    "*_test.py",
    "conftest.py",
)


INVARIANT_RULES = (
    "human_approvals_only",
    "bind_approvals_to_fingerprint",
    "approvals_after_last_push",
    "exclude_last_pusher",
    "exclude_author",
    "require_code_owner_review",
    "strict",
)


class GateRules(_Strict):
    """The merge gate's rules (the ``gate:`` section). Every rule is on by default.

    The rules that make up design invariant 2 ("a merge needs all of ...") are not
    switches: a policy may list them, but only as ``true``. What a team may tune is the
    number of approvals (at least 1), whether request-changes blocks, which checks are
    required (at least one) and which branches are protected.
    """

    required_approvals: int = Field(1, ge=1, le=20)
    human_approvals_only: bool = True
    #: An approval covers the reviewed content (patch-id of merge-base..head + merge base).
    bind_approvals_to_fingerprint: bool = True
    approvals_after_last_push: bool = True
    exclude_last_pusher: bool = True
    exclude_author: bool = True
    #: One code-owner approval per owned path.
    require_code_owner_review: bool = True
    #: Checks must be green on the speculative merge (base tip + change), not the head.
    strict: bool = True
    request_changes_blocks: bool = True
    protected_branches: tuple[str, ...] = ("main", "master", "release/*")
    required_checks: tuple[str, ...] = Field(("mergegate/check",), min_length=1)

    @field_validator(*INVARIANT_RULES)
    @classmethod
    def _invariant(cls, value: bool) -> bool:
        if value is not True:
            raise ValueError(
                "cannot be turned off: it is part of the merge invariant (human approvals bound to the "
                "reviewed content, after the last push, by neither author nor last pusher, code owners, "
                "strict checks)"
            )
        return value

    def protects(self, branch: str) -> bool:
        """Whether ``branch`` (``main`` or ``refs/heads/main``) is protected.

        Whole-name match; ``*`` and ``?`` stay within one ``/`` segment, ``**`` crosses them.
        """
        name = branch.removeprefix("refs/heads/")
        return any(_branch_regex(p).fullmatch(name) for p in self.protected_branches)


def _branch_regex(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"(\*\*|\*|\?)", pattern.removeprefix("refs/heads/"))
    table = {"**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(table.get(part, re.escape(part)) for part in parts))


class RuntimeSettings(_Strict):
    """The agent runtime (the ``runtime:`` section): what only the base branch may enable.

    Runtime agents themselves are declared under ``agents:`` (validated by
    ``mergegate.runtime.agent_spec``).
    """

    #: Lets an agent declare ``sandbox: danger-full-access`` (writable .git, no protected paths).
    allow_danger_full_access: bool = False
    #: Paths read-only for every runtime agent, on top of .git, the policy, CODEOWNERS and CI config.
    protected_paths: tuple[str, ...] = ()


class ModelPrice(_Strict):
    """What a model costs, in US dollars per million tokens (``0`` for a local model)."""

    input_per_mtok: float = Field(..., ge=0)
    output_per_mtok: float = Field(..., ge=0)
    #: Input tokens served from the provider's prompt cache (default: the input price).
    cached_input_per_mtok: float | None = Field(None, ge=0)


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ModelEndpoint(_Strict):
    """One model backend: where it is and which model to ask.

    Never a credential: ``api_key_env`` names the environment variable that holds the key,
    read when a run starts. A policy is committed to the repository, so a key written
    here would be a leaked key.
    """

    provider: Literal["openai-compatible", "openai", "anthropic"] = "openai-compatible"
    model: str = Field(..., min_length=1, max_length=200)
    #: ``http(s)://host[:port]/v1`` for OpenAI-compatible servers (vLLM, Ollama, llama.cpp, DeepSeek …).
    base_url: str | None = Field(None, max_length=2000)
    api_key_env: str | None = Field(None, max_length=100)
    #: Seconds for one HTTP attempt.
    timeout_s: float = Field(120.0, gt=0, le=3600)
    #: Retries on 429, 5xx, timeouts and dropped connections (exponential backoff), then an error.
    max_retries: int = Field(3, ge=0, le=10)
    retry_base_s: float = Field(1.0, gt=0, le=60)
    #: Cap on output tokens per model response.
    max_output_tokens: int | None = Field(None, ge=1, le=1_000_000)

    @model_validator(mode="before")
    @classmethod
    def _no_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if str(key).lower().replace("-", "_") in ("api_key", "key", "token", "secret", "password"):
                    raise ValueError(
                        f"{key}: credentials are never stored in the policy; name the environment "
                        "variable that holds it with api_key_env"
                    )
        return data

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s/@]+(/\S*)?", value):
            raise ValueError("must be an http(s) URL without credentials, e.g. http://127.0.0.1:11434/v1")
        return value

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError("must be the name of an environment variable (e.g. OPENAI_API_KEY), not a key")
        return value


class ModelsConfig(_Strict):
    """LLM backends (the ``models:`` section): read by LLM agents through ``mergegate.runtime.models``.

    Without ``default`` (and without ``MERGEGATE_MODEL`` in the environment) no model is
    configured, and LLM agents report ``skipped`` instead of a result.
    """

    default: ModelEndpoint | None = None
    #: Per-agent overrides, by agent name (e.g. ``llm-review``).
    agents: dict[str, ModelEndpoint] = Field(default_factory=dict)
    #: Price table by model name; the run's cost is computed from the usage the model reports.
    prices: dict[str, ModelPrice] = Field(default_factory=dict)


class Policy(_Strict):
    version: int = Field(1, ge=1, le=1)
    mode: Mode = Mode.ENFORCE
    blocking_severity: Severity = Severity.HIGH
    thresholds: Thresholds = Thresholds()
    action_thresholds: ActionThresholds = ActionThresholds()
    sensitive_paths: tuple[str, ...] = DEFAULT_SENSITIVE_PATHS
    test_paths: tuple[str, ...] = DEFAULT_TEST_PATHS
    sandbox: SandboxKind = SandboxKind.BUBBLEWRAP
    tests: TestsConfig = TestsConfig()
    agents: dict[str, AgentSettings] = Field(default_factory=dict)
    gate: GateRules = GateRules()
    runtime: RuntimeSettings = RuntimeSettings()
    models: ModelsConfig = ModelsConfig()

    def agent(self, name: str) -> AgentSettings:
        return self.agents.get(name) or AgentSettings()


class PolicyError(ValueError):
    """A policy file that cannot be used. ``str()`` names the file, key and line."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


def policy_digest(text: str | None) -> str:
    """A short content id for the policy that was applied (for the audit log)."""
    return hashlib.sha256((text or "").encode()).hexdigest()[:16]


def parse_policy(text: str | None, source: str = POLICY_FILE) -> Policy:
    """Parse and validate policy text; ``None`` or an empty file means the defaults."""
    if text is None or not text.strip():
        return Policy()
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(source, [f"{where}invalid YAML: {problem}"]) from None
    if data is None:
        return Policy()
    if not isinstance(data, dict):
        raise PolicyError(source, ["line 1: the top level must be a mapping of keys"])
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(source, _describe(exc, root)) from None


def _describe(exc: ValidationError, root: yaml.Node | None) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        key = ".".join(str(p) for p in loc) or "(top level)"
        line = node_line(root, loc)
        where = f"line {line}: " if line else ""
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        problems.append(f"{where}{key}: {msg}")
    return problems


def node_line(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at ``loc`` (or of its nearest existing parent)."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if str(key_node.value) == str(part):
                    # An unknown key is reported at the key itself.
                    line = key_node.start_mark.line + 1
                    node = value_node
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line
