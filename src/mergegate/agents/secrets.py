"""secrets: credentials on the lines a change adds, in any text file, never repeated in any output.

Two detectors, merged per line: our own patterns for the formats teams leak most (cloud
keys, GitHub/GitLab/Slack tokens, OpenAI/Anthropic keys, private key blocks, JWTs,
database URLs with passwords), then detect-secrets' plugins (keywords, basic auth,
Stripe, Twilio, high-entropy strings…). Where both see the same value, the more specific
detector's finding is kept. detect-secrets scans each changed file whole (it needs the
context and its config-file transformers); only hits on added lines are reported.

Severity: ``critical`` for private keys and cloud keys, ``high`` for every other
credential (so the default policy blocks a leaked API key), ``medium`` for a
high-entropy string that no other detector recognises. CWE-798 throughout.
detect-secrets' hex-entropy plugin is off (it flags every commit id and checksum; hex
keys next to a keyword are still caught by its keyword plugin).

The value never leaves this module: findings carry a masked preview (at most four
leading characters, never more than a fifth of the value) and a SHA-256 prefix; the
fingerprint is built from the hash. Failures are reported without exception text, which
could quote the line.

Not secrets: placeholders (``xxx``, ``changeme``, ``<your-key>``, ``${VAR}``, the AWS
documentation key …), values equal to the user name in a URL (``postgres:postgres``),
and values allowlisted by hash in the base branch's ``.mergegate.yml``
(``agents: {secrets: {allow: [sha256…]}}``). The inline ``pragma: allowlist secret``
comment (or ``pragma: allowlist nextline secret`` on the line before) is written by the
change itself, so by default it hides nothing, just as a change cannot relax its own
policy; the base policy can opt in (``inline_allowlist: true``), and every use is then
listed in the notes.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mergegate.agents.base import AgentContext, AgentOutput, AgentSkipped
from mergegate.core.change import ChangedFile
from mergegate.core.finding import Category, Finding, make_fingerprint
from mergegate.core.severity import Severity

NAME = "secrets"
CWE = "CWE-798"
HASH_PREFIX = 16
#: Larger files get only our own patterns on their added lines (detect-secrets reads whole files).
MAX_FULL_SCAN_BYTES = 2 * 1024 * 1024


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: SHA-256 hashes (or prefixes of at least 12 hex digits, as shown in findings) of
    #: values known not to be secrets.
    allow: list[str] = Field(default_factory=list)
    #: Honour ``pragma: allowlist secret`` comments added by the change (off: the change
    #: would be exempting itself).
    inline_allowlist: bool = False
    #: detect-secrets' base64 high-entropy string plugin (noisier; findings are ``medium``).
    entropy: bool = True

    @field_validator("allow")
    @classmethod
    def _hashes(cls, allow: list[str]) -> list[str]:
        # The message never quotes the entry: someone may have pasted the secret itself.
        if any(not re.fullmatch(r"[0-9a-fA-F]{12,64}", a) for a in allow):
            raise ValueError("entries must be SHA-256 hex digests (12 to 64 hex digits) as shown in findings")
        return [a.lower() for a in allow]


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
)
#: Rules whose match must look random (a digit and a letter), not a word-ish identifier.
_RANDOM_LOOKING = {"openai-api-key", "anthropic-api-key", "aws-secret-access-key", "gitlab-token", "slack-token"}

_PRIVATE_KEY_BEGIN = re.compile(r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY(?: BLOCK)?-----")
_PRIVATE_KEY_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
_PRIVATE_KEY_MIN_BODY = 64  # base64 characters: less is an example or a check for the marker

#: detect-secrets types that are cloud credentials (critical) or mere entropy (medium).
_DS_CRITICAL = {"AWS Access Key", "Azure Storage Account access key", "IBM Cloud IAM Key", "IBM COS HMAC Credentials"}
_DS_ENTROPY = {"Base64 High Entropy String"}
#: Plugins we replace (their values are truncated or they flag markers, not keys) or drop (not secrets).
#: Hex entropy flags every commit id and checksum; hex keys are caught by keyword instead.
_DS_DISABLED = {
    "GitHubTokenDetector",
    "GitLabTokenDetector",
    "PrivateKeyDetector",
    "IPPublicDetector",
    "HexHighEntropyString",
}

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
_PRAGMA = re.compile(r"pragma:\s*(?:allow|white)list[ -]secret", re.IGNORECASE)
_PRAGMA_NEXTLINE = re.compile(r"pragma:\s*(?:allow|white)list[ -]nextline[ -]secret", re.IGNORECASE)

#: detect-secrets keeps its settings in a process-wide singleton.
_DS_LOCK = threading.Lock()


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
            if is_placeholder(value, user) or (p.rule in _RANDOM_LOOKING and not _looks_random(value)):
                continue
            hits.append(Hit(path, line_no, p.rule, p.kind, p.severity, p.confidence, value))
    return hits


def _url_user(line: str, password: str) -> str | None:
    m = re.search(r"://([^:/\s@]+):" + re.escape(password) + "@", line)
    return m.group(1) if m else None


def detect_secrets_hits(path: str, file: Path, lines: list[str], added: frozenset[int], entropy: bool) -> list[Hit]:
    """detect-secrets' plugins over the whole file; hits on added lines only."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.core.scan import scan_file
    from detect_secrets.settings import transient_settings

    disabled = _DS_DISABLED | (set() if entropy else {"Base64HighEntropyString"})
    plugins = [
        {"name": cls.__name__}
        for cls in get_mapping_from_secret_type_to_class().values()
        if cls.__name__ not in disabled
    ]
    hits = []
    with _DS_LOCK, transient_settings({"plugins_used": plugins}) as settings:
        # We apply the inline pragma ourselves, uniformly for every detector, and count it.
        settings.disable_filters("detect_secrets.filters.allowlist.is_line_allowlisted")
        for s in scan_file(str(file)):
            if s.line_number not in added or not s.secret_value:
                continue
            user = _url_user(lines[s.line_number - 1], s.secret_value) if s.line_number <= len(lines) else None
            if is_placeholder(s.secret_value, user):
                continue
            if s.type in _DS_ENTROPY:
                severity, confidence = Severity.MEDIUM, 0.5
            elif s.type in _DS_CRITICAL:
                severity, confidence = Severity.CRITICAL, 0.85
            else:
                severity, confidence = Severity.HIGH, 0.75
            rule = re.sub(r"[^a-z0-9]+", "-", s.type.lower()).strip("-")
            hits.append(Hit(path, s.line_number, rule, s.type, severity, confidence, s.secret_value))
    return hits


