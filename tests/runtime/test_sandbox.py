"""Attack the sandbox: real bubblewrap, real processes, real sockets.

Each test runs a small Python probe inside the sandbox and asserts on what it could
see or do. The probes run with mergegate's own interpreter, whose installation is
the only thing mounted besides the system directories and the work tree.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import stat
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mergegate.runtime.sandbox import (
    BASE_ENV,
    BubblewrapSandbox,
    Mount,
    NoSandbox,
    SandboxMode,
    SandboxSpec,
    SandboxUnavailable,
    make_sandbox,
    python_prefixes,
)
from tests.conftest import REQUIRE_SERVICES

SECRETS = {
    "MERGEGATE_TOKEN": "mgt_secret_value_0123456789",
    "AWS_SECRET_ACCESS_KEY": "aws/secret/value/0123456789",
    "GITHUB_TOKEN": "ghp_secretvalue0123456789",
}


def probe(sandbox, code: str, spec: SandboxSpec, timeout: float = 30):
    """Run ``code`` with this interpreter in the sandbox; it prints one JSON document."""
    result = asyncio.run(sandbox.run([sys.executable, "-c", textwrap.dedent(code)], spec, timeout))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def marker_processes(marker: str) -> list[int]:
    """Pids of live processes whose command line contains ``marker`` (a /proc scan)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(int(entry))
    return found


def wait_until_gone(marker: str, seconds: float = 5.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := marker_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.fixture
def sandbox(bwrap: str) -> BubblewrapSandbox:
    return BubblewrapSandbox(bwrap)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "module.py").write_text("VALUE = 1\n")
    return work


@pytest.fixture
def secrets_in_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    return SECRETS


# -- what the sandbox can read ----------------------------------------------------------


def test_root_only_files_under_etc_are_unreadable(sandbox, work):
    # The sandbox user is real root for permission checks, so everything a non-root
    # user could not read must be masked: /etc/shadow and every service's secrets.
    hidden = ["/etc/shadow", "/etc/gshadow"]
    for top, _dirs, names in os.walk("/etc"):
        for name in names:
            path = os.path.join(top, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and not st.st_mode & stat.S_IROTH:
                hidden.append(path)
    seen = probe(
        sandbox,
        f"""
        import json
        out = {{}}
        for path in {hidden!r}:
            try:
                with open(path, "rb") as f:
                    out[path] = f.read().decode("latin-1")
            except OSError as exc:
                out[path] = None
        print(json.dumps(out))
        """,
        SandboxSpec(workdir=work),
    )
    assert set(seen) == set(hidden)
    leaked = {path: text for path, text in seen.items() if text}
    assert leaked == {}
    # Ordinary, world-readable system files are still there (the sandbox is usable).
    assert probe(sandbox, "import json; print(json.dumps(open('/etc/passwd').read()))", SandboxSpec(workdir=work))


def test_only_system_dirs_python_and_the_work_tree_exist(sandbox, work, tmp_path):
    repo_git = tmp_path / ".git"
    repo_git.mkdir()
    (repo_git / "config").write_text("[core]\n")
    (tmp_path / "sibling.txt").write_text("not for the sandbox")
    seen = probe(
        sandbox,
        f"""
        import json, os
        def ls(path):
            try:
                return sorted(os.listdir(path))
            except OSError:
                return None
        out = {{p: ls(p) for p in ["/", "/root", "/home", "/work", "/var", "/opt", "/srv", "/mnt", "/media"]}}
        out["repo_git"] = ls({str(repo_git)!r})
        out["sibling"] = os.path.exists({str(tmp_path / "sibling.txt")!r})
        out["parent"] = ls({str(tmp_path)!r})
        out["work"] = ls({str(work)!r})
        print(json.dumps(out))
        """,
        SandboxSpec(workdir=work),
    )
    # Top-level: system dirs, the private /dev, /proc, /tmp, and the first components
    # of the mounted paths (the Python installations and the work tree).
    allowed = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "dev", "proc", "tmp"}
    mounted = [*python_prefixes(), work]
    allowed |= {p.parts[1] for p in mounted}
    assert set(seen["/"]) <= allowed
    for gone in ("/home", "/var", "/opt", "/srv", "/mnt", "/media"):
        assert seen[gone] is None, gone
    # /root and /work exist only as far as a mounted Python prefix needs them: no
    # dotfiles, credentials, caches or other projects.
    for top in ("/root", "/work"):
        expected = sorted({p.parts[2] for p in mounted if len(p.parts) > 2 and p.parts[1] == top[1:]})
        assert seen[top] in (None, expected), (top, seen[top])
    assert seen["repo_git"] is None
    assert seen["sibling"] is False
    # The work tree's parent contains nothing but the way to the work tree.
    assert seen["parent"] == ["work"]
    assert seen["work"] == ["module.py"]


