"""Implementations from outside the package: bring your own kernel.

Two ways in:

* a reference in a suite's `implementations` list: `package.module:function` (importable
  from the current environment) or `path/to/file.py:function` (a path relative to the suite
  file's folder, in it or below unless allowed otherwise). The reference, as written, is the
  name in the CSV. Loading a suite only checks that its references resolve; their code runs
  only in `suite.consent.register_suite_plugins(suite, allow=True)` (the CLI's `--allow-plugins`).
* the entry-point group `scfa_bench.implementations` of an installed distribution, e.g. in
  its pyproject.toml: `[project.entry-points."scfa_bench.implementations"]`
  `my_kernel = "my_pkg.attention:hash_attention"`; the entry point's name is the name.

Calling convention of a plugin *function*:

    def my_attention(q, k, v, q_hash, k_hash) -> Tensor   # hash-sparse
    def my_attention(q, k, v, q_keep, k_keep) -> Tensor   # QK-sparse
    def my_attention(q, k, v) -> Tensor                   # dense causal

q, k, v: (B, T, H, D) in the suite's dtype, on the suite's device, `requires_grad` for the
backward modes. q_hash, k_hash: int32 (B, T, H) bucket ids; q_keep, k_keep: bool (B, T, H).
The pattern is read from the parameter names (or a `pattern` attribute: "hash" | "qk" |
"dense"). It returns the (B, T, H, D) output, differentiable through autograd unless the
function has `has_backward = False`. Optional attributes: `devices` (default ("cuda",);
add "cpu" if it runs there), `description`. Everything the function does is timed.

For set-up outside the timing, reference a *class* instead, with the built-ins' protocol
(`available(device) -> (ok, reason)`, `prepare(inputs) -> forward`, see
`scfa_bench.registry`) and a `pattern` class attribute.

A plugin that cannot be loaded (import error, missing name, wrong signature) is still
registered, and its rows are `error` with a message naming the plugin; a plugin whose output
has the wrong shape or type fails the same way at its first call. The sweep goes on.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from scfa_bench.constants import PATTERN_AXES
from scfa_bench.impls.base import AttentionInputs
from scfa_bench.impls.registry import all_specs, register, unregister

ENTRY_POINT_GROUP = "scfa_bench.implementations"
PATTERN_ARGS: dict[str, tuple[str, ...]] = {
    "hash": ("q_hash", "k_hash"),
    "qk": ("q_keep", "k_keep"),
    "dense": (),
}


class PluginError(Exception):
    """A plugin could not be loaded or misbehaved; the message names the plugin."""


def is_reference(name: str) -> bool:
    """`module:function` or `file.py:function` (built-in names have no colon)."""
    return ":" in name


def _load_file(path: Path, name: str) -> Any:
    module_name = "scfa_bench_plugin_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin {name!r}: cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def load_reference(ref: str, base_dir: Path | None = None) -> Any:
    """The object a `module:attr` / `file.py:attr` reference names; PluginError otherwise."""
    target, _, attr = ref.rpartition(":")
    if not target or not attr:
        raise PluginError(f"plugin {ref!r}: expected 'module:function' or 'file.py:function'")
    try:
        if target.endswith(".py"):
            # Where the suite's parse resolved it: only the suite's folder, never elsewhere.
            path = (base_dir if base_dir is not None else Path.cwd()) / target
            if not path.is_file():
                raise PluginError(f"plugin {ref!r}: file not found (tried {path})")
            module = _load_file(path.resolve(), ref)
        else:
            module = importlib.import_module(target)
    except PluginError:
        raise
    except Exception as exc:
        raise PluginError(f"plugin {ref!r}: import failed: {type(exc).__name__}: {exc}") from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PluginError(f"plugin {ref!r}: {target} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _function_pattern(fn: Callable[..., Any], name: str) -> str:
    """The pattern from a `pattern` attribute or the parameter names; checks the signature."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError) as exc:
        raise PluginError(f"plugin {name!r}: cannot read its signature ({exc})") from exc
    names = list(params)
    declared = getattr(fn, "pattern", None)
    if declared is not None and declared not in PATTERN_ARGS:
        raise PluginError(
            f"plugin {name!r}: pattern must be one of {list(PATTERN_ARGS)}, got {declared!r}"
        )
    inferred = next((p for p in ("hash", "qk") if set(PATTERN_ARGS[p]) <= set(names)), "dense")
    pattern = declared or inferred
    expected = ["q", "k", "v", *PATTERN_ARGS[pattern]]
    try:
        inspect.signature(fn).bind(*expected)
    except TypeError:
        raise PluginError(
            f"plugin {name!r}: wrong signature {inspect.signature(fn)}; a {pattern} plugin is "
            f"called as fn({', '.join(expected)})"
        ) from None
    return pattern


