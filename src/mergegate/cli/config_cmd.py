from __future__ import annotations

import json
from pathlib import Path

import typer

from mergegate.cli.console import err, fail
from mergegate.core.policy import POLICY_FILE, Policy, PolicyError
from mergegate.service.policy_source import load_policy_text

app = typer.Typer(help="The policy file (.mergegate.yml).", no_args_is_help=True)

DEFAULT_POLICY = """\
# mergegate policy. It is always read from the BASE branch: a change that edits this
# file is judged by the version already on the base branch.
version: 1

# enforce: blocked/rejected changes fail the check (exit 1).
# advisory: the same verdict is reported, but the check exits 0 (roll out with this).
mode: enforce

# A security finding at or above this severity blocks the change (block_security).
blocking_severity: high   # info | low | medium | high | critical

# Routing by aggregated confidence (0..1). auto_approve only means the AI gate is
# green: a human approval is still required to merge.
thresholds:
  auto_approve: 0.90
  human_review: 0.70

# Minimum confidence for an agent to act on its own, by the risk of the action:
# low: comments, tagging; medium: running tests, staging deploy;
# high: production deploy, infrastructure.
action_thresholds: {low: 0.60, medium: 0.75, high: 0.90}

# Changes touching these paths are never auto-approved (at best human_review).
sensitive_paths:
  - "**/auth/**"
  - "**/migrations/**"
  - "**/payments/**"
  - ".github/workflows/**"
  - ".gitlab-ci.yml"
  - ".mergegate.yml"
  - "CODEOWNERS"
  - ".github/CODEOWNERS"

# Which files are tests (for test-integrity and test-coverage).
test_paths: ["tests/**", "test/**", "test_*.py", "*_test.py", "conftest.py"]

# The change's tests run under bubblewrap: read-only system, only the work tree
# writable, no network, no secrets. `none` is an explicit opt-out.
sandbox: bubblewrap

tests:
  # setup: "pip install -e .[test]"   # runs in the sandbox with network, never secrets
  command: "pytest -q"
  timeout: 600

agents:
  security-scan: {timeout: 120}
  test-coverage: {timeout: 900}
"""


def init(
    path: Path = typer.Option(Path(POLICY_FILE), "--path", help="Where to write the policy."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a commented default .mergegate.yml."""
    if path.exists() and not force:
        raise fail(f"{path} already exists (use --force to overwrite)")
    try:
        load_policy_text(DEFAULT_POLICY, str(path))  # the default must always validate
    except PolicyError as exc:  # e.g. an agent it names is not installed
        raise fail(f"the default policy does not validate here\n{exc}") from None
    path.write_text(DEFAULT_POLICY, encoding="utf-8")
    err.print(f"wrote {path}; commit it to the base branch for it to take effect")


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of .mergegate.yml."""
    typer.echo(json.dumps(Policy.model_json_schema(), indent=2))


@app.command("validate")
def validate(path: Path = typer.Argument(Path(POLICY_FILE), help="The policy file to validate.")) -> None:
    """Validate a policy file; errors name the key and line. Exit 0 valid, 2 invalid."""
    if not path.is_file():
        raise fail(f"{path}: no such file")
    try:
        load_policy_text(path.read_text(encoding="utf-8"), str(path))
    except PolicyError as exc:
        raise fail(f"invalid policy\n{exc}") from None
    err.print(f"[green]ok[/]: {path} is a valid policy")
