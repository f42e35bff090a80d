"""Which files, classes and functions pytest collects, read from the base's pytest config.

A renamed test that pytest no longer collects (``test_x`` → ``_test_x``, ``test_a.py`` →
``a_tests.py``) silently stops running. Whether a name is collected depends on the
project's ``python_files``/``python_classes``/``python_functions``, so these are read at
the merge base (the rules the change is judged by), with pytest's defaults otherwise.
"""

from __future__ import annotations

import ast
import configparser
import fnmatch
import tomllib
from dataclasses import dataclass

CONFIG_FILES = ("pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")


#: pytest's default ``norecursedirs``.
NORECURSE = ("*.egg", ".*", "_darcs", "build", "CVS", "dist", "node_modules", "venv", "{arch}")


@dataclass(frozen=True)
class Collection:
    files: tuple[str, ...] = ("test_*.py", "*_test.py")
    classes: tuple[str, ...] = ("Test",)
    functions: tuple[str, ...] = ("test",)
    testpaths: tuple[str, ...] = ()
    norecursedirs: tuple[str, ...] = NORECURSE

    @classmethod
    def from_settings(cls, settings: dict | None) -> Collection:
        settings = settings or {}
        default = cls()
        return cls(
            files=_values(settings.get("python_files")) or default.files,
            classes=_values(settings.get("python_classes")) or default.classes,
            functions=_values(settings.get("python_functions")) or default.functions,
            testpaths=_values(settings.get("testpaths")),
            norecursedirs=_values(settings.get("norecursedirs")) or default.norecursedirs,
        )

    def collects_file(self, path: str) -> bool:
        name = path.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatch(name, p) or (("/" in p) and fnmatch.fnmatch(path, p)) for p in self.files)

    def collects_path(self, path: str) -> bool:
        """Whether a plain ``pytest`` run from the root collects this file (name, testpaths, dirs)."""
        if not self.collects_file(path):
            return False
        if self.testpaths and not any(path == t or path.startswith(t.rstrip("/") + "/") for t in self.testpaths):
            return False
        dirs = path.split("/")[:-1]
        return not any(fnmatch.fnmatch(d, p) for d in dirs for p in self.norecursedirs)

    def collects_class(self, node: ast.ClassDef) -> bool:
        if any(_base_name(b).endswith("TestCase") for b in node.bases):
            return True  # unittest classes are collected whatever their name
        return _matches(node.name, self.classes)

    def collects_function(self, name: str, in_unittest_class: bool = False) -> bool:
        if in_unittest_class:
            return name.startswith("test")
        return _matches(name, self.functions)


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    """pytest semantics: a pattern with a glob character is a glob, otherwise a prefix."""
    return any(fnmatch.fnmatch(name, p) if any(c in p for c in "*?[") else name.startswith(p) for p in patterns)


def _base_name(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def parse_collection(configs: dict[str, str | None]) -> Collection:
    """The collection rules from the first config file (pytest's order) that has a section."""
    for name in CONFIG_FILES:
        text = configs.get(name)
        settings = section(name, text) if text else None
        if settings is not None:
            return Collection.from_settings(settings)
    return Collection()


def section(name: str, text: str) -> dict | None:
    """The pytest settings of one config file, or None when it has no pytest section."""
    if name == "pyproject.toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            return None
        return data.get("tool", {}).get("pytest", {}).get("ini_options")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        return None
    for header in ("pytest", "tool:pytest"):
        if parser.has_section(header):
            return dict(parser.items(header))
    return None


def _values(raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, list):
        return tuple(str(v) for v in raw)
    return tuple(str(raw).split())
