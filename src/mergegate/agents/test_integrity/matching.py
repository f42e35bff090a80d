"""Pair each base test with what became of it at head.

A test keeps its identity through edits, renames and moves, so pairing goes from the
most to the least certain evidence:

1. the same qualified name (``Class.test``) in the same file (following a file rename);
2. the same qualified name in another changed test file, when unique (a moved test);
3. a similar body (a renamed test, possibly renamed out of collection), accepting only
   head functions that are new, so an existing helper is never mistaken for a test.

What is left is deleted (base) or added (head).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from difflib import SequenceMatcher

from mergegate.agents.test_integrity.extract import TestFunction, TestModule

#: How alike two bodies must be to call one a rename of the other; less with a similar name.
SIMILAR_BODY = 0.75
SIMILAR_BODY_AND_NAME = 0.6


@dataclass
class Matching:
    pairs: list[tuple[TestFunction, TestFunction]] = field(default_factory=list)
    deleted: list[TestFunction] = field(default_factory=list)
    added: list[TestFunction] = field(default_factory=list)


def similarity(a: str, b: str) -> float:
    matcher = SequenceMatcher(None, a, b, autojunk=False)
    if matcher.real_quick_ratio() < SIMILAR_BODY_AND_NAME or matcher.quick_ratio() < SIMILAR_BODY_AND_NAME:
        return 0.0
    return matcher.ratio()


def match_tests(base: Iterable[TestModule], head: Iterable[TestModule], renamed: dict[str, str]) -> Matching:
    """``renamed`` maps base paths of renamed files to their head paths."""
    head_by_key = {(m.path, q): f for m in head for q, f in m.functions.items()}
    base_keys = {(renamed.get(m.path, m.path), q) for m in base for q in m.functions}
    base_tests = [t for m in base for t in m.tests]
    used: set[tuple[str, str]] = set()
    result = Matching()
    pending = []

    for test in base_tests:  # 1. same name, same (or renamed) file
        key = (renamed.get(test.path, test.path), test.qualname)
        if key in head_by_key:
            result.pairs.append((test, head_by_key[key]))
            used.add(key)
        else:
            pending.append(test)

    # Only head functions that did not exist before may be a moved or renamed base test.
    def candidates() -> dict[tuple[str, str], TestFunction]:
        return {k: f for k, f in head_by_key.items() if k not in used and k not in base_keys}

    still = []
    for test in pending:  # 2. same name, other file
        found = [k for k in candidates() if k[1] == test.qualname]
        if len(found) == 1:
            result.pairs.append((test, head_by_key[found[0]]))
            used.add(found[0])
        else:
            still.append(test)

    scored = []  # 3. similar body
    for test in still:
        for key, fn in candidates().items():
            body = similarity(test.body, fn.body)
            name = SequenceMatcher(None, test.name, fn.name).ratio()
            if body >= SIMILAR_BODY or (body >= SIMILAR_BODY_AND_NAME and name >= 0.5):
                scored.append((body + 0.1 * name, test, key))
    matched: set[int] = set()
    for _, test, key in sorted(scored, key=lambda s: -s[0]):
        if id(test) in matched or key in used:
            continue
        result.pairs.append((test, head_by_key[key]))
        matched.add(id(test))
        used.add(key)

    result.deleted = [t for t in still if id(t) not in matched]
    result.added = [f for k, f in head_by_key.items() if k not in used and k not in base_keys and f.collected]
    return result
