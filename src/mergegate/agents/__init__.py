"""Analysis agents: one module per agent behind the ``Agent`` protocol (see ``base``).

Built-in agents are discovered from the modules of this package; third-party agents
register under the ``mergegate.agents`` entry point group.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from importlib.metadata import entry_points

from mergegate.agents.base import Agent, AgentContext, AgentOutput, AgentSkipped

__all__ = ["Agent", "AgentContext", "AgentOutput", "AgentSkipped", "registry"]

_NOT_AGENTS = {"base", "common"}


@cache
def registry() -> dict[str, Agent]:
    """Every available agent by name, built-ins first, in a stable order."""
    agents: dict[str, Agent] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name in _NOT_AGENTS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        agent = getattr(module, "AGENT", None)
        if agent is not None:
            agents[agent.name] = agent
    for ep in entry_points(group="mergegate.agents"):
        agent = ep.load()
        agents.setdefault(agent.name, agent)
    return agents
