"""Precision of the security-scan and secrets agents on the labelled sets in ``benchmarks/labelled/``.

Usage (from the repository root)::

    .venv/bin/python benchmarks/precision.py          # tables on stdout
    .venv/bin/python benchmarks/precision.py --json   # the same numbers as JSON

Each labelled case is a small file. All cases of a set are added by one change to a real
git repository and judged by a real ``mergegate check`` with one agent; the baselines
run the plain tools on the same files in the same run.

security-scan: a case counts as *flagged* when one of its findings alone keeps the change
from ``auto_approve`` (its risk, severity weight x confidence, exceeds
``1 - thresholds.auto_approve``): what a reviewer would actually be shown. bandit alone
is counted the way CI runs it: any result fails the job (``bandit -r``), and, for
fairness, also with ``-ll`` (medium severity and up).

secrets: flagged = any finding in the case's file; detect-secrets alone (all plugins, its
default filters) is the baseline.

The case files split credentials with "«»" so the repository never contains one; it is
removed when the files are written into the temporary repository.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.gitrepo import RepoBuilder  # noqa: E402

from mergegate.core.confidence import finding_risk  # noqa: E402
from mergegate.core.policy import Policy  # noqa: E402
from mergegate.service.check import run_check  # noqa: E402
from mergegate.vcs.git import GitRepo  # noqa: E402

LABELLED = ROOT / "benchmarks" / "labelled"
SPLIT = "«»"
STOP = 1.0 - Policy().thresholds.auto_approve


def load_security() -> list[dict]:
    cases = []
    for file in sorted((LABELLED / "security").glob("*.yml")):
        for case in yaml.safe_load(file.read_text(encoding="utf-8")):
            cases.append({**case, "category": file.stem, "path": f"cases/{file.stem}/{case['id']}.py"})
    return cases


def load_secrets() -> list[dict]:
    cases = yaml.safe_load((LABELLED / "secrets" / "cases.yml").read_text(encoding="utf-8"))
    return [{**c, "path": f"cases/{c['id']}/{c['path']}"} for c in cases]


def build_repo(tmp: Path, files: dict[str, str]) -> RepoBuilder:
    repo = RepoBuilder(tmp)
    repo.base({"README.md": "labelled cases\n"})
    repo.change({path: text.replace(SPLIT, "") for path, text in files.items()})
    return repo


def check(repo: RepoBuilder, agent: str):
    report = asyncio.run(run_check(GitRepo(repo.path), "main", "change", [agent]))
    (result,) = report.results
    if result.status.value != "ok":
        raise SystemExit(f"{agent} did not run: {result.status.value} {result.detail}")
    return result


def bandit_paths(root: Path, min_severity: str | None) -> set[str]:
    args = [sys.executable, "-m", "bandit", "-q", "-f", "json", "--exit-zero", "-r", "cases"]
    if min_severity:
        args.insert(3, min_severity)
    out = subprocess.run(args, cwd=root, capture_output=True, text=True, check=True).stdout
    return {r["filename"].removeprefix("./") for r in json.loads(out)["results"]}


def rates(cases: list[dict], flagged: set[str]) -> tuple[float, float]:
    pos = [c for c in cases if c["label"] in ("vulnerable", "secret")]
    neg = [c for c in cases if c not in pos]
    tpr = sum(c["path"] in flagged for c in pos) / len(pos) if pos else 0.0
    fpr = sum(c["path"] in flagged for c in neg) / len(neg) if neg else 0.0
    return tpr, fpr


def security(tmp: Path) -> dict:
    cases = load_security()
    repo = build_repo(tmp / "security", {c["path"]: c["code"] for c in cases})
    result = check(repo, "security-scan")
    tools = {
        "security-scan": {f.path for f in result.findings if finding_risk(f) > STOP},
        "bandit": bandit_paths(repo.path, None),
        "bandit -ll": bandit_paths(repo.path, "-ll"),
    }
    by_cat: dict[str, list[dict]] = defaultdict(list)
    for c in cases:
        by_cat[c["category"]].append(c)
    table = {}
    for cat, group in sorted(by_cat.items()):
        table[cat] = {
            "vulnerable": sum(c["label"] == "vulnerable" for c in group),
            "safe": sum(c["label"] == "safe" for c in group),
            **{tool: dict(zip(("tpr", "fpr"), rates(group, flagged), strict=True)) for tool, flagged in tools.items()},
        }
    summary = {}
    for tool in tools:
        tpr = sum(row[tool]["tpr"] for row in table.values()) / len(table)
        fpr = sum(row[tool]["fpr"] for row in table.values()) / len(table)
        summary[tool] = {"mean_tpr": tpr, "mean_fpr": fpr, "tpr_minus_fpr": tpr - fpr}
    misses = {
        "missed": sorted(
            c["path"] for c in cases if c["label"] == "vulnerable" and c["path"] not in tools["security-scan"]
        ),
        "false_positives": sorted(
            c["path"] for c in cases if c["label"] == "safe" and c["path"] in tools["security-scan"]
        ),
    }
    semgrep = not any("semgrep is not installed" in n for n in result.notes)
    return {"cases": len(cases), "semgrep": semgrep, "categories": table, "summary": summary, "security-scan": misses}


def detect_secrets_paths(root: Path, paths: list[str]) -> set[str]:
    from detect_secrets.core.scan import scan_file
    from detect_secrets.settings import default_settings

    flagged = set()
    with default_settings():
        for p in paths:
            if any(True for _ in scan_file(str(root / p))):
                flagged.add(p)
    return flagged


def secrets(tmp: Path) -> dict:
    cases = load_secrets()
    repo = build_repo(tmp / "secrets", {c["path"]: c["text"] for c in cases})
    result = check(repo, "secrets")
    tools = {
        "secrets": {f.path for f in result.findings},
        "detect-secrets": detect_secrets_paths(repo.path, [c["path"] for c in cases]),
    }
    out = {"cases": len(cases), "secret": sum(c["label"] == "secret" for c in cases)}
    for tool, flagged in tools.items():
        tp = sum(c["path"] in flagged for c in cases if c["label"] == "secret")
        fp = sum(c["path"] in flagged for c in cases if c["label"] == "benign")
        out[tool] = {
            "precision": tp / (tp + fp) if tp + fp else 0.0,
            "recall": tp / out["secret"],
            "missed": sorted(c["id"] for c in cases if c["label"] == "secret" and c["path"] not in flagged),
            "false_positives": sorted(c["id"] for c in cases if c["label"] == "benign" and c["path"] in flagged),
        }
    return out


def print_tables(sec: dict, sek: dict) -> None:
    tools = list(next(iter(sec["categories"].values())))[2:]
    with_semgrep = "with semgrep and our rules" if sec["semgrep"] else "bandit only: semgrep is not installed"
    print(f"security-scan ({with_semgrep}) vs bandit: {sec['cases']} cases (TPR / FPR per category)\n")
    print(f"{'category':<20}{'vuln':>5}{'safe':>5}" + "".join(f"{t:>20}" for t in tools))
    for cat, row in sec["categories"].items():
        cells = "".join(f"{row[t]['tpr']:>10.2f} / {row[t]['fpr']:<7.2f}" for t in tools)
        print(f"{cat:<20}{row['vulnerable']:>5}{row['safe']:>5}{cells}")
    print(
        f"{'mean':<30}"
        + "".join(f"{sec['summary'][t]['mean_tpr']:>10.2f} / {sec['summary'][t]['mean_fpr']:<7.2f}" for t in tools)
    )
    print(f"{'TPR - FPR':<30}" + "".join(f"{sec['summary'][t]['tpr_minus_fpr']:>20.2f}" for t in tools))
    print(f"\nsecurity-scan missed: {', '.join(sec['security-scan']['missed']) or '-'}")
    print(f"security-scan false positives: {', '.join(sec['security-scan']['false_positives']) or '-'}")
    print(f"\nsecrets: {sek['cases']} cases ({sek['secret']} secrets)\n")
    for tool in ("secrets", "detect-secrets"):
        r = sek[tool]
        print(f"{tool:<16} precision {r['precision']:.2f}  recall {r['recall']:.2f}")
        print(f"{'':<16} missed: {', '.join(r['missed']) or '-'}")
        print(f"{'':<16} false positives: {', '.join(r['false_positives']) or '-'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mergegate-precision-") as tmp:
        sec, sek = security(Path(tmp)), secrets(Path(tmp))
    if args.json:
        print(json.dumps({"security": sec, "secrets": sek}, indent=2))
    else:
        print_tables(sec, sek)


if __name__ == "__main__":
    main()
