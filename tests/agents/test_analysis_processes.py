"""Agents' analysis in child processes: the same answers, and secrets' values never cross the pipe."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from mergegate.agents import secrets, security_scan
from mergegate.core.secret_patterns import mask, sha256
from mergegate.runtime.process import run_process
from tests.agents.test_secrets import GH, STRIPE

VULNERABLE = "import subprocess\n\n\ndef run(cmd):\n    subprocess.call(cmd, shell=True)\n"
PICKLE = "import pickle\n\n\ndef load(data):\n    return pickle.loads(data)\n"


def test_the_secrets_child_answers_with_hashes_and_masks_never_values(tmp_path: Path):
    (tmp_path / "conf.py").write_text(f'TOKEN = "{GH}"\nSTRIPE = "{STRIPE}"\nNAME = "x"\n')
    request = {"head_dir": str(tmp_path), "files": {"conf.py": [1, 2, 3]}, "options": {}}
    child = [sys.executable, "-I", "-c", secrets._WORKER]
    result = asyncio.run(run_process(child, stdin=json.dumps(request).encode()))
    assert result.returncode == 0, result.stderr
    for value in (GH, STRIPE):
        assert value not in result.stdout
        assert sha256(value) in result.stdout
    hits = json.loads(result.stdout)["files"]["conf.py"]["hits"]
    assert {(h["hit"]["line"], h["masked"]) for h in hits} == {(1, mask(GH)), (2, mask(STRIPE))}


def test_a_failing_secrets_child_is_an_error_that_quotes_nothing(tmp_path: Path):
    (tmp_path / "conf.py").mkdir()  # a directory where a file is expected: reading it fails
    request = {"head_dir": str(tmp_path), "files": {"conf.py": [1]}, "options": {}}
    child = [sys.executable, "-I", "-c", secrets._WORKER]
    result = asyncio.run(run_process(child, stdin=json.dumps(request).encode()))
    assert json.loads(result.stdout) == {"error": "could not scan conf.py: IsADirectoryError"}


def test_one_bandit_for_both_sides_finds_what_two_would(tmp_path: Path):
    head, base = tmp_path / "head", tmp_path / "base"
    for side, files in ((head, {"app.py": VULNERABLE, "pkg/io.py": PICKLE}), (base, {"app.py": PICKLE})):
        for path, text in files.items():
            (side / path).parent.mkdir(parents=True, exist_ok=True)
            (side / path).write_text(text)
    opts = security_scan.Options()
    head_paths, base_paths = ["app.py", "pkg/io.py"], ["app.py"]

    async def both_ways():
        together = await security_scan.run_bandit_both(head, head_paths, base, base_paths, opts)
        apart = (
            await security_scan.run_bandit(head, head_paths, opts),
            await security_scan.run_bandit(base, base_paths, opts),
        )
        return together, apart

    together, apart = asyncio.run(both_ways())
    assert together == apart
    (head_found, _), (base_found, _) = together
    assert {(f.path, f.rule) for f in head_found} >= {("app.py", "B602"), ("pkg/io.py", "B301")}
    assert {(f.path, f.rule) for f in base_found} >= {("app.py", "B301")}
    assert all(f.path == "app.py" for f in base_found)
