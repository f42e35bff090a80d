"""A streaming CGI bridge to ``git http-backend`` (git's own smart-HTTP server).

git's implementation of the protocol is the reference, so mergegate does not speak the
pack protocol itself: it authenticates the request, then hands it to
``git http-backend`` as CGI, streaming the request body in (pushes can be large and
git may gzip them: ``HTTP_CONTENT_ENCODING`` tells git to inflate) and the response out.
Nothing here knows about the web framework: the caller supplies an async byte source
and gets back a status, headers and an async byte stream.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field

log = logging.getLogger("mergegate.forge.http")

_HEADER_LIMIT = 64 * 1024
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class CgiRequest:
    method: str
    #: ``/<repo>.git/info/refs`` etc., relative to the project root.
    path_info: str
    query_string: str
    headers: Mapping[str, str]
    remote_user: str
    remote_addr: str = ""
    #: Extra environment for git and its hooks (``MERGEGATE_HOOK_*``, config overrides).
    extra_env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class CgiResponse:
    status: int
    headers: list[tuple[str, str]]
    body: AsyncGenerator[bytes, None]


class CgiError(RuntimeError):
    pass


def parse_cgi_headers(raw: bytes) -> tuple[int, list[tuple[str, str]]]:
    """Parse a CGI header block; ``Status: 404 Not Found`` sets the status (default 200)."""
    status = 200
    headers: list[tuple[str, str]] = []
    for line in raw.decode("latin-1").splitlines():
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise CgiError(f"malformed CGI header line {line!r}")
        name, value = name.strip(), value.strip()
        if name.lower() == "status":
            try:
                status = int(value.split()[0])
            except (ValueError, IndexError):
                raise CgiError(f"malformed CGI Status {value!r}") from None
        else:
            headers.append((name, value))
    return status, headers


def _split_headers(buffer: bytes) -> tuple[bytes, bytes] | None:
    for sep in (b"\r\n\r\n", b"\n\n"):
        at = buffer.find(sep)
        if at != -1:
            return buffer[:at], buffer[at + len(sep) :]
    return None


def cgi_environ(request: CgiRequest, project_root: str) -> dict[str, str]:
    h = {k.lower(): v for k, v in request.headers.items()}
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_METHOD": request.method,
        "PATH_INFO": request.path_info,
        "QUERY_STRING": request.query_string,
        "REMOTE_USER": request.remote_user,
        "REMOTE_ADDR": request.remote_addr,
        "GIT_PROJECT_ROOT": project_root,
        "GIT_HTTP_EXPORT_ALL": "1",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": project_root,
    }
    for header, var in (
        ("content-type", "CONTENT_TYPE"),
        ("content-length", "CONTENT_LENGTH"),
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
        ("git-protocol", "HTTP_GIT_PROTOCOL"),
    ):
        if header in h:
            env[var] = h[header]
    env.update(request.extra_env)
    return env


async def run(request: CgiRequest, body: AsyncIterator[bytes], project_root: str) -> CgiResponse:
    """Start ``git http-backend`` and return once its CGI headers have been read."""
    proc = await asyncio.create_subprocess_exec(
        "git",
        "http-backend",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cgi_environ(request, project_root),
        cwd=project_root,
    )
    assert proc.stdin and proc.stdout and proc.stderr

    async def feed() -> None:
        try:
            async for chunk in body:
                if chunk:
                    proc.stdin.write(chunk)
                    await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # git stopped reading (it answered with an error); its response says why
        finally:
            proc.stdin.close()

    feeder = asyncio.create_task(feed())
    errors = asyncio.create_task(proc.stderr.read())

    async def cleanup() -> None:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        feeder.cancel()
        stderr = (await errors).decode("utf-8", "replace").strip()
        if proc.returncode not in (0, None) or stderr:
            log.warning(
                "git http-backend %s %s exited %s: %s", request.method, request.path_info, proc.returncode, stderr
            )

    buffer = b""
    split = None
    while split is None:
        chunk = await proc.stdout.read(_CHUNK)
        if not chunk:
            break
        buffer += chunk
        split = _split_headers(buffer)
        if split is None and len(buffer) > _HEADER_LIMIT:
            break
    if split is None:
        await cleanup()
        raise CgiError("git http-backend produced no CGI headers")
    status, headers = parse_cgi_headers(split[0])
    rest = split[1]

    async def stream() -> AsyncGenerator[bytes, None]:
        try:
            if rest:
                yield rest
            while chunk := await proc.stdout.read(_CHUNK):
                yield chunk
            await feeder
            await proc.wait()
        finally:
            await cleanup()

    return CgiResponse(status, headers, stream())
