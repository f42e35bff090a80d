"""Path globs with ``**`` as the one shared matcher for policy paths.

``*`` and ``?`` never cross ``/``; ``**`` matches any number of whole directories.
A pattern without ``/`` matches the name at any depth (``*.py``), as in .gitignore.
A pattern ending in ``/`` matches everything below that directory.
"""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=1024)
def compile_glob(pattern: str) -> re.Pattern[str]:
    pat = pattern.strip()
    if pat.endswith("/"):
        pat += "**"
    anchored = "/" in pat.rstrip("/")
    pat = pat.lstrip("/")
    out: list[str] = []
    i = 0
    while i < len(pat):
        c = pat[i]
        if pat.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pat.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(c))
            i += 1
    body = "".join(out)
    prefix = "" if anchored else "(?:.*/)?"
    return re.compile(f"{prefix}{body}")


def glob_match(pattern: str, path: str) -> bool:
    return compile_glob(pattern).fullmatch(path) is not None


def match_any(patterns: list[str] | tuple[str, ...], path: str) -> str | None:
    """The first pattern matching ``path``, or ``None``."""
    for pattern in patterns:
        if glob_match(pattern, path):
            return pattern
    return None
