"""A throw-away control group per sandboxed command: process count, memory, CPU share.

Why not just rlimits? When the gate runs as root, the sandbox's user maps back to real
root, and the kernel exempts root (``INIT_USER``) from ``RLIMIT_NPROC``: a fork bomb
would be unbounded. ``RLIMIT_AS`` is per process, so N processes may use N times the
memory. A control group bounds the *whole tree*: ``pids.max`` counts every task in the
group, the memory limit counts every page (tmpfs ``/tmp`` included), and the group lets
us find and kill every member at the end.

Both layouts are handled: cgroup v1 (one hierarchy per controller, e.g. a hybrid host)
and v2 (one unified tree, controllers enabled in the parent's ``subtree_control``). The
group is created *below the cgroup this process already lives in*, so whatever limits
the host put on mergegate keep applying, and it is removed after the command.
``Cgroup.create`` raises ``CgroupUnavailable`` when the process-count controller cannot
be used; the caller decides whether that is fatal (it is, for root).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "mergegate-"
_V1_CONTROLLERS = ("pids", "memory", "cpu", "freezer")


class CgroupUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class CgroupRequest:
    pids: int
    memory_bytes: int | None = None
    #: CPU share in cores (quota/period), ``None`` for no CPU bandwidth limit.
    cpus: float | None = None


def _mounts() -> tuple[dict[str, tuple[str, str]], tuple[str, str] | None]:
    """``({controller: (mount_point, mount_root)}, v2 (mount_point, mount_root) or None)``."""
    v1: dict[str, tuple[str, str]] = {}
    v2 = None
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if len(fields) < 5 or len(rfields) < 3:
                continue
            fstype, root, mount_point = rfields[0], fields[3], fields[4]
            if fstype == "cgroup2" and v2 is None:
                v2 = (mount_point, root)
            elif fstype == "cgroup":
                for opt in rfields[2].split(","):
                    if opt in _V1_CONTROLLERS and opt not in v1:
                        v1[opt] = (mount_point, root)
    return v1, v2


def _own_paths() -> tuple[dict[str, str], str | None]:
    v1: dict[str, str] = {}
    v2 = None
    with open("/proc/self/cgroup") as fh:
        for line in fh:
            parts = line.rstrip("\n").split(":", 2)
            if len(parts) != 3:
                continue
            _, controllers, path = parts
            if controllers == "":
                v2 = path
            for c in controllers.split(","):
                v1[c] = path
    return v1, v2


def _join(mount: tuple[str, str], path: str) -> Path:
    mount_point, mount_root = mount
    if mount_root != "/" and path.startswith(mount_root):
        path = path[len(mount_root) :]
    return Path(mount_point) / path.lstrip("/")


def _write(path: Path, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def _read_kv(path: Path) -> dict[str, int]:
    out = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                out[key] = int(value)
    return out


@dataclass
class Cgroup:
    #: One directory per v1 controller, or a single v2 directory under key ``"unified"``.
    dirs: dict[str, Path]
    version: int
    limited: set[str] = field(default_factory=set)

    @classmethod
    def create(cls, request: CgroupRequest) -> Cgroup:
        v1_mounts, v2_mount = _mounts()
        v1_paths, v2_path = _own_paths()
        name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        if "pids" in v1_mounts and "pids" in v1_paths:
            return cls._create_v1(request, name, v1_mounts, v1_paths)
        if v2_mount is not None and v2_path is not None:
            return cls._create_v2(request, name, v2_mount, v2_path)
        raise CgroupUnavailable("no pids controller is mounted (cgroup v1) and no cgroup v2 tree was found")

    @classmethod
    def _create_v1(cls, request, name, mounts, paths) -> Cgroup:
        group = cls({}, 1)
        try:
            for controller in _V1_CONTROLLERS:
                if controller not in mounts or controller not in paths:
                    continue
                parent = _join(mounts[controller], paths[controller])
                _reap_stale(parent)
                if any(d.parent == parent and d.name == name for d in group.dirs.values()):
                    continue  # co-mounted controllers share one directory
                directory = parent / name
                try:
                    directory.mkdir()
                except OSError as exc:
                    if controller == "pids":
                        raise CgroupUnavailable(f"cannot create {directory}: {exc}") from None
                    continue
                group.dirs[controller] = directory
            group._limit_v1(request)
        except BaseException:
            group.remove()
            raise
        return group

    def _limit_v1(self, request: CgroupRequest) -> None:
        try:
            _write(self.dirs["pids"] / "pids.max", str(request.pids))
        except OSError as exc:
            raise CgroupUnavailable(f"cannot set pids.max: {exc}") from None
        self.limited.add("pids")
        if request.memory_bytes and "memory" in self.dirs:
            mem = self.dirs["memory"]
            try:
                _write(mem / "memory.limit_in_bytes", str(request.memory_bytes))
                self.limited.add("memory")
                if (mem / "memory.memsw.limit_in_bytes").exists():
                    _write(mem / "memory.memsw.limit_in_bytes", str(request.memory_bytes))
            except OSError:
                pass
        if request.cpus and "cpu" in self.dirs:
            with contextlib.suppress(OSError):
                _write(self.dirs["cpu"] / "cpu.cfs_period_us", "100000")
                _write(self.dirs["cpu"] / "cpu.cfs_quota_us", str(max(1000, int(request.cpus * 100000))))
                self.limited.add("cpu")

    @classmethod
    def _create_v2(cls, request, name, mount, path) -> Cgroup:
        parent = _join(mount, path)
        enabled = set((parent / "cgroup.subtree_control").read_text().split()) if parent.exists() else set()
        if "pids" not in enabled:
            try:
                _write(parent / "cgroup.subtree_control", "+pids +memory +cpu")
            except OSError as exc:
                raise CgroupUnavailable(
                    f"the pids controller is not enabled for {parent} and cannot be ({exc}); "
                    "run mergegate in a cgroup with delegated controllers (e.g. systemd Delegate=yes)"
                ) from None
        _reap_stale(parent)
        directory = parent / name
        try:
            directory.mkdir()
        except OSError as exc:
            raise CgroupUnavailable(f"cannot create {directory}: {exc}") from None
        group = cls({"unified": directory}, 2)
        try:
            _write(directory / "pids.max", str(request.pids))
            group.limited.add("pids")
        except OSError as exc:
            group.remove()
            raise CgroupUnavailable(f"cannot set pids.max: {exc}") from None
        if request.memory_bytes:
            with contextlib.suppress(OSError):
                _write(directory / "memory.max", str(request.memory_bytes))
                group.limited.add("memory")
                with contextlib.suppress(OSError):
                    _write(directory / "memory.swap.max", "0")
        if request.cpus:
            with contextlib.suppress(OSError):
                _write(directory / "cpu.max", f"{max(1000, int(request.cpus * 100000))} 100000")
                group.limited.add("cpu")
        return group

    # --- membership -----------------------------------------------------------------

    @property
    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files a new process writes its pid into to join."""
        return [str(d / "cgroup.procs") for d in dict.fromkeys(self.dirs.values())]

    def members(self) -> set[int]:
        pids: set[int] = set()
        for directory in dict.fromkeys(self.dirs.values()):
            with contextlib.suppress(OSError, ValueError):
                pids |= {int(x) for x in (directory / "cgroup.procs").read_text().split()}
        return pids

    # --- what happened ----------------------------------------------------------------

    def oom_kills(self) -> int:
        if self.version == 2:
            return _read_kv(self.dirs["unified"] / "memory.events").get("oom_kill", 0)
        if "memory" not in self.dirs:
            return 0
        kv = _read_kv(self.dirs["memory"] / "memory.oom_control")
        return kv.get("oom_kill", 0)

    def pids_refused(self) -> int:
        directory = self.dirs.get("unified") or self.dirs.get("pids")
        return _read_kv(directory / "pids.events").get("max", 0) if directory else 0

    def memory_peak(self) -> int | None:
        if self.version == 2:
            path = self.dirs["unified"] / "memory.peak"
        elif "memory" in self.dirs:
            path = self.dirs["memory"] / "memory.max_usage_in_bytes"
        else:
            return None
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            return None

    # --- ending -----------------------------------------------------------------------

    def kill_all(self, timeout: float = 5.0) -> bool:
        """SIGKILL every member until none is left; ``True`` when the group is empty."""
        self._freeze(True)
        try:
            deadline = time.monotonic() + timeout
            while True:
                members = self.members()
                if not members:
                    return True
                for pid in members:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                if time.monotonic() > deadline:
                    return False
                self._freeze(False)  # frozen tasks cannot die; thaw once they are all signalled
                time.sleep(0.01)
                self._freeze(True)
        finally:
            self._freeze(False)

    def _freeze(self, frozen: bool) -> None:
        with contextlib.suppress(OSError, KeyError):
            if self.version == 2:
                _write(self.dirs["unified"] / "cgroup.freeze", "1" if frozen else "0")
            elif "freezer" in self.dirs:
                _write(self.dirs["freezer"] / "freezer.state", "FROZEN" if frozen else "THAWED")

    def remove(self) -> None:
        """Kill what is left and remove the group's directories (best effort)."""
        if self.members():
            self.kill_all()
        for directory in _deepest_first(self.dirs.values()):
            for _ in range(50):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
        self.dirs.clear()


def _deepest_first(dirs: Iterable[Path]) -> list[Path]:
    return sorted(dict.fromkeys(dirs), key=lambda p: len(p.parts), reverse=True)


def _reap_stale(parent: Path) -> None:
    """Remove empty groups left by mergegate processes that died before cleaning up."""
    with contextlib.suppress(OSError):
        for entry in parent.iterdir():
            if not entry.name.startswith(PREFIX) or not entry.is_dir():
                continue
            try:
                pid = int(entry.name[len(PREFIX) :].split("-", 1)[0])
            except ValueError:
                continue
            if pid == os.getpid() or Path(f"/proc/{pid}").exists():
                continue
            with contextlib.suppress(OSError):
                if not (entry / "cgroup.procs").read_text().strip():
                    entry.rmdir()
