"""A change under review: what differs between the merge base and the head."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class FileStatus(StrEnum):
    ADDED = "added"
    MODIFIED = "modified"
    DELETED = "deleted"
    RENAMED = "renamed"


@dataclass(frozen=True)
class ChangedFile:
    """One file of a change.

    ``path`` is the head path (for a deleted file, the base path); ``old_path`` is the
    base path (``None`` when the file is new). Line numbers are 1-based: ``added_lines``
    are head lines that are new or changed, ``removed_lines`` are base lines that went.
    """

    path: str
    status: FileStatus
    old_path: str | None = None
    added_lines: frozenset[int] = frozenset()
    removed_lines: frozenset[int] = frozenset()
    binary: bool = False

    @property
    def exists_at_head(self) -> bool:
        return self.status is not FileStatus.DELETED

    @property
    def exists_at_base(self) -> bool:
        return self.status is not FileStatus.ADDED

    @property
    def base_path(self) -> str:
        return self.old_path or self.path


@dataclass(frozen=True)
class Change:
    """The change: ``merge_base..head`` compared, judged against ``base`` (the base tip)."""

    base: str
    head: str
    merge_base: str
    files: tuple[ChangedFile, ...] = ()
    head_author: str = ""
    base_ref: str = ""
    head_ref: str = ""
    _by_path: dict[str, ChangedFile] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_path.update({f.path: f for f in self.files})

    def file(self, path: str) -> ChangedFile | None:
        return self._by_path.get(path)

    @property
    def paths(self) -> list[str]:
        return [f.path for f in self.files]

    def touched_paths(self) -> set[str]:
        """Every path the change touches, including the old name of a renamed file."""
        out: set[str] = set()
        for f in self.files:
            out.add(f.path)
            if f.old_path:
                out.add(f.old_path)
        return out
