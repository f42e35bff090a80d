"""The Python environment a change's tests run in, and who may build a shared one.

Without a setup step (``tests.setup``) the tests run with mergegate's own interpreter:
its installation is already mounted in the sandbox, and pytest and coverage are
mergegate dependencies, so nothing has to be installed.

With a setup step (e.g. ``pip install -e .[test]``) a venv is built *inside the
sandbox*, with the network allowed (to reach the package index) but never a secret in
the environment. The setup step executes code from the tree it runs on (``setup.py``,
build backends and hooks, local requirements), so the tree decides what ends up in the
venv. Hence the **trust rule**:

* A venv that is *cached and shared* between changes is only ever built from the
  **merge base** (exported from git: content already on the base branch, approved by
  humans), never from a change. It is keyed by the setup inputs at the merge base (see
  ``setup_inputs``), the setup command, the interpreter and the repository: changes
  that leave those inputs alone, the usual case, all hit the same venv, across base
  commits, however their source code differs.
* A change that modifies anything the setup step may execute or read (dependency
  files, build configuration and hooks, in-tree backends, files they name or import,
  compiled sources; when unsure, it counts as modified) gets a **private, single-use**
  venv built from its own tree in its scratch directory, never written to the cache.
  That change only ever influences its own check.

Detecting "modified" is about *correctness* (the change's new dependencies are
installed for its own tests); the *security* of the cache does not depend on it: an
undetected edit is simply never executed, because a shared venv is built from the
merge base only.

Two fixed mount points make a venv valid wherever it is used:

* the venv is built and later mounted at ``ENV_MOUNT``, so its scripts' shebangs and
  ``pyvenv.cfg`` are right wherever the cache lives;
* the work tree always appears at ``WORKSPACE``, in the setup and in the test run, so
  an editable install made from the merge base (a ``.pth`` pointing at
  ``/workspace/src``) imports the *head* tree's code when the tests run. A setup that
  installs a *copy* of the repository's code (``pip install .``) would make the tests
  import the merge base's code instead, so such a venv is not shared (the check falls
  back to a private venv; ``installed_tree_copy``).

The venv is mounted read-only when the tests run. It is built in a fresh directory and
renamed into place only after the setup step succeeded (a failed or concurrent build
never leaves a half-built venv where the next run would pick it up). The cache keeps
at most ``MERGEGATE_CACHE_MAX_ENVS`` venvs per repository, least recently used first
out (``prune_cache``). ``sandbox: none`` cannot pin paths, so there the venv is built
per run from the head tree and never cached.
"""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import json
import os
import platform
import posixpath
import re
import shlex
import shutil
import stat
import sys
import time
import tomllib
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mergegate.runtime.overlay import Overlay
from mergegate.runtime.sandbox import Mount, Sandbox, SandboxSpec

#: Where the work tree appears inside the sandbox (when the sandbox can remap paths).
WORKSPACE = Path("/workspace")
#: Where a setup-built venv appears inside the sandbox.
ENV_MOUNT = Path("/mergegate/env")

#: Bump when the layout of a cached environment changes, so old ones are not reused.
#: Layout 1 built shared venvs from the change's tree: those are never reused.
CACHE_LAYOUT = "2"

#: (module, requirement) installed into a setup-built venv unless the setup step did.
BASE_PACKAGES = (("coverage", "coverage>=7"), ("pytest", "pytest"))

SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
READY = "ready.json"

#: How many shared venvs one repository may keep (``$MERGEGATE_CACHE_MAX_ENVS``).
DEFAULT_MAX_ENVS = 10
#: Build directories older than this are leftovers of a crashed check.
STALE_BUILD_S = 24 * 3600

# -- what the setup step consumes ------------------------------------------------------------

