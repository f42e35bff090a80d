"""code-quality: ruff on the changed Python files, reported on the lines the change touched."""

from __future__ import annotations

import json
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from mergegate.agents.base import AgentContext, AgentOutput, AgentSkipped
from mergegate.agents.common import on_added_line, run_python_tool
from mergegate.core.finding import Category, Finding, make_fingerprint
from mergegate.core.severity import Severity

#: A default rule set that finds bugs rather than style: pyflakes, pycodestyle errors,
#: bugbear, and a few correctness-oriented families.
DEFAULT_SELECT = ("E4", "E7", "E9", "F", "B", "PLE", "RUF100")

#: Rule prefixes that mean the code is broken, not merely untidy.
_SEVERITY_BY_PREFIX = (
    ("E9", Severity.HIGH),  # syntax errors
    ("F821", Severity.MEDIUM),  # undefined name
    ("F8", Severity.MEDIUM),
    ("PLE", Severity.MEDIUM),
    ("B", Severity.LOW),
    ("F", Severity.LOW),
)


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    select: list[str] = Field(default_factory=lambda: list(DEFAULT_SELECT))
    ignore: list[str] = Field(default_factory=list)


def severity_for(code: str) -> Severity:
    for prefix, severity in _SEVERITY_BY_PREFIX:
        if code.startswith(prefix):
            return severity
    return Severity.INFO


class CodeQuality:
    name: ClassVar[str] = "code-quality"
    description: ClassVar[str] = "ruff lint findings on the lines the change added or changed"
    Options: ClassVar[type[BaseModel]] = Options
    default_timeout: ClassVar[float] = 120.0

    async def run(self, ctx: AgentContext) -> AgentOutput:
        files = ctx.head_files(".py")
        if not files:
            raise AgentSkipped("no Python files changed")
        opts: Options = ctx.options  # type: ignore[assignment]
        args = [
            "check",
            "--isolated",
            "--no-cache",
            "--output-format",
            "json",
            "--exit-zero",
            "--select",
            ",".join(opts.select),
            *(["--ignore", ",".join(opts.ignore)] if opts.ignore else []),
            "--",
            *[f.path for f in files],
        ]
        result = await run_python_tool("ruff", args, cwd=ctx.head_dir)
        findings = []
        for item in json.loads(result.stdout or "[]"):
            path = _relative(item["filename"], str(ctx.head_dir))
            line = item["location"]["row"]
            end = item.get("end_location", {}).get("row")
            if not on_added_line(ctx.change.file(path), line, end):
                continue
            code = item.get("code") or "syntax-error"
            source = (ctx.head_text(path) or "").splitlines()
            basis = source[line - 1] if 0 < line <= len(source) else item["message"]
            findings.append(
                Finding(
                    agent=self.name,
                    rule=code,
                    severity=severity_for(code),
                    confidence=0.9,
                    message=item["message"],
                    category=Category.QUALITY,
                    path=path,
                    line=line,
                    end_line=end,
                    fingerprint=make_fingerprint(self.name, code, path, basis),
                )
            )
        return AgentOutput(findings=findings)


def _relative(filename: str, root: str) -> str:
    prefix = root.rstrip("/") + "/"
    return filename[len(prefix) :] if filename.startswith(prefix) else filename


AGENT = CodeQuality()
