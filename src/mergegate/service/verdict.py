"""The verdict in words: gather every fact about a change and ask ``core.gate.evaluate``.

The facts come from the database (author, last pusher and the sequence of the last
push, the review fingerprint, reviews, principals with their groups, check runs) and
from git at the **base tip** (CODEOWNERS, ``.mergegate.yml``'s ``gate:`` rules, and the
changed paths of merge-base..head, old and new names both). Nothing is read from the
change itself: a change that edits CODEOWNERS or the policy is judged by the base's
version (design invariant 3).

Around ``evaluate``'s rules the server adds three of its own, evaluated the same way
(satisfied or not, with a reason) because they are facts only the server knows:

- ``state``: the change is open;
- ``policy``: the base's ``.mergegate.yml`` can be read (if not, the defaults judge,
  and the change is blocked with the file's error and line);
- ``landing``: a landing commit exists and was made on the current base tip (no
  conflict; the base has not moved since). Checks on a landing commit made on an older
  tip are marked stale.

The merge transaction calls ``assess`` again under its locks, so what it acts on is the
same answer ``GET /api/changes/N/status`` gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from mergegate.core.codeowners import CODEOWNERS_LOCATIONS, load_codeowners
from mergegate.core.gate import CheckRun, CheckStatus, GateInput, GateVerdict, evaluate, qualifying_approvals
from mergegate.core.policy import POLICY_FILE, GateRules, Mode, PolicyError
from mergegate.forge.local.repos import BareRepo, Forge
from mergegate.service import checks
from mergegate.service.errors import NotFound
from mergegate.service.policy_source import load_policy_text
from mergegate.store import changes as change_store
from mergegate.store import checks as check_store
from mergegate.store import groups, principals
from mergegate.store import reviews as review_store
from mergegate.store.db import Database
from mergegate.store.models import ChangeRow, RepoRow


@dataclass(frozen=True)
class ServerRule:
    rule: str
    satisfied: bool
    reason: str
    details: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "satisfied": self.satisfied, "reason": self.reason, "details": list(self.details)}


@dataclass(frozen=True)
class Assessment:
    change: ChangeRow
    repo: RepoRow
    base_tip: str | None
    gate_input: GateInput
    verdict: GateVerdict
    server_rules: tuple[ServerRule, ...]
    policy_applied: str
    approvers: frozenset[str] = field(default_factory=frozenset)

    @property
    def mergeable(self) -> bool:
        return self.verdict.mergeable and all(r.satisfied for r in self.server_rules)

    @property
    def landing_is_current(self) -> bool:
        c = self.change
        return bool(c.landing_sha) and c.landing_base_sha == self.base_tip and c.landing_head_sha == c.head_sha

    def rules(self) -> list[dict[str, Any]]:
        core = [
            {"rule": str(r.rule), "satisfied": r.satisfied, "reason": r.reason, "details": list(r.details)}
            for r in self.verdict.rules
        ]
        return [r.as_dict() for r in self.server_rules] + core

    def blockers(self) -> list[str]:
        return [f"{r['rule']}: {r['reason']}" for r in self.rules() if not r["satisfied"]]

    def summary(self) -> str:
        rules = self.rules()
        into = f" (merging into {self.change.target_branch})"
        if self.mergeable:
            head = f"mergeable: every rule is satisfied{into}"
        else:
            blocked = sum(1 for r in rules if not r["satisfied"])
            head = f"blocked: {blocked} of {len(rules)} rules are not satisfied{into}"
        lines = [head]
        for r in rules:
            lines.append(f"  [{'x' if r['satisfied'] else ' '}] {r['rule']}: {r['reason']}")
        return "\n".join(lines)


def _changed_paths(bare: BareRepo, merge_base: str | None, head: str) -> frozenset[str] | None:
    """Old and new path of every file merge-base..head touches (``None`` if unknown)."""
    if not merge_base:
        return None
    out = bare.git("diff", "--name-status", "-z", "-M", "--no-ext-diff", "--no-textconv", merge_base, head, "--")
    parts = out.split("\x00")
    paths: set[str] = set()
    i = 0
    while i < len(parts) and parts[i]:
        status = parts[i]
        count = 2 if status[:1] in ("R", "C") else 1
        paths.update(p for p in parts[i + 1 : i + 1 + count] if p)
        i += 1 + count
    return frozenset(paths)


def _policy(bare: BareRepo, base_tip: str | None, branch: str) -> tuple[GateRules, Mode, str, ServerRule]:
    if base_tip is None:
        rule = ServerRule("policy", False, f"blocked: the target branch {branch} does not exist, so no policy applies")
        return GateRules(), Mode.ENFORCE, "none", rule
    exists, text = bare.read_blob(base_tip, POLICY_FILE)
    source = f"{branch}:{POLICY_FILE}" if exists else "built-in defaults"
    try:
        loaded = load_policy_text(text, source)
    except PolicyError as exc:
        rule = ServerRule(
            "policy",
            False,
            f"blocked: the base's policy cannot be read ({'; '.join(exc.problems)}); the defaults judge the "
            f"rest, and {branch}'s {POLICY_FILE} must be fixed by a change of its own",
            tuple(f"{exc.source}: {p}" for p in exc.problems),
        )
        return GateRules(), Mode.ENFORCE, source, rule
    where = f"{source} at {base_tip[:12]}" if exists else f"{source} ({branch} has no {POLICY_FILE})"
    rule = ServerRule("policy", True, f"rules from {where}")
    return loaded.policy.gate, loaded.policy.mode, f"{source}@{loaded.digest}", rule


def _landing_rule(change: ChangeRow, base_tip: str | None) -> ServerRule:
    branch = change.target_branch
    if change.state != "open":
        landed = f" ({change.merged_sha[:12]} is on {branch})" if change.merged_sha else ""
        return ServerRule("landing", False, f"nothing more lands: the change is {change.state}{landed}")
    if base_tip is None:
        return ServerRule("landing", False, f"blocked: the target branch {branch} does not exist")
    made_on_tip = change.landing_base_sha == base_tip and change.landing_head_sha == change.head_sha
    if not made_on_tip:
        return ServerRule(
            "landing",
            False,
            f"blocked: {branch} is now at {base_tip[:12]}, and the commit that would land has not been re-made "
            "on it yet; the gate re-makes it and re-runs its checks",
        )
    if change.landing_problem or not change.landing_sha:
        return ServerRule(
            "landing",
            False,
            f"blocked: no commit can land: {change.landing_problem or 'the landing commit is missing'}",
        )
    return ServerRule(
        "landing",
        True,
        f"the commit that would land is {change.landing_sha[:12]} ({change.landing_method} of "
        f"{change.head_sha[:12]} onto {branch} at {base_tip[:12]})",
    )


def assess(session: Session, forge: Forge, change: ChangeRow, *, base_tip: str | None = None) -> Assessment:
    repo = session.get(RepoRow, change.repo_id)
    bare = forge.open(repo.name)
    base_tip = base_tip or bare.resolve(f"refs/heads/{change.target_branch}")
    state_rule = (
        ServerRule("state", True, "the change is open")
        if change.state == "open"
        else ServerRule(
            "state",
            False,
            f"blocked: the change is {change.state}"
            + (f" (as {change.merged_sha[:12]} by {change.merged_by})" if change.merged_sha else ""),
        )
    )
    gate_rules, mode, policy_applied, policy_rule = _policy(bare, base_tip, change.target_branch)
    landing_rule = _landing_rule(change, base_tip)

    texts: dict[str, str | None] = {}
    if base_tip is not None:
        for location in CODEOWNERS_LOCATIONS:
            exists, text = bare.read_blob(base_tip, location)
            texts[location] = text if exists else None
    codeowners = load_codeowners(texts)  # a missing base reads nothing: every owned path is blocked

    paths = _changed_paths(bare, change.merge_base_sha, change.head_sha)
    directory = groups.directory(session)
    rows = review_store.of_change(session, change.id)
    names = {p.id: p.name for p in principals.list_all(session)}
    reviews = tuple(review_store.to_review(r, names.get(r.reviewer_id, f"#{r.reviewer_id}")) for r in rows)

    landing_current = landing_rule.satisfied
    runs = check_store.on_commits(session, repo.id, [change.landing_sha, change.head_sha])
    check_runs = tuple(
        CheckRun(
            name=r.name,
            producer=r.producer,
            commit=r.commit_sha,
            status=CheckStatus(r.status),
            stale=r.commit_sha == change.landing_sha and not landing_current,
            sequence=r.sequence,
            summary=r.summary[:300],
        )
        for r in runs
        # A gate row is the gate's; a posted row keeps its poster's name, whatever it claims.
        if r.role != "posted" or r.producer != checks.GATE
    )
    blocking = None
    if landing_current:
        ours = [
            r
            for r in runs
            if r.producer == checks.GATE
            and r.role == "landing"
            and r.commit_sha == change.landing_sha
            and r.status in ("success", "failure")
        ]
        if ours:
            blocking = max(ours, key=lambda r: r.sequence).blocking_findings
    gate_input = GateInput(
        author=names.get(change.author_id, f"#{change.author_id}"),
        last_pusher=names.get(change.last_pusher_id),
        last_push_sequence=change.last_push_seq,
        fingerprint=change.fingerprint,
        target_branch=change.target_branch,
        head=change.head_sha,
        landing_commit=change.landing_sha,
        # Unknown paths: fail closed by treating every always-owned file as touched.
        changed_paths=paths if paths is not None else frozenset(CODEOWNERS_LOCATIONS) | {POLICY_FILE},
        reviews=reviews,
        directory=directory,
        checks=check_runs,
        gate_identity=checks.GATE,
        blocking_findings=blocking,
        codeowners=codeowners,
        rules=gate_rules,
        mode=mode,
    )
    verdict = evaluate(gate_input)
    return Assessment(
        change=change,
        repo=repo,
        base_tip=base_tip,
        gate_input=gate_input,
        verdict=verdict,
        server_rules=(state_rule, policy_rule, landing_rule),
        policy_applied=policy_applied,
        approvers=qualifying_approvals(gate_input),
    )


def status(db: Database, forge: Forge, number: int) -> dict[str, Any]:
    """``GET /api/changes/{n}/status``: every rule with its reason, and the facts behind them."""
    from mergegate.service import reviews as review_service

    with db.read() as session:
        change = change_store.get(session, number)
        if change is None:
            raise NotFound(f"no change {number}")
        a = assess(session, forge, change)
        runs = check_store.on_commits(session, a.repo.id, [change.landing_sha, change.head_sha])
        review_rows = review_store.of_change(session, change.id)
        names = {p.id: p.name for p in principals.list_all(session)}
        return {
            "change": change.id,
            "repo": a.repo.name,
            "state": change.state,
            "target_branch": change.target_branch,
            "base_tip": a.base_tip,
            "head": change.head_sha,
            "patchset": change.patchset,
            "fingerprint": change.fingerprint,
            "last_push_sequence": change.last_push_seq,
            "landing": {
                "commit": change.landing_sha,
                "method": change.landing_method,
                "base": change.landing_base_sha,
                "head": change.landing_head_sha,
                "problem": change.landing_problem,
                "current": a.landing_is_current,
            },
            "merge_method": change.merge_method or change.landing_method,
            "merge_when_ready_by": change.merge_when_ready_by,
            "merged_sha": change.merged_sha,
            "merged_by": change.merged_by,
            "policy": a.policy_applied,
            "mergeable": a.mergeable,
            "summary": a.summary(),
            "rules": a.rules(),
            "approvers": sorted(a.approvers),
            "checks": [checks.view(r, landing=change.landing_sha) for r in runs],
            "reviews": [review_service.view(r, names.get(r.reviewer_id, "?")) for r in review_rows],
        }