def test_environment_is_scrubbed(sandbox, work, secrets_in_env):
    seen = probe(
        sandbox,
        """
        import json, os
        environs = []
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    environs.append(open(f"/proc/{pid}/environ", "rb").read().decode("latin-1"))
                except OSError:
                    pass
        print(json.dumps({"env": dict(os.environ), "proc": environs}))
        """,
        SandboxSpec(workdir=work),
    )
    assert set(seen["env"]) - {"PWD"} == set(BASE_ENV)  # bubblewrap sets PWD for --chdir
    everything = json.dumps(seen)
    for value in secrets_in_env.values():
        assert value not in everything


def test_caller_env_is_passed_but_nothing_else(sandbox, work, secrets_in_env):
    seen = probe(
        sandbox,
        "import json, os; print(json.dumps(dict(os.environ)))",
        SandboxSpec(workdir=work, env={"EXTRA": "1"}),
    )
    assert seen["EXTRA"] == "1"
    assert not set(secrets_in_env) & set(seen)


# -- what it can write ---------------------------------------------------------------------


WRITE_PROBE = """
import json, os
out = {}
for path in %r:
    try:
        with open(path, "w") as f:
            f.write("x")
        out[path] = True
    except OSError:
        out[path] = False
print(json.dumps(out))
"""


def test_writes_only_to_work_tree_and_private_tmp(sandbox, work, tmp_path):
    targets = [
        "/usr/mergegate-probe",
        "/etc/mergegate-probe",
        "/etc/passwd",
        "/mergegate-probe",
        f"{sys.prefix}/mergegate-probe",
        f"{tmp_path}/outside",
        f"{work}/inside",
        f"{work}/module.py",
        "/tmp/private",
        "/dev/shm/private",
    ]
    seen = probe(sandbox, WRITE_PROBE % targets, SandboxSpec(workdir=work))
    # /tmp (where pytest's tmp_path lives too) is the sandbox's own tmpfs: writes there
    # succeed but never reach the host.
    allowed = {f"{work}/inside", f"{work}/module.py", "/tmp/private", "/dev/shm/private", f"{tmp_path}/outside"}
    assert {p for p, ok in seen.items() if ok} == allowed
    assert (work / "inside").read_text() == "x"
    assert not Path("/mergegate-probe").exists()
    assert not (tmp_path / "outside").exists()
    assert not Path("/tmp/private").exists()
    assert not Path("/dev/shm/private").exists()


def test_read_only_mode_cannot_write_the_work_tree(sandbox, work):
    spec = SandboxSpec(workdir=work, mode=SandboxMode.READ_ONLY)
    seen = probe(sandbox, WRITE_PROBE % [f"{work}/new", f"{work}/module.py", "/tmp/ok"], spec)
    assert seen == {f"{work}/new": False, f"{work}/module.py": False, "/tmp/ok": True}
    assert (work / "module.py").read_text() == "VALUE = 1\n"
    assert probe(sandbox, "import json; print(json.dumps(open('module.py').read()))", spec) == "VALUE = 1\n"