def merge(hits: list[Hit]) -> list[Hit]:
    """One hit per value per line: the first (most specific) of any overlapping values."""
    kept: list[Hit] = []
    for h in hits:
        if not any(k.line == h.line and (h.value in k.value or k.value in h.value) for k in kept):
            kept.append(h)
    return sorted(kept, key=lambda h: h.line)


@dataclass
class FileScan:
    hits: list[Hit]
    inline_allowed: list[int]
    full_scan: bool


def scan_file_text(path: str, file: Path, changed: ChangedFile, opts: Options) -> FileScan:
    """Everything the agent knows about one file, values included (they stay in here)."""
    text = file.read_text("utf-8", "replace")
    lines = text.splitlines()
    added = changed.added_lines
    ours = private_key_hits(path, lines, added)
    for n in sorted(added):
        if 0 < n <= len(lines):
            ours += pattern_hits(path, n, lines[n - 1])
    full_scan = file.stat().st_size <= MAX_FULL_SCAN_BYTES
    theirs = detect_secrets_hits(path, file, lines, added, opts.entropy) if full_scan else []
    specific = [h for h in theirs if h.severity is not Severity.MEDIUM]
    vague = [h for h in theirs if h.severity is Severity.MEDIUM]
    hits, allowed = [], []
    for h in merge(ours + specific + vague):
        line = lines[h.line - 1] if h.line <= len(lines) else ""
        previous = lines[h.line - 2] if h.line >= 2 else ""
        if opts.inline_allowlist and (_PRAGMA.search(line) or _PRAGMA_NEXTLINE.search(previous)):
            allowed.append(h.line)
        else:
            hits.append(h)
    return FileScan(hits, allowed, full_scan)


class SecretsScanFailed(RuntimeError):
    """Scanning a file failed; the message names the file and error type only, never content."""


def scan_all(head_dir: Path, files: list[ChangedFile], opts: Options) -> dict[str, FileScan]:
    out = {}
    for f in files:
        try:
            out[f.path] = scan_file_text(f.path, head_dir / f.path, f, opts)
        except Exception as exc:  # the message could quote the line: keep only its type
            raise SecretsScanFailed(f"could not scan {f.path}: {type(exc).__name__}") from None
    return out


class Secrets:
    name: ClassVar[str] = NAME
    description: ClassVar[str] = "credentials on added lines (own patterns + detect-secrets), masked in every output"
    Options: ClassVar[type[BaseModel]] = Options
    default_timeout: ClassVar[float] = 120.0

    async def run(self, ctx: AgentContext) -> AgentOutput:
        files = [f for f in ctx.head_files() if f.added_lines and (ctx.head_dir / f.path).is_file()]
        if not files:
            raise AgentSkipped("no added lines in text files")
        opts: Options = ctx.options  # type: ignore[assignment]
        scans = await asyncio.to_thread(scan_all, ctx.head_dir, files, opts)
        findings, allowlisted, inline, partial = [], 0, [], []
        for path, scan in scans.items():
            inline += [f"{path}:{n}" for n in scan.inline_allowed]
            if not scan.full_scan:
                partial.append(path)
            for h in scan.hits:
                digest = sha256(h.value)
                if any(digest.startswith(a) for a in opts.allow):
                    allowlisted += 1
                    continue
                findings.append(self._finding(h, digest))
        lines = sum(len(f.added_lines) for f in files)
        notes = [f"scanned {lines} added line(s) in {len(files)} file(s)"]
        if allowlisted:
            notes.append(f"{allowlisted} value(s) allowlisted by hash in the base policy")
        if inline:
            notes.append(f"allowlisted inline by 'pragma: allowlist secret' in this change: {', '.join(inline)}")
        if partial:
            notes.append(f"too large for detect-secrets, own patterns only: {', '.join(partial)}")
        return AgentOutput(findings=findings, confidence=0.9 if partial else 1.0, notes=notes)

    def _finding(self, h: Hit, digest: str) -> Finding:
        masked = mask(h.value)
        short = digest[:HASH_PREFIX]
        return Finding(
            agent=self.name,
            rule=h.rule,
            severity=h.severity,
            confidence=h.confidence,
            message=f"{h.kind} added ({masked}, sha256 {short}): remove it, rotate it, load it from the environment",
            category=Category.SECURITY,
            path=h.path,
            line=h.line,
            end_line=h.line,
            cwe=CWE,
            fingerprint=make_fingerprint(self.name, h.rule, h.path, digest),
            properties={"masked": masked, "sha256": short, "kind": h.kind},
        )


AGENT = Secrets()
