"""Execute one tool call through every layer, and audit it whatever happens.

A call passes, in order (the first layer that says no ends it):

1. **registry** — the tool exists, is not one of the never-grantable ones, and the
   arguments fit its strict model;
2. **budget** — the agent has turns left (``max_turns``);
3. **targets** — the arguments become what can be checked: paths resolved inside the
   workspace (``..``, absolute paths, ``~`` and symlink escapes refused), the shell
   command parsed into argv vectors (anything unusual refused), the URL's host;
4. **deny rules**, then **allow rules** — on the resolved paths, on *each* simple command
   of a pipeline or list, on the host;
5. **shell words** — redirection targets resolve inside the workspace and are not
   protected; arguments that are absolute paths or climb out with ``..`` are refused
   (defence in depth: the sandbox hides those places anyway), except ``/dev/null`` and
   absolute paths in the sandbox's private ``/tmp``;
6. **protected paths** — writes to ``.git``, the policy, CODEOWNERS, CI config (and tests,
   for a fixer) are refused;
7. **approval** — the tool's default ``needs_approval`` or the agent's ``ask:`` rules send
   the call to the ``ApprovalGate``: allow, deny (the reason is the tool result) or pause;
8. **execution** — file I/O without following symlinks; programs only in bubblewrap, in
   the agent's sandbox mode, under limits; a limit hit or a protected path touched turns
   the call into a refusal.

Every call is appended to the hash-chained audit log *before* anything runs
(``tool_call``: allowed / refused / paused, with redacted arguments and the reason), and
an allowed call gets a second entry with its result (``tool_result``). If the log cannot
be written, nothing runs.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from mergegate.core.policy import DEFAULT_TEST_PATHS
from mergegate.runtime.agent_spec import AgentSpec
from mergegate.runtime.approvals import ApprovalGate, ApprovalRequest, PauseAll, Verdict, call_fingerprint
from mergegate.runtime.permissions import first_match
from mergegate.runtime.redact import redact, redact_text
from mergegate.runtime.sandbox import BubblewrapSandbox, SandboxMode, SandboxUnavailable
from mergegate.runtime.shell import CommandList, ShellRefused
from mergegate.runtime.tools import (
    FORBIDDEN_TOOLS,
    TOOLS,
    Target,
    Tool,
    ToolContext,
    ToolRefused,
    canonical_tool_name,
    refuse_private,
)
from mergegate.runtime.workspace import PathRefused, ProtectedPaths, Workspace
from mergegate.store.audit_log import AuditLog


class Status(StrEnum):
    ALLOWED = "allowed"
    REFUSED = "refused"
    PAUSED = "paused"


@dataclass(frozen=True)
class CallResult:
    index: int
    tool: str
    status: Status
    reason: str
    output: str

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "tool": self.tool,
            "status": str(self.status),
            "reason": self.reason,
            "output": self.output,
        }


class Refusal(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ToolRunner:
    def __init__(
        self,
        *,
        agent: str,
        spec: AgentSpec,
        workspace: Workspace,
        audit: AuditLog,
        approvals: ApprovalGate | None = None,
        policy_applied: str = "built-in defaults",
        test_paths: tuple[str, ...] = DEFAULT_TEST_PATHS,
        extra_protected: tuple[str, ...] = (),
        tests_command: str | None = "pytest -q",
        allow_danger_full_access: bool = False,
        sandbox: BubblewrapSandbox | None = None,
        run_id: str | None = None,
    ):
        self.agent = agent
        self.spec = spec
        self.ws = workspace
        self.audit = audit
        self.approvals = approvals or PauseAll()
        self.policy_applied = policy_applied
        self.allow_danger = allow_danger_full_access
        self.run_id = run_id or str(uuid.uuid4())
        self.turns = 0
        self.protected = ProtectedPaths.for_agent(
            protect_tests=spec.protect_tests, test_paths=tuple(test_paths), extra=tuple(extra_protected)
        )
        self.allow, self.deny, self.ask = spec.allow, spec.deny_rules, spec.ask_rules
        hidden = tuple(r.specifier.lstrip("/") for r in self.deny if r.tool == "Read" and r.specifier)
        problem = None
        if sandbox is None:
            try:
                sandbox = BubblewrapSandbox()
            except SandboxUnavailable as exc:
                problem = str(exc)
        self.ctx = ToolContext(
            workspace=workspace,
            protected=self.protected,
            mode=spec.sandbox,
            network=spec.network,
            env=dict(spec.env),
            limits=spec.limits.to_limits(),
            hidden=hidden,
            sandbox=sandbox,
            sandbox_problem=problem,
            tests_command=tests_command,
        )

    # --- the one entry point ----------------------------------------------------------

    async def call(self, tool_name: str, args: Any, index: int | None = None) -> CallResult:
        index = self.turns if index is None else index
        self.turns += 1
        shown = canonical_tool_name(tool_name) or str(tool_name)
        raw_args = args if isinstance(args, dict) else {"_": args}
        try:
            tool, model, target, approval_why = self._check(tool_name, args)
        except Refusal as r:
            self._record("tool_call", index, shown, raw_args, Status.REFUSED, r.reason)
            return CallResult(index, shown, Status.REFUSED, r.reason, "")

        reviewer = None
        if approval_why:
            request = ApprovalRequest(
                agent=self.agent,
                tool=tool.name,
                args=redact(raw_args),
                fingerprint=call_fingerprint(self.agent, tool.name, raw_args),
                why=approval_why,
                run_id=self.run_id,
                index=index,
            )
            decision = self.approvals.decide(request)
            if decision.verdict is Verdict.PAUSE:
                reason = f"needs approval ({approval_why}): {decision.reason}"
                self._record(
                    "tool_call", index, tool.name, raw_args, Status.PAUSED, reason, approval=request.fingerprint
                )
                return CallResult(index, tool.name, Status.PAUSED, reason, "")
            if decision.verdict is Verdict.DENY:
                reason = f"denied by {decision.by or 'the approval gate'}: {decision.reason}"
                self._record(
                    "tool_call",
                    index,
                    tool.name,
                    raw_args,
                    Status.REFUSED,
                    reason,
                    approval=request.fingerprint,
                    reviewer=decision.by,
                )
                return CallResult(index, tool.name, Status.REFUSED, reason, "")
            reviewer = decision.by

        reason = f"approved by {reviewer}" if reviewer else ""
        # Audited before anything runs: if the log cannot be written, nothing happens.
        self._record("tool_call", index, tool.name, raw_args, Status.ALLOWED, reason, reviewer=reviewer)
        try:
            out = await tool.run(self.ctx, model, target)
        except (PathRefused, ShellRefused, ToolRefused) as exc:
            out = None
            status, reason, text = Status.REFUSED, str(exc), ""
        except OSError as exc:
            out = None
            status, reason, text = Status.ALLOWED, reason, f"error: {exc.strerror or exc}"
        if out is not None:
            status, text = Status.ALLOWED, out.text
            if out.limit:
                status, reason = Status.REFUSED, f"killed at the limit ({out.limit}); the whole process tree was ended"
            elif out.violations:
                status, reason = Status.REFUSED, "the command touched protected paths: " + "; ".join(out.violations)
        self._record("tool_result", index, tool.name, raw_args, status, reason, output=text, reviewer=reviewer)
        return CallResult(index, tool.name, status, reason, text)

    async def refuse_unoffered(
        self, tool_name: Any, args: Any, index: int | None = None, reason: str | None = None
    ) -> CallResult:
        """Refuse and audit a call of a tool the model was never offered; nothing runs.

        A model driven through pydantic-ai is offered the tools of its allowlist; a call of
        any other name (an invented tool, a never-grantable one, an alias) is not
        dispatched by the framework. It is still a call the agent tried, so it is audited
        like any refusal, with the runner's own reason where the layers give one.
        ``reason`` overrides it (e.g. a call in a response that ended the run's budget).
        """
        index = self.turns if index is None else index
        self.turns += 1
        canonical = canonical_tool_name(tool_name) if isinstance(tool_name, str) else None
        shown = canonical or str(tool_name)
        raw_args = args if isinstance(args, dict) else {"_": args}
        if reason is None:
            reason = self._unoffered_reason(tool_name, canonical, args)
        self._record("tool_call", index, shown, raw_args, Status.REFUSED, reason)
        return CallResult(index, shown, Status.REFUSED, reason, "")

    def _unoffered_reason(self, tool_name: Any, canonical: str | None, args: Any) -> str:
        if canonical is not None and any(r.tool == canonical for r in self.allow):
            # Checking further could resolve a host (egress) for a call that will not run.
            return f"{canonical} is offered to this agent under the name {canonical!r}, not {tool_name!r}"
        try:
            self._check(tool_name, args)  # refuses at the allowlist at the latest
        except Refusal as r:
            return r.reason
        return f"{canonical or tool_name} was not offered to this agent"

    # --- checks -----------------------------------------------------------------------

    def _check(self, tool_name: str, args: Any) -> tuple[Tool, Any, Target, str]:
        name = canonical_tool_name(tool_name) if isinstance(tool_name, str) else None
        if name is None:
            raise Refusal(f"unknown tool {tool_name!r}")
        if name in FORBIDDEN_TOOLS:
            raise Refusal(f"{name} can never be called by an agent: {FORBIDDEN_TOOLS[name]}")
        tool = TOOLS[name]
        if not self.spec.enabled:
            raise Refusal(f"agent {self.agent!r} is disabled by the policy (enabled: false)")
        if self.turns > self.spec.max_turns:
            raise Refusal(f"turn budget exhausted (max_turns: {self.spec.max_turns})")
        if not any(r.tool == name for r in self.allow):
            raise Refusal(f"{name} is not in this agent's allowlist ({self._allowlist()})")
        if not isinstance(args, dict):
            raise Refusal("arguments must be a JSON object")
        try:
            model = tool.args.model_validate(args)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'args'}: {e['msg']}" for e in exc.errors())
            raise Refusal(f"invalid arguments: {problems}") from None
        try:
            target = tool.targets(self.ctx, model)
        except (PathRefused, ShellRefused, ToolRefused) as exc:
            raise Refusal(str(exc)) from None

        for resolved, writes in target.paths:
            self._check_path(name, resolved.rel, writes, resolved.given)
        if target.command is not None:
            self._check_command(name, target.command)
        if target.host is not None:
            self._check_rules(name, f"host {target.host}", host=target.host)
            try:
                refuse_private(target.host, target.port or 443)
            except ToolRefused as exc:
                raise Refusal(str(exc)) from None
        if not target.paths and target.command is None and target.host is None:
            self._check_rules(name, name)
        if target.runs_shell:
            if self.ctx.sandbox is None:
                raise Refusal(f"no sandbox to run commands in: {self.ctx.sandbox_problem}")
            if self.spec.sandbox is SandboxMode.DANGER_FULL_ACCESS and not self.allow_danger:
                raise Refusal("sandbox danger-full-access is not enabled by the base policy")

        why = "the tool always needs approval" if tool.needs_approval else ""
        ask = self._ask_match(name, target)
        if ask:
            why = f"matches ask rule {ask}"
        return tool, model, target, why

    def _allowlist(self) -> str:
        return ", ".join(str(r) for r in self.allow) or "nothing"

    def _check_rules(self, tool: str, what: str, **target: Any) -> None:
        """Deny rules first (they win), then at least one allow rule must cover the call."""
        if rule := first_match(self.deny, tool, deny=True, **target):
            raise Refusal(f"{tool} on {what} is denied by the rule {rule}")
        if not first_match(self.allow, tool, **target):
            raise Refusal(f"{tool} on {what} is not allowed (allowlist: {self._allowlist()})")

    def _check_path(self, tool: str, rel: str, writes: bool, given: str) -> None:
        self._check_rules(tool, repr(rel or "."), path=rel)
        if writes:
            self._check_write(rel, given)

    def _check_write(self, rel: str, given: str) -> None:
        if self.spec.sandbox is SandboxMode.READ_ONLY:
            raise Refusal(f"{given!r}: this agent's sandbox is read-only")
        if self.spec.sandbox is SandboxMode.DANGER_FULL_ACCESS and self.allow_danger:
            return
        lexical = self.ws.relative(os.path.normpath(os.path.join(self.ws.root, given)))
        for candidate in dict.fromkeys((rel, lexical)):
            if pattern := self.protected.match(candidate):
                who = "agents with protect_tests" if pattern not in _ALWAYS else "every agent"
                raise Refusal(f"{candidate!r} is protected ({pattern}): read-only for {who}")

    def _check_command(self, tool: str, command: CommandList) -> None:
        compound = len(command.commands) > 1
        for cmd in command.commands:
            label = f"`{cmd}`" + (" (part of a compound command)" if compound else "")
            if tool == "Bash":
                if rule := first_match(self.deny, "Bash", deny=True, argv=cmd.argv):
                    raise Refusal(f"{label} is denied by the rule {rule}")
                if not first_match(self.allow, "Bash", argv=cmd.argv):
                    raise Refusal(f"{label} is not allowed (allowlist: {self._allowlist()})")
            for word in cmd.argv[1:]:
                self._check_word(word, label)
            for redirect in cmd.redirects:
                if not redirect.is_file:
                    continue
                path = str(redirect.target)
                if path == os.devnull or (self.ws.private_tmp(path) and not self.ws.lexically_inside(path)):
                    continue
                try:
                    resolved = self.ws.resolve(path, for_write=redirect.writes)
                except PathRefused as exc:
                    raise Refusal(f"{label}: redirection {exc}") from None
                if redirect.writes:
                    self._check_write(resolved.rel, path)
                elif rule := first_match(self.deny, "Read", deny=True, path=resolved.rel):
                    raise Refusal(f"{label}: reading {path!r} is denied by the rule {rule}")

    def _check_word(self, word: str, label: str) -> None:
        candidates = [word]
        if word.startswith("-") and "=" in word:
            candidates.append(word.split("=", 1)[1])
        for c in candidates:
            if c.startswith("~"):
                raise Refusal(f"{label}: argument {word!r} names a home directory, outside the workspace")
            escapes = c.startswith("/") or ".." in c.split("/")
            if escapes and c != os.devnull and not self.ws.lexically_inside(c) and not self.ws.private_tmp(c):
                raise Refusal(f"{label}: argument {word!r} names a path outside the workspace")

    def _ask_match(self, tool: str, target: Target) -> str | None:
        if not self.ask:
            return None
        if target.command is not None:
            for cmd in target.command.commands:
                if rule := first_match(self.ask, tool, argv=cmd.argv):
                    return str(rule)
            return None
        for resolved, _ in target.paths:
            if rule := first_match(self.ask, tool, path=resolved.rel):
                return str(rule)
        if target.host is not None:
            rule = first_match(self.ask, tool, host=target.host)
            return str(rule) if rule else None
        rule = first_match(self.ask, tool)
        return str(rule) if rule else None

    # --- audit ------------------------------------------------------------------------

    def _record(
        self,
        action: str,
        index: int,
        tool: str,
        args: dict[str, Any],
        status: Status,
        reason: str,
        *,
        output: str | None = None,
        reviewer: str | None = None,
        approval: str | None = None,
    ) -> None:
        fields: dict[str, Any] = {
            "agent_id": f"agent:{self.agent}",
            "action": action,
            "confidence_score": None,
            "policy_applied": self.policy_applied,
            "human_reviewer": reviewer,
            "outcome": str(status),
            "run_id": self.run_id,
            "call_index": index,
            "tool": tool,
            "args": _for_audit(redact(args)),
            # Reasons quote the call (`curl -H "Authorization: …"` is not allowed): redacted too.
            "reason": redact_text(reason),
        }
        if approval:
            fields["approval_fingerprint"] = approval
        if output is not None:
            # The output itself may hold what the agent read; the log keeps its digest.
            fields["output_sha256"] = hashlib.sha256(output.encode()).hexdigest()
            fields["output_bytes"] = len(output.encode())
        self.audit.append(**fields)


_ALWAYS = frozenset(ProtectedPaths.for_agent(protect_tests=False).patterns)

#: Longer argument strings are shortened in the log (a 4 MiB Write would bloat it).
AUDIT_ARG_CHARS = 4096


def _for_audit(value: Any) -> Any:
    if isinstance(value, str) and len(value) > AUDIT_ARG_CHARS:
        digest = hashlib.sha256(value.encode()).hexdigest()
        return f"{value[:AUDIT_ARG_CHARS]}… [{len(value)} chars, sha256 {digest}]"
    if isinstance(value, dict):
        return {k: _for_audit(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_for_audit(v) for v in value]
    return value
