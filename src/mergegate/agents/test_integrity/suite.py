"""What decides which tests run, outside the tests: pytest hooks, ``collect_ignore``, config.

A change can leave every test untouched and still stop tests from running or failing: a
``pytest_collection_modifyitems`` hook in ``conftest.py`` that deselects or skips items,
a path added to ``collect_ignore``, ``--deselect``/``-k``/``--ignore`` added to
``addopts``, or ``python_files`` narrowed. These are compared between base and head.
"""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Callable

from mergegate.agents.test_integrity.collection import Collection, section
from mergegate.agents.test_integrity.issues import Issue, code
from mergegate.core.severity import Severity

#: Words in a hook's body that mean it removes, skips or forgives tests.
_HIDING = re.compile(r"\b(skip|xfail|deselect|remove|pop|del|exit|outcome|force_result|items\[)", re.IGNORECASE)
#: addopts that leave tests out of the run.
_DROPPING_OPTS = ("--deselect", "-k", "--ignore", "--ignore-glob", "-m", "-p", "--lf", "--last-failed")
_COLLECTION_KEYS = ("python_files", "python_classes", "python_functions", "testpaths", "norecursedirs")


def hooks(tree: ast.Module) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    return {
        n.name: n
        for n in tree.body
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("pytest_")
    }


def collect_ignore(tree: ast.Module) -> set[str]:
    """Literal entries of ``collect_ignore``/``collect_ignore_glob`` (assigned, extended or appended)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        value = None
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id.startswith("collect_ignore") for t in targets):
                value = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if isinstance(owner, ast.Name) and owner.id.startswith("collect_ignore") and node.args:
                value = node.args[0]
        if value is not None:
            out |= {n.value for n in ast.walk(value) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return out


def compare_conftest(path: str, base: ast.Module | None, head: ast.Module) -> list[Issue]:
    issues = []
    before = hooks(base) if base else {}
    for name, node in hooks(head).items():
        old = before.get(name)
        if old is not None and ast.dump(old) == ast.dump(node):
            continue
        body = ast.unparse(node)
        hiding = _HIDING.search(body)
        verb = "added" if old is None else "changed"
        if hiding:
            msg = (
                f"pytest hook `{name}` {verb} in {path}, and it can drop, skip or forgive tests "
                f"(it uses {code(hiding.group(0))}): check which tests still run."
            )
            issues.append(Issue("pytest-hook-changed", Severity.HIGH, 0.8, msg, path, node.lineno, name))
        else:
            msg = f"pytest hook `{name}` {verb} in {path}: it runs around every test; review what it changes."
            issues.append(Issue("pytest-hook-changed", Severity.LOW, 0.5, msg, path, node.lineno, name))
    added = sorted(collect_ignore(head) - (collect_ignore(base) if base else set()))
    if added:
        listed = ", ".join(f"`{p}`" for p in added)
        msg = f"{path} now tells pytest to ignore {listed}: the tests there no longer run."
        issues.append(Issue("collect-ignore-added", Severity.HIGH, 0.85, msg, path, None, "|".join(added)))
    return issues


def compare_config(
    path: str, base_text: str | None, head_text: str | None, files: Callable[[], list[str]]
) -> list[Issue]:
    """The pytest section of a config file at base and head (pytest.ini, pyproject.toml, …).

    ``files`` lists the Python files at head; it is called only when the collection rules
    changed, to name the test files the new rules no longer collect.
    """
    name = path.rsplit("/", 1)[-1]
    before = (section(name, base_text) if base_text else None) or {}
    after = (section(name, head_text) if head_text else None) or {}
    issues = []
    old_opts, new_opts = _opts(before.get("addopts")), _opts(after.get("addopts"))
    dropping = [o for o in new_opts if o.split("=")[0] in _DROPPING_OPTS and o not in old_opts]
    if dropping:
        msg = (
            f"pytest options in {path} now leave tests out of the run: {code(' '.join(dropping))} "
            f"(addopts {code(' '.join(old_opts) or 'none')} → {code(' '.join(new_opts))})."
        )
        issues.append(Issue("pytest-config-changed", Severity.HIGH, 0.85, msg, path, None, "addopts"))
    changed = [k for k in _COLLECTION_KEYS if before.get(k) != after.get(k)]
    if changed:
        rules = ", ".join(f"`{k}` {code(str(before.get(k)))} → {code(str(after.get(k)))}" for k in changed)
        old_rules, new_rules = Collection.from_settings(before), Collection.from_settings(after)
        lost = [f for f in files() if old_rules.collects_path(f) and not new_rules.collects_path(f)]
        if lost:
            listed = ", ".join(f"`{f}`" for f in lost[:5]) + (" …" if len(lost) > 5 else "")
            msg = (
                f"pytest collection rules changed in {path} ({rules}): {len(lost)} test file(s) stop running: {listed}."
            )
            issues.append(Issue("pytest-config-changed", Severity.HIGH, 0.85, msg, path, None, "|".join(changed)))
        else:
            msg = f"pytest collection rules changed in {path} ({rules}); every existing test file is still collected."
            issues.append(Issue("pytest-config-changed", Severity.LOW, 0.4, msg, path, None, "|".join(changed)))
    if _truthy(before.get("xfail_strict")) and not _truthy(after.get("xfail_strict")):
        msg = f"`xfail_strict` turned off in {path}: tests marked xfail that pass are no longer reported."
        issues.append(Issue("pytest-config-changed", Severity.MEDIUM, 0.6, msg, path, None, "xfail_strict"))
    return issues


def _opts(raw: object) -> list[str]:
    """addopts as separate options, with ``-k expr`` kept together as ``-k=expr``."""
    if raw is None:
        return []
    try:
        words = shlex.split(" ".join(raw) if isinstance(raw, list) else str(raw))
    except ValueError:
        words = str(raw).split()
    out: list[str] = []
    for word in words:
        if out and out[-1] in _DROPPING_OPTS and not word.startswith("-"):
            out[-1] = f"{out[-1]}={word}"
        else:
            out.append(word)
    return out


def _truthy(raw: object) -> bool:
    return str(raw).strip().lower() in ("true", "1", "yes", "on")
