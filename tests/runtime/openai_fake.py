"""A scripted OpenAI-compatible server on loopback: real HTTP, the real Chat Completions protocol.

``FakeOpenAI`` listens on ``127.0.0.1:<free port>`` (``http.server`` in a thread) and
answers ``POST /v1/chat/completions`` with the next scripted reply. Replies are built as
the OpenAI SDK's own ``ChatCompletion`` model (so their shape is the real one: choices,
``message.tool_calls``, ``finish_reason``, ``usage``); errors are OpenAI-style error
bodies with the status given.

Every request body is validated against the SDK's ``CompletionCreateParamsNonStreaming``
type (the request schema the official client is generated from) and against the
protocol's rules the type cannot express: roles, tool definitions, and every ``tool``
message answering a ``tool_calls`` id of an earlier assistant message. Problems are
collected in ``problems``; tests assert there are none.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from openai.types.chat import ChatCompletion
from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming
from pydantic import TypeAdapter, ValidationError

_REQUEST = TypeAdapter(CompletionCreateParamsNonStreaming)
ROLES = {"system", "developer", "user", "assistant", "tool"}


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def completion(
    *,
    content: str | None = None,
    tool_calls: list[tuple[str, dict[str, Any] | str]] = (),
    prompt_tokens: int = 100,
    completion_tokens: int = 20,
    finish_reason: str | None = None,
    model: str = "fake-model",
) -> Reply:
    """A 200 with a chat completion; ``tool_calls`` as (name, arguments)."""
    calls = [
        {
            "id": f"call_{i}_{name}",
            "type": "function",
            "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)},
        }
        for i, (name, args) in enumerate(tool_calls)
    ]
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    body = ChatCompletion.model_validate(
        {
            "id": f"chatcmpl-{time.monotonic_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": finish_reason or ("tool_calls" if calls else "stop"),
                    "message": message,
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    ).model_dump(mode="json", exclude_unset=True)
    return Reply(200, body)


def final(output: dict[str, Any], **kw: Any) -> Reply:
    """The model's answer through pydantic-ai's output tool."""
    return completion(tool_calls=[("final_result", output)], **kw)


def error(status: int, message: str = "error", kind: str = "server_error", headers: dict[str, str] | None = None):
    return Reply(status, {"error": {"message": message, "type": kind, "param": None, "code": None}}, headers or {})


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class FakeOpenAI:
    def __init__(self, script: list[Reply] | Callable[[dict[str, Any]], Reply]):
        self.script = script
        self.requests: list[Received] = []
        self.problems: list[str] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                reply = fake._handle(self.path, dict(self.headers.items()), raw)
                data = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, path: str, headers: dict[str, str], raw: bytes) -> Reply:
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            self.problems.append(f"request body is not JSON: {raw[:200]!r}")
            return error(400, "invalid JSON", "invalid_request_error")
        with self._lock:
            self.requests.append(Received(path, {k.lower(): v for k, v in headers.items()}, body))
            self._validate(path, body)
            if callable(self.script):
                return self.script(body)
            if not self.script:
                self.problems.append("more requests than scripted replies")
                return error(500, "script exhausted")
            return self.script.pop(0)

    def _validate(self, path: str, body: dict[str, Any]) -> None:
        def problem(msg: str) -> None:
            self.problems.append(f"request {len(self.requests)}: {msg}")

        if path != "/v1/chat/completions":
            problem(f"unexpected path {path}")
        try:
            _REQUEST.validate_python(body)
        except ValidationError as exc:
            problem(f"not a valid CompletionCreateParams: {exc}")
        if not isinstance(body.get("model"), str) or not body["model"]:
            problem("model must be a non-empty string")
        if body.get("stream"):
            problem("stream requested; this fake speaks non-streaming completions")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            problem("messages must be a non-empty list")
            return
        open_calls: set[str] = set()
        for i, m in enumerate(messages):
            role = m.get("role")
            if role not in ROLES:
                problem(f"messages[{i}].role {role!r} is not one of {sorted(ROLES)}")
            if role == "assistant":
                for call in m.get("tool_calls") or []:
                    if call.get("type") != "function" or not call.get("id"):
                        problem(f"messages[{i}].tool_calls: {call}")
                    if not isinstance(call.get("function", {}).get("arguments"), str):
                        problem(f"messages[{i}]: tool call arguments must be a JSON string")
                    open_calls.add(call["id"])
            if role == "tool":
                if m.get("tool_call_id") not in open_calls:
                    problem(f"messages[{i}]: tool message answers unknown call {m.get('tool_call_id')!r}")
                open_calls.discard(m.get("tool_call_id"))
                if not isinstance(m.get("content"), str | list):
                    problem(f"messages[{i}]: tool content must be a string or parts")
            if role in ("user", "system", "developer") and not m.get("content"):
                problem(f"messages[{i}]: {role} message without content")
        if open_calls:
            problem(f"tool calls never answered: {sorted(open_calls)}")
        for t in body.get("tools") or []:
            fn = t.get("function") or {}
            if t.get("type") != "function" or not fn.get("name") or fn.get("parameters", {}).get("type") != "object":
                problem(f"bad tool definition {t}")
