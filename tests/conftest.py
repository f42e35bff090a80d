from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.gitrepo import RepoBuilder

REQUIRE_SERVICES = os.environ.get("MERGEGATE_REQUIRE_SERVICES") == "1"


@pytest.fixture
def repo(tmp_path: Path) -> RepoBuilder:
    """A fresh git repository with a ``main`` branch to build on."""
    return RepoBuilder(tmp_path)


def require_tool(name: str) -> str:
    """Skip (or, in CI, fail) when an external tool the test needs is missing."""
    path = shutil.which(name)
    if path is None:
        if REQUIRE_SERVICES:
            pytest.fail(f"{name} is required in CI but is not installed")
        pytest.skip(f"{name} is not installed")
    return path


@pytest.fixture
def bwrap() -> str:
    return require_tool("bwrap")


@pytest.fixture
def mergegate_cmd() -> list[str]:
    """The real console entry point, run as a subprocess."""
    return [sys.executable, "-m", "mergegate"]
