"""Credential formats, placeholders and masking: the pure part of secret detection.

Shared by the secrets agent (which adds detect-secrets on top) and the agent runtime
(which redacts tool-call arguments before they are audited), so both hide exactly the
same things in the same format. A ``Hit`` carries the secret value; callers must never
let it leave their module (outputs show ``mask(value)`` and ``sha256(value)``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from mergegate.core.severity import Severity


@dataclass(frozen=True)
class Pattern:
    rule: str
    kind: str
    severity: Severity
    confidence: float
    regex: re.Pattern[str]
    group: int = 1
    #: A group holding a user name: a password equal to it is a dev default, not a secret.
    user_group: int | None = None


def _p(rule, kind, severity, confidence, regex, **kw) -> Pattern:
    return Pattern(rule, kind, severity, confidence, re.compile(regex), **kw)


#: Our own patterns, most specific first (an earlier match wins an overlapping later one).
PATTERNS = (
    _p("aws-access-key-id", "AWS access key id", Severity.CRITICAL, 0.9, r"\b((?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16})\b"),
    _p(
        "aws-secret-access-key",
        "AWS secret access key",
        Severity.CRITICAL,
        0.85,
        r"(?i)(?:aws.{0,20}secret|secret.?access.?key)[\w.-]{0,20}[\"']?\s*[:=]>?\s*[\"']?"
        r"([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
    ),
    # The gate's own API tokens (store/principals.py): a fixed format, never a placeholder.
    _p(
        "mergegate-token",
        "mergegate API token",
        Severity.HIGH,
        0.99,
        r"\b(mgt_[0-9a-f]{12}_[A-Za-z0-9_-]{43})(?![\w-])",
    ),
    _p("anthropic-api-key", "Anthropic API key", Severity.HIGH, 0.95, r"\b(sk-ant-[a-z]{3,8}\d{2}-[\w-]{32,})"),
    _p("github-token", "GitHub token", Severity.HIGH, 0.95, r"\b((?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255})\b"),
    _p("github-token", "GitHub token", Severity.HIGH, 0.95, r"\b(github_pat_[A-Za-z0-9_]{60,255})\b"),
    _p("gitlab-token", "GitLab token", Severity.HIGH, 0.95, r"\b(glpat-[\w-]{20,})"),
    _p("slack-token", "Slack token", Severity.HIGH, 0.9, r"\b(xox[abposre]-[A-Za-z0-9-]{10,})"),
    _p(
        "slack-webhook",
        "Slack webhook URL",
        Severity.HIGH,
        0.9,
        r"(https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]{16,})",
    ),
    _p("openai-api-key", "OpenAI-style API key", Severity.HIGH, 0.85, r"\b(sk-(?:proj-|svcacct-|admin-)?[\w-]{20,})"),
    _p(
        "jwt",
        "JSON Web Token",
        Severity.HIGH,
        0.7,
        r"\b(eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})",
    ),
    _p(
        "database-url-password",
        "database URL with a password",
        Severity.HIGH,
        0.8,
        r"\b(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|sqlserver|oracle|cockroachdb)"
        r"(?:\+\w+)?://([^:/\s@'\"]+):([^@/\s'\"]+)@",
        group=2,
        user_group=1,
    ),
    # Any other URL with a password (``https://user:pw@host``): a credential in the clear.
    _p(
        "url-password",
        "URL with a password",
        Severity.HIGH,
        0.7,
        r"\b[a-z][a-z0-9+.-]{1,20}://([^:/\s@'\"]+):([^@/\s'\"]+)@",
        group=2,
        user_group=1,
    ),
)
#: Formats so specific that a match is never a placeholder (random parts can spell "todo").
_EXACT_FORMAT = {"mergegate-token"}
#: Rules whose match must look random (a digit and a letter), not a word-ish identifier.
_RANDOM_LOOKING = {"openai-api-key", "anthropic-api-key", "aws-secret-access-key", "gitlab-token", "slack-token"}

_PRIVATE_KEY_BEGIN = re.compile(r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY(?: BLOCK)?-----")
_PRIVATE_KEY_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
_PRIVATE_KEY_MIN_BODY = 64  # base64 characters: less is an example or a check for the marker

_PLACEHOLDER_PARTS = (
    "xxx",
    "***",
    "...",
    "changeme",
    "change_me",
    "change-me",
    "example",
    "placeholder",
    "your",
    "dummy",
    "redacted",
    "sample",
    "replace",
    "insert",
    "todo",
    "fake",
    "${",
    "{{",
    "%(",
    "environ",
    "getenv",
    "process.env",
)
_PLACEHOLDER_WORDS = {"password", "passwd", "secret", "token", "pass", "none", "null", "true", "false", "undefined"}


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def mask(value: str) -> str:
    """A preview showing at most 4 leading and 2 trailing characters, never over 20% of it."""
    budget = len(value) // 5
    lead = min(4, budget)
    tail = min(2, budget - lead)
    return f"{value[:lead]}…{value[-tail:] if tail else ''} ({len(value)} chars)"


def is_placeholder(value: str, user: str | None = None) -> bool:
    v = value.strip("\"'` ")
    low = v.lower()
    if len(v) < 4 or low in _PLACEHOLDER_WORDS or (user is not None and v == user):
        return True
    if any(part in low for part in _PLACEHOLDER_PARTS):
        return True
    return v[0] in "<$%{[" or len(set(low)) <= 3


def _looks_random(value: str) -> bool:
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


@dataclass(frozen=True)
class Hit:
    """A candidate secret on one line. ``value`` stays inside this module."""

    path: str
    line: int
    rule: str
    kind: str
    severity: Severity
    confidence: float
    value: str


def private_key_hits(path: str, lines: list[str], added: frozenset[int]) -> list[Hit]:
    """Private key blocks with a real body that the change added or altered (any line of it)."""
    hits = []
    for i, text in enumerate(lines):
        begin = _PRIVATE_KEY_BEGIN.search(text)
        if not begin:
            continue
        rest = text[begin.end() :]
        if "\\n" in rest:  # a key inlined in a string (JSON, .env)
            block, last = re.split(_PRIVATE_KEY_END, rest)[0].split("\\n"), i
        else:
            block, last = [], i
            for j in range(i + 1, min(len(lines), i + 400)):
                last = j
                if _PRIVATE_KEY_END.search(lines[j]):
                    break
                block.append(lines[j])
        body = "".join(re.sub(r"[^A-Za-z0-9+/=]", "", b) for b in block if ":" not in b)
        if len(body) < _PRIVATE_KEY_MIN_BODY or not any(n in added for n in range(i + 1, last + 2)):
            continue
        kind = f"{begin.group(1).strip()} private key".strip()
        hits.append(Hit(path, i + 1, "private-key", kind, Severity.CRITICAL, 0.95, body))
    return hits


def pattern_hits(path: str, line_no: int, text: str) -> list[Hit]:
    hits = []
    for p in PATTERNS:
        for m in p.regex.finditer(text):
            value = m.group(p.group)
            user = m.group(p.user_group) if p.user_group else None
            if (p.rule not in _EXACT_FORMAT and is_placeholder(value, user)) or (
                p.rule in _RANDOM_LOOKING and not _looks_random(value)
            ):
                continue
            hits.append(Hit(path, line_no, p.rule, p.kind, p.severity, p.confidence, value))
    return hits


def url_user(line: str, password: str) -> str | None:
    m = re.search(r"://([^:/\s@]+):" + re.escape(password) + "@", line)
    return m.group(1) if m else None
