"""Align a test's checks at base with its checks at head.

The result says, for every base check, what became of it: kept as is, edited into a
head check (a *pair*, judged later for weakening), rewritten into some other check at
least as strong, merged into a head check that covers it, or *removed*. Going from the
most to the least certain:

1. ``difflib`` over the checks' keys: unchanged checks, and edited ones in place
   (inside a replaced block, paired by textual similarity).
2. Checks that moved or were rewritten: a removed check is replaced by a new check at
   least as strong (a helper call that asserts may stand in for several).
3. Removed checks whose names and literals all appear in a head check at least as
   strong (``assert a == 1; assert b == 2`` → ``assert (a, b) == (1, 2)``) are covered.
4. Removed checks found verbatim in a test new in this change moved there (a test split
   in two). What is still unmatched on both sides is paired as *weakened* (a check
   replaced by a weaker one elsewhere in the test); the rest of the base side is *removed*.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from difflib import SequenceMatcher

from mergegate.agents.test_integrity.checks import Check

#: A replacement may be this much weaker and still count as the same strength (style).
SLACK = 0.5
#: How alike two checks' texts must be to call one an edit of the other.
EDIT_SIMILARITY = 0.5


@dataclass
class Alignment:
    pairs: list[tuple[Check, Check]] = field(default_factory=list)
    removed: list[Check] = field(default_factory=list)


def _ratio(a: Check, b: Check) -> float:
    if a.shape == b.shape:
        return 1.0
    matcher = SequenceMatcher(None, a.text, b.text, autojunk=False)
    if matcher.real_quick_ratio() < EDIT_SIMILARITY or matcher.quick_ratio() < EDIT_SIMILARITY:
        return 0.0
    return matcher.ratio()


def _pair_by_similarity(old: list[Check], new: list[Check], out: Alignment) -> tuple[list[Check], list[Check]]:
    """Pair edited checks within a replaced block; return the unpaired on both sides."""
    scored = sorted(
        ((_ratio(o, n), i, j) for i, o in enumerate(old) for j, n in enumerate(new)),
        key=lambda s: (-s[0], s[1], s[2]),
    )
    taken_old: set[int] = set()
    taken_new: set[int] = set()
    for score, i, j in scored:
        if score < EDIT_SIMILARITY or i in taken_old or j in taken_new:
            continue
        if old[i].raising and not new[j].raising:
            continue  # an expected exception is not "edited" into an assert: it is removed
        out.pairs.append((old[i], new[j]))
        taken_old.add(i)
        taken_new.add(j)
    return (
        [o for i, o in enumerate(old) if i not in taken_old],
        [n for j, n in enumerate(new) if j not in taken_new],
    )


def _may_replace(new: Check, old: Check) -> bool:
    """A different check at least as strong. An expected exception is replaced only by another
    one (``try: f(); pytest.fail() except E: pass`` → ``with pytest.raises(E): f()``), while a
    plain check may become an expected exception (the behaviour is now an error)."""
    return new.strength >= old.strength - SLACK and (new.raising or not old.raising)


def _covers(check: Check, removed: Check) -> bool:
    return (
        check.kind == removed.kind != "raises"
        and check.strength >= removed.strength - SLACK
        and removed.idents <= check.idents
        and set(removed.literals) <= set(check.literals)
    )


def align(old: list[Check], new: list[Check], elsewhere: Counter[str] | None = None) -> Alignment:
    """``elsewhere``: keys of checks in tests new in this change (a test split in two moves checks)."""
    out = Alignment()
    elsewhere = Counter() if elsewhere is None else elsewhere
    removed: list[Check] = []
    added: list[Check] = []
    matcher = SequenceMatcher(None, [c.key for c in old], [c.key for c in new], autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            out.pairs.extend(zip(old[i1:i2], new[j1:j2], strict=True))
        elif tag == "delete":
            removed.extend(old[i1:i2])
        elif tag == "insert":
            added.extend(new[j1:j2])
        else:
            left, right = _pair_by_similarity(old[i1:i2], new[j1:j2], out)
            removed.extend(left)
            added.extend(right)

    # 2. rewritten: any new check at least as strong stands in (a helper for several).
    capacity = {id(a): a.capacity for a in added}
    still: list[Check] = []
    for r in removed:
        stand_in = next((a for a in added if capacity[id(a)] > 0 and _may_replace(a, r)), None)
        if stand_in is None:
            still.append(r)
        else:
            capacity[id(stand_in)] -= 1
    spare = [a for a in added if capacity[id(a)] == a.capacity]

    # 3. covered by a head check that states the same and more.
    still = [r for r in still if not any(_covers(n, r) for n in new)]

    # 4. moved to a new test, replaced by something weaker, or removed.
    for r in still:
        if elsewhere[r.key] > 0:
            elsewhere[r.key] -= 1
            continue
        weaker = next((a for a in spare if a.raising == r.raising), None)
        if weaker is None:
            out.removed.append(r)
        else:
            spare.remove(weaker)
            out.pairs.append((r, weaker))
    return out
