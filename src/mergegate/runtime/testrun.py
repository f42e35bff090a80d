"""Run a test command in the sandbox under coverage, then read back what happened.

Coverage of an *arbitrary* command uses coverage.py's documented subprocess
mechanism: a generated ``sitecustomize.py`` (see ``coverage_hook``) on ``PYTHONPATH``
calls ``coverage.process_startup()`` in every Python process, and
``COVERAGE_PROCESS_START`` points at a generated rcfile (``parallel = True``, data
written to a dedicated writable directory, ``source`` = the work tree). So ``pytest``,
``python -m pytest``, a script or ``make test`` are all measured, subprocesses and
multiprocessing workers included. Afterwards ``coverage combine`` and ``coverage
json`` run in the sandbox too (read-only tree): the data files were written by
untrusted code, so they are only ever parsed inside it; the host reads back a JSON
report, opened without following symlinks and with a size limit.

When the command is recognisably pytest (``pytest …`` or ``python -m pytest …`` with
no shell syntax), ``-p no:cacheprovider --junitxml=…`` is appended, so failing tests
can be named; other commands are run as given and judged by their exit status.

The test environment (``mergegate.runtime.testenv``) is always mounted **read-only**
(``Layout.spec`` drops any ``writable`` flag): a shared venv is reused by other
changes, so a test run must not be able to plant anything in it.

The results are *reports from untrusted code*: a hostile change could forge them.
They are evidence for the reviewer, never a reason to trust the change on their own.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mergegate.runtime.overlay import Overlay
from mergegate.runtime.sandbox import Mount, Sandbox, SandboxMode, SandboxSpec
from mergegate.runtime.testenv import WORKSPACE, TestEnvironment

HOOK_MOUNT = Path("/mergegate/hook")
OUT_MOUNT = Path("/mergegate/out")

#: Reports larger than this are not read (a test run cannot make the gate load gigabytes).
MAX_REPORT_BYTES = 64 * 1024 * 1024
COMBINE_TIMEOUT_S = 300.0

JUNIT = "junit.xml"
RERUN_JUNIT = "junit-rerun.xml"
COVERAGE_JSON = "coverage.json"

#: ``coverage combine`` and ``coverage json --include=… FILES`` in one process (API since coverage 5).
_COMBINE_AND_REPORT = """\
import sys
import coverage
rcfile, outfile, include, *files = sys.argv[1:]
cov = coverage.Coverage(config_file=rcfile)
cov.combine()
cov.save()
cov.json_report(morfs=files or None, outfile=outfile, include=include.split(",") if include else None)
"""

#: Characters that make a command line more than "a program and its arguments".
_SHELL_SYNTAX = set(";&|<>()$`\\\n*?[]{}~!#")
_PYTHON = re.compile(r"python(\d+(\.\d+)?)?")


@dataclass(frozen=True)
class Place:
    """A directory on the host and where the sandboxed command sees it."""

    host: Path
    inside: Path


@dataclass(frozen=True)
class Layout:
    """The work tree, the coverage hook (read-only) and the output directory (writable).

    With ``overlay``, ``tree.host`` is the mount point of the head tree seen through a
    throw-away writable layer (see ``mergegate.runtime.overlay``). With ``measured``
    (work-tree-relative paths), coverage measures those files only, instead of every
    file under the tree: coverage walks its ``source`` directories for files that never
    ran, in every measured process and again in the report, which costs as much as the
    repository is large.
    """

    tree: Place
    hook: Place
    out: Place
    overlay: Overlay | None = None
    measured: tuple[str, ...] = ()

    @classmethod
    def create(
        cls,
        scratch: Path,
        tree: Path,
        remap: bool,
        *,
        overlay: Overlay | None = None,
        measured: tuple[str, ...] = (),
    ) -> Layout:
        hook, out = scratch / "hook", scratch / "out"
        hook.mkdir(parents=True)
        out.mkdir(parents=True)
        if remap:
            places = (Place(tree, WORKSPACE), Place(hook, HOOK_MOUNT), Place(out, OUT_MOUNT))
        else:
            places = (Place(tree, tree), Place(hook, hook), Place(out, out))
        # A path coverage's patterns cannot name literally: measure the whole tree, as before.
        layout = cls(*places, overlay=overlay, measured=tuple(measured) if all(map(_plain_path, measured)) else ())
        source = resources.files("mergegate.runtime").joinpath("coverage_hook", "sitecustomize.py")
        (hook / "sitecustomize.py").write_text(source.read_text("utf-8"), "utf-8")
        (hook / "coveragerc").write_text(layout.coveragerc(), "utf-8")
        return layout

    @property
    def rcfile(self) -> Path:
        return self.hook.inside / "coveragerc"

    def coveragerc(self) -> str:
        if self.measured:
            files = "".join(f"\n    {self.tree.inside / p}" for p in self.measured)
            scope = f"include ={files}\n"
        else:
            scope = f"source = {self.tree.inside}\n"
        return (
            "[run]\n"
            "parallel = True\n"
            f"data_file = {self.out.inside}/.coverage\n"
            f"{scope}"
            "concurrency = thread, multiprocessing\n"
            "omit = */site-packages/*\n"
            "disable_warnings = no-data-collected, module-not-measured, module-not-imported, couldnt-parse\n"
            "[report]\n"
            "include_namespace_packages = True\n"
            "ignore_errors = True\n"
        )

    def spec(self, env: TestEnvironment, extra_env: dict[str, str], *, mode: SandboxMode) -> SandboxSpec:
        """What the test command may see: the tree (per ``mode``), our hook, the output dir.

        The environment's mounts are re-made read-only here, whatever they say: a venv
        may be shared with other changes, and this run is untrusted.
        """
        remapped = self.tree.inside != self.tree.host
        env_mounts = tuple(Mount(m.source, m.target) for m in env.mounts)
        mounts = (
            (Mount(self.hook.host, self.hook.inside), Mount(self.out.host, self.out.inside, writable=True))
            if remapped
            else ()
        )
        return SandboxSpec(
            workdir=self.tree.host,
            workdir_at=self.tree.inside if remapped else None,
            mode=mode,
            network=False,
            env={"PATH": env.path_env(), **env.env, **extra_env},
            mounts=mounts + env_mounts,
            writable=() if remapped else (self.out.host,),
            overlay=self.overlay,
        )

    def relative(self, name: str) -> str | None:
        """A path as the sandboxed command reported it, relative to the work tree."""
        root = str(self.tree.inside).rstrip("/") + "/"
        if name.startswith(root):
            name = name[len(root) :]
        elif name.startswith("/"):
            return None
        name = os.path.normpath(name)
        return None if name.startswith("..") else name


@dataclass(frozen=True)
class TestCase:
    """One test as the JUnit report has it."""

    __test__ = False

    id: str
    outcome: str  # passed | failed | error | skipped
    file: str | None = None
    line: int | None = None
    message: str = ""
    details: str = ""

    @property
    def failed(self) -> bool:
        return self.outcome in ("failed", "error")


@dataclass(frozen=True)
class TestRun:
    __test__ = False

    command: str
    returncode: int
    timed_out: bool
    duration_s: float
    #: The end of the command's output (bounded), for messages.
    output_tail: str
    #: The JUnit report's test cases; ``None`` when the command wrote none.
    cases: tuple[TestCase, ...] | None
    is_pytest: bool

    @property
    def passed(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @property
    def no_tests_collected(self) -> bool:
        return self.is_pytest and self.returncode == 5

    def counts(self) -> dict[str, int]:
        out = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
        for case in self.cases or ():
            out[case.outcome] += 1
        return out


@dataclass(frozen=True)
class FileCoverage:
    executed: frozenset[int]
    missing: frozenset[int]

    @property
    def statements(self) -> frozenset[int]:
        return self.executed | self.missing


@dataclass(frozen=True)
class CoverageReport:
    #: Coverage per file (work-tree-relative path); ``None`` when no data was collected.
    files: dict[str, FileCoverage] | None
    problem: str = ""


def _plain_path(path: str) -> bool:
    """Whether ``path`` can be named literally in coverage's file patterns and option lists."""
    return path.isprintable() and not set(path) & set("*?[],#;$%") and not path.startswith(" ")


