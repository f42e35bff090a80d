"""Where the policy comes from: the base ref, never the change under review."""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml
from pydantic import BaseModel, ValidationError

from mergegate.agents import registry
from mergegate.core.policy import POLICY_FILE, Policy, PolicyError, node_line, parse_policy, policy_digest
from mergegate.runtime.agent_spec import AgentSpec, build_agent, is_runtime_declaration
from mergegate.runtime.sandbox import SandboxMode
from mergegate.vcs.git import GitRepo


@dataclass(frozen=True)
class LoadedPolicy:
    policy: Policy
    #: Where it was read from, e.g. ``origin/main:.mergegate.yml`` or ``built-in defaults``.
    source: str
    digest: str
    options: dict[str, BaseModel] = field(default_factory=dict)
    #: Runtime agents declared under ``agents:`` (see ``mergegate.runtime.agent_spec``).
    runtime_agents: dict[str, AgentSpec] = field(default_factory=dict)


def load_policy_text(text: str | None, source: str) -> LoadedPolicy:
    policy = parse_policy(text, source)
    agents = registry()
    root = yaml.compose(text) if text and text.strip() else None
    problems: list[str] = []
    options: dict[str, BaseModel] = {}
    runtime_agents, runtime_problems = _runtime_agents(policy, root)
    problems += runtime_problems
    for name in policy.agents:
        if name not in agents and not is_runtime_declaration(name, _raw(policy.agents[name])):
            line = node_line(root, ("agents", name))
            known = ", ".join(sorted(agents))
            problems.append(f"line {line}: agents.{name}: unknown agent (known: {known})")
    for name, agent in agents.items():
        try:
            options[name] = agent.Options.model_validate(policy.agent(name).options())
        except ValidationError as exc:
            for err in exc.errors():
                loc = ("agents", name, *err["loc"])
                key = ".".join(str(p) for p in loc)
                msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
                problems.append(f"line {node_line(root, loc)}: {key}: {msg}")
    if problems:
        raise PolicyError(source, problems)
    return LoadedPolicy(policy, source, policy_digest(text), options, runtime_agents)


def _raw(settings: BaseModel) -> dict:
    return {**settings.model_dump(exclude_unset=True), **(settings.model_extra or {})}


def _runtime_agents(policy: Policy, root: yaml.Node | None) -> tuple[dict[str, AgentSpec], list[str]]:
    """Validate the runtime agent declarations, with the key and line of each problem."""
    specs: dict[str, AgentSpec] = {}
    problems: list[str] = []
    for name, settings in policy.agents.items():
        raw = _raw(settings)
        if not is_runtime_declaration(name, raw):
            continue
        try:
            spec = build_agent(name, raw)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ("agents", name, *err["loc"])
                key = ".".join(str(p) for p in loc)
                msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
                problems.append(f"line {node_line(root, loc)}: {key}: {msg}")
            continue
        if spec.sandbox is SandboxMode.DANGER_FULL_ACCESS and not policy.runtime.allow_danger_full_access:
            loc = ("agents", name, "sandbox")
            problems.append(
                f"line {node_line(root, loc)}: agents.{name}.sandbox: danger-full-access needs "
                "runtime.allow_danger_full_access: true in the base branch's policy"
            )
            continue
        specs[name] = spec
    return specs, problems


def load_policy(repo: GitRepo, base_commit: str, base_label: str) -> LoadedPolicy:
    """The policy as the base branch has it (a change cannot loosen its own policy)."""
    text = repo.read_text(base_commit, POLICY_FILE)
    source = f"{base_label}:{POLICY_FILE}" if text is not None else "built-in defaults"
    return load_policy_text(text, source)
