"""mergegate: the outer loop for AI coding agents.

Layers (see docs/architecture.md): ``core`` is the pure domain; ``agents`` analyse a
change; ``runtime`` is what untrusted work runs inside; ``vcs`` reads git; ``report``
renders results; ``store`` persists the audit log; ``service`` ties them together;
``cli`` is a thin Typer layer over the service.
"""

__version__ = "0.1.0"
