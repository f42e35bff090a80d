"""git smart HTTP at ``/git/<repo>.git/…``: authenticate, authorize, hand over to git.

A raw ASGI endpoint rather than a FastAPI route, because the push body must stream into
``git http-backend`` while the response streams out, and Starlette's streaming response
would otherwise compete with us for the request body. Only the smart protocol is
served (``info/refs?service=…``, ``git-upload-pack``, ``git-receive-pack``): the dumb
protocol would hand out raw repository files, hidden refs included.

Errors are ``text/plain`` because git prints such a body to the user as ``remote: …``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool

from mergegate.core.principals import Permission, authorize
from mergegate.forge.local import hooks, http_backend, intents
from mergegate.forge.local.hooks import HookContext
from mergegate.service.authz import Actor, refuse
from mergegate.service.errors import Unauthenticated
from mergegate.store import repos as repo_store
from mergegate.web.auth import authenticate, parse_authorization

log = logging.getLogger("mergegate.web.git")

_PATH = re.compile(r"(?P<repo>[^/]+)\.git/(?P<rest>info/refs|git-upload-pack|git-receive-pack)")
_SERVICES = ("git-upload-pack", "git-receive-pack")


async def _send_text(send, status: int, text: str, headers: list[tuple[str, str]] | None = None) -> None:
    body = (text.rstrip("\n") + "\n").encode()
    raw = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers or []]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class GitEndpoint:
    async def __call__(self, scope, receive, send) -> None:
        server = scope["app"].state.server
        worker = scope["app"].state.worker
        method = scope["method"]
        query = scope.get("query_string", b"").decode("latin-1")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        match = _PATH.fullmatch(scope["path_params"].get("path", ""))
        if match is None:
            await _send_text(send, 404, "mergegate serves git over smart HTTP only: /git/<repo>.git")
            return
        repo, rest = match["repo"], match["rest"]
        service = parse_qs(query).get("service", [""])[0] if rest == "info/refs" else rest
        if service not in _SERVICES or (rest == "info/refs") != (method == "GET"):
            await _send_text(send, 400, "mergegate serves git over smart HTTP only")
            return
        pushing = service == "git-receive-pack"
        creds = parse_authorization(headers.get("authorization"))
        try:
            actor: Actor = await run_in_threadpool(authenticate, server.db, creds, f"git {service} {repo}")
        except Unauthenticated as exc:
            await _send_text(send, 401, exc.reason, [("WWW-Authenticate", 'Basic realm="mergegate", charset="UTF-8"')])
            return
        if not await run_in_threadpool(self._repo_exists, server, repo):
            await _send_text(send, 404, f"mergegate: no repository named {repo!r}")
            return
        if pushing:
            auth = authorize(actor.principal, Permission.PUSH_BRANCH)
            if not auth:
                await run_in_threadpool(refuse, server.db, actor.name, "git.push", auth.reason, {"repo": repo})
                await _send_text(send, 403, f"mergegate: {auth.reason}")
                return
            if not hooks.installed(server.settings.hooks_dir):
                # Without the receive hooks nothing guards the protected branches: fail closed.
                log.error("receive hooks missing in %s; refusing pushes", server.settings.hooks_dir)
                await _send_text(send, 503, "mergegate: the server's receive hooks are missing; pushes are refused")
                return
        client = scope.get("client") or ("", 0)
        environ = self._environ(server, repo, actor)
        request = http_backend.CgiRequest(
            method=method,
            path_info=f"/{repo}.git/{rest}",
            query_string=query,
            headers=headers,
            remote_user=actor.name,
            remote_addr=str(client[0]),
            extra_env=environ,
        )
        try:
            response = await http_backend.run(request, _body(receive), str(server.settings.repos_dir))
        except http_backend.CgiError as exc:
            log.error("git %s on %s failed: %s", service, repo, exc)
            await _send_text(send, 500, "mergegate: git failed to answer; see the server log")
            return
        raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        try:
            await send({"type": "http.response.start", "status": response.status, "headers": raw_headers})
            async for chunk in response.body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            # A client that went away must not leave git running.
            await response.body.aclose()
            if rest == "git-receive-pack":
                await run_in_threadpool(_settle, server, environ[hooks.ENV_PUSH_ID])
        if pushing and worker is not None:
            worker.wake()

    @staticmethod
    def _repo_exists(server, repo: str) -> bool:
        with server.db.read() as session:
            return repo_store.get(session, repo) is not None and server.forge.exists(repo)

    @staticmethod
    def _environ(server, repo: str, actor: Actor) -> dict[str, str]:
        settings = server.settings
        ctx = HookContext(
            database_url=server.db.url,
            repo=repo,
            pusher=actor.name,
            kind=str(actor.principal.kind),
            role=str(actor.principal.role),
            protected=settings.protected_branches,
            public_url=settings.url,
            wait_s=settings.hook_wait_s,
        )
        return {
            **ctx.environ(),
            # Config from the environment wins over the repository's own config file.
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "core.hooksPath",
            "GIT_CONFIG_VALUE_0": str(settings.hooks_dir),
        }


def _settle(server, push_id: str) -> None:
    """git is done: an intent its post-receive did not confirm is settled from the refs
    (the server's next start does it if this fails)."""
    try:
        intents.settle(server.db, server.forge, push_id)
    except Exception:
        log.exception("could not settle the intent of push %s; the next start will", push_id)


async def _body(receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return
