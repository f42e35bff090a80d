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
could quote the line. The scan runs in a child process of this module at low CPU
priority (see ``scan_in_child``), which answers with hashes and masked previews only.

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

import json
import re
import sys
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mergegate.agents.base import AgentContext, AgentOutput, AgentSkipped
from mergegate.core.change import ChangedFile
from mergegate.core.finding import Category, Finding, make_fingerprint
from mergegate.core.secret_patterns import Hit, is_placeholder, mask, pattern_hits, private_key_hits, sha256, url_user
from mergegate.core.severity import Severity
from mergegate.runtime.process import run_process

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

_PRAGMA = re.compile(r"pragma:\s*(?:allow|white)list[ -]secret", re.IGNORECASE)
_PRAGMA_NEXTLINE = re.compile(r"pragma:\s*(?:allow|white)list[ -]nextline[ -]secret", re.IGNORECASE)

#: detect-secrets keeps its settings in a process-wide singleton.
_DS_LOCK = threading.Lock()


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
            user = url_user(lines[s.line_number - 1], s.secret_value) if s.line_number <= len(lines) else None
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


def scan_file_text(path: str, file: Path, added: frozenset[int], opts: Options) -> FileScan:
    """Everything the agent knows about one file, values included (they stay in here)."""
    text = file.read_text("utf-8", "replace")
    lines = text.splitlines()
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


def scan_all(head_dir: Path, added: dict[str, frozenset[int]], opts: Options) -> dict[str, FileScan]:
    """Scan each file (path -> its added lines) under ``head_dir``."""
    out = {}
    for path, lines in added.items():
        try:
            out[path] = scan_file_text(path, head_dir / path, lines, opts)
        except Exception as exc:  # the message could quote the line: keep only its type
            raise SecretsScanFailed(f"could not scan {path}: {type(exc).__name__}") from None
    return out


# -- the scan runs in a child process ------------------------------------------------------
#
# detect-secrets is pure-Python CPU work (import included, a few tenths of a second). In a
# thread of the check's process it would hold the GIL against every other agent's Python
# work, the test agent's sandbox and git steps included, which then wait for it. In a
# child process at low priority (like bandit and ruff) it only uses CPU time the check
# leaves idle. The child gets the file list on stdin and answers on stdout with what the
# findings need: the hash and the masked preview of each value, never the value.

_WORKER = "from mergegate.agents.secrets import worker_main; worker_main()"


@dataclass(frozen=True)
class Reported:
    """A hit as it leaves the scan: its value blanked, replaced by its SHA-256 and masked preview."""

    hit: Hit
    digest: str
    masked: str

    @classmethod
    def of(cls, h: Hit) -> Reported:
        return cls(replace(h, value=""), sha256(h.value), mask(h.value))

    def as_json(self) -> dict[str, object]:
        hit = {k: v for k, v in asdict(self.hit).items() if k != "value"}
        return {"hit": {**hit, "severity": self.hit.severity.value}, "digest": self.digest, "masked": self.masked}

    @classmethod
    def from_json(cls, data: dict) -> Reported:
        hit = Hit(**{**data["hit"], "severity": Severity(data["hit"]["severity"]), "value": ""})
        return cls(hit, data["digest"], data["masked"])


def _report(scans: dict[str, FileScan]) -> dict[str, object]:
    files = {}
    for path, scan in scans.items():
        files[path] = {
            "hits": [Reported.of(h).as_json() for h in scan.hits],
            "inline_allowed": scan.inline_allowed,
            "full_scan": scan.full_scan,
        }
    return {"files": files}


def worker_main() -> None:
    """The child's side: a JSON request on stdin, a JSON report on stdout (exit 0 either way)."""
    request = json.load(sys.stdin)
    try:
        opts = Options.model_validate(request["options"])
        added = {path: frozenset(lines) for path, lines in request["files"].items()}
        answer = _report(scan_all(Path(request["head_dir"]), added, opts))
    except SecretsScanFailed as exc:
        answer = {"error": str(exc)}
    json.dump(answer, sys.stdout)


@dataclass
class ScanReport:
    hits: list[Reported]
    inline_allowed: list[str]
    partial: list[str]


async def scan_in_child(head_dir: Path, files: list[ChangedFile], opts: Options) -> ScanReport:
    request = {
        "head_dir": str(head_dir),
        "files": {f.path: sorted(f.added_lines) for f in files},
        "options": opts.model_dump(mode="json"),
    }
    result = await run_process(
        [sys.executable, "-I", "-c", _WORKER], stdin=json.dumps(request).encode(), low_priority=True
    )
    try:
        answer = json.loads(result.stdout) if result.returncode == 0 else {}
    except ValueError:
        answer = {}
    if "files" not in answer:
        # Never the child's output: a traceback could quote the line being scanned.
        raise SecretsScanFailed(answer.get("error") or f"the secrets scan exited with status {result.returncode}")
    report = ScanReport([], [], [])
    for path, scan in answer["files"].items():
        report.inline_allowed += [f"{path}:{n}" for n in scan["inline_allowed"]]
        if not scan["full_scan"]:
            report.partial.append(path)
        report.hits += [Reported.from_json(h) for h in scan["hits"]]
    return report


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
        scan = await scan_in_child(ctx.head_dir, files, opts)
        findings, allowlisted = [], 0
        for h in scan.hits:
            if any(h.digest.startswith(a) for a in opts.allow):
                allowlisted += 1
                continue
            findings.append(self._finding(h))
        lines = sum(len(f.added_lines) for f in files)
        notes = [f"scanned {lines} added line(s) in {len(files)} file(s)"]
        if allowlisted:
            notes.append(f"{allowlisted} value(s) allowlisted by hash in the base policy")
        if scan.inline_allowed:
            notes.append(
                f"allowlisted inline by 'pragma: allowlist secret' in this change: {', '.join(scan.inline_allowed)}"
            )
        if scan.partial:
            notes.append(f"too large for detect-secrets, own patterns only: {', '.join(scan.partial)}")
        return AgentOutput(findings=findings, confidence=0.9 if scan.partial else 1.0, notes=notes)

    def _finding(self, reported: Reported) -> Finding:
        h, masked, digest = reported.hit, reported.masked, reported.digest
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
