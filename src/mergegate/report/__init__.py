"""Output formats for a check report: one module per format, each with ``render(report) -> str``."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from mergegate.service.check import CheckReport

FORMATS = ("text", "json", "sarif", "markdown", "junit")


def renderer(fmt: str) -> Callable[[CheckReport], str]:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    module = importlib.import_module(f"{__name__}.{fmt}_format")
    return module.render
