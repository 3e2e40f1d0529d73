"""The implementation registry: each kernel or baseline is registered once and found by name.

An implementation family lives in one file under `scfa_bench/impls/` and registers a factory
with `@register(...)`. The factory builds an `Implementation` (`impls.base`): it says whether it
can run on a device and, given the inputs of one point, returns the forward call to measure.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from scfa_bench.constants import DTYPES, IMPL_KINDS, PATTERN_AXES, SWEEP_AXES, Pattern
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
    "scfa_bench.impls.moba",
    "scfa_bench.impls.adasplash",
    "scfa_bench.impls.nsa",
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
    # What it can compute, known without running it: dtypes per device, head dims.
    dtypes: Mapping[str, tuple[str, ...]]
    head_dims: tuple[int, ...] | None = None  # exactly these; None: see the two below
    max_head_dim: int | None = None
    head_dim_multiple: int = 1
    # Query heads must be a multiple of this (grouped-query methods: query heads per KV head).
    heads_multiple: int = 1
    kind: str = "exact"  # one of IMPL_KINDS
    # Whether its calls can be captured in a CUDA graph: False keeps do_bench's clock for its
    # rows in a suite timed by graph replays (timing.cuda_graph).
    cuda_graph: bool = True

    def create(self) -> Implementation:
        return self.factory()

    def head_dim_problem(self, head_dim: int) -> str | None:
        """Why `head_dim` cannot run on any device, or None."""
        if self.head_dims is not None and head_dim not in self.head_dims:
            return f"{self.name} supports head dims {', '.join(map(str, self.head_dims))}"
        if self.max_head_dim is not None and head_dim > self.max_head_dim:
            return f"{self.name} supports head dims up to {self.max_head_dim}"
        if head_dim % self.head_dim_multiple:
            return f"{self.name} needs a head dim that is a multiple of {self.head_dim_multiple}"
        return None

    def dtype_problem(self, dtype: str, device: str | None = None) -> str | None:
        """Why `dtype` cannot run on `device` (None: on any device), or None."""
        devices = self.devices if device is None else (device,)
        if any(dtype in self.dtypes.get(d, ()) for d in devices):
            return None
        if device is None:
            return f"{self.name} supports no device in {dtype}"
        allowed = self.dtypes.get(device, ())
        return f"{self.name} on {device} supports {', '.join(allowed) or 'no dtype'}, not {dtype}"

    def heads_problem(self, heads: int) -> str | None:
        """Why `heads` query heads cannot run, or None."""
        if heads % self.heads_multiple:
            return f"{self.name} needs a multiple of {self.heads_multiple} heads, not {heads}"
        return None

    def unsupported(
        self, device: str, dtype: str, head_dim: int, heads: int | None = None
    ) -> str | None:
        """Why this implementation cannot run (device, dtype, head dim, heads) at all, or None."""
        if device not in self.devices:
            return f"{self.name} runs on {', '.join(self.devices)}, not {device}"
        problem = self.dtype_problem(dtype, device) or self.head_dim_problem(head_dim)
        return problem or (None if heads is None else self.heads_problem(heads))

    def supports_text(self) -> str:
        """One line for `scfa-bench list`: dtypes per device and head dims."""
        parts = [f"{d}: {'/'.join(self.dtypes.get(d, ())) or '-'}" for d in self.devices]
        if self.head_dims is not None:
            parts.append("D " + "/".join(map(str, self.head_dims)))
        elif self.max_head_dim is not None or self.head_dim_multiple > 1:
            limit = f"<= {self.max_head_dim}" if self.max_head_dim else "any"
            step = f", x{self.head_dim_multiple}" if self.head_dim_multiple > 1 else ""
            parts.append(f"D {limit}{step}")
        return "; ".join(parts)


_REGISTRY: dict[str, ImplSpec] = {}


def register(
    *,
    name: str,
    pattern: Pattern,
    axes: tuple[str, ...] | None = None,
    has_backward: bool = True,
    devices: tuple[str, ...] = ("cuda",),
    description: str = "",
    dtypes: tuple[str, ...] | Mapping[str, tuple[str, ...]] = DTYPES,
    head_dims: tuple[int, ...] | None = None,
    max_head_dim: int | None = None,
    head_dim_multiple: int = 1,
    heads_multiple: int = 1,
    kind: str | None = None,
    cuda_graph: bool = True,
) -> Callable[[Callable[[], Implementation]], Callable[[], Implementation]]:
    """Decorator registering `factory` under `name`; `axes` default to the pattern's axes and
    `kind` to the factory's `kind` attribute, else "exact".

    `dtypes` is a tuple for every device or a mapping device -> dtypes; `head_dims` lists the
    head dims it takes (None: any, within `max_head_dim` and multiples of `head_dim_multiple`).
    Suites asking for what is not declared are rejected by `validate`, and rows a device cannot
    run are marked `unavailable` without running anything. `cuda_graph=False` says its calls
    cannot be captured in a CUDA graph (graph-timed suites time them with do_bench).
    """
    if pattern not in PATTERN_AXES:
        raise ValueError(f"register({name!r}): pattern must be one of {list(PATTERN_AXES)}")
    used_axes = PATTERN_AXES[pattern] if axes is None else tuple(axes)
    unknown = [a for a in used_axes if a not in SWEEP_AXES]
    if unknown:
        raise ValueError(f"register({name!r}): unknown axes {unknown}; known: {list(SWEEP_AXES)}")
    per_device = dict(dtypes) if isinstance(dtypes, Mapping) else {d: dtypes for d in devices}
    bad = [d for d, ds in per_device.items() if d not in devices or set(ds) - set(DTYPES)]
    if bad:
        raise ValueError(f"register({name!r}): dtypes for {bad}: devices {devices}, {DTYPES}")

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
            dtypes={d: tuple(per_device.get(d, ())) for d in devices},
            head_dims=None if head_dims is None else tuple(head_dims),
            max_head_dim=max_head_dim,
            head_dim_multiple=head_dim_multiple,
            heads_multiple=heads_multiple,
            kind=impl_kind,
            cuda_graph=cuda_graph,
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
