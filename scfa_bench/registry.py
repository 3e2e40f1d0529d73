"""The implementation registry: each kernel or baseline is registered once and found by name.

An implementation family lives in one file under `scfa_bench/impls/` and registers a factory
with `@register(...)`. The factory builds an `Implementation`: it says whether it can run on a
device and, given the inputs of one point, returns the forward call to measure.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from scfa_bench.errors import InputError

if TYPE_CHECKING:
    from torch import Tensor

    from scfa_bench.inputs import AttentionInputs

Pattern = Literal["hash", "qk", "dense"]
KNOWN_AXES = ("n_buckets", "drop_rate")
PATTERN_AXES: dict[str, tuple[str, ...]] = {
    "hash": ("n_buckets",),
    "qk": ("drop_rate",),
    "dense": (),
}

# Modules whose import registers the built-in implementations.
_BUILTIN_MODULES = (
    "scfa_bench.impls.scfa",
    "scfa_bench.impls.sdpa",
    "scfa_bench.impls.flex",
    "scfa_bench.impls.naive",
    "scfa_bench.impls.flex_sparse",
    "scfa_bench.impls.sorted_varlen",
    "scfa_bench.impls.reformer",
    "scfa_bench.impls.flash",
    "scfa_bench.impls.limits",
)


class ImplUnavailable(Exception):
    """Raised by `Implementation.prepare` when the backend cannot run this point on this machine."""


class Implementation(Protocol):
    def available(self, device: str) -> tuple[bool, str]:
        """(True, "") when it can run on `device` ("cuda" or "cpu"), else (False, reason)."""
        ...

    def prepare(self, inputs: AttentionInputs) -> Callable[[], Tensor]:
        """Per-shape set-up outside the timed region; returns the forward call, whose output is
        (B, T, H, D) (a view is fine). May raise `ImplUnavailable`."""
        ...


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
) -> Callable[[Callable[[], Implementation]], Callable[[], Implementation]]:
    """Decorator registering `factory` under `name`; `axes` default to the pattern's axes."""
    if pattern not in PATTERN_AXES:
        raise ValueError(f"register({name!r}): pattern must be one of {list(PATTERN_AXES)}")
    used_axes = PATTERN_AXES[pattern] if axes is None else tuple(axes)
    unknown = [a for a in used_axes if a not in KNOWN_AXES]
    if unknown:
        raise ValueError(f"register({name!r}): unknown axes {unknown}; known: {list(KNOWN_AXES)}")

    def decorate(factory: Callable[[], Implementation]) -> Callable[[], Implementation]:
        if name in _REGISTRY:
            raise ValueError(f"implementation {name!r} is registered twice")
        _REGISTRY[name] = ImplSpec(
            name=name,
            pattern=pattern,
            axes=used_axes,
            has_backward=has_backward,
            devices=tuple(devices),
            description=description,
            factory=factory,
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
