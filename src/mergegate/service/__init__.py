"""Use cases that tie core, agents, runtime, vcs and store together."""
