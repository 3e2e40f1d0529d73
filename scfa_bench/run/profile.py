"""`scfa-bench profile`: choose points of a suite and measure each under torch.profiler.

The points are the suite's tasks, narrowed by implementation names and `KEY=VALUE` filters on
seq_len, n_buckets and drop_rate (a filter on an axis an implementation does not use leaves it
in: `n_buckets=8` keeps the dense baselines of the chosen seq_len). Each point is measured as
`run` measures it (check, timing, telemetry) and then profiled (`measure.profile_call`); the
caller renders the stage tables and writes the traces.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from scfa_bench.errors import InputError
from scfa_bench.measure.point import ModeMeasurement, measure_task
from scfa_bench.suite.grid import Task, expand
from scfa_bench.suite.schema import Suite

FILTER_KEYS = ("seq_len", "n_buckets", "drop_rate")


def parse_point_filters(texts: Sequence[str]) -> dict[str, set[float]]:
    """`["seq_len=16384", "n_buckets=8"]` -> {"seq_len": {16384.0}, "n_buckets": {8.0}}."""
    filters: dict[str, set[float]] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or key not in FILTER_KEYS:
            raise InputError(
                f"--point {text!r}: expected KEY=VALUE with KEY one of {', '.join(FILTER_KEYS)}"
            )
        try:
            filters.setdefault(key, set()).add(float(value))
        except ValueError:
            raise InputError(f"--point {text!r}: {value!r} is not a number") from None
    return filters


def select_tasks(
    suite: Suite, impls: Sequence[str], filters: dict[str, set[float]], mode: str
) -> list[Task]:
    """The suite's tasks of `impls` (all when empty) matching `filters`, in `mode` only."""
    if suite.model is not None:  # a model step is profiled by `run` (its attention share)
        raise InputError(f"suite {suite.name!r} is a model suite; `profile` takes kernel suites")
    tasks = expand(suite)
    unknown = [i for i in impls if i not in {t.impl for t in tasks}]
    if unknown:
        raise InputError(
            f"--impl {', '.join(unknown)}: not in suite {suite.name!r} "
            f"({', '.join(suite.implementations)})"
        )
    if mode not in suite.modes:
        raise InputError(f"--mode {mode}: suite {suite.name!r} runs {', '.join(suite.modes)}")

    def matches(task: Task) -> bool:
        for key, values in filters.items():
            value = getattr(task.point, key)
            if value is not None and float(value) not in values:
                return False
        return not impls or task.impl in impls

    chosen = [replace(t, modes=(mode,)) for t in tasks if matches(t)]
    if not chosen:
        shown = ", ".join(f"{k}={sorted(v)}" for k, v in filters.items())
        raise InputError(f"no point of suite {suite.name!r} matches {shown or 'the filters'}")
    return chosen


@dataclass(frozen=True)
class ProfiledPoint:
    task: Task
    measured: ModeMeasurement  # status, timing, telemetry, stages, profiler


def profile_points(suite: Suite, tasks: Sequence[Task], device: str) -> Iterator[ProfiledPoint]:
    """Measure and profile each task (one mode each); failures come back as their status."""
    if device != "cuda":
        raise InputError("profile needs a CUDA device: GPU kernel times come from torch.profiler")
    for task in tasks:
        for measured in measure_task(suite, task, device, with_stages=True):
            yield ProfiledPoint(task, measured)
