"""Plugin references in a suite, checked without running them.

A suite's `implementations` may name code from outside the package: `package.module:function`
or `path/to/file.py:function`. Loading a suite must never run that code (someone else's suite
is safe to validate), so here a reference is only *resolved*: the file exists in the suite's
folder, or the module's source is found on `sys.path` without importing it or its parent
packages. Its pattern (and so its sweep axes) is read from the source text when written
literally; everything else is known once the plugin is registered
(`suite.consent.register_suite_plugins`, the explicit opt-in).
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from scfa_bench.constants import PATTERN_AXES

# Parameter names that select a function plugin's pattern (as `impls.plugins` reads them).
PATTERN_PARAMS = {"hash": ("q_hash", "k_hash"), "qk": ("q_keep", "k_keep")}


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
    if target in sys.modules:  # already imported by someone else: reading it runs nothing
        origin = getattr(sys.modules[target], "__file__", None)
        return Path(origin) if origin and origin.endswith(".py") else None
    loaded = sys.modules.get(parts[0])
    if loaded is not None:
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
    it, by the rules `impls.plugins` applies to the object: a `pattern` attribute, else a
    function's parameter names. None (known only at registration) unless the source says it
    plainly: the name is bound once, by an undecorated top-level `def` or `class`, and its
    `pattern` is set at most once, to a string literal."""
    if ref.source is None or "." in ref.attr:
        return None
    try:
        tree = ast.parse(ref.source.read_text(encoding="utf-8"), str(ref.source))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None
    bindings = [node for node in ast.walk(tree) if _binds(node, ref.attr)]
    node = bindings[0] if len(bindings) == 1 else None
    if node not in tree.body or getattr(node, "decorator_list", True):
        return None
    sets = [n for n in ast.walk(tree) if _sets_pattern_of(n, ref.attr)]
    if isinstance(node, ast.ClassDef):
        sets += [n for n in node.body if _sets_pattern_of(n, None)]
    if len(sets) > 1:
        return None
    if sets:
        value = getattr(sets[0], "value", None)
        literal = value.value if isinstance(value, ast.Constant) else None
        return literal if isinstance(literal, str) and literal in PATTERN_AXES else None
    if isinstance(node, ast.ClassDef):
        return None  # a plugin class must declare its pattern
    args = node.args
    params = (*args.posonlyargs, *args.args, args.vararg, *args.kwonlyargs, args.kwarg)
    names = {a.arg for a in params if a is not None}
    return next((p for p, needed in PATTERN_PARAMS.items() if set(needed) <= names), "dense")


def _binds(node: ast.AST, name: str) -> bool:
    """Whether `node` (re)binds `name` (anywhere: a nested binding makes it unclear too)."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return node.name == name
    if isinstance(node, ast.Name):
        return node.id == name and isinstance(node.ctx, ast.Store | ast.Del)
    if isinstance(node, ast.alias):
        return (node.asname or node.name.split(".")[0]) == name
    return isinstance(node, ast.Global | ast.Nonlocal) and name in node.names


def _sets_pattern_of(node: ast.AST, owner: str | None) -> bool:
    """Whether `node` sets `<owner>.pattern` (owner None: a bare `pattern`, in a class body),
    by assignment or `setattr`."""
    if isinstance(node, ast.Call) and owner is not None:
        func, args = node.func, node.args
        return isinstance(func, ast.Name) and func.id == "setattr" and _is_name(args[:1], owner)
    targets: list[ast.AST] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign | ast.AugAssign):
        targets = [node.target]
    for target in (t for whole in targets for t in ast.walk(whole)):  # tuples unpacked too
        if owner is None and isinstance(target, ast.Name) and target.id == "pattern":
            return True
        if isinstance(target, ast.Attribute) and target.attr == "pattern":
            if owner is not None and _is_name([target.value], owner):
                return True
    return False


def _is_name(nodes: list[ast.AST], name: str) -> bool:
    return len(nodes) == 1 and isinstance(nodes[0], ast.Name) and nodes[0].id == name
