"""The Python environment a change's tests run in, and its cache.

Without a setup step (``tests.setup``) the tests run with mergegate's own interpreter:
its installation is already mounted in the sandbox, and pytest and coverage are
mergegate dependencies, so nothing has to be installed.

With a setup step (e.g. ``pip install -e .[test]``) a venv is built *inside the
sandbox*, with the network allowed (to reach the package index) but never a secret
in the environment, and cached, keyed by a hash of the dependency files at head, the
setup command, the interpreter and the repository. Two fixed mount points make the
cached venv valid on the next run, whatever temporary directories the host used:

* the venv is built and later mounted at ``ENV_MOUNT``, so its scripts' shebangs and
  ``pyvenv.cfg`` are right wherever the cache lives;
* the work tree always appears at ``WORKSPACE``, so an editable install (a ``.pth``
  pointing at ``/workspace/src``) imports the *current* tree's code on every run,
  not the tree the venv was built from.

The venv is mounted read-only when the tests run. It is built in a fresh directory
and renamed into place only after the setup step succeeded (a failed or concurrent
build never leaves a half-built venv where the next run would pick it up).
``sandbox: none`` cannot pin paths, so there the venv is built per run and not cached.

Known limit: a cached venv is reused by every later change with the same dependency
files. The setup step runs code from the change (build hooks, ``setup.py``), so a
change can influence the venv later changes of the same repository use. Keying by
repository keeps that within one project; see ``environment_key``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from mergegate.runtime.sandbox import Mount, Sandbox, SandboxSpec

#: Where the work tree appears inside the sandbox (when the sandbox can remap paths).
WORKSPACE = Path("/workspace")
#: Where a setup-built venv appears inside the sandbox.
ENV_MOUNT = Path("/mergegate/env")

#: Bump when the layout of a cached environment changes, so old ones are not reused.
CACHE_LAYOUT = "1"

#: Files at head whose contents decide what the setup step installs.
DEPENDENCY_GLOBS = (
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "requirements*.txt",
    "requirements/*.txt",
    "constraints*.txt",
)

#: (module, requirement) installed into a setup-built venv unless the setup step did.
BASE_PACKAGES = (("coverage", "coverage>=7"), ("pytest", "pytest"))

SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
READY = "ready.json"


class SetupFailed(RuntimeError):
    """The configured setup step failed; the message has the end of its output."""


@dataclass(frozen=True)
class TestEnvironment:
    """How to run a command with a Python environment, as seen inside the sandbox."""

    __test__ = False  # not a pytest test class, despite the name

    #: Directory put first on PATH, so ``pytest`` and ``python`` resolve to this env.
    bin_dir: Path
    python: Path
    mounts: tuple[Mount, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    #: How the environment came to be, for the report.
    description: str = ""
    #: Whether the configured setup step ran for this environment during this check.
    setup_ran: bool = False

    def path_env(self) -> str:
        return f"{self.bin_dir}:{SYSTEM_PATH}"


def own_environment() -> TestEnvironment:
    """mergegate's own interpreter (mounted in the sandbox by ``python_prefixes``)."""
    # Not resolved: a venv's bin dir, not the base install's, has pytest on it.
    python = Path(sys.executable)
    return TestEnvironment(
        bin_dir=python.parent,
        python=python,
        # The pytest plugins installed alongside mergegate are not the project's; loading
        # them (e.g. hypothesis's) would only slow every run down and change its behaviour.
        env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        description="mergegate's own Python environment",
    )


def cache_root() -> Path:
    """``$MERGEGATE_CACHE_DIR``, else ``$XDG_CACHE_HOME/mergegate/envs`` or ``~/.cache/...``."""
    explicit = os.environ.get("MERGEGATE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mergegate" / "envs"


def dependency_files(tree: Path) -> list[Path]:
    found: set[Path] = set()
    for pattern in DEPENDENCY_GLOBS:
        found.update(p for p in tree.glob(pattern) if p.is_file() and not p.is_symlink())
    return sorted(found)


def environment_key(tree: Path, setup: str, repo_id: str) -> str:
    """The cache key: dependency files at head, the setup command, the interpreter, the repo."""
    digest = hashlib.sha256()

    def feed(label: str, data: bytes) -> None:
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)

    feed("layout", CACHE_LAYOUT.encode())
    feed("setup", setup.encode())
    feed("python", f"{sys.version}|{platform.machine()}|{Path(sys.executable).resolve()}".encode())
    feed("base-packages", repr(BASE_PACKAGES).encode())
    feed("repo", repo_id.encode())
    for path in dependency_files(tree):
        feed(path.relative_to(tree).as_posix(), path.read_bytes())
    return digest.hexdigest()[:32]