#: Files, at any depth, that decide what a setup step builds or runs.
BUILD_FILE_NAMES = frozenset(
    {
        "pyproject.toml",
        "setup.py",
        "setup.cfg",
        "MANIFEST.in",
        "hatch_build.py",
        "Pipfile",
        "Pipfile.lock",
        "poetry.lock",
        "pdm.lock",
        "uv.lock",
        "pylock.toml",
        "CMakeLists.txt",
        "meson.build",
        "meson.options",
        "meson_options.txt",
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
    }
)
BUILD_FILE_GLOBS = ("requirements*.txt", "requirements*.in", "constraints*.txt", "pylock.*.toml")
#: Every file under a directory of this name (``requirements/dev.txt``, ...).
BUILD_DIR_NAMES = frozenset({"requirements"})
#: Sources compiled by the setup step: the venv holds what was built from them.
COMPILED_SUFFIXES = frozenset(
    {".c", ".cc", ".cpp", ".cxx", ".h", ".hh", ".hpp", ".hxx", ".pyx", ".pxd", ".pxi", ".swg"}
    | {".rs", ".f", ".f90", ".f95", ".cu", ".cuh", ".m", ".mm"}
)
#: At the top level only: tool configuration and what a setup command typically runs.
TOP_LEVEL_NAMES = frozenset(
    {"Makefile", "GNUmakefile", "makefile", "justfile", "Justfile", "tox.ini", "uv.toml", "poetry.toml", "pdm.toml"}
)
#: At the top level, any Python or shell script (``setup.py`` imports its neighbours,
#: e.g. ``versioneer.py``), except the test configuration.
TOP_LEVEL_GLOBS = ("*.py", "*.sh")
TOP_LEVEL_EXCEPT = frozenset({"conftest.py"})
#: Tables of ``pyproject.toml`` that configure the build, and the keys there that name files.
PYPROJECT_BUILD_TOOLS = ("hatch", "setuptools", "poetry", "pdm", "flit", "scikit-build", "maturin", "meson-python")
PATH_KEYS = frozenset(
    {"backend-path", "path", "paths", "file", "files", "script", "build", "build-script", "custom-hook", "setup-script"}
)
#: Files larger than this are not parsed for references: "cannot tell".
MAX_CONFIG_CHARS = 1_000_000
#: References followed from one tree at most; beyond that: "cannot tell".
MAX_CONFIG_FILES = 200

_FILE_URL = re.compile(r"file:(?P<ref>[^\s'\",;\]\[#]+)")
_REQ_OPTION = re.compile(r"^(-r|--requirement|-c|--constraint|-e|--editable)(=|\s+|(?=[^\s-]))(?P<ref>\S+)")


@dataclass(frozen=True)
class TreeSide:
    """One side of the change as git records it, so no checkout is needed to judge it.

    ``files`` maps each path to ``"<mode> <object id>"`` (``git ls-tree -r``); ``read``
    returns a file's text (``None`` when it cannot), for parsing build configuration.
    """

    files: Mapping[str, str]
    read: Callable[[str], str | None]


@dataclass(frozen=True)
class Inputs:
    """The paths of one tree that the setup step may execute or read."""

    exact: frozenset[str]
    #: Directories (ending in ``/``) whose whole content counts.
    prefixes: frozenset[str]
    _ancestors: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = (p.rstrip("/").split("/") for p in (*self.exact, *self.prefixes))
        ancestors = frozenset("/".join(p[:i]) for p in parts for i in range(1, len(p)))
        object.__setattr__(self, "_ancestors", ancestors)

    def covers(self, path: str) -> bool:
        # A file or symlink replacing a directory that holds inputs counts too (ancestors).
        return (
            path in self.exact
            or path in self._ancestors
            or is_build_file(path)
            or any(path.startswith(p) for p in self.prefixes)
        )


def is_build_file(path: str) -> bool:
    """Whether ``path`` is a setup input by its name alone (see the constants above)."""
    parts = path.split("/")
    name = parts[-1]
    if name in BUILD_FILE_NAMES or any(fnmatch.fnmatchcase(name, g) for g in BUILD_FILE_GLOBS):
        return True
    if any(part in BUILD_DIR_NAMES for part in parts[:-1]) or posixpath.splitext(name)[1] in COMPILED_SUFFIXES:
        return True
    if len(parts) == 1 and name not in TOP_LEVEL_EXCEPT:
        return name in TOP_LEVEL_NAMES or any(fnmatch.fnmatchcase(name, g) for g in TOP_LEVEL_GLOBS)
    return False


def _tree_path(ref: str, directory: str) -> str | None:
    """A reference from a file in ``directory`` as a tree path ('' = root), None if outside."""
    ref = ref.strip().strip("'\"")
    for marker in ("{root:uri}", "{root:real}", "{root}"):  # hatch's context formatting
        ref = ref.replace(marker, str(WORKSPACE))
    if ref.startswith("file:"):
        ref = ref[len("file:") :]
        if ref.startswith("//"):
            ref = ref[2:]
    ref = re.sub(r"\[[^\]]*\]$", "", ref.split("#", 1)[0])  # extras, #egg= fragments
    if ref == str(WORKSPACE) or ref.startswith(f"{WORKSPACE}/"):
        ref, directory = ref[len(str(WORKSPACE)) :].lstrip("/"), ""
    elif ref.startswith("/") or not ref:
        return None  # outside the tree: no change can touch it
    path = posixpath.normpath(posixpath.join(directory, ref))
    if path == ".":
        return ""
    return None if path == ".." or path.startswith("../") else path


