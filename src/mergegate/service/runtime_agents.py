"""A runtime agent's declaration and runner, from a policy read at the base ref.

Shared by ``mergegate agent replay`` (a local work tree) and the server's hosted runs
(``service.agent_runs``), so both build the runner from the same facts: the agent's
allowlist, the base policy's protected and test paths, its tests command and whether
``danger-full-access`` is allowed.
"""

from __future__ import annotations

from typing import Any

from mergegate.runtime.agent_spec import PRESETS, AgentSpec, build_agent
from mergegate.runtime.approvals import ApprovalGate
from mergegate.runtime.runner import ToolRunner
from mergegate.runtime.workspace import Workspace
from mergegate.service.policy_source import LoadedPolicy


class UnknownAgent(LookupError):
    pass


def find_agent(loaded: LoadedPolicy, name: str) -> AgentSpec:
    """The declared agent, else the preset of that name; ``UnknownAgent`` names the known ones."""
    if name in loaded.runtime_agents:
        return loaded.runtime_agents[name]
    if name in PRESETS:
        return build_agent(name, None)
    known = sorted(set(loaded.runtime_agents) | set(PRESETS))
    raise UnknownAgent(f"no runtime agent {name!r} in {loaded.source} (known: {', '.join(known)})")


def build_runner(
    loaded: LoadedPolicy,
    name: str,
    spec: AgentSpec,
    workspace: Workspace,
    audit: Any,
    gate: ApprovalGate,
    *,
    run_id: str | None = None,
    cls: type[ToolRunner] = ToolRunner,
    **extra: Any,
) -> ToolRunner:
    """A runner for ``name`` with everything the base policy says about the runtime
    (``cls``/``extra``: a runner subclass and its own arguments)."""
    return cls(
        agent=name,
        spec=spec,
        workspace=workspace,
        audit=audit,
        approvals=gate,
        policy_applied=f"{loaded.source}@{loaded.digest}",
        test_paths=loaded.policy.test_paths,
        extra_protected=loaded.policy.runtime.protected_paths,
        tests_command=loaded.policy.tests.command,
        allow_danger_full_access=loaded.policy.runtime.allow_danger_full_access,
        run_id=run_id,
        **extra,
    )