class FunctionImplementation:
    """A plugin function behind the built-ins' protocol; the whole function is timed."""

    def __init__(self, name: str, fn: Callable[..., Tensor], pattern: str) -> None:
        self.name = name
        self.fn = fn
        self.pattern = pattern
        self.devices = tuple(getattr(fn, "devices", ("cuda",)))

    def available(self, device: str) -> tuple[bool, str]:
        if device not in self.devices:
            return False, f"plugin {self.name!r} declares devices {list(self.devices)}"
        if device == "cuda" and not torch.cuda.is_available():
            return False, "no CUDA device"
        return True, ""

    def prepare(self, inputs: AttentionInputs) -> Callable[[], Tensor]:
        args = [inputs.q, inputs.k, inputs.v] + [
            getattr(inputs, field) for field in PATTERN_ARGS[self.pattern]
        ]
        if any(a is None for a in args):
            raise PluginError(f"plugin {self.name!r}: the point has no {self.pattern} pattern")
        fn, name, shape = self.fn, self.name, tuple(inputs.q.shape)

        def forward() -> Tensor:
            return fn(*args)

        with torch.no_grad():
            try:
                out = forward()
            except torch.OutOfMemoryError:
                raise
            except Exception as exc:
                raise PluginError(
                    f"plugin {name!r} raised {type(exc).__name__}: {exc}".replace("\n", " ")
                ) from exc
        if not isinstance(out, Tensor):
            raise PluginError(f"plugin {name!r} returned {type(out).__name__}, not a Tensor")
        if tuple(out.shape) != shape:
            raise PluginError(
                f"plugin {name!r} returned shape {tuple(out.shape)}, expected (B, T, H, D) = "
                f"{shape}"
            )
        return forward


class BrokenPlugin:
    """Stands in for a plugin that could not be loaded: every row is `error` with the reason."""

    def __init__(self, message: str) -> None:
        self.message = message

    def available(self, device: str) -> tuple[bool, str]:
        return True, ""

    def prepare(self, inputs: AttentionInputs) -> Callable[[], Tensor]:
        raise PluginError(self.message)


def _register_object(name: str, obj: Any) -> None:
    if inspect.isclass(obj):
        pattern = getattr(obj, "pattern", None)
        if pattern not in PATTERN_AXES:
            raise PluginError(
                f"plugin {name!r}: a plugin class needs a `pattern` attribute, one of "
                f"{list(PATTERN_AXES)}; got {pattern!r}"
            )
        missing = [m for m in ("available", "prepare") if not callable(getattr(obj, m, None))]
        if missing:
            raise PluginError(f"plugin {name!r}: the class lacks {', '.join(missing)}()")
        factory: Callable[[], Any] = obj
    elif callable(obj):
        pattern = _function_pattern(obj, name)
        factory = lambda: FunctionImplementation(name, obj, pattern)
    else:
        raise PluginError(
            f"plugin {name!r}: {type(obj).__name__} is neither a function nor a class"
        )
    register(
        name=name,
        pattern=pattern,
        has_backward=bool(getattr(obj, "has_backward", True)),
        devices=tuple(getattr(obj, "devices", ("cuda",))),
        description=str(getattr(obj, "description", "") or f"plugin {name}"),
    )(factory)


def _register_broken(name: str, message: str) -> None:
    register(
        name=name,
        pattern="dense",
        devices=("cuda", "cpu"),
        description=f"plugin that failed to load: {message}",
    )(lambda: BrokenPlugin(message))


def register_plugin(name: str, load: Callable[[], Any]) -> str:
    """Register the object `load()` returns under `name`, or a BrokenPlugin with the reason.

    Idempotent: a name already registered is left as it is. Returns the name.
    """
    if name in all_specs():
        return name
    try:
        _register_object(name, load())
    except PluginError as exc:
        unregister(name)
        _register_broken(name, str(exc))
    except Exception as exc:  # any failure inside the plugin's module: reported, not raised
        unregister(name)
        _register_broken(name, f"plugin {name!r}: {type(exc).__name__}: {exc}")
    return name


def register_reference(ref: str, base_dir: Path | None = None) -> str:
    """Register a suite's `module:function` / `file.py:function` reference, running its code
    (files relative to `base_dir`, else the working directory); returns its name."""
    return register_plugin(ref, lambda: load_reference(ref, base_dir))


def register_entry_points(group: str = ENTRY_POINT_GROUP) -> list[str]:
    """Register every entry point of the group (by its name); returns the names."""
    try:
        entry_points = importlib.metadata.entry_points(group=group)
    except Exception:
        return []
    names = []
    for entry_point in entry_points:
        ep = entry_point

        def load(ep: importlib.metadata.EntryPoint = ep) -> Any:
            try:
                return ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {ep.name!r} ({ep.value}): import failed: {type(exc).__name__}: {exc}"
                ) from exc

        names.append(register_plugin(ep.name, load))
    return names
