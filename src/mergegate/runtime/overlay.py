"""A throw-away writable layer over a read-only tree (overlayfs), for the sandbox.

The tests must be able to write into their work tree, but the tree under it is a
persistent export that the next check reuses (``mergegate.runtime.export``), so no
write may reach it. An overlay mount gives that without copying anything: the export
is the read-only *lower* layer; writes, and deletions (as whiteouts), land in an
*upper* directory in the check's scratch space and are thrown away with it.

bubblewrap ≥ 0.9 could mount the overlay itself (``--overlay-src``); the bubblewrap
this project targets (Debian 12 ships 0.8) cannot. So the overlay is mounted just
before bubblewrap starts, in a user and mount namespace of its own (``unshare
--user --map-root-user --mount``: an unprivileged overlay mount, Linux ≥ 5.11, with
``userxattr``), and bubblewrap, started in that namespace, bind-mounts it like any
other directory. The mount is private to that namespace: the host never sees it, and
it disappears with the sandbox. Whether this works on the machine is probed once
(``BubblewrapSandbox.overlay_problem``); where it does not, callers fall back to a
fresh copy of the tree.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: Exit status of the mount helper when the overlay cannot be mounted (with ``MOUNT_FAILED`` on stderr).
MOUNT_FAILED_STATUS = 125
MOUNT_FAILED = "mergegate: could not mount the work tree's overlay"

# $1 = mount, $2..$4 = lower, upper, work, $5 = mount point, then the command.
_MOUNT_SCRIPT = (
    '"$1" -t overlay overlay -o "userxattr,lowerdir=$2,upperdir=$3,workdir=$4" "$5" '
    f'|| {{ echo "{MOUNT_FAILED}" >&2; exit {MOUNT_FAILED_STATUS}; }}\n'
    'shift 5\nexec "$@"\n'
)

#: Characters overlayfs' option string cannot carry in a path.
_UNSAFE = set(",:\\\n")


class OverlayUnavailable(RuntimeError):
    """The overlay cannot be set up here; the message says why."""


@dataclass(frozen=True)
class Overlay:
    """``lower`` seen at a mount point, with writes going to ``upper`` (``work``: overlayfs' own)."""

    lower: Path
    upper: Path
    work: Path

    @classmethod
    def create(cls, lower: Path, scratch: Path) -> Overlay:
        """Fresh upper and work directories in ``scratch`` (same file system, as overlayfs needs)."""
        overlay = cls(lower.resolve(), scratch.resolve() / "overlay-upper", scratch.resolve() / "overlay-work")
        for path in (overlay.lower, overlay.upper, overlay.work):
            if set(str(path)) & _UNSAFE:
                raise OverlayUnavailable(f"{path}: overlayfs cannot take a path with ',', ':' or '\\\\'")
        overlay.upper.mkdir(parents=True)
        overlay.work.mkdir(parents=True)
        return overlay

    def discard(self) -> None:
        """Delete what the command wrote (the lower tree is untouched)."""
        # overlayfs leaves work/work with mode 000, which rmtree cannot enter unless root.
        inner = self.work / "work"
        if inner.is_dir() and not inner.is_symlink():
            os.chmod(inner, 0o700)
        for path in (self.upper, self.work):
            shutil.rmtree(path, ignore_errors=True)


def mount_tools() -> tuple[str, str]:
    """``unshare`` and ``mount`` (util-linux), or ``OverlayUnavailable``."""
    unshare, mount = shutil.which("unshare"), shutil.which("mount")
    if not unshare or not mount:
        raise OverlayUnavailable("unshare and mount (util-linux) are needed to mount an overlay")
    return unshare, mount


def wrap(argv: Sequence[str], overlay: Overlay, mount_point: Path) -> list[str]:
    """``argv`` run with ``overlay`` mounted at ``mount_point`` (in a namespace of its own)."""
    unshare, mount = mount_tools()
    return [
        unshare,
        "--user",
        "--map-root-user",
        "--mount",
        "/bin/sh",
        "-c",
        _MOUNT_SCRIPT,
        "sh",
        mount,
        str(overlay.lower),
        str(overlay.upper),
        str(overlay.work),
        str(mount_point),
        *argv,
    ]