def _tail(text: str, lines: int = 15, chars: int = 1500) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])[-chars:]


def _setup_script(setup: str, env_dir: Path) -> str:
    """Create the venv, run the project's setup, then add coverage/pytest if still missing.

    The project's own setup goes first so that its pinned pytest (and coverage) win;
    ours are only installed when it did not bring them.
    """
    python = shlex.quote(str(env_dir / "bin" / "python"))
    ensure = "".join(
        f"{python} -c 'import {module}' 2>/dev/null || {python} -m pip install --quiet {shlex.quote(spec)}\n"
        for module, spec in BASE_PACKAGES
    )
    return f"set -e\n{shlex.quote(sys.executable)} -m venv {shlex.quote(str(env_dir))}\n{setup}\n{ensure}"


def _venv(env_dir: Path, host_dir: Path, description: str, setup_ran: bool) -> TestEnvironment:
    mounts = (Mount(host_dir, env_dir),) if host_dir != env_dir else ()
    return TestEnvironment(
        bin_dir=env_dir / "bin",
        python=env_dir / "bin" / "python",
        mounts=mounts,
        env={"VIRTUAL_ENV": str(env_dir)},
        description=description,
        setup_ran=setup_ran,
    )


async def _run_setup(
    sandbox: Sandbox, setup: str, timeout: float, workdir: Path, workdir_at: Path | None, host_env: Path, env_dir: Path
) -> None:
    remapped = host_env != env_dir
    spec = SandboxSpec(
        workdir=workdir,
        workdir_at=workdir_at,
        network=True,  # to reach the package index; the environment is still scrubbed
        env={
            "PATH": f"{env_dir}/bin:{SYSTEM_PATH}",
            "VIRTUAL_ENV": str(env_dir),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
        },
        mounts=(Mount(host_env, env_dir, writable=True),) if remapped else (),
        writable=() if remapped else (host_env,),
    )
    result = await sandbox.run(["/bin/sh", "-c", _setup_script(setup, env_dir)], spec, timeout)
    if result.timed_out:
        raise TimeoutError(f"test setup (tests.setup) did not finish within {timeout:g}s")
    if result.returncode != 0:
        output = _tail(result.stderr or result.stdout)
        raise SetupFailed(f"test setup `{setup}` exited with status {result.returncode}:\n{output}")


async def prepare_environment(
    sandbox: Sandbox,
    *,
    setup: str | None,
    setup_timeout: float,
    tree: Path,
    workdir_at: Path | None,
    scratch: Path,
    repo_id: str,
) -> TestEnvironment:
    """The environment to run the tests with, running (and caching) ``setup`` if needed.

    ``tree`` is the host path of the work tree the setup step may write to (an editable
    install records where it appears inside the sandbox: ``workdir_at``).
    """
    if not setup:
        return own_environment()
    if not sandbox.remaps_paths:
        host_env = scratch / "env"
        host_env.mkdir(parents=True)
        await _run_setup(sandbox, setup, setup_timeout, tree, None, host_env, host_env)
        return _venv(host_env, host_env, "built by tests.setup (not cached: sandbox none)", setup_ran=True)

    root = cache_root()
    key = environment_key(tree, setup, repo_id)
    final = root / key
    if (final / READY).is_file() and (final / "env").is_dir():
        os.utime(final / READY)  # last use, for pruning old environments
        return _venv(ENV_MOUNT, final / "env", f"cached environment {key[:12]} (tests.setup not re-run)", False)

    build = root / f".build-{key}-{uuid.uuid4().hex[:8]}"
    (build / "env").mkdir(parents=True)
    try:
        await _run_setup(sandbox, setup, setup_timeout, tree, workdir_at, build / "env", ENV_MOUNT)
        # Written by us, outside the sandbox's reach (the sandbox could only write env/).
        (build / READY).write_text(json.dumps({"setup": setup, "created": time.time(), "python": sys.version}))
        try:
            os.rename(build, final)
        except OSError:
            if not (final / READY).is_file():  # a stale, unfinished build: replace it
                shutil.rmtree(final, ignore_errors=True)
                os.rename(build, final)
            # else: a concurrent check finished the same environment first; use that.
    finally:
        if build.exists():
            shutil.rmtree(build, ignore_errors=True)
    return _venv(ENV_MOUNT, final / "env", f"environment {key[:12]} built by tests.setup and cached", True)