def _toml_refs(text: str) -> list[str]:
    data = tomllib.loads(text)
    refs: list[str] = []

    def walk(node: object, key: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, str(k))
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and key in PATH_KEYS:
            refs.append(node)

    tools = data.get("tool", {})
    walk(data.get("build-system", {}))
    for name in PYPROJECT_BUILD_TOOLS:
        walk(tools.get(name, {}) if isinstance(tools, dict) else {})
    return refs


def _cfg_refs(text: str) -> list[str]:
    """setuptools' ``key = file: a.txt, b.txt`` directives."""
    return [ref for m in re.finditer(r"=\s*file:([^\n]*)", text) for ref in re.split(r"[,\s]+", m.group(1)) if ref]


def _requirement_refs(text: str) -> list[str]:
    refs = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if m := _REQ_OPTION.match(line):
            refs.append(m.group("ref"))
        elif line.startswith((".", "/")):
            refs.append(line.split()[0])
    return refs


def _python_refs(text: str) -> list[str]:
    """Files a build script may open (string constants) or import (module paths)."""
    refs: list[str] = []
    for node in ast.walk(ast.parse(text)):
        modules: list[str] = []
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if 0 < len(node.value) < 300 and not re.search(r"\s", node.value) and node.value[0] != "-":
                refs.append(node.value)
        elif isinstance(node, ast.Import):
            modules = [alias.name.replace(".", "/") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            up = "../" * max(node.level - 1, 0) if node.level else ""
            module = up + (node.module or "").replace(".", "/")
            modules = [module, *(posixpath.join(module, alias.name) for alias in node.names)]
        refs += [f"{m}{suffix}" for m in modules if m for suffix in (".py", "/__init__.py")]
    return refs


def _references(path: str, text: str) -> list[str]:
    """What the build file at ``path`` names, by its kind (raises when it cannot be parsed)."""
    name = posixpath.basename(path)
    refs = [m.group("ref") for m in _FILE_URL.finditer(text)]
    if name.endswith(".py"):
        refs += _python_refs(text)
    elif name == "pyproject.toml":
        refs += _toml_refs(text)
    elif name == "setup.cfg":
        refs += _cfg_refs(text)
    elif name.endswith((".txt", ".in")):
        refs += _requirement_refs(text)
    return refs


def _parsed(path: str) -> bool:
    return path.endswith((".py", ".txt", ".in")) or posixpath.basename(path) in ("pyproject.toml", "setup.cfg")


def setup_inputs(side: TreeSide, setup: str) -> Inputs | None:
    """Everything in ``side`` the setup step may execute or read; ``None``: cannot tell.

    By name (``is_build_file``), plus what those files name, transitively: paths in
    ``pyproject.toml``'s build tables (in-tree backends, hatch hooks, version files),
    ``file:`` directives and URLs, ``-r``/``-c``/``-e`` and local paths in requirement
    files, files a Python build script opens or imports, and paths on the setup
    command line. A directory named there counts as a whole. A build file that cannot
    be read or parsed means "cannot tell", which callers treat as modified.
    """
    files = side.files
    dirs: set[str] = set()
    for path in files:
        cut = path.find("/")
        while cut != -1:
            dirs.add(path[: cut + 1])
            cut = path.find("/", cut + 1)
    exact = {p for p in files if is_build_file(p)}
    prefixes: set[str] = set()
    todo = [p for p in sorted(exact) if _parsed(p) and ("/" not in p or p.endswith((".txt", ".in")))]
    try:
        command = [part for token in shlex.split(setup) for part in (token, token.partition("=")[2]) if part]
    except ValueError:
        return None

    def add(ref: str, directory: str, *, whole_dirs: bool = True) -> None:
        path = _tree_path(ref, directory)
        if not path:  # outside the tree, or its root (the project itself: covered by name)
            return
        if path + "/" in dirs:
            if whole_dirs:
                prefixes.add(path + "/")
        elif path not in exact:
            exact.add(path)
            if path in files and _parsed(path):
                todo.append(path)

    for token in command:
        if "$" not in token:
            add(token, "", whole_dirs=True)
    seen: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        if len(seen) > MAX_CONFIG_FILES:
            return None
        text = side.read(path)
        if text is None or len(text) > MAX_CONFIG_CHARS:
            return None
        try:
            refs = _references(path, text)
        except (SyntaxError, ValueError, RecursionError, MemoryError, tomllib.TOMLDecodeError):
            return None
        directory = posixpath.dirname(path)
        for ref in refs:
            # Relative to the file (-r, imports, `here`) or to the working directory (-e, open()).
            for where in {directory, ""} if path.endswith((".txt", ".in", ".py")) else {directory}:
                add(ref, where, whole_dirs=not path.endswith(".py"))
    return Inputs(frozenset(exact), frozenset(prefixes))


@dataclass(frozen=True)
class SetupPlan:
    """Where this check's setup step runs: a shared venv from the merge base, or a private one."""

    #: Why the change gets a private venv built from its own tree; ``None``: shared.
    private_reason: str | None
    #: Hash of the setup inputs at the merge base (the tree-dependent part of the cache key).
    base_inputs: str = ""


def changed_paths(base: TreeSide, head: TreeSide) -> list[str]:
    return sorted(p for p in base.files.keys() | head.files.keys() if base.files.get(p) != head.files.get(p))


def inputs_digest(side: TreeSide, inputs: Inputs) -> str:
    """The setup inputs present in ``side``: their paths, modes and git object ids."""
    digest = hashlib.sha256()
    for path in sorted(p for p in side.files if inputs.covers(p)):
        digest.update(f"{path}\0{side.files[path]}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def plan_setup(base: TreeSide, head: TreeSide, setup: str) -> SetupPlan:
    """Share the merge base's venv unless the change touches a setup input (conservatively)."""
    base_inputs = setup_inputs(base, setup)
    if base_inputs is None:
        return SetupPlan("could not tell what tests.setup reads at the merge base")
    changed = changed_paths(base, head)
    if changed:
        head_inputs = setup_inputs(head, setup)
        if head_inputs is None:
            return SetupPlan("could not tell what tests.setup reads in the change (unreadable build configuration)")
        touched = [p for p in changed if base_inputs.covers(p) or head_inputs.covers(p)]
        if touched:
            more = f" and {len(touched) - 1} more" if len(touched) > 1 else ""
            return SetupPlan(f"the change modifies {touched[0]}{more}, which tests.setup may run or read")
    return SetupPlan(None, inputs_digest(base, base_inputs))


# -- environments ----------------------------------------------------------------------------


class SetupFailed(RuntimeError):
    """The configured setup step failed; the message has the end of its output."""


@dataclass(frozen=True)
class TestEnvironment:
    """How to run a command with a Python environment, as seen inside the sandbox."""

    __test__ = False  # not a pytest test class, despite the name

    #: Directory put first on PATH, so ``pytest`` and ``python`` resolve to this env.
    bin_dir: Path
    python: Path
    #: Mounted read-only by the test run, whatever ``Mount.writable`` says.
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


def cache_dir(variable: str, name: str) -> Path:
    """``$variable``, else ``$XDG_CACHE_HOME/mergegate/<name>`` or ``~/.cache/mergegate/<name>``."""
    explicit = os.environ.get(variable)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mergegate" / name


def cache_root() -> Path:
    """``$MERGEGATE_CACHE_DIR``, else ``$XDG_CACHE_HOME/mergegate/envs`` or ``~/.cache/...``."""
    return cache_dir("MERGEGATE_CACHE_DIR", "envs")


def cache_limit(variable: str, default: int) -> int:
    """A positive count from ``$variable``; ``default`` when unset or not a number."""
    try:
        return max(1, int(os.environ.get(variable, default)))
    except ValueError:
        return default


def max_envs() -> int:
    """``$MERGEGATE_CACHE_MAX_ENVS`` (shared venvs kept per repository), default 10."""
    return cache_limit("MERGEGATE_CACHE_MAX_ENVS", DEFAULT_MAX_ENVS)


def environment_key(base_inputs: str, setup: str, repo_id: str) -> str:
    """The cache key: setup inputs at the merge base, the setup command, the interpreter, the repo."""
    digest = hashlib.sha256()

    def feed(label: str, data: bytes) -> None:
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)

    feed("layout", CACHE_LAYOUT.encode())
    feed("setup", setup.encode())
    feed("python", f"{sys.version}|{platform.machine()}|{Path(sys.executable).resolve()}".encode())
    feed("base-packages", repr(BASE_PACKAGES).encode())
    feed("repo", repo_id.encode())
    feed("inputs", base_inputs.encode())
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
    sandbox: Sandbox,
    setup: str,
    timeout: float,
    workdir: Path,
    workdir_at: Path | None,
    host_env: Path,
    env_dir: Path,
    overlay: Overlay | None = None,
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
        overlay=overlay,
    )
    result = await sandbox.run(["/bin/sh", "-c", _setup_script(setup, env_dir)], spec, timeout)
    if result.timed_out:
        raise TimeoutError(f"test setup (tests.setup) did not finish within {timeout:g}s")
    if result.returncode != 0:
        output = _tail(result.stderr or result.stdout)
        raise SetupFailed(f"test setup `{setup}` exited with status {result.returncode}:\n{output}")


