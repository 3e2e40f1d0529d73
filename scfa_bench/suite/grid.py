"""Expand a suite into the ordered list of (implementation, point) tasks to measure.

Axis relevance: an implementation is measured once per value of the axes it uses (hash: n_buckets,
QK: drop_rate, dense: neither), so a dense baseline runs once per seq_len (and, in a model suite,
once per `compile` value). Within each seq_len the
baseline runs first, so rows written afterwards can already carry their speedup.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from scfa_bench.constants import PATTERN_AXES
from scfa_bench.e2e.attention import PLUGS
from scfa_bench.errors import InputError
from scfa_bench.impls.plugins import is_reference
from scfa_bench.impls.registry import all_specs, get_spec
from scfa_bench.suite.plugin_refs import (
    UnresolvedReference,
    resolve_reference,
    static_pattern,
    suite_folder,
)
from scfa_bench.suite.schema import Suite


@dataclass(frozen=True)
class Point:
    """One point of the sweep as one implementation sees it (unused axes are None)."""

    seq_len: int
    n_buckets: int | None = None
    drop_rate: float | None = None
    compile: bool | None = None  # model suites only

    def label(self) -> str:
        parts = [f"T={self.seq_len}"]
        if self.n_buckets is not None:
            parts.append(f"nb={self.n_buckets}")
        if self.drop_rate is not None:
            parts.append(f"p={self.drop_rate:g}")
        if self.compile is not None:
            parts.append("compiled" if self.compile else "eager")
        return " ".join(parts)


@dataclass(frozen=True)
class Task:
    """One implementation at one point, measured in every mode of the suite."""

    impl: str
    point: Point
    modes: tuple[str, ...]


def impl_order(suite: Suite) -> tuple[str, ...]:
    """Implementations in suite order, the baseline moved first."""
    rest = tuple(i for i in suite.implementations if i != suite.baseline)
    return ((suite.baseline,) if suite.baseline else ()) + rest


def impl_axes(suite: Suite, impl: str) -> tuple[str, ...]:
    """The sweep axes `impl` uses: its model plug's in a model suite, else its registry entry's;
    a plugin not registered yet (`suite.consent.register_suite_plugins`), as its source says
    without running it."""
    if suite.model is not None:
        return PLUGS[impl].axes
    specs = all_specs()
    if impl in specs or not is_reference(impl):
        return get_spec(impl).axes  # an unknown name: InputError naming it
    try:  # the suite was checked when parsed; resolve where it resolved then
        ref = resolve_reference(impl, suite_folder(suite.source), allow_outside=True)
    except UnresolvedReference as exc:
        raise InputError(f"{suite.source or '<suite>'}: plugin {impl!r}: {exc}") from None
    pattern = static_pattern(ref)
    if pattern is None:
        raise InputError(
            f"{suite.source or '<suite>'}: plugin {impl!r}: which sweep axes it uses is known "
            "only by running it (its source does not set `pattern` literally); register it "
            "first (--allow-plugins)"
        )
    return PATTERN_AXES[pattern]


def points_for(suite: Suite, impl: str, seq_len: int, compile: bool | None = None) -> list[Point]:
    """The points `impl` is measured at for one seq_len: the product of the axes it uses."""
    axes = impl_axes(suite, impl)
    value_lists = []
    for axis in axes:
        values = suite.sweep.values(axis)
        if values is None:  # suite validation already rejects this; keep the error clear anyway
            raise ValueError(f"implementation {impl!r} needs sweep.{axis}")
        value_lists.append(values)
    return [
        Point(seq_len=seq_len, compile=compile, **dict(zip(axes, combo, strict=True)))
        for combo in itertools.product(*value_lists)
    ]


def expand(suite: Suite) -> list[Task]:
    """All tasks of a suite in run order: seq_len, then implementation, then axis values; model
    suites run all of that once per `compile` value (compiled steps together)."""
    compiles: tuple[bool | None, ...] = (None,) if suite.model is None else suite.model.compile
    return [
        Task(impl=impl, point=point, modes=suite.modes)
        for compile in compiles
        for seq_len in suite.sweep.seq_len
        for impl in impl_order(suite)
        for point in points_for(suite, impl, seq_len, compile)
    ]


def row_count(tasks: list[Task]) -> int:
    """Result rows the tasks produce (one per mode)."""
    return sum(len(t.modes) for t in tasks)
