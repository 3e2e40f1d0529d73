"""The implementation registry: each kernel or baseline is registered once and found by name.

An implementation family lives in one file under `scfa_bench/impls/` and registers a factory
with `@register(...)`. The factory builds an `Implementation` (`impls.base`): it says whether it
can run on a device and, given the inputs of one point, returns the forward call to measure.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from scfa_bench.constants import IMPL_KINDS, PATTERN_AXES, SWEEP_AXES, Pattern
from scfa_bench.errors import InputError
from scfa_bench.impls.base import Implementation

# Modules whose import registers the built-in implementations.
_BUILTIN_MODULES = (
    "scfa_bench.impls.scfa",
    "scfa_bench.impls.sdpa",
    "scfa_bench.impls.flex",
    "scfa_bench.impls.naive",
    "scfa_bench.impls.flex_sparse",
    "scfa_bench.impls.flex_ranges",
    "scfa_bench.impls.sorted_varlen",
    "scfa_bench.impls.reformer",
    "scfa_bench.impls.flash",
    "scfa_bench.impls.limits",
)


@dataclass(frozen=True)
class ImplSpec:
    """What the harness knows about a registered implementation."""

    name: str
    pattern: Pattern
    axes: tuple[str, ...]
    has_backward: bool
    devices: tuple[str, ...]
    description: str
    factory: Callable[[], Implementation]
    kind: str = "exact"  # one of IMPL_KINDS

    def create(self) -> Implementation:
        return self.factory()


_REGISTRY: dict[str, ImplSpec] = {}


def register(
    *,
    name: str,
    pattern: Pattern,
    axes: tuple[str, ...] | None = None,
    has_backward: bool = True,
    devices: tuple[str, ...] = ("cuda",),
    description: str = "",
    kind: str | None = None,
) -> Callable[[Callable[[], Implementation]], Callable[[], Implementation]]:
    """Decorator registering `factory` under `name`; `axes` default to the pattern's axes and
    `kind` to the factory's `kind` attribute, else "exact"."""
    if pattern not in PATTERN_AXES:
        raise ValueError(f"register({name!r}): pattern must be one of {list(PATTERN_AXES)}")
    used_axes = PATTERN_AXES[pattern] if axes is None else tuple(axes)
    unknown = [a for a in used_axes if a not in SWEEP_AXES]
    if unknown:
        raise ValueError(f"register({name!r}): unknown axes {unknown}; known: {list(SWEEP_AXES)}")

    def decorate(factory: Callable[[], Implementation]) -> Callable[[], Implementation]:
        if name in _REGISTRY:
            raise ValueError(f"implementation {name!r} is registered twice")
        impl_kind = kind or getattr(factory, "kind", "exact")
        if impl_kind not in IMPL_KINDS:
            raise ValueError(f"register({name!r}): kind must be one of {list(IMPL_KINDS)}")
        _REGISTRY[name] = ImplSpec(
            name=name,
            pattern=pattern,
            axes=used_axes,
            has_backward=has_backward,
            devices=tuple(devices),
            description=description,
            factory=factory,
            kind=impl_kind,
        )
        return factory

    return decorate


def unregister(name: str) -> None:
    """Remove an implementation (tests register throw-away fakes)."""
    _REGISTRY.pop(name, None)


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def all_specs() -> dict[str, ImplSpec]:
    """Every registered implementation, built-ins included, by name."""
    _load_builtins()
    return dict(_REGISTRY)


def get_spec(name: str) -> ImplSpec:
    specs = all_specs()
    if name not in specs:
        raise InputError(f"unknown implementation {name!r}; known: {', '.join(sorted(specs))}")
    return specs[name]