def _read_small(path: Path, limit: int = 1 << 20) -> bytes | None:
    """A regular file's bytes, not following a symlink, or None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        return f.read(limit)


def installed_tree_copy(env: Path) -> str | None:
    """A distribution the setup installed from the work tree *without* ``-e``, if any.

    Such a venv holds a copy of the tree's code it was built from (PEP 610's
    ``direct_url.json`` says so): shared from the merge base, the tests would import
    the base's code and pass whatever the change did.
    """
    workspace = f"file://{WORKSPACE}"
    for record in sorted(env.glob("lib/python*/site-packages/*.dist-info/direct_url.json")):
        try:
            info = json.loads(_read_small(record) or b"{}")
            url = info.get("url", "")
            editable = bool(info.get("dir_info", {}).get("editable"))
        except (ValueError, AttributeError):
            continue
        if (url == workspace or url.startswith(workspace + "/")) and not editable:
            return record.parent.name.split("-")[0]
    return None


def _read_ready(entry: Path) -> dict | None:
    try:
        info = json.loads((entry / READY).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _remove(entry: Path) -> None:
    """Take ``entry`` out of the cache atomically (rename), then delete it."""
    trash = entry.with_name(f".trash-{entry.name}-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(entry, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def prune_cache(root: Path, repo_id: str, keep: int) -> list[Path]:
    """Keep ``repo_id``'s ``keep`` most recently used venvs; drop old layouts and leftovers.

    Last use is the mtime of ``ready.json`` (touched on every cache hit). Returns what
    was removed. A venv in use is the most recently used one of its repository, so it
    is only removed if more than ``keep`` checks of one repository build at once.
    """
    removed: list[Path] = []
    ours: list[tuple[float, Path]] = []
    now = time.time()
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    for entry in entries:
        try:
            mtime = entry.lstat().st_mtime
        except OSError:
            continue
        if entry.name.startswith(".trash-") or (entry.name.startswith(".build-") and now - mtime > STALE_BUILD_S):
            removed.append(entry)
            continue
        if entry.name.startswith("."):
            continue
        info = _read_ready(entry)
        if info is None:
            continue  # not finished, or not ours
        if info.get("layout") != CACHE_LAYOUT:
            removed.append(entry)  # built under an older rule (layout 1: from a change's tree)
        elif info.get("repo") == repo_id:
            try:
                ours.append(((entry / READY).stat().st_mtime, entry))
            except OSError:  # removed meanwhile by a concurrent check
                continue
    removed += [entry for _, entry in sorted(ours, reverse=True)[keep:]]
    for entry in removed:
        if entry.name.startswith(".trash-"):
            shutil.rmtree(entry, ignore_errors=True)
        else:
            _remove(entry)
    return removed


async def _private_environment(
    sandbox: Sandbox, setup: str, timeout: float, tree: Path, scratch: Path, why: str, overlay: Overlay | None = None
) -> TestEnvironment:
    """A venv built from the change's own tree, in its scratch directory: used once.

    What the setup writes into the tree (an ``.egg-info``, an extension built in place)
    stays there for the tests: with an ``overlay``, in its writable layer.
    """
    host_env = scratch / "env"
    host_env.mkdir(parents=True)
    if sandbox.remaps_paths:
        await _run_setup(sandbox, setup, timeout, tree, WORKSPACE, host_env, ENV_MOUNT, overlay)
        return _venv(ENV_MOUNT, host_env, why, setup_ran=True)
    await _run_setup(sandbox, setup, timeout, tree, None, host_env, host_env)
    return _venv(host_env, host_env, why, setup_ran=True)


async def prepare_environment(
    sandbox: Sandbox,
    *,
    setup: str | None,
    setup_timeout: float,
    tree: Path,
    scratch: Path,
    repo_id: str,
    plan: SetupPlan | None = None,
    export_base: Callable[[Path], Awaitable[None]] | None = None,
    overlay: Overlay | None = None,
) -> TestEnvironment:
    """The environment to run the tests with, running ``setup`` where the trust rule says.

    ``tree`` is the host path of the head work tree (the tests' own view of it, a copy
    or ``overlay`` mounted there; a private setup may write to it). ``plan`` says
    whether the change may use a shared venv, which is built, on a cache miss, in the
    merge-base tree that ``export_base(dest)`` writes. Without a plan (or without ``export_base``) nothing is shared.
    """
    if not setup:
        return own_environment()
    private = "dependencies changed: built a private environment from this change's tree (used once, never cached)"
    if not sandbox.remaps_paths:
        why = "built by tests.setup from this change's tree (not cached: sandbox none)"
        return await _private_environment(sandbox, setup, setup_timeout, tree, scratch, why, overlay)
    if plan is None or export_base is None:
        why = "built by tests.setup from this change's tree (used once, never cached)"
        return await _private_environment(sandbox, setup, setup_timeout, tree, scratch, why, overlay)
    if plan.private_reason:
        why = f"{private}: {plan.private_reason}"
        return await _private_environment(sandbox, setup, setup_timeout, tree, scratch, why, overlay)

    root = cache_root()
    key = environment_key(plan.base_inputs, setup, repo_id)
    final = root / key
    info = _read_ready(final)
    if info is not None and not info.get("copies_tree") and not (final / "env").is_dir():
        _remove(final)  # damaged (e.g. cleaned by hand): build it again
        info = None
    if info is None:
        info = await _build_shared(sandbox, setup, setup_timeout, scratch, export_base, root, final, repo_id)
        built = True
    else:
        os.utime(final / READY)  # last use, for pruning
        built = False
    if info.get("copies_tree"):
        why = (
            f"the setup installs a copy of the repository's code ({info['copies_tree']}, not editable), so a "
            "shared environment would test the merge base's code: built a private environment from this "
            "change's tree (used once, never cached; an editable install, pip install -e, can be shared)"
        )
        return await _private_environment(sandbox, setup, setup_timeout, tree, scratch, why, overlay)
    if built:
        why = f"environment {key[:12]} built by tests.setup from the merge base and cached"
    else:
        why = f"cached environment {key[:12]}, built from the base branch (tests.setup not re-run)"
    return _venv(ENV_MOUNT, final / "env", why, setup_ran=built)


async def _build_shared(
    sandbox: Sandbox,
    setup: str,
    timeout: float,
    scratch: Path,
    export_base: Callable[[Path], Awaitable[None]],
    root: Path,
    final: Path,
    repo_id: str,
) -> dict:
    """Build the shared venv in the merge-base tree, then publish it under ``final``."""
    base_tree = scratch / "base-tree"
    await export_base(base_tree)
    build = root / f".build-{final.name}-{uuid.uuid4().hex[:8]}"
    (build / "env").mkdir(parents=True)
    try:
        await _run_setup(sandbox, setup, timeout, base_tree, WORKSPACE, build / "env", ENV_MOUNT)
        info = {"layout": CACHE_LAYOUT, "repo": repo_id, "setup": setup, "created": time.time(), "python": sys.version}
        if copy := installed_tree_copy(build / "env"):
            # Useless to share: remember that, so later checks go private without building.
            info["copies_tree"] = copy
            shutil.rmtree(build / "env")
        # Written by us, outside the sandbox's reach (the sandbox could only write env/).
        (build / READY).write_text(json.dumps(info))
        try:
            os.rename(build, final)
        except OSError:
            if _read_ready(final) is None:  # a stale, unfinished build: replace it
                shutil.rmtree(final, ignore_errors=True)
                os.rename(build, final)
            else:  # a concurrent check finished the same environment first; use that.
                info = _read_ready(final) or info
    finally:
        if build.exists():
            shutil.rmtree(build, ignore_errors=True)
        shutil.rmtree(base_tree, ignore_errors=True)
    prune_cache(root, repo_id, max_envs())
    return info