def pytest_argv(command: str) -> list[str] | None:
    """The command's argv if it is a plain pytest invocation (we may add options), else None."""
    if set(command) & _SHELL_SYNTAX:
        return None
    try:
        tokens = shlex.split(command)
    except ValueError:
        return None
    if not tokens:
        return None
    program = os.path.basename(tokens[0])
    if program in ("pytest", "py.test"):
        return tokens
    if _PYTHON.fullmatch(program) and tokens[1:3] == ["-m", "pytest"]:
        return tokens
    return None


def tail(text: str, lines: int = 20, chars: int = 2000) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])[-chars:]


def read_report(path: Path) -> bytes | None:
    """Read a file the sandbox wrote: no symlinks, regular files only, size-limited."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_REPORT_BYTES:
            return None
        return f.read(MAX_REPORT_BYTES + 1)[:MAX_REPORT_BYTES]


def _test_id(classname: str, name: str, file: str | None) -> str:
    if file:
        module = file[:-3].replace("/", ".") if file.endswith(".py") else ""
        rest = classname[len(module) + 1 :] if module and classname.startswith(module + ".") else ""
        return "::".join([file, *[part for part in rest.split(".") if part], name])
    return ".".join(part for part in (classname, name) if part)


def parse_junit(data: bytes) -> tuple[TestCase, ...]:
    """Test cases from a JUnit XML report (pytest's xunit1 family carries file and line)."""
    root = ET.fromstring(data)
    cases = []
    for tc in root.iter("testcase"):
        outcome, message, details = "passed", "", ""
        for tag, kind in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            element = tc.find(tag)
            if element is not None:
                outcome = kind
                message = element.get("message") or ""
                details = element.text or ""
                break
        file = tc.get("file") or None
        line = tc.get("line")
        cases.append(
            TestCase(
                id=_test_id(tc.get("classname") or "", tc.get("name") or "", file),
                outcome=outcome,
                file=file,
                # pytest writes 0-based line numbers.
                line=int(line) + 1 if line and line.isdigit() else None,
                message=message[:2000],
                details=details[:20000],
            )
        )
    return tuple(cases)


async def run_tests(
    sandbox: Sandbox,
    layout: Layout,
    env: TestEnvironment,
    command: str,
    timeout: float,
    *,
    measure: bool = True,
    select: tuple[str, ...] = (),
) -> TestRun:
    """Run ``command`` in the work tree (writable, no network), under coverage if ``measure``.

    ``select`` re-runs only those test ids (pytest commands; others are re-run whole).
    """
    argv = pytest_argv(command)
    report = RERUN_JUNIT if select else JUNIT
    if argv is not None:
        if select:
            launcher = argv[:1] if os.path.basename(argv[0]) in ("pytest", "py.test") else argv[:3]
            argv = [*launcher, "-q", *select]
        argv += ["-p", "no:cacheprovider", f"--junitxml={layout.out.inside / report}", "-o", "junit_family=xunit1"]
        shell = shlex.join(argv)
    else:
        shell = command
    extra = {"COVERAGE_PROCESS_START": str(layout.rcfile), "PYTHONPATH": str(layout.hook.inside)} if measure else {}
    spec = layout.spec(env, extra, mode=SandboxMode.WORKSPACE_WRITE)
    result = await sandbox.run(["/bin/sh", "-c", shell], spec, timeout)
    cases = None
    if argv is not None and (data := read_report(layout.out.host / report)) is not None:
        try:
            cases = parse_junit(data)
        except ET.ParseError:
            cases = None
    return TestRun(
        command=shell,
        returncode=result.returncode,
        timed_out=result.timed_out,
        duration_s=result.duration_s,
        output_tail=tail(result.stdout + "\n" + result.stderr),
        cases=cases,
        is_pytest=argv is not None,
    )


async def collect_coverage(
    sandbox: Sandbox, layout: Layout, env: TestEnvironment, include: list[str]
) -> CoverageReport:
    """Combine the run's coverage data (in the sandbox) and read it for ``include`` files."""
    if not any(p.name.startswith(".coverage.") for p in layout.out.host.iterdir()):
        return CoverageReport(None, "no coverage data was recorded (did the test command run Python?)")
    if not include:
        return CoverageReport({})
    # ``coverage --include`` takes a comma-separated list of patterns.
    patterns = [str(layout.tree.inside / p) for p in include if "," not in p]
    # One interpreter combines and reports (the CLI's ``combine`` then ``json`` start two).
    # Naming the files reports them even if no test imported them (all lines missing),
    # without walking the tree for unexecuted files.
    argv = [str(env.python), "-I", "-c", _COMBINE_AND_REPORT, str(layout.rcfile)]
    argv += [str(layout.out.inside / COVERAGE_JSON), ",".join(patterns), *patterns]
    spec = layout.spec(env, {}, mode=SandboxMode.READ_ONLY)
    result = await sandbox.run(argv, spec, COMBINE_TIMEOUT_S)
    data = read_report(layout.out.host / COVERAGE_JSON)
    if result.returncode != 0 or data is None:
        return CoverageReport(None, f"coverage could not be combined: {tail(result.stderr or result.stdout, 5, 500)}")
    try:
        return CoverageReport(_parse_coverage_json(data, layout))
    except (ValueError, KeyError, TypeError) as exc:
        return CoverageReport(None, f"unreadable coverage report: {exc}")


def _parse_coverage_json(data: bytes, layout: Layout) -> dict[str, FileCoverage]:
    files: dict[str, FileCoverage] = {}
    for name, info in json.loads(data)["files"].items():
        rel = layout.relative(name)
        if rel is None:
            continue
        executed = frozenset(int(n) for n in info["executed_lines"])
        missing = frozenset(int(n) for n in info["missing_lines"])
        files[rel] = FileCoverage(executed, missing)
    return files
