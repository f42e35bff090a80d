"""The gate: can this exact commit land? Every rule evaluated, every reason in words.

``evaluate`` is pure. The server gathers the facts (reviews, check runs, the base's
CODEOWNERS, the speculative merge commit) and asks; the same question asked twice with
the same facts gets the same answer, which is what makes "re-evaluate inside the merge
transaction" meaningful.

Fail closed everywhere: a fact that is missing, unknown, skipped, pending, errored or
stale never satisfies a rule. All rules are evaluated and reported, not only the first
failure, so a person sees everything that stands between the change and a merge.

The rules (design invariant 2):

- **checks**: every required check is green on the exact commit that will land (with
  ``strict``, the speculative merge of the base tip and the change), produced by the
  gate's own identity. Results posted by anyone else, or for another commit, do not
  count: an agent can post "success" for anything it likes.
- **approvals**: at least N approvals that are by a known human, bound to the current
  review fingerprint, given after the last push, by neither the last pusher nor the
  author, not dismissed, and not replaced by a later request for changes.
- **change_requests**: no outstanding request for changes.
- **code_owners**: each owned changed path (base and head paths, so a rename out of an
  owned directory still needs its owners) has a qualifying approval from an owner, per
  the **base** CODEOWNERS; a path an invalid CODEOWNERS line could decide is blocked.
- **findings**: no blocking finding in enforce mode.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from mergegate.core.codeowners import CodeOwners, OwnerResolver, Ownership, directory_resolver
from mergegate.core.policy import GateRules, Mode
from mergegate.core.principals import Directory
from mergegate.core.reviews import (
    Review,
    ReviewState,
    dismissal_clears_request,
    outstanding_change_requests,
    short,
)


class CheckStatus(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"
    SKIPPED = "skipped"
    PENDING = "pending"


_STATUS_WORDS = {
    CheckStatus.FAILURE: "failed",
    CheckStatus.ERROR: "errored",
    CheckStatus.SKIPPED: "was skipped (a skipped required check counts as failing)",
    CheckStatus.PENDING: "is still pending",
}


@dataclass(frozen=True)
class CheckRun:
    """One result of a check, keyed by (name, producer) on one exact commit.

    ``stale`` is set by the server when the result no longer says anything about the
    commit that would land (e.g. the base moved under a merge-result check).
    ``sequence`` orders re-runs: the latest result for a (name, producer, commit) counts.
    """

    name: str
    producer: str
    commit: str
    status: CheckStatus
    stale: bool = False
    sequence: int = 0
    summary: str = ""


class GateRule(StrEnum):
    CHECKS = "checks"
    APPROVALS = "approvals"
    CHANGE_REQUESTS = "change_requests"
    CODE_OWNERS = "code_owners"
    FINDINGS = "findings"


@dataclass(frozen=True)
class RuleResult:
    rule: GateRule
    satisfied: bool
    reason: str
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class GateVerdict:
    mergeable: bool
    rules: tuple[RuleResult, ...]
    target_branch: str = ""

    def rule(self, rule: GateRule) -> RuleResult:
        return next(r for r in self.rules if r.rule is rule)

    @property
    def blockers(self) -> tuple[RuleResult, ...]:
        return tuple(r for r in self.rules if not r.satisfied)

    def summary(self) -> str:
        into = f" (merging into {self.target_branch})" if self.target_branch else ""
        if self.mergeable:
            head = f"mergeable: every rule is satisfied{into}"
        else:
            head = f"blocked: {len(self.blockers)} of {len(self.rules)} rules are not satisfied{into}"
        lines = [head]
        for r in self.rules:
            lines.append(f"  [{'x' if r.satisfied else ' '}] {r.rule}: {r.reason}")
            if len(r.details) > 1:
                lines.extend(f"        - {d}" for d in r.details)
        return "\n".join(lines)


@dataclass(frozen=True)
class GateInput:
    """Everything the gate needs to know about one change, gathered by the caller.

    ``last_push_sequence`` and review sequences come from the same event counter.
    ``fingerprint`` is the current review fingerprint (``None`` if it could not be
    computed). ``landing_commit`` is the speculative merge of the base tip and the
    change (``None`` until it exists): checks count only on it (strict, always).
    ``codeowners`` must be the **base** ref's. ``blocking_findings``
    is ``None`` when no analysis has reported yet.
    """

    author: str
    last_pusher: str | None
    last_push_sequence: int | None
    fingerprint: str | None
    target_branch: str
    head: str
    landing_commit: str | None
    changed_paths: frozenset[str]
    reviews: tuple[Review, ...]
    directory: Directory
    checks: tuple[CheckRun, ...]
    gate_identity: str
    blocking_findings: int | None
    codeowners: CodeOwners
    rules: GateRules = field(default_factory=GateRules)
    mode: Mode = Mode.ENFORCE
    #: Overrides ``rules.required_checks`` when given.
    required_checks: tuple[str, ...] | None = None
    #: Maps CODEOWNERS owners to principal names; defaults to the directory's view.
    owner_resolver: OwnerResolver | None = None

    @property
    def required_check_names(self) -> tuple[str, ...]:
        return self.rules.required_checks if self.required_checks is None else self.required_checks

    @property
    def check_commit(self) -> str | None:
        return self.landing_commit


def evaluate(gate: GateInput) -> GateVerdict:
    approvals = qualifying_approvals(gate)
    rules = (
        _checks(gate),
        _approvals(gate, approvals),
        _change_requests(gate),
        _code_owners(gate, approvals),
        _findings(gate),
    )
    return GateVerdict(all(r.satisfied for r in rules), rules, gate.target_branch)


# -- checks -----------------------------------------------------------------------------


def _commit_label(gate: GateInput, commit: str) -> str:
    if commit == gate.landing_commit:
        return f"{short(commit)} (the commit that would land)"
    if commit == gate.head:
        return f"{short(commit)} (the change's head)"
    return f"{short(commit)} (another commit)"


def _latest(runs: Iterable[CheckRun]) -> CheckRun:
    # On a tie in sequence, a result that is not a success wins (fail closed).
    return max(runs, key=lambda c: (c.sequence, c.status != CheckStatus.SUCCESS or c.stale))


def _checks(gate: GateInput) -> RuleResult:
    names = gate.required_check_names
    if not names:  # fail closed: a gate with nothing to check has not checked anything
        return RuleResult(GateRule.CHECKS, False, "blocked: no required checks are configured")
    commit = gate.check_commit
    if not commit:
        what = "the speculative merge of the base tip and the change"
        return RuleResult(
            GateRule.CHECKS,
            False,
            f"blocked: the commit that would land is not known yet ({what} has not been made), "
            "so no required check can have passed on it",
        )
    where = _commit_label(gate, commit)
    problems: list[str] = []
    for name in names:
        runs = [c for c in gate.checks if c.name == name]
        ours = [c for c in runs if c.producer == gate.gate_identity and c.commit == commit]
        if not ours:
            reason = f"required check '{name}' has no result on {where}"
            others = sorted({c.producer for c in runs if c.commit == commit and c.producer != gate.gate_identity})
            if others:
                reason += (
                    f"; results posted by {', '.join(others)} do not count: "
                    f"only checks produced by {gate.gate_identity} do"
                )
            elsewhere = sorted({c.commit for c in runs if c.producer == gate.gate_identity and c.commit != commit})
            if elsewhere:
                reason += f"; {gate.gate_identity}'s results on {', '.join(_commit_label(gate, c) for c in elsewhere)}"
                reason += " are for a different commit than the one that would land"
            problems.append(reason)
            continue
        run = _latest(ours)
        if run.stale:
            problems.append(f"required check '{name}' on {where} is stale (the base moved); it must run again")
        elif run.status != CheckStatus.SUCCESS:
            words = _STATUS_WORDS.get(run.status, f"has an unknown status {run.status!r}")
            summary = f": {run.summary}" if run.summary else ""
            problems.append(f"required check '{name}' {words} on {where}{summary}")
    if problems:
        return RuleResult(GateRule.CHECKS, False, "blocked: " + "; ".join(problems), tuple(problems))
    listed = ", ".join(f"'{n}'" for n in names)
    return RuleResult(GateRule.CHECKS, True, f"required checks {listed} passed on {where}, run by {gate.gate_identity}")


# -- approvals -------------------------------------------------------------------------


def approval_problems(gate: GateInput, review: Review) -> list[str]:
    """Why an approval does not count (empty: it counts). Each phrase completes
    "the approval ...", e.g. "is from the last pusher (bob)"."""
    out: list[str] = []
    if review.state is not ReviewState.APPROVE:
        return ["is not an approval"]
    if review.dismissal is not None:
        out.append(f"was dismissed ({review.dismissal.reason or 'no reason given'})")
    later = [
        r
        for r in gate.reviews
        if r.reviewer == review.reviewer
        and r.decisive
        and r != review
        and (r.sequence > review.sequence or (r.sequence == review.sequence and r.state is not ReviewState.APPROVE))
    ]
    if any(r.state is ReviewState.REQUEST_CHANGES for r in later):
        out.append(f"was followed by a request for changes from {review.reviewer}")
    elif later:
        out.append("was replaced by a later approval of the same reviewer")
    principal = gate.directory.get(review.reviewer)
    if principal is None:
        out.append(f"is from {review.reviewer}, who is not a known principal")
    elif not principal.is_human:
        out.append(f"is from an agent ({review.reviewer}): agents can never approve, only humans' approvals count")
    # Design invariant 2: none of these can be turned off (see GateRules).
    if review.reviewer == gate.author:
        out.append(f"is from the change's author ({review.reviewer})")
    if not gate.last_pusher:
        out.append("cannot be shown not to be from the last pusher (who pushed last is unknown)")
    elif review.reviewer == gate.last_pusher:
        out.append(f"is from the last pusher ({review.reviewer})")
    if not gate.fingerprint:
        out.append("cannot be bound to the reviewed content (the change's review fingerprint is unknown)")
    elif review.fingerprint != gate.fingerprint:
        out.append(
            f"is stale: it was given for content {short(review.fingerprint)}, "
            f"the change is now {short(gate.fingerprint)}"
        )
    if gate.last_push_sequence is None:
        out.append("cannot be shown to come after the last push (when that was is unknown)")
    elif review.sequence <= gate.last_push_sequence:
        out.append("was given before the last push")
    return out


def _latest_approvals(gate: GateInput) -> list[Review]:
    """Each reviewer's latest approval (earlier ones are superseded by it)."""
    latest: dict[str, Review] = {}
    for r in sorted((r for r in gate.reviews if r.state is ReviewState.APPROVE), key=lambda r: r.sequence):
        latest[r.reviewer] = r
    return sorted(latest.values(), key=lambda r: r.sequence)


