"""The JSON contract (version 1). Extend it, never break it: CI scripts parse this."""

from __future__ import annotations

import json
from typing import Any

from mergegate.core.finding import Finding
from mergegate.service.check import CheckReport

SCHEMA_VERSION = 1


def finding_dict(f: Finding) -> dict[str, Any]:
    return {
        "agent": f.agent,
        "rule": f.rule,
        "severity": f.severity.value,
        "confidence": f.confidence,
        "category": f.category.value,
        "path": f.path,
        "line": f.line,
        "end_line": f.end_line,
        "message": f.message,
        "cwe": f.cwe,
        "fingerprint": f.fingerprint,
        "properties": dict(f.properties),
    }


def as_dict(report: CheckReport) -> dict[str, Any]:
    c, d = report.change, report.decision
    return {
        "version": SCHEMA_VERSION,
        "change": {
            "base": c.base,
            "head": c.head,
            "merge_base": c.merge_base,
            "base_ref": c.base_ref,
            "head_ref": c.head_ref,
            "author": c.head_author,
            "files": [
                {
                    "path": f.path,
                    "status": f.status.value,
                    "old_path": f.old_path,
                    "added_lines": len(f.added_lines),
                    "removed_lines": len(f.removed_lines),
                }
                for f in c.files
            ],
        },
        "policy": {"source": report.policy.source, "digest": report.policy.digest},
        "agents": [
            {
                "name": r.name,
                "status": r.status.value,
                "duration_s": r.duration_s,
                "confidence": r.confidence,
                "findings": len(r.findings),
                "detail": r.detail,
                "notes": list(r.notes),
            }
            for r in report.results
        ],
        "findings": [finding_dict(f) for r in report.results for f in r.findings],
        "decision": {
            "action": d.action.value,
            "confidence": d.confidence,
            "risk": d.risk.value,
            "mode": d.mode.value,
            "reasons": list(d.reasons),
        },
        "duration_s": report.duration_s,
    }


def render(report: CheckReport) -> str:
    return json.dumps(as_dict(report), indent=2) + "\n"
