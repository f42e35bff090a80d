"""Forges: where changes come from. ``local`` is the embedded one (later: GitHub, GitLab)."""