def qualifying_approvals(gate: GateInput) -> frozenset[str]:
    """The reviewers whose approval counts: distinct people, so two approvals from one
    person count once."""
    return frozenset(r.reviewer for r in _latest_approvals(gate) if not approval_problems(gate, r))


def _approvals(gate: GateInput, qualifying: frozenset[str]) -> RuleResult:
    need = gate.rules.required_approvals
    have = len(qualifying)
    if have >= need:
        return RuleResult(
            GateRule.APPROVALS, True, f"{have} of {need} required approvals: {', '.join(sorted(qualifying))}"
        )
    rejected = [(r, approval_problems(gate, r)) for r in _latest_approvals(gate)]
    rejected = [(r, p) for r, p in rejected if p]
    details = tuple(f"{r.reviewer}'s approval {'; '.join(p)}" for r, p in rejected)
    if not rejected and not have:
        reason = (
            f"blocked: no approvals yet; {need} required from humans who are neither the author nor the last pusher"
        )
    elif len(rejected) == 1 and not have:
        reason = f"blocked: the only approval {'; '.join(rejected[0][1])}"
    else:
        counted = f" ({', '.join(sorted(qualifying))})" if qualifying else ""
        reason = f"blocked: {have} of {need} required approvals{counted}"
        if rejected:
            reason += "; not counted: " + "; ".join(details)
    return RuleResult(GateRule.APPROVALS, False, reason, details)


