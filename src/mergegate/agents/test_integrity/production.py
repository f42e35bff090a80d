"""What the change did to the code under test, so test edits can be read against it.

An expected value edited in a test means something different when the function it
tests changed in the same change (was the spec changed, or the test bent to fit new
behaviour?), and a deleted test is expected when the code it tested was deleted too.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProductionFacts:
    #: Non-test Python files the change adds, edits or deletes.
    files: tuple[str, ...] = ()
    #: Function/class/method name → file, for definitions added, edited or removed.
    changed: dict[str, str] = field(default_factory=dict)
    #: Names defined at base and gone at head (removed code) → file.
    removed: dict[str, str] = field(default_factory=dict)

    def changed_in(self, names: set[str]) -> list[tuple[str, str]]:
        """(name, file) for every referenced name whose definition changed."""
        return sorted((n, self.changed[n]) for n in names if n in self.changed)

    def removed_in(self, names: set[str]) -> list[tuple[str, str]]:
        return sorted((n, self.removed[n]) for n in names if n in self.removed)


def definitions(text: str | None) -> dict[str, str]:
    """Top-level functions and classes, and methods, by name → a dump of their AST."""
    if not text:
        return {}
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return {}
    out: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out[node.name] = ast.dump(node)
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    out.setdefault(item.name, ast.dump(item))
        if isinstance(node, ast.Assign):  # module constants such as ``DEFAULT_TIMEOUT = 30``
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = ast.dump(node.value)
    return out


def production_facts(pairs: list[tuple[str, str | None, str | None]]) -> ProductionFacts:
    """From (path, base text, head text) of each changed production file."""
    changed: dict[str, str] = {}
    removed: dict[str, str] = {}
    for path, base_text, head_text in pairs:
        before, after = definitions(base_text), definitions(head_text)
        for name in before.keys() | after.keys():
            if before.get(name) != after.get(name):
                changed[name] = path
            if name in before and name not in after:
                removed[name] = path
    return ProductionFacts(tuple(p for p, _, _ in pairs), changed, removed)
