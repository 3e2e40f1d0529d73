"""Deterministic shards of an expanded grid, balanced by cost.

`plan(tasks, count)` gives every task to exactly one of `count` shards; `shard(tasks, i, count)`
is shard i's part of it. Every process that computes the plan from the same grid and the same
cost gets the same answer (no randomness, ties broken by task position), so workers, a
supervisor and a later `--resume` agree on which shard owns which task without talking.

Balancing: the tasks of one seq_len form a group (so a seq_len's dense baseline runs next to
its sparse rows and the shard's own CSV carries their speedups); groups are placed largest
first, each on the least loaded shard. Where whole groups cannot be balanced (one seq_len
costs more than a shard's share, as T=32768 does in `hash` on two cards), the largest group is
split in two, its baseline tasks kept together in the first half, until the longest shard is
within `tolerance` of the lower bound or nothing is left to split. Rows whose baseline then ran
in another shard get their speedup when the parts are merged.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from scfa_bench.errors import InputError
from scfa_bench.results.row import ResultRow
from scfa_bench.suite.grid import Point, Task

if TYPE_CHECKING:
    from scfa_bench.suite.schema import Suite

Cost = Callable[[Task], float]

# Measured on the H100 `hash` suite (B=4, H=48, D=64): a row's fixed cost (timing window,
# check, inputs, compilation) equals its T^2-proportional part near T=16k, so a pure T^2 model
# would put every small point on one shard and leave it the slowest.
_CROSSOVER_SEQ_LEN = 16384
# Wall seconds of a row outside its timing window (hash on one H100: 168 s of run for 67 s of
# timing windows over 162 rows).
_ROW_FIXED_S = 0.6
# do_bench times at least this many calls and estimates with a few more (measure/timing.py).
_MIN_TIMED_CALLS = 10
_EXTRA_CALLS = 7


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' -> (I, N), 0 <= I < N; InputError naming the option otherwise."""
    parts = text.split("/")
    try:
        index, count = (int(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        index, count = None, None
    if index is None or count is None or count < 1 or not 0 <= index < count:
        raise InputError(f"--shard: expected I/N with 0 <= I < N (e.g. 0/2), got {text!r}")
    return index, count


def expected_density(task: Task) -> float:
    """Fraction of causal pairs computed: 1/n_buckets for random buckets, (1-p)^2 for QK."""
    density = 1.0
    if task.point.n_buckets:
        density /= task.point.n_buckets
    if task.point.drop_rate is not None:
        density *= (1.0 - task.point.drop_rate) ** 2
    return density


def predicted_cost(task: Task) -> float:
    """Cost without measurements: modes x (fixed + density x (T / 16k)^2), in row units."""
    scaled = (task.point.seq_len / _CROSSOVER_SEQ_LEN) ** 2
    return len(task.modes) * (1.0 + expected_density(task) * scaled)


def _row_seconds(row: ResultRow) -> float:
    """Wall seconds that producing `row` took: its `wall_s` where the run recorded it, else an
    estimate from its timing columns (which cannot see compilation or checks)."""
    if row.wall_s is not None:
        return row.wall_s
    if row.status != "ok" or row.ms_median is None:
        return _ROW_FIXED_S
    warmup = row.warmup_ms or 0.0
    rep = max(row.rep_ms or 0.0, _MIN_TIMED_CALLS * row.ms_median)
    return _ROW_FIXED_S + (warmup + rep + _EXTRA_CALLS * row.ms_median) / 1000.0


def measured_cost(rows: Sequence[ResultRow]) -> Cost:
    """Cost from a previous run's rows (seconds). Tasks it lacks get the predicted cost scaled
    by the measured/predicted ratio of the same implementation's tasks (of all tasks when it
    has none).

    An implementation's first task in a run carries that process's one-time set-up for it
    (CUDA and cuDNN initialisation, kernel compilation), which every shard pays again: in the
    H200 `hash` run balanced by raw times, the shard without the first tasks ran 24 s over
    its share. So where rows record `wall_s`, each implementation's first task is costed like
    a task the file lacks, from its other tasks.
    """
    seconds: dict[tuple, float] = {}
    first_point: dict[str, tuple] = {}
    for row in rows:
        point = (row.seq_len, row.n_buckets, row.drop_rate)
        if row.wall_s is not None:
            first_point.setdefault(row.impl, point)
        seconds[(row.impl, *point, row.mode)] = _row_seconds(row)
    for impl, point in first_point.items():
        for key in [k for k in seconds if k[0] == impl and k[1:4] == point]:
            del seconds[key]

    def lookup(task: Task) -> float | None:
        p = task.point
        found = [
            seconds.get((task.impl, p.seq_len, p.n_buckets, p.drop_rate, m)) for m in task.modes
        ]
        return None if any(s is None for s in found) else float(sum(found))  # type: ignore[arg-type]

    ratios: dict[str | None, float] = {}  # measured / predicted, per implementation; None: all

    def ratio(impl: str) -> float:
        if not ratios:  # computed once, on first need
            known: dict[str | None, list[float]] = {None: []}
            for t in _tasks_of(seconds):
                if (s := lookup(t)) is not None and predicted_cost(t) > 0:
                    known.setdefault(t.impl, []).append(s / predicted_cost(t))
                    known[None].append(s / predicted_cost(t))
            ratios.update({k: statistics.median(v) for k, v in known.items() if v})
            ratios.setdefault(None, 1.0)
        return ratios.get(impl, ratios[None])

    def cost(task: Task) -> float:
        measured = lookup(task)
        return measured if measured is not None else predicted_cost(task) * ratio(task.impl)

    return cost


def _tasks_of(seconds: dict[tuple, float]) -> list[Task]:
    """One single-mode task per measured row (for the measured/predicted ratio)."""
    return [
        Task(impl=impl, point=Point(seq_len, n_buckets, drop_rate), modes=(mode,))
        for impl, seq_len, n_buckets, drop_rate, mode in sorted(seconds, key=repr)
    ]


@dataclass(frozen=True)
class _Item:
    """Tasks that go to one shard together: task positions, the baseline block first."""

    positions: tuple[int, ...]
    cost: float
    anchored: int  # how many leading positions are baseline tasks (kept together)

    @property
    def units(self) -> int:
        """Pieces it could still be split into: the baseline block counts as one."""
        return len(self.positions) - max(self.anchored - 1, 0)


def _split(item: _Item, costs: Sequence[float]) -> tuple[_Item, _Item]:
    """Two halves of nearly equal cost; the baseline block stays in the first."""
    anchors = item.positions[: item.anchored]
    rest = sorted(item.positions[item.anchored :], key=lambda i: (-costs[i], i))
    halves: list[list[int]] = [list(anchors), []]
    loads = [sum(costs[i] for i in anchors), 0.0]
    if not anchors:  # the first half needs something, or the split would not progress
        halves[0].append(rest[0])
        loads[0] += costs[rest[0]]
        rest = rest[1:]
    for i in rest:
        # On equal loads the shorter half takes it, so neither half ends up empty.
        side = 0 if (loads[0], len(halves[0])) < (loads[1], len(halves[1])) else 1
        halves[side].append(i)
        loads[side] += costs[i]
    first = _Item(tuple(halves[0]), loads[0], len(anchors))
    second = _Item(tuple(sorted(halves[1])), loads[1], 0)
    return first, second


def _place(items: Sequence[_Item], count: int) -> tuple[list[list[_Item]], list[float]]:
    """Largest item first, each on the least loaded shard (lowest index on ties)."""
    shards: list[list[_Item]] = [[] for _ in range(count)]
    loads = [0.0] * count
    for item in sorted(items, key=lambda it: (-it.cost, it.positions[0])):
        target = min(range(count), key=lambda s: (loads[s], s))
        shards[target].append(item)
        loads[target] += item.cost
    return shards, loads


def plan(
    tasks: Sequence[Task],
    count: int,
    cost: Cost | None = None,
    baseline: str | None = None,
    tolerance: float = 0.05,
    split_groups: bool = True,
) -> list[list[int]]:
    """Task positions of each of `count` shards (each list ascending: grid order kept).

    `baseline`: the implementation whose tasks stay with their seq_len's first group; by
    default every dense task (no sparsity axis). `tolerance`: how far above the lower bound
    (total / count, or the costliest indivisible block) the longest shard may stay before
    groups are split. `split_groups=False`: never split a group (each seq_len's tasks on one
    shard, whatever the balance).
    """
    if count < 1:
        raise InputError(f"shard count must be >= 1, got {count}")
    cost = cost or predicted_cost
    costs = [float(cost(t)) for t in tasks]
    for task, c in zip(tasks, costs, strict=True):
        if not math.isfinite(c) or c < 0:
            raise InputError(f"cost of {task.impl} {task.point.label()} is {c}; need >= 0")

    def is_anchor(task: Task) -> bool:
        if baseline is not None:
            return task.impl == baseline
        return task.point.n_buckets is None and task.point.drop_rate is None

    by_seq_len: dict[int, list[int]] = {}
    for i, task in enumerate(tasks):
        by_seq_len.setdefault(task.point.seq_len, []).append(i)
    items: list[_Item] = []
    for positions in by_seq_len.values():
        anchors = [i for i in positions if is_anchor(tasks[i])]
        others = [i for i in positions if not is_anchor(tasks[i])]
        items.append(_Item(tuple(anchors + others), sum(costs[i] for i in positions), len(anchors)))

    total = sum(costs)
    while True:
        shards, loads = _place(items, count)
        indivisible = max(
            (it.cost for it in items if it.units <= 1),
            default=0.0,
        )
        anchor_blocks = max(
            (sum(costs[i] for i in it.positions[: it.anchored]) for it in items), default=0.0
        )
        bound = max(total / count, indivisible, anchor_blocks)
        splittable = [it for it in items if it.units > 1]
        balanced = max(loads, default=0.0) <= bound * (1.0 + tolerance)
        if balanced or not splittable or not split_groups:
            break
        largest = min(splittable, key=lambda it: (-it.cost, it.positions[0]))
        items.remove(largest)
        items.extend(_split(largest, costs))

    return [sorted(i for item in shard for i in item.positions) for shard in shards]


def shard(
    tasks: Sequence[Task],
    index: int,
    count: int,
    cost: Cost | None = None,
    baseline: str | None = None,
    split_groups: bool = True,
) -> list[Task]:
    """The tasks of shard `index` of `count`, in grid order."""
    check_index(index, count)
    chosen = plan(tasks, count, cost, baseline, split_groups=split_groups)[index]
    return [tasks[i] for i in chosen]


def check_index(index: int, count: int) -> None:
    if not 0 <= index < count:
        raise InputError(f"shard index must be in 0..{count - 1}, got {index}")


def suite_shard(
    suite: Suite, tasks: Sequence[Task], index: int, count: int, cost_from: Path | None
) -> list[Task]:
    """The tasks of shard `index` of `count` of the suite's grid (`suite_shards`)."""
    check_index(index, count)
    return [tasks[i] for i in suite_shards(suite, tasks, count, cost_from)[index]]


def cost_source(cost_from: Path | None) -> Cost:
    """The cost of a task: measured from the earlier CSV `cost_from`, else predicted."""
    if cost_from is None:
        return predicted_cost
    from scfa_bench.results.reader import read_results

    return measured_cost(read_results(cost_from).rows)


def suite_shards(
    suite: Suite, tasks: Sequence[Task], count: int, cost_from: Path | None
) -> list[list[int]]:
    """`plan` as the suite asks it (its baseline, `split_groups`), costed by `cost_source`: the
    one rule the supervisor, every worker and `--shard I/N` share, so they agree."""
    return plan(
        tasks, count, cost_source(cost_from), suite.baseline, split_groups=suite.split_groups
    )