def test_protected_paths_and_dot_git_stay_read_only(sandbox, work):
    (work / "tests").mkdir()
    (work / "tests" / "test_x.py").write_text("def test(): assert True\n")
    (work / ".git").mkdir()
    (work / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    targets = [
        f"{work}/tests/test_x.py",
        f"{work}/tests/new.py",
        f"{work}/.git/HEAD",
        f"{work}/.git/hooks",
        f"{work}/module.py",
    ]
    spec = SandboxSpec(workdir=work, protected=(work / "tests",))
    seen = probe(sandbox, WRITE_PROBE % targets, spec)
    assert {p for p, ok in seen.items() if ok} == {f"{work}/module.py"}
    assert (work / "tests" / "test_x.py").read_text() == "def test(): assert True\n"
    assert (work / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"


def test_remapped_work_tree_and_mounts(sandbox, work, tmp_path):
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    (env_dir / "tool").write_text("tool")
    out = tmp_path / "out"
    out.mkdir()
    spec = SandboxSpec(
        workdir=work,
        workdir_at=Path("/workspace"),
        mounts=(Mount(env_dir, Path("/opt/env")), Mount(out, Path("/results"), writable=True)),
    )
    assert spec.remapped
    seen = probe(
        sandbox,
        f"""
        import json, os
        open("/results/r.txt", "w").write("result")
        print(json.dumps({{"cwd": os.getcwd(), "ls": sorted(os.listdir(".")),
                          "tool": open("/opt/env/tool").read(),
                          "host_path": os.path.exists({str(work)!r})}}))
        """,
        spec,
    )
    assert seen == {"cwd": "/workspace", "ls": ["module.py"], "tool": "tool", "host_path": False}
    assert (out / "r.txt").read_text() == "result"
    seen = probe(sandbox, WRITE_PROBE % ["/opt/env/tool", "/workspace/new"], spec)
    assert seen == {"/opt/env/tool": False, "/workspace/new": True}


# -- network ---------------------------------------------------------------------------------

NET_PROBE = """
import json, socket
out = {}
try:
    socket.create_connection(("127.0.0.1", %d), timeout=3).close()
    out["tcp"] = True
except OSError as exc:
    out["tcp"] = False
try:
    socket.getaddrinfo("pypi.org", 443)
    out["dns"] = True
except OSError:
    out["dns"] = False
print(json.dumps(out))
"""


@pytest.fixture
def local_port() -> int:
    """PostgreSQL's port when it runs (as in CI), else a listener we open ourselves."""
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError:
        if REQUIRE_SERVICES:
            pytest.fail("PostgreSQL on 127.0.0.1:5432 is required in CI")
    else:
        yield 5432
        return
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    yield listener.getsockname()[1]
    listener.close()


def test_no_network_by_default(sandbox, work, local_port):
    assert probe(sandbox, NET_PROBE % local_port, SandboxSpec(workdir=work)) == {"tcp": False, "dns": False}


def test_setup_network_reaches_localhost_but_no_secrets(sandbox, work, local_port, secrets_in_env):
    spec = SandboxSpec(workdir=work, network=True)
    assert probe(sandbox, NET_PROBE % local_port, spec)["tcp"] is True
    seen = probe(
        sandbox,
        "import json, os; print(json.dumps({'env': dict(os.environ), 'root': os.listdir('/root') "
        "if os.path.isdir('/root') else []}))",
        spec,
    )
    assert not set(secrets_in_env) & set(seen["env"])
    assert not {".ssh", ".cache", ".config", ".gitconfig", ".npmrc", ".bash_history"} & set(seen["root"])


# -- processes -------------------------------------------------------------------------------


def test_own_pid_namespace(sandbox, work):
    seen = probe(
        sandbox,
        f"""
        import json, os
        try:
            os.kill({os.getpid()}, 0)
            killable = True
        except OSError:
            killable = False
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        print(json.dumps({{"pid": os.getpid(), "pids": pids, "killable": killable}}))
        """,
        SandboxSpec(workdir=work),
    )
    assert seen["pid"] < 10
    assert len(seen["pids"]) < 10
    if os.getpid() >= 10:
        # The parent's pid does not exist in there, so it cannot be signalled.
        assert os.getpid() not in seen["pids"]
        assert seen["killable"] is False


def test_timeout_kills_the_whole_process_tree(sandbox, work):
    marker = f"{random.randint(10**8, 10**9)}"
    script = f"""
    sleep 1{marker} &
    setsid sleep 2{marker} &
    (sleep 3{marker} &) &
    nohup sleep 4{marker} >/dev/null 2>&1 &
    sleep 5{marker}
    """
    started = time.monotonic()
    result = asyncio.run(sandbox.run(["/bin/sh", "-c", textwrap.dedent(script)], SandboxSpec(workdir=work), 1.0))
    assert result.timed_out
    assert not result.ok
    assert time.monotonic() - started < 10
    assert wait_until_gone(marker) == []


def test_cancellation_kills_the_sandbox(sandbox, work):
    marker = f"{random.randint(10**8, 10**9)}"

    async def cancel_soon():
        task = asyncio.ensure_future(
            sandbox.run(["/bin/sh", "-c", f"setsid sleep 6{marker} & sleep 7{marker}"], SandboxSpec(workdir=work), 60)
        )
        deadline = time.monotonic() + 10
        while not marker_processes(marker) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert marker_processes(marker), "the sandboxed command never started"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_soon())
    assert wait_until_gone(marker) == []


# -- without bubblewrap ------------------------------------------------------------------------


def test_no_sandbox_still_scrubs_the_environment(work, secrets_in_env):
    seen = probe(NoSandbox(), "import json, os; print(json.dumps(dict(os.environ)))", SandboxSpec(workdir=work))
    assert set(seen) == set(BASE_ENV)


def test_no_sandbox_refuses_to_pretend_it_remaps(work):
    spec = SandboxSpec(workdir=work, workdir_at=Path("/workspace"))
    with pytest.raises(ValueError, match="cannot remap"):
        asyncio.run(NoSandbox().run(["true"], spec, 5))


def test_missing_bubblewrap_is_reported_with_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxUnavailable) as exc:
        make_sandbox("bubblewrap")
    message = str(exc.value)
    assert "apt-get install bubblewrap" in message
    assert "sandbox: none" in message
    with pytest.raises(SandboxUnavailable):
        BubblewrapSandbox(bwrap=None)


def test_bubblewrap_that_cannot_run_is_reported(tmp_path):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(SandboxUnavailable, match="No permissions to create new namespace"):
        BubblewrapSandbox(str(fake))


def test_unknown_sandbox_kind():
    with pytest.raises(SandboxUnavailable, match="unknown sandbox kind"):
        make_sandbox("chroot")
