"""Redact credentials from tool-call arguments before they are audited.

Reuses the secrets agent's detectors (``mergegate.core.secret_patterns``: its credential
patterns, its placeholder rules and its masked preview), so the audit log hides exactly
what the secrets agent would flag, in the same format. On top of that, values of
arguments or ``KEY=value`` words whose *name* says they are secret (``password``,
``token``, ``api_key`` …) are masked whatever they look like: an agent that writes
``--password hunter2`` should not leave ``hunter2`` in the log.
"""

from __future__ import annotations

import re
from typing import Any

from mergegate.core.secret_patterns import is_placeholder, mask, pattern_hits

_PEM = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    re.DOTALL,
)
_SECRET_NAME = re.compile(r"(?i)(pass(word|wd)?|secret|token|api[_-]?key|private[_-]?key|credential|auth)")
_NAME = r"(?:pass(?:word|wd)?|secret|token|api[_-]?key|credential)"
#: ``NAME=value``, ``name: value`` and ``--name value``.
_KEY_VALUE = (
    re.compile(rf"(?i)\b([\w.-]*{_NAME}[\w.-]*)(\s*[=:]\s*)([\"']?)([^\s\"']{{4,}})\3"),
    re.compile(rf"(?i)(--?[\w-]*{_NAME}[\w-]*)(\s+)([\"']?)([^\s\"'-][^\s\"']{{3,}})\3"),
)


def redact_text(text: str) -> str:
    text = _PEM.sub("[REDACTED private key]", text)
    out = []
    for number, line in enumerate(text.split("\n"), start=1):
        # Names first: the masked previews inserted below must not be masked again.
        for regex in _KEY_VALUE:
            line = regex.sub(_mask_kv, line)
        for hit in sorted(pattern_hits("<args>", number, line), key=lambda h: -len(h.value)):
            line = line.replace(hit.value, f"[REDACTED {hit.kind}: {mask(hit.value)}]")
        out.append(line)
    return "\n".join(out)


def _mask_kv(m: re.Match[str]) -> str:
    value = m.group(4)
    if value.startswith("[REDACTED") or is_placeholder(value):
        return m.group(0)
    return f"{m.group(1)}{m.group(2)}{m.group(3)}[REDACTED {mask(value)}]{m.group(3)}"


def redact(value: Any, key: str | None = None) -> Any:
    """A copy of ``value`` (JSON-like) with secrets masked."""
    if isinstance(value, str):
        if key is not None and _SECRET_NAME.search(key) and value and not is_placeholder(value):
            return f"[REDACTED {mask(value)}]"
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, key) for v in value]
    return value
