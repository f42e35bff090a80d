"""Recall and false-positive rate of the test-integrity agent on a labelled set of test edits.

    .venv/bin/python benchmarks/test_integrity_eval.py [--verbose] [--json FILE]

Each case in ``benchmarks/labelled/test_integrity/*.yaml`` is a small base/head pair of
test files (plus, where it matters, the production code) in the style of real projects'
history, labelled:

* ``weakening``   — the edit makes a test weaker; it must be flagged at ``medium`` or above;
* ``legitimate``  — an honest edit (rename, refactor, added checks, typo, move …); it must
  not be flagged above ``low``;
* ``spec-change`` — an expected value changed together with the code on purpose; the agent
  cannot know intent, so it should *ask* (``medium``), never claim a weakening (``high``).

For every case a real git repository is built (base on ``main``, the edit on ``change``)
and the agent runs through ``run_check``, exactly as ``mergegate check`` runs it.
Targets: recall ≥ 0.90, false-positive rate at ≥ medium ≤ 0.10. Exits 1 when missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

from mergegate.core.severity import Severity
from mergegate.service.check import run_check
from mergegate.vcs.git import GitRepo

CASES = Path(__file__).parent / "labelled" / "test_integrity"
AGENT = "test-integrity"
LABELS = ("weakening", "legitimate", "spec-change")
RECALL_TARGET, FP_TARGET = 0.90, 0.10
_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@dataclass
class Outcome:
    name: str
    label: str
    summary: str
    worst: Severity | None
    findings: list[tuple[str, str, str]]  # (rule, severity, message)

    @property
    def flagged(self) -> bool:
        return self.worst is not None and self.worst >= Severity.MEDIUM


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, env=_ENV, check=True, capture_output=True)


def _write(root: Path, files: dict[str, str | None]) -> None:
    for rel, text in (files or {}).items():
        target = root / rel
        if text is None:
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def build(case: dict, root: Path) -> GitRepo:
    """A real repository: ``main`` holds the base files, ``change`` the edit on top."""
    root.mkdir(parents=True)
    _git(root, "init", "-q", "-b", "main")
    _write(root, case["base"])
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "base")
    _git(root, "checkout", "-q", "-b", "change")
    for old, new in (case.get("renames") or {}).items():
        (root / new).parent.mkdir(parents=True, exist_ok=True)
        _git(root, "mv", old, new)
    _write(root, case.get("head") or {})
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "--allow-empty", "-m", case.get("summary", "change"))
    return GitRepo(root)


def load(path: Path) -> dict:
    case = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(case, dict) or case.get("label") not in LABELS or not isinstance(case.get("base"), dict):
        raise SystemExit(f"{path.name}: needs label ({', '.join(LABELS)}) and base files")
    return case


async def evaluate(path: Path, case: dict, scratch: Path) -> Outcome:
    repo = await asyncio.to_thread(build, case, scratch / path.stem)
    report = await run_check(repo, "main", "change", [AGENT])
    (result,) = report.results
    if result.status.failed:
        raise SystemExit(f"{path.name}: the agent failed: {result.detail}")
    found = [(f.rule, f.severity.value, f.message) for f in result.findings]
    worst = max((f.severity for f in result.findings), default=None)
    return Outcome(path.stem, case["label"], case.get("summary", ""), worst, found)


async def evaluate_all(paths: list[Path]) -> list[Outcome]:
    cases = {p: load(p) for p in paths}  # all valid before any work starts
    limit = asyncio.Semaphore(max(2, os.cpu_count() or 2))
    with tempfile.TemporaryDirectory(prefix="mergegate-ti-bench-") as tmp:

        async def one(p: Path) -> Outcome:
            async with limit:
                return await evaluate(p, cases[p], Path(tmp))

        return list(await asyncio.gather(*(one(p) for p in paths)))


def _rate(hits: int, total: int) -> float:
    return hits / total if total else 0.0


def summarise(outcomes: list[Outcome]) -> dict:
    by = {label: [o for o in outcomes if o.label == label] for label in LABELS}
    weak, legit, spec = by["weakening"], by["legitimate"], by["spec-change"]
    return {
        "cases": len(outcomes),
        "weakening": len(weak),
        "legitimate": len(legit),
        "spec_change": len(spec),
        "recall": round(_rate(sum(o.flagged for o in weak), len(weak)), 3),
        "recall_high": round(_rate(sum(o.worst == Severity.HIGH for o in weak), len(weak)), 3),
        "fp_rate": round(_rate(sum(o.flagged for o in legit), len(legit)), 3),
        "fp_rate_any": round(_rate(sum(o.worst is not None and o.worst > Severity.INFO for o in legit), len(legit)), 3),
        "spec_asked": sum(o.worst == Severity.MEDIUM for o in spec),
        "spec_high": sum(o.worst is not None and o.worst >= Severity.HIGH for o in spec),
        "rules": dict(Counter(r for o in weak for r, sev, _ in o.findings if sev in ("medium", "high")).most_common()),
        "missed": [o.name for o in weak if not o.flagged],
        "false_positives": [o.name for o in legit if o.flagged],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--verbose", "-v", action="store_true", help="print every case with its findings")
    parser.add_argument("--json", metavar="FILE", help="also write the summary and outcomes as JSON")
    args = parser.parse_args(argv)

    paths = sorted(CASES.glob("*.yaml"))
    started = time.monotonic()
    outcomes = asyncio.run(evaluate_all(paths))
    elapsed = time.monotonic() - started
    summary = summarise(outcomes)

    for o in outcomes:
        wrong = (o.label == "weakening" and not o.flagged) or (o.label == "legitimate" and o.flagged)
        if args.verbose or wrong:
            mark = "MISS" if o.label == "weakening" and wrong else "FP  " if wrong else "ok  "
            print(f"{mark} {o.label:<11} {o.name}: {o.summary}")
            for rule, sev, msg in o.findings:
                print(f"       {sev:<6} {rule}: {msg[:160]}")

    print(f"\ntest-integrity on {summary['cases']} labelled edits ({elapsed:.1f}s)")
    print(
        f"  weakening   {summary['weakening']:>3}  recall (flagged ≥ medium) {summary['recall']:.3f}"
        f"  [target ≥ {RECALL_TARGET}]  flagged high {summary['recall_high']:.3f}"
    )
    print(
        f"  legitimate  {summary['legitimate']:>3}  false positives ≥ medium {summary['fp_rate']:.3f}"
        f"  [target ≤ {FP_TARGET}]  any finding above info {summary['fp_rate_any']:.3f}"
    )
    print(
        f"  spec-change {summary['spec_change']:>3}  asked as a question (medium) {summary['spec_asked']}"
        f", claimed as a weakening (high) {summary['spec_high']}"
    )
    print("  rules that caught weakenings: " + ", ".join(f"{r} {n}" for r, n in summary["rules"].items()))

    if args.json:
        data = {"summary": summary, "outcomes": [o.__dict__ | {"worst": o.worst and o.worst.value} for o in outcomes]}
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return 0 if summary["recall"] >= RECALL_TARGET and summary["fp_rate"] <= FP_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
