"""The gate server's settings: command-line flags over ``<data>/server.toml`` over defaults.

``server.toml`` (optional) holds what an operator sets once, e.g.::

    protected_branches = ["main", "master", "release/*", "prod"]
    public_url = "https://gate.example.com"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from mergegate.forge.local.refrules import DEFAULT_PROTECTED
from mergegate.store.db import normalize_url, sqlite_url

CONFIG_FILE = "server.toml"
_KEYS = {
    "protected_branches",
    "public_url",
    "admin_name",
    "hook_wait_s",
    "worker_poll_s",
    "database",
    "merge_method",
    "check_workers",
    "approval_timeout_s",
}
MERGE_METHODS = ("merge", "squash", "rebase")


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class ServerSettings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8765
    database_url: str = ""
    #: Server-wide protected branch patterns; a repository's policy can add more, never fewer.
    protected_branches: tuple[str, ...] = DEFAULT_PROTECTED
    public_url: str = ""
    admin_name: str = "admin"
    #: How long post-receive waits for its push to be handled, to print the change number.
    hook_wait_s: float = 10.0
    #: How often the event worker looks for work written by other processes.
    worker_poll_s: float = 0.1
    #: The merge method of a change that does not ask for one.
    merge_method: str = "merge"
    #: Checks run concurrently (a slow check never holds up pushes, reviews or merges).
    check_workers: int = 2
    #: How long a paused agent call waits for a human before it expires (a denial).
    approval_timeout_s: int = 86_400
    extra: dict = field(default_factory=dict)

    @property
    def repos_dir(self) -> Path:
        return self.data_dir / "repos"

    @property
    def hooks_dir(self) -> Path:
        return self.data_dir / "hooks"

    @property
    def url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @classmethod
    def load(
        cls,
        data_dir: Path,
        *,
        host: str | None = None,
        port: int | None = None,
        database_url: str | None = None,
    ) -> ServerSettings:
        data_dir = data_dir.expanduser().resolve()
        settings = cls(data_dir=data_dir)
        config = data_dir / CONFIG_FILE
        if config.is_file():
            try:
                values = tomllib.loads(config.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise SettingsError(f"{config}: {exc}") from None
            unknown = sorted(set(values) - _KEYS)
            if unknown:
                known = ", ".join(sorted(_KEYS))
                raise SettingsError(f"{config}: unknown key(s) {', '.join(unknown)} (known: {known})")
            patterns = values.get("protected_branches", list(DEFAULT_PROTECTED))
            if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
                raise SettingsError(f"{config}: protected_branches must be a list of branch patterns")
            settings = replace(
                settings,
                protected_branches=tuple(patterns),
                public_url=str(values.get("public_url", "")),
                admin_name=str(values.get("admin_name", "admin")),
                hook_wait_s=float(values.get("hook_wait_s", settings.hook_wait_s)),
                worker_poll_s=float(values.get("worker_poll_s", settings.worker_poll_s)),
                database_url=str(values.get("database", "")),
                merge_method=str(values.get("merge_method", settings.merge_method)),
                check_workers=_int(values.get("check_workers", settings.check_workers), config, "check_workers"),
                approval_timeout_s=_int(
                    values.get("approval_timeout_s", settings.approval_timeout_s), config, "approval_timeout_s"
                ),
            )
            if settings.merge_method not in MERGE_METHODS:
                raise SettingsError(f"{config}: merge_method must be one of {', '.join(MERGE_METHODS)}")
            if not 1 <= settings.check_workers <= 16:
                raise SettingsError(f"{config}: check_workers must be between 1 and 16")
            if not 1 <= settings.approval_timeout_s <= 30 * 86_400:
                raise SettingsError(f"{config}: approval_timeout_s must be between 1 and 2592000 (30 days)")
        return replace(
            settings,
            host=host or settings.host,
            port=port if port is not None else settings.port,
            database_url=normalize_url(database_url or settings.database_url or sqlite_url(data_dir / "mergegate.db")),
        )


def _int(value: object, config: Path, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingsError(f"{config}: {key} must be a whole number")
    return value
