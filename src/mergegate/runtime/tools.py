"""The tools an agent can call: names, side-effect classes, arguments and implementations.

Names are those teams write in allowlists (Claude Code's: ``Read``, ``Edit``, ``Bash`` …);
the snake-case names of the issue (``read_file``, ``run`` …) are accepted as aliases.
Every tool declares

- a **side-effect class**: ``read`` (looks at the workspace), ``workspace-write``
  (changes files in it) or ``external`` (reaches outside: network, the gate);
- a default **needs_approval**: external tools that act on the world (posting a comment,
  opening a change) pause for a human unless nothing else is configured; the agent's
  ``ask:`` rules can add approval to any call;
- an **argument model** (strict: unknown keys are refused) and a ``targets`` function
  that turns the arguments into what the runner checks: resolved paths, the parsed shell
  command, or a host.

Implementations never check permissions; ``mergegate.runtime.runner`` does, before it
calls them. They do enforce what must hold *during* the I/O: no symlink following
(``Workspace``), the sandbox and limits for anything that runs a program.

Some tools exist only to be refused: approving or merging a change, approving a paused
call, writing the audit log or the policy. They are never grantable (a policy that lists
one is invalid), so an agent that obeys a prompt injection asking for them is refused
with a reason that says why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import re
import shutil
import socket
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from mergegate.core.globs import glob_match, match_any
from mergegate.runtime.limits import Limits, LimitsUnavailable
from mergegate.runtime.process import run_process
from mergegate.runtime.sandbox import BubblewrapSandbox, SandboxMode
from mergegate.runtime.shell import CommandList, Pipeline, SimpleCommand, parse
from mergegate.runtime.workspace import ProtectedPaths, Resolved, Workspace


class Effect(StrEnum):
    READ = "read"
    WORKSPACE_WRITE = "workspace-write"
    EXTERNAL = "external"


class ToolRefused(ValueError):
    """A call the tool itself refuses before running (bad target, unsafe address …)."""


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _path_field(default: Any = ..., **kw: Any) -> Any:
    return Field(default, validation_alias=AliasChoices("path", "file_path"), max_length=4096, **kw)


class ReadArgs(_Args):
    path: str = _path_field()
    offset: int = Field(0, ge=0)
    limit: int | None = Field(None, ge=1)


class LSArgs(_Args):
    path: str = _path_field(".")


class GlobArgs(_Args):
    pattern: str = Field(..., min_length=1, max_length=1024)
    path: str = _path_field(".")


class GrepArgs(_Args):
    pattern: str = Field(..., min_length=1, max_length=1024)
    path: str = _path_field(".")
    glob: str | None = Field(None, max_length=1024)
    ignore_case: bool = False


class EditArgs(_Args):
    path: str = _path_field()
    old: str = Field(..., validation_alias=AliasChoices("old", "old_string"), min_length=1)
    new: str = Field(..., validation_alias=AliasChoices("new", "new_string"))
    replace_all: bool = False


class WriteArgs(_Args):
    path: str = _path_field()
    content: str


class BashArgs(_Args):
    command: str = Field(..., min_length=1)
    timeout: float | None = Field(None, gt=0)
    description: str | None = None


class RunTestsArgs(_Args):
    args: list[str] = Field(default_factory=list, max_length=64)


_REV = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./^~@{}:-]{0,200}")


class GitDiffArgs(_Args):
    rev: str | None = Field(None, pattern=_REV.pattern)
    paths: list[str] = Field(default_factory=list, max_length=64)
    stat: bool = False


class GitLogArgs(_Args):
    rev: str | None = Field(None, pattern=_REV.pattern)
    paths: list[str] = Field(default_factory=list, max_length=64)
    max_count: int = Field(20, ge=1, le=500)


class GitBlameArgs(_Args):
    path: str = _path_field()
    rev: str | None = Field(None, pattern=_REV.pattern)


class WebFetchArgs(_Args):
    url: str = Field(..., max_length=4096)


class PostCommentArgs(_Args):
    body: str = Field(..., min_length=1, max_length=65536)


class OpenChangeArgs(_Args):
    """The change proposes the whole workspace; its base is the change the agent works on."""

    title: str = Field(..., min_length=1, max_length=300)
    body: str = Field("", max_length=65536)


class NoArgs(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


@dataclass(frozen=True)
class Target:
    """What a call touches, for the runner to check."""

    #: ``(resolved path, writes?)``
    paths: tuple[tuple[Resolved, bool], ...] = ()
    command: CommandList | None = None
    host: str | None = None
    port: int | None = None
    #: Runs a program (in the sandbox) in the agent's sandbox mode.
    runs_shell: bool = False


@dataclass
class ToolContext:
    """What an implementation may use; built by the runner from the agent's declaration."""

    workspace: Workspace
    protected: ProtectedPaths
    mode: SandboxMode = SandboxMode.READ_ONLY
    network: bool = False
    env: dict[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    #: Read deny globs: hidden from listings, searches and the sandbox.
    hidden: tuple[str, ...] = ()
    sandbox: BubblewrapSandbox | None = None
    sandbox_problem: str | None = None
    tests_command: str | None = "pytest -q"
    #: Comments and changes an approved call asked for (delivered by the gate API).
    outbox: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ToolOutput:
    text: str
    ok: bool = True
    #: Which resource limit ended a command, if any (the runner refuses the call).
    limit: str | None = None
    #: Protected paths a command created (and that were removed) or changed.
    violations: tuple[str, ...] = ()


Impl = Callable[[ToolContext, Any, Target], Awaitable[ToolOutput]]
TargetFn = Callable[[ToolContext, Any], Target]


@dataclass(frozen=True)
class Tool:
    name: str
    alias: str
    effect: Effect
    needs_approval: bool
    args: type[BaseModel]
    summary: str
    targets: TargetFn
    run: Impl


# --- targets ----------------------------------------------------------------------------


def _no_target(ctx: ToolContext, args: Any) -> Target:
    return Target()


def _read_target(ctx: ToolContext, args: Any) -> Target:
    return Target(paths=((ctx.workspace.resolve(args.path), False),))


def _write_target(ctx: ToolContext, args: Any) -> Target:
    return Target(paths=((ctx.workspace.resolve(args.path, for_write=True), True),))


def _bash_target(ctx: ToolContext, args: BashArgs) -> Target:
    return Target(command=parse(args.command), runs_shell=True)


def _tests_target(ctx: ToolContext, args: RunTestsArgs) -> Target:
    # The command comes from the base policy; the extra words are the agent's and are
    # checked like any shell argument.
    return Target(command=tests_command(ctx.tests_command, args.args), runs_shell=True)


def _git_target(ctx: ToolContext, args: Any) -> Target:
    paths = [args.path] if hasattr(args, "path") else list(args.paths)
    return Target(paths=tuple((ctx.workspace.resolve(p), False) for p in paths))


def _fetch_target(ctx: ToolContext, args: WebFetchArgs) -> Target:
    import httpx

    url = urllib.parse.urlsplit(args.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ToolRefused(f"{args.url!r}: only http(s) URLs with a host")
    if url.username or url.password:
        raise ToolRefused("URLs with credentials are not allowed")
    # The rules judge this parse; the request is built from httpx's: they must agree.
    try:
        sent = httpx.URL(args.url).host
    except httpx.InvalidURL as exc:
        raise ToolRefused(f"{args.url!r}: {exc}") from None
    if sent != url.hostname:
        raise ToolRefused(f"{args.url!r}: ambiguous host ({url.hostname!r} or {sent!r})")
    return Target(host=url.hostname, port=url.port or (443 if url.scheme == "https" else 80))


def refuse_private(host: str, port: int) -> tuple[str, ...]:
    """Resolve ``host``; refuse it if any address is private, loopback or link-local.

    The runner calls this once the host passed the allow rules (a host that is not
    allowed is never even resolved: a DNS query is egress too), so the refusal is audited
    before anything runs; ``_fetch`` calls it again right before connecting and dials an
    address it returned. Returns the addresses, in the resolver's order.
    """
    try:
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    except OSError as exc:
        raise ToolRefused(f"cannot resolve {host}: {exc}") from None
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses or not all(_public_address(a) for a in addresses):
        raise ToolRefused(f"{host} resolves to a private, loopback or link-local address")
    return addresses


# --- implementations --------------------------------------------------------------------


def _decode(data: bytes) -> str | None:
    if b"\x00" in data[:8192]:
        return None
    return data.decode("utf-8", "replace")


async def _read(ctx: ToolContext, args: ReadArgs, target: Target) -> ToolOutput:
    resolved = target.paths[0][0]
    try:
        data, truncated = ctx.workspace.read_bytes(resolved)
    except FileNotFoundError:
        return ToolOutput(f"error: {args.path}: no such file", ok=False)
    except IsADirectoryError:
        return ToolOutput(f"error: {args.path}: is a directory (use LS)", ok=False)
    text = _decode(data)
    if text is None:
        return ToolOutput(f"{args.path}: binary file ({len(data)} bytes shown: none)")
    lines = text.splitlines(keepends=True)
    end = args.offset + args.limit if args.limit else None
    out = "".join(lines[args.offset : end])
    if truncated:
        out += "\n[truncated]"
    return ToolOutput(out)


async def _ls(ctx: ToolContext, args: LSArgs, target: Target) -> ToolOutput:
    resolved = target.paths[0][0]
    try:
        entries = ctx.workspace.list_dir(resolved)
    except (FileNotFoundError, NotADirectoryError):
        return ToolOutput(f"error: {args.path}: not a directory", ok=False)
    base = resolved.rel
    shown = []
    for name, kind in entries:
        rel = f"{base}/{name}" if base else name
        if ctx.hidden and match_any(ctx.hidden, rel):
            continue
        shown.append(name + ("/" if kind == "dir" else "@" if kind == "symlink" else ""))
    return ToolOutput("\n".join(shown))


MAX_RESULTS = 1000


async def _glob(ctx: ToolContext, args: GlobArgs, target: Target) -> ToolOutput:
    start = target.paths[0][0]
    if not start.abs.is_dir():
        return ToolOutput(f"error: {args.path}: not a directory", ok=False)
    found = []
    prefix = f"{start.rel}/" if start.rel else ""
    for rel, _is_dir in ctx.workspace.walk(start):
        if ctx.hidden and match_any(ctx.hidden, rel):
            continue
        if glob_match(args.pattern, rel[len(prefix) :]):
            found.append(rel)
            if len(found) >= MAX_RESULTS:
                break
    return ToolOutput("\n".join(found))


async def _grep(ctx: ToolContext, args: GrepArgs, target: Target) -> ToolOutput:
    """GNU grep, not Python ``re``: the pattern is the agent's, and grep has no
    catastrophic backtracking for ordinary patterns (and a time limit for the rest).
    ``-r`` does not follow symlinks below the (already resolved) start; ``-D skip``
    skips FIFOs and devices, which would block."""
    start = target.paths[0][0]
    grep = shutil.which("grep")
    if grep is None:
        return ToolOutput("error: grep is not installed", ok=False)
    argv = [grep, "-rnIEZ", "-D", "skip", "--no-messages", "--color=never", "--exclude-dir=.git", "-m", "200"]
    if args.ignore_case:
        argv.append("-i")
    if args.glob:
        argv.append(f"--include={args.glob}")
    argv += ["-e", args.pattern, "--", start.rel or "."]
    result = await run_process(
        argv, cwd=ctx.workspace.root, env={"LC_ALL": "C.UTF-8"}, timeout=30, max_output=ctx.limits.output_bytes
    )
    if result.timed_out:
        return ToolOutput("error: grep took longer than 30s", ok=False, limit="wall-time")
    if result.returncode not in (0, 1):
        return ToolOutput(f"error: grep: {result.stderr.strip()[:500]}", ok=False)
    lines = []
    for line in result.stdout.splitlines():
        # -Z ends the file name with NUL: names containing ':' cannot dodge the filter.
        path, _, rest = line.partition("\0")
        path = path.removeprefix("./")
        if ctx.hidden and match_any(ctx.hidden, path):
            continue
        lines.append(f"{path}:{rest}")
        if len(lines) >= MAX_RESULTS:
            break
    return ToolOutput("\n".join(lines))


async def _edit(ctx: ToolContext, args: EditArgs, target: Target) -> ToolOutput:
    resolved = target.paths[0][0]
    try:
        data, truncated = ctx.workspace.read_bytes(resolved, limit=4 * 1024 * 1024)
    except FileNotFoundError:
        return ToolOutput(f"error: {args.path}: no such file", ok=False)
    text = _decode(data)
    if text is None or truncated:
        return ToolOutput(f"error: {args.path}: binary or too large to edit", ok=False)
    count = text.count(args.old)
    if count == 0:
        return ToolOutput(f"error: {args.path}: the text to replace was not found", ok=False)
    if count > 1 and not args.replace_all:
        return ToolOutput(f"error: {args.path}: the text occurs {count} times; give more context", ok=False)
    new = text.replace(args.old, args.new) if args.replace_all else text.replace(args.old, args.new, 1)
    ctx.workspace.write_bytes(resolved, new.encode("utf-8"))
    return ToolOutput(f"edited {resolved.rel} ({count if args.replace_all else 1} replacement(s))")


async def _write(ctx: ToolContext, args: WriteArgs, target: Target) -> ToolOutput:
    resolved = target.paths[0][0]
    ctx.workspace.write_bytes(resolved, args.content.encode("utf-8"))
    return ToolOutput(f"wrote {resolved.rel} ({len(args.content.encode())} bytes)")


async def shell_output(
    ctx: ToolContext,
    command: CommandList,
    *,
    mode: SandboxMode | None = None,
    network: bool | None = None,
    wall_s: float | None = None,
) -> ToolOutput:
    """Run a checked command in the sandbox; the text is stdout, stderr and the exit code."""
    from mergegate.runtime.confine import ShellJob, run_shell

    if ctx.sandbox is None:
        raise ToolRefused(f"no sandbox to run commands in: {ctx.sandbox_problem or 'bubblewrap is unavailable'}")
    limits = ctx.limits
    if wall_s is not None and wall_s < limits.wall_s:
        limits = dataclasses.replace(limits, wall_s=wall_s)
    job = ShellJob(
        script=command.render(),
        mode=mode or ctx.mode,
        network=ctx.network if network is None else network,
        env=ctx.env,
        limits=limits,
        protected=ctx.protected,
        hidden=ctx.hidden,
    )
    try:
        outcome = await run_shell(ctx.workspace, ctx.sandbox, job)
    except LimitsUnavailable as exc:
        raise ToolRefused(str(exc)) from None
    parts = [outcome.stdout]
    if outcome.stderr:
        parts.append(("\n" if outcome.stdout and not outcome.stdout.endswith("\n") else "") + outcome.stderr)
    if outcome.truncated:
        parts.append("\n[output truncated]")
    parts.append(f"\n[exit {outcome.returncode}]")
    violations = tuple(f"created {p} (removed)" for p in outcome.removed) + tuple(
        f"changed {p}" for p in outcome.changed
    )
    return ToolOutput(
        "".join(parts).lstrip("\n"),
        ok=outcome.returncode == 0 and not outcome.limit,
        limit=outcome.limit and f"{outcome.limit}: {outcome.detail}",
        violations=violations,
    )


async def _bash(ctx: ToolContext, args: BashArgs, target: Target) -> ToolOutput:
    assert target.command is not None
    return await shell_output(ctx, target.command, wall_s=args.timeout)


async def _run_tests(ctx: ToolContext, args: RunTestsArgs, target: Target) -> ToolOutput:
    assert target.command is not None
    return await shell_output(ctx, target.command)


def tests_command(command: str | None, extra: list[str]) -> CommandList:
    """The base policy's test command, parsed like any other (fail closed), plus ``extra`` words."""
    if not command:
        raise ToolRefused("the policy has no tests.command")
    parsed = parse(command)
    if extra:
        last = parsed.pipelines[-1].commands[-1]
        extended = SimpleCommand((*last.argv, *extra), last.redirects)
        pipes = (*parsed.pipelines[:-1], Pipeline((*parsed.pipelines[-1].commands[:-1], extended)))
        parsed = CommandList(pipes, parsed.ops)
    return parsed


_GIT = (
    "git",
    "--no-pager",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "diff.external=",
    "-c",
    "core.pager=cat",
    "-c",
    "color.ui=never",
)


def git_command(tool: str, args: Any, target: Target) -> CommandList:
    paths = [r.rel or "." for r, _ in target.paths]
    if tool == "GitDiff":
        argv = [*_GIT, "diff", "--no-ext-diff", "--no-textconv"]
        argv += ["--stat"] if args.stat else []
        argv += [args.rev] if args.rev else []
        argv += ["--", *paths]
    elif tool == "GitLog":
        argv = [*_GIT, "log", f"--max-count={args.max_count}", "--no-decorate"]
        argv += [args.rev] if args.rev else []
        argv += ["--", *paths]
    else:
        argv = [*_GIT, "blame", "--"] if not args.rev else [*_GIT, "blame", args.rev, "--"]
        argv += paths
    return CommandList((Pipeline((SimpleCommand(tuple(argv)),)),), ())


async def _git(ctx: ToolContext, args: Any, target: Target, tool: str) -> ToolOutput:
    return await shell_output(ctx, git_command(tool, args, target), mode=SandboxMode.READ_ONLY, network=False)


def _public_address(addr: str) -> bool:
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    return ip.is_global and not ip.is_multicast


def _tls_context() -> ssl.SSLContext:
    """certifi's roots, as httpx uses by default; the environment (``SSL_CERT_FILE``) is not trusted."""
    import httpx

    return httpx.create_ssl_context(trust_env=False)


async def _fetch(ctx: ToolContext, args: WebFetchArgs, target: Target) -> ToolOutput:
    """GET one URL from the gate's process (not the sandbox), for allowed domains only.

    Private, loopback and link-local addresses are refused even when the domain is
    allowed (a DNS name pointing at 127.0.0.1 must not reach the gate's database), and
    redirects are not followed (the Location is reported; a second call is checked anew).
    """
    import httpx

    url = httpx.URL(args.url)
    name = url.raw_host.decode("ascii")  # IDNA-encoded: the name httpx would resolve
    addresses = await asyncio.to_thread(refuse_private, name, url.port or (443 if url.scheme == "https" else 80))
    # Dial the address just checked, never the name: a client that resolves it again can
    # get another answer (DNS rebinding to 127.0.0.1). The Host header, TLS SNI and the
    # certificate check keep the name.
    pinned = url.copy_with(host=addresses[0])
    headers = {"Host": url.netloc.decode("ascii")}
    extensions = {"sni_hostname": name}
    client = httpx.AsyncClient(follow_redirects=False, timeout=15.0, trust_env=False, verify=_tls_context())
    body = b""
    try:
        async with client, client.stream("GET", pinned, headers=headers, extensions=extensions) as response:
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > ctx.limits.output_bytes:
                    break
    except httpx.HTTPError as exc:
        return ToolOutput(f"error: {type(exc).__name__}: {exc}", ok=False)
    head = f"HTTP {response.status_code}"
    if response.is_redirect:
        head += f" (redirect to {response.headers.get('location', '?')}: not followed)"
    return ToolOutput(
        f"{head}\n{body[: ctx.limits.output_bytes].decode('utf-8', 'replace')}", ok=response.status_code < 400
    )


async def _post_comment(ctx: ToolContext, args: PostCommentArgs, target: Target) -> ToolOutput:
    ctx.outbox.append({"kind": "comment", "body": args.body})
    return ToolOutput("comment queued for the gate (delivered through the gate API)")


async def _open_change(ctx: ToolContext, args: OpenChangeArgs, target: Target) -> ToolOutput:
    ctx.outbox.append({"kind": "change", "title": args.title, "body": args.body})
    return ToolOutput(
        "change queued for the gate: the workspace's files, proposed through the gate API (which runs every check)"
    )


def _git_impl(tool: str) -> Impl:
    async def run(ctx: ToolContext, args: Any, target: Target) -> ToolOutput:
        return await _git(ctx, args, target, tool)

    return run


TOOLS: dict[str, Tool] = {
    t.name: t
    for t in (
        Tool("Read", "read_file", Effect.READ, False, ReadArgs, "read a file", _read_target, _read),
        Tool("LS", "list_dir", Effect.READ, False, LSArgs, "list a directory", _read_target, _ls),
        Tool("Glob", "glob", Effect.READ, False, GlobArgs, "find files by glob", _read_target, _glob),
        Tool("Grep", "grep", Effect.READ, False, GrepArgs, "search file contents", _read_target, _grep),
        Tool(
            "Edit", "edit_file", Effect.WORKSPACE_WRITE, False, EditArgs, "replace text in a file", _write_target, _edit
        ),
        Tool("Write", "write_file", Effect.WORKSPACE_WRITE, False, WriteArgs, "write a file", _write_target, _write),
        Tool(
            "Bash",
            "run",
            Effect.WORKSPACE_WRITE,
            False,
            BashArgs,
            "run a shell command in the sandbox",
            _bash_target,
            _bash,
        ),
        Tool(
            "RunTests",
            "run_tests",
            Effect.WORKSPACE_WRITE,
            False,
            RunTestsArgs,
            "run the policy's test command in the sandbox",
            _tests_target,
            _run_tests,
        ),
        Tool(
            "GitDiff",
            "git_diff",
            Effect.READ,
            False,
            GitDiffArgs,
            "git diff (read-only)",
            _git_target,
            _git_impl("GitDiff"),
        ),
        Tool(
            "GitLog", "git_log", Effect.READ, False, GitLogArgs, "git log (read-only)", _git_target, _git_impl("GitLog")
        ),
        Tool(
            "GitBlame",
            "git_blame",
            Effect.READ,
            False,
            GitBlameArgs,
            "git blame (read-only)",
            _git_target,
            _git_impl("GitBlame"),
        ),
        Tool(
            "WebFetch",
            "http_fetch",
            Effect.EXTERNAL,
            False,
            WebFetchArgs,
            "GET a URL on an allowed domain",
            _fetch_target,
            _fetch,
        ),
        Tool(
            "PostComment",
            "post_comment",
            Effect.EXTERNAL,
            True,
            PostCommentArgs,
            "comment on the change",
            _no_target,
            _post_comment,
        ),
        Tool(
            "OpenChange",
            "open_change",
            Effect.EXTERNAL,
            True,
            OpenChangeArgs,
            "open a change through the gate",
            _no_target,
            _open_change,
        ),
    )
}

#: Tools that read files (path specifiers apply) and tools that write them.
FILE_TOOLS = frozenset({"Read", "LS", "Glob", "Grep", "Edit", "Write"})
WRITE_TOOLS = frozenset({"Edit", "Write"})

#: Known names that are never granted: the principle "an agent can never approve, merge,
#: change policy or bypass a rule" (design invariant 1), stated as tools.
FORBIDDEN_TOOLS = {
    "ApproveChange": "only humans approve changes (design invariant 1)",
    "MergeChange": "only the gate merges, after every rule holds (design invariant 1)",
    "ApproveToolCall": "agents cannot approve paused calls, their own or any other",
    "EditPolicy": "policy comes from the base branch and changes only through review",
    "WriteAudit": "only the runtime writes the audit log",
}
_FORBIDDEN_ALIASES = {
    "approve_change": "ApproveChange",
    "approve": "ApproveChange",
    "merge_change": "MergeChange",
    "merge": "MergeChange",
    "approve_tool_call": "ApproveToolCall",
    "edit_policy": "EditPolicy",
    "write_audit": "WriteAudit",
}
_ALIASES = {t.alias: t.name for t in TOOLS.values()} | _FORBIDDEN_ALIASES


def canonical_tool_name(name: str) -> str | None:
    """``Read`` for ``Read`` or ``read_file``; ``None`` for an unknown name."""
    if name in TOOLS or name in FORBIDDEN_TOOLS:
        return name
    return _ALIASES.get(name)
