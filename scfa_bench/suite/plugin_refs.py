"""Plugin references in a suite, checked without running them.

A suite's `implementations` may name code from outside the package: `package.module:function`
or `path/to/file.py:function`. Loading a suite must never run that code (someone else's suite
is safe to validate), so here a reference is only *resolved*: the file exists in the suite's
folder, or the module's source is found on `sys.path` without importing it or its parent
packages. Its pattern (and so its sweep axes) is read from the source text when written
literally; everything else is known once the plugin is registered
(`impls.plugins.register_suite_plugins`, the explicit opt-in).
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scfa_bench.constants import PATTERN_AXES

# Parameter names that select a function plugin's pattern (as `impls.plugins` reads them).
PATTERN_PARAMS = {"hash": ("q_hash", "k_hash"), "qk": ("q_keep", "k_keep")}


_UNCLEAR = "<not a literal pattern>"


class UnresolvedReference(Exception):
    """A reference that does not resolve; the message says why (the caller adds the key)."""


@dataclass(frozen=True)
class PluginRef:
    """A `module:attr` or `file.py:attr` reference and the source file it resolves to (None for
    a module without Python source, e.g. a compiled extension)."""

    name: str
    kind: str  # "file" | "module"
    target: str
    attr: str
    source: Path | None


def is_reference(name: str) -> bool:
    """`module:function` or `file.py:function` (built-in names have no colon)."""
    return ":" in name


def suite_folder(file: str) -> Path:
    """The folder a suite's file references are relative to: the suite file's, else (a suite
    built in code) the working directory."""
    if not file or file.startswith("<"):
        return Path.cwd()
    return Path(file).parent


def resolve_reference(ref: str, base_dir: Path, *, allow_outside: bool = False) -> PluginRef:
    """Check that `ref` resolves, without running any of its code; UnresolvedReference if not."""
    target, _, attr = ref.rpartition(":")
    if not target or not attr:
        raise UnresolvedReference(f"expected 'module:function' or 'file.py:function', got {ref!r}")
    if target.endswith(".py"):
        return PluginRef(ref, "file", target, attr, _resolve_file(target, base_dir, allow_outside))
    return PluginRef(ref, "module", target, attr, _resolve_module(target))


def _resolve_file(target: str, base_dir: Path, allow_outside: bool) -> Path:
    folder = base_dir.resolve()
    path = (folder / target).resolve()  # an absolute target replaces the folder
    if not allow_outside and not path.is_relative_to(folder):
        raise UnresolvedReference(
            f"plugin file {target!r} is outside the suite's folder {folder}; only files in it "
            "(or below) are allowed"
        )
    if not path.is_file():
        raise UnresolvedReference(f"plugin file not found: {path}")
    return path


def _resolve_module(target: str) -> Path | None:
    """The module's source file, found on `sys.path` as the import system would, but without
    executing any package `__init__` (importlib's find_spec imports the parents of a dotted
    name). None when it has no Python source (builtin, frozen, compiled)."""
    parts = target.split(".")
    if not all(part.isidentifier() for part in parts):
        raise UnresolvedReference(f"{target!r} is not a module name")
    loaded = sys.modules.get(parts[0])
    if loaded is not None:  # already imported by someone else: reading it runs nothing
        locations = list(getattr(loaded, "__path__", []))
        origin = getattr(loaded, "__file__", None)
    else:
        spec = importlib.util.find_spec(parts[0])  # a top-level name imports nothing
        if spec is None:
            raise UnresolvedReference(f"module {parts[0]!r} not found (on sys.path)")
        locations = list(spec.submodule_search_locations or [])
        origin = spec.origin if spec.has_location else None
    for depth, part in enumerate(parts[1:], start=1):
        found = _find_in(part, locations)
        if found is None:
            raise UnresolvedReference(f"module {'.'.join(parts[: depth + 1])!r} not found")
        origin, locations = found
    if origin is None or not str(origin).endswith(".py"):
        return None
    return Path(origin)


def _find_in(name: str, locations: list[str]) -> tuple[str | None, list[str]] | None:
    """(source file or None, submodule folders) of module `name` in these package folders."""
    for folder in map(Path, locations):
        package = folder / name
        if (package / "__init__.py").is_file():
            return str(package / "__init__.py"), [str(package)]
        for suffix in importlib.machinery.all_suffixes():
            if (folder / (name + suffix)).is_file():
                return str(folder / (name + suffix)), []
    namespace = [str(Path(f) / name) for f in locations if (Path(f) / name).is_dir()]
    return (None, namespace) if namespace else None


def static_pattern(ref: PluginRef) -> str | None:
    """The pattern of the referenced function or class, read from its source without running
    it: a literal `pattern` (class attribute, or `fn.pattern = "..."` at top level), else a
    function's parameter names. None when the source does not say it plainly."""
    if ref.source is None or "." in ref.attr:
        return None
    try:
        tree = ast.parse(ref.source.read_text(encoding="utf-8"), str(ref.source))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None
    defs = [n for n in tree.body if getattr(n, "name", None) == ref.attr]
    node = defs[-1] if defs else None
    if isinstance(node, ast.ClassDef):
        declared = _literal_pattern(node.body, ast.Name, lambda t: t.id == "pattern")
        return None if declared == _UNCLEAR else declared
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    declared = _literal_pattern(
        tree.body,
        ast.Attribute,
        lambda t: t.attr == "pattern" and isinstance(t.value, ast.Name) and t.value.id == ref.attr,
    )
    if declared is not None:
        return None if declared == _UNCLEAR else declared
    args = node.args
    names = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}
    return next((p for p, params in PATTERN_PARAMS.items() if set(params) <= names), "dense")


def _literal_pattern(
    body: list[ast.stmt], kind: type, matches: Callable[[Any], bool]
) -> str | None:
    """The value of the last `<target> = "<pattern>"` in `body` whose target is a `kind` node
    that `matches`; _UNCLEAR when that value is not a literal pattern; None when never set."""
    found = None
    for stmt in body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else []
        if any(isinstance(t, kind) and matches(t) for t in targets):
            value = stmt.value.value if isinstance(stmt.value, ast.Constant) else None
            found = value if value in PATTERN_AXES else _UNCLEAR
    return found