# -- requests for changes -------------------------------------------------------------------


def _change_requests(gate: GateInput) -> RuleResult:
    outstanding = outstanding_change_requests(gate.reviews, gate.directory)
    if not outstanding:
        return RuleResult(GateRule.CHANGE_REQUESTS, True, "no outstanding request for changes")
    details = []
    for r in outstanding:
        text = f"{r.reviewer} requested changes; that stands until {r.reviewer} approves or a maintainer dismisses it"
        if r.dismissal is not None:
            text += f" (the recorded dismissal does not count: {dismissal_clears_request(r, gate.directory)[1]})"
        details.append(text)
    if not gate.rules.request_changes_blocks:
        return RuleResult(
            GateRule.CHANGE_REQUESTS,
            True,
            "requests for changes do not block under this policy: " + "; ".join(details),
            tuple(details),
        )
    return RuleResult(GateRule.CHANGE_REQUESTS, False, "blocked: " + "; ".join(details), tuple(details))


# -- code owners ---------------------------------------------------------------------------


def _code_owners(gate: GateInput, qualifying: frozenset[str]) -> RuleResult:
    resolve = gate.owner_resolver or directory_resolver(gate.directory)
    approvals_by = {r.reviewer: r for r in _latest_approvals(gate)}
    undecided: list[str] = []
    missing: dict[str, list[str]] = {}  # owners description -> paths
    notes: dict[str, list[str]] = {}
    satisfied: list[str] = []
    for path in sorted(gate.changed_paths):
        own: Ownership = gate.codeowners.ownership(path)
        if not own.decided:
            problems = "; ".join(str(p) for p in own.problems)
            undecided.append(f"{path} could be decided by an invalid CODEOWNERS line ({problems})")
            continue
        if not own.owned:
            continue
        approvers: set[str] = set()
        unknown: list[str] = []
        for owner in own.owners:
            names = resolve(owner)
            if names is None:
                unknown.append(str(owner))
            else:
                approvers |= names
        who = own.describe_owners()
        hits = sorted(approvers & qualifying)
        if hits:
            satisfied.append(f"{path} ({who}: {', '.join(hits)})")
            continue
        missing.setdefault(who, []).append(path)
        note = notes.setdefault(who, [])
        for name in sorted(approvers & approvals_by.keys()):
            text = f"{name}'s approval {'; '.join(approval_problems(gate, approvals_by[name]))}"
            if text not in note:
                note.append(text)
        for u in unknown:
            text = f"{u} is not a known principal or group"
            if text not in note:
                note.append(text)
    problems = list(undecided)
    for who, paths in missing.items():
        verb = "is" if len(paths) == 1 else "are"
        text = f"{', '.join(paths)} {verb} owned by {who}; no approval from them"
        if notes.get(who):
            text += f" ({'; '.join(notes[who])})"
        problems.append(text)
    if problems:
        return RuleResult(GateRule.CODE_OWNERS, False, "blocked: " + "; ".join(problems), tuple(problems))
    if not satisfied:
        return RuleResult(GateRule.CODE_OWNERS, True, "no changed path needs a code owner's approval")
    return RuleResult(
        GateRule.CODE_OWNERS,
        True,
        "every owned path has an owner's approval: " + "; ".join(satisfied),
        tuple(satisfied),
    )


# -- findings -----------------------------------------------------------------------------------


def _findings(gate: GateInput) -> RuleResult:
    n = gate.blocking_findings
    if gate.mode is Mode.ADVISORY:
        seen = "an unknown number of" if n is None else str(n)
        return RuleResult(
            GateRule.FINDINGS, True, f"advisory mode: {seen} blocking findings are reported, not enforced"
        )
    if n is None:
        return RuleResult(
            GateRule.FINDINGS,
            False,
            "blocked: the number of blocking findings is unknown (the analysis has not reported)",
        )
    if n > 0:
        plural = "finding" if n == 1 else "findings"
        return RuleResult(GateRule.FINDINGS, False, f"blocked: {n} blocking {plural} (enforce mode)")
    return RuleResult(GateRule.FINDINGS, True, "no blocking findings")
