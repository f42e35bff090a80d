"""Pair each base test with what became of it at head.

A test keeps its identity through edits, renames and moves, so pairing goes from the
most to the least certain evidence:

1. the same qualified name (``Class.test``) in the same file (following a file rename);
2. the same qualified name in another changed test file, when unique (a moved test);
3. the same body, then a similar body (a renamed test, possibly renamed out of
   collection), accepting only head functions that are new, so an existing helper is
   never mistaken for a test. Bodies are compared token by token, and only against the
   few candidates sharing most tokens, so that renaming hundreds of tests stays fast.

What is left is deleted (base) or added (head).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from difflib import SequenceMatcher

from mergegate.agents.test_integrity.extract import TestFunction, TestModule

#: How alike two bodies must be to call one a rename of the other; less with a similar name.
SIMILAR_BODY = 0.75
SIMILAR_BODY_AND_NAME = 0.6
#: Candidates compared in full per deleted test, after a cheap token-set filter.
SHORTLIST, SHORTLIST_JACCARD = 5, 0.4
_TOKEN = re.compile(r"\w+|[^\w\s]")


@dataclass
class Matching:
    pairs: list[tuple[TestFunction, TestFunction]] = field(default_factory=list)
    deleted: list[TestFunction] = field(default_factory=list)
    added: list[TestFunction] = field(default_factory=list)


def _tokens(fn: TestFunction) -> list[str]:
    return _TOKEN.findall(fn.body)


def similarity(a: list[str], b: list[str]) -> float:
    """How alike two bodies are, token by token (0..1)."""
    matcher = SequenceMatcher(None, a, b, autojunk=False)
    if matcher.real_quick_ratio() < SIMILAR_BODY_AND_NAME or matcher.quick_ratio() < SIMILAR_BODY_AND_NAME:
        return 0.0
    return matcher.ratio()


def _shortlist(test: set[str], candidates: dict[tuple[str, str], set[str]]) -> list[tuple[str, str]]:
    """The few candidates sharing most tokens with ``test``: keeps a mass rename linear-ish."""
    scored = []
    for key, tokens in candidates.items():
        union = len(test | tokens)
        if union and len(test & tokens) / union >= SHORTLIST_JACCARD:
            scored.append((len(test & tokens) / union, key))
    return [key for _, key in sorted(scored, reverse=True)[:SHORTLIST]]


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

    # 3a. the very same body under another name (a plain rename): no need to compare further.
    by_body: dict[str, list[tuple[str, str]]] = {}
    for key, fn in candidates().items():
        by_body.setdefault(fn.body, []).append(key)
    pending, still = still, []
    for test in pending:
        same = [k for k in by_body.get(test.body, []) if k not in used]
        if len(same) == 1 and test.body:
            result.pairs.append((test, head_by_key[same[0]]))
            used.add(same[0])
        else:
            still.append(test)

    scored = []  # 3b. a similar body
    pool = candidates()
    token_lists = {key: _tokens(fn) for key, fn in pool.items()}
    token_sets = {key: set(tokens) for key, tokens in token_lists.items()}
    for test in still:
        mine = _tokens(test)
        for key in _shortlist(set(mine), token_sets):
            fn = pool[key]
            body = similarity(mine, token_lists[key])
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
