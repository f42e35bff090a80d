"""A scripted Anthropic Messages API on loopback: real HTTP, the real ``/v1/messages`` protocol.

``FakeAnthropic`` listens on ``127.0.0.1:<free port>`` and answers ``POST /v1/messages``
with the next scripted reply. Replies are built as the Anthropic SDK's own ``Message``
model (content blocks ``text`` / ``tool_use``, ``stop_reason``, ``usage``), so their shape
is the real one; errors are the API's error bodies
(``{"type": "error", "error": {"type": "rate_limit_error", "message": …}, "request_id": …}``)
with the status and headers given (``retry-after`` on 429 and 529).

Every request is checked against the SDK's ``MessageCreateParamsNonStreaming`` type and
the protocol's rules the type cannot express: an API key (``x-api-key`` or a Bearer
token) and an ``anthropic-version`` header, ``user``/``assistant`` roles starting with ``user``, every
``tool_use`` answered by a ``tool_result`` with its id in the very next (user) message,
tool definitions with an object ``input_schema``. Problems are collected in
``problems``; tests assert there are none.
"""

from __future__ import annotations

import json
import time
from typing import Any

from anthropic.types import Message
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
from pydantic import TypeAdapter, ValidationError

from tests.runtime.openai_fake import FakeOpenAI, Received, Reply

_REQUEST = TypeAdapter(MessageCreateParamsNonStreaming)
STOP_REASONS = {"end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal"}


def message(
    *,
    text: str | None = None,
    tool_uses: list[tuple[str, dict[str, Any]]] = (),
    input_tokens: int = 100,
    output_tokens: int = 20,
    cache_read_input_tokens: int = 0,
    stop_reason: str | None = None,
    model: str = "claude-sonnet-5-5",
) -> Reply:
    """A 200 with a ``message``; ``tool_uses`` as (name, input)."""
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content += [
        {"type": "tool_use", "id": f"toolu_{i:02d}_{name}", "name": name, "input": args}
        for i, (name, args) in enumerate(tool_uses)
    ]
    reason = stop_reason or ("tool_use" if tool_uses else "end_turn")
    assert reason in STOP_REASONS, reason
    body = Message.model_validate(
        {
            "id": f"msg_{time.monotonic_ns()}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": cache_read_input_tokens,
            },
        }
    ).model_dump(mode="json", exclude_unset=True)
    return Reply(200, body, {"request-id": f"req_{time.monotonic_ns()}"})


def final(output: dict[str, Any], **kw: Any) -> Reply:
    """The model's answer as structured output: a JSON text block (pydantic-ai asks current
    Claude models for ``output_config.format`` = the output type's JSON schema)."""
    return message(text=json.dumps(output), **kw)


def error(status: int, kind: str, message_: str = "error", headers: dict[str, str] | None = None) -> Reply:
    body = {"type": "error", "error": {"type": kind, "message": message_}, "request_id": f"req_{time.monotonic_ns()}"}
    return Reply(status, body, headers or {})


def sent_key(request: Received) -> str | None:
    """The key a request carries: ``x-api-key``, or a Bearer token (which the SDK sends for
    ``api_key`` since 2.x; the API accepts both)."""
    bearer = request.headers.get("authorization", "")
    return request.headers.get("x-api-key") or (bearer[7:] if bearer.startswith("Bearer ") else None)


class FakeAnthropic(FakeOpenAI):
    """The OpenAI fake's loopback server and script, checking the Messages API instead.
    (A body that is not JSON, or a request past the end of the script, gets the base
    class's error reply; both are recorded as problems anyway.)"""

    @property
    def base_url(self) -> str:
        # The SDK appends /v1/messages itself, as with api.anthropic.com.
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _validate(self, path: str, body: dict[str, Any]) -> None:
        """Called by the base class under its lock, right after recording the request."""
        request = self.requests[-1]

        def problem(msg: str) -> None:
            self.problems.append(f"request {len(self.requests)}: {msg}")

        if request.path.split("?", 1)[0] != "/v1/messages":
            problem(f"unexpected path {request.path}")
        if not request.headers.get("anthropic-version"):
            problem("no anthropic-version header")
        if not sent_key(request):
            problem("no API key (x-api-key, or Authorization: Bearer)")
        try:
            _REQUEST.validate_python(body)
        except ValidationError as exc:
            problem(f"not a valid MessageCreateParams: {exc}")
        if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
            problem("max_tokens must be a positive integer")
        if body.get("stream"):
            problem("stream requested; this fake speaks non-streaming messages")
        for t in body.get("tools") or []:
            if not t.get("name") or (t.get("input_schema") or {}).get("type") != "object":
                problem(f"bad tool definition {t}")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            problem("messages must be a non-empty list")
            return
        if messages[0].get("role") != "user":
            problem("the first message must be the user's")
        pending: set[str] = set()
        for i, m in enumerate(messages):
            role, blocks = m.get("role"), m.get("content")
            if role not in ("user", "assistant"):
                problem(f"messages[{i}].role {role!r}: user or assistant (system is a top-level field)")
            blocks = [{"type": "text", "text": blocks}] if isinstance(blocks, str) else blocks or []
            answered = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
            if pending and (role != "user" or not pending <= answered):
                problem(f"messages[{i}]: tool_use ids without a tool_result right after: {sorted(pending - answered)}")
            if role == "user" and answered - pending:
                problem(f"messages[{i}]: tool_result for unknown tool_use ids {sorted(answered - pending)}")
            pending = {b["id"] for b in blocks if b.get("type") == "tool_use"} if role == "assistant" else set()
        if pending:
            problem(f"tool_use never answered: {sorted(pending)}")
