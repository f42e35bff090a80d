"""The CLI's client for the gate server's REST API.

Where it connects: ``MERGEGATE_URL`` and ``MERGEGATE_TOKEN``, else ``url`` and
``token`` in the config file (``$MERGEGATE_CONFIG``, else
``$XDG_CONFIG_HOME/mergegate/config.toml``, else ``~/.config/mergegate/config.toml``)::

    url = "http://127.0.0.1:8765"
    token = "mgt_…"

Every failure becomes an ``ApiError`` with the server's reason and the exit code the
CLI documents: 1 refused (401/403) or blocked by the gate (409 ``blocked``), 2 a wrong
request (400/404/409/422) or missing configuration, 3 the server is unreachable or broken.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import httpx

from mergegate.cli.exit_codes import ExitCode

DEFAULT_URL = "http://127.0.0.1:8765"


class ApiError(Exception):
    def __init__(self, message: str, code: ExitCode, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


def config_path() -> Path:
    if os.environ.get("MERGEGATE_CONFIG"):
        return Path(os.environ["MERGEGATE_CONFIG"]).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "mergegate" / "config.toml"


def _config() -> dict[str, Any]:
    path = config_path()
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise ApiError(f"{path}: {exc}", ExitCode.USAGE) from None


class ApiClient:
    def __init__(self, url: str, token: str | None, *, timeout: float = 60.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    @classmethod
    def from_environment(cls) -> ApiClient:
        config = _config()
        url = os.environ.get("MERGEGATE_URL") or config.get("url") or DEFAULT_URL
        token = os.environ.get("MERGEGATE_TOKEN") or config.get("token")
        return cls(str(url), str(token) if token else None)

    def request(self, method: str, path: str, *, json: Any = None, params: dict | None = None) -> Any:
        if not self.token:
            raise ApiError(f'no API token: set MERGEGATE_TOKEN or put token = "…" in {config_path()}', ExitCode.USAGE)
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        params = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = httpx.request(
                method, f"{self.url}{path}", json=json, params=params, headers=headers, timeout=self.timeout
            )
        except httpx.TransportError as exc:
            raise ApiError(
                f"cannot reach the mergegate server at {self.url} ({type(exc).__name__}: {exc}). "
                "Is `mergegate serve` running? Set MERGEGATE_URL to point elsewhere.",
                ExitCode.INTERNAL,
            ) from None
        if response.is_success:
            try:
                return response.json()
            except ValueError:
                message = f"{self.url}{path} did not answer with JSON"
                raise ApiError(message, ExitCode.INTERNAL, response.status_code) from None
        raise _error(response)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json=body if body is not None else {})

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)


def _error(response: httpx.Response) -> ApiError:
    status = response.status_code
    word = None
    try:
        body = response.json()
        reason = body.get("reason") or response.text
        word = body.get("error")
    except (ValueError, AttributeError):
        reason = response.text.strip() or response.reason_phrase
    if status == 401:
        return ApiError(f"not authenticated (401): {reason}", ExitCode.BLOCKED, status)
    if status == 403:
        return ApiError(f"refused (403): {reason}", ExitCode.BLOCKED, status)
    if status == 409 and word == "blocked":
        return ApiError(f"blocked (409): {reason}", ExitCode.BLOCKED, status)
    if status >= 500:
        return ApiError(f"server error ({status}): {reason}", ExitCode.INTERNAL, status)
    return ApiError(f"{reason} ({status})", ExitCode.USAGE, status)
