"""Shards of an expanded grid: a partition, deterministic, balanced, baselines with their rows."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from scfa_bench.errors import InputError
from scfa_bench.results.row import ResultRow
from scfa_bench.run.sharded.plan import (
    measured_cost,
    parse_shard,
    plan,
    predicted_cost,
    shard,
)
from scfa_bench.suite.grid import Point, Task

MODES = ("fwd", "bwd", "fwd+bwd")


def grid(
    seq_lens: list[int],
    n_buckets: list[int] = (2, 8, 32),  # type: ignore[assignment]
    drop_rates: list[float] = (),  # type: ignore[assignment]
    dense: tuple[str, ...] = ("sdpa_cudnn", "flex_dense"),
) -> list[Task]:
    """Tasks in the harness's run order: seq_len, baseline first, then the sparse points."""
    tasks = []
    for t in seq_lens:
        tasks += [Task(name, Point(t), MODES) for name in dense]
        tasks += [Task("scfa_hash", Point(t, n_buckets=nb), MODES) for nb in n_buckets]
        tasks += [Task("scfa_qk", Point(t, drop_rate=p), MODES) for p in drop_rates]
    return tasks


def random_grid(rng: random.Random) -> list[Task]:
    seq_lens = sorted(rng.sample([2**k for k in range(6, 17)], rng.randint(1, 7)))
    n_buckets = sorted(rng.sample([1, 2, 4, 8, 16, 32, 64], rng.randint(0, 5)))
    drops = sorted(rng.sample([0.1, 0.2, 0.5, 0.8, 0.9], rng.randint(0, 3)))
    return grid(seq_lens, n_buckets, drops)


def loads(tasks: list[Task], shards: list[list[int]], cost=predicted_cost) -> list[float]:
    return [sum(cost(tasks[i]) for i in s) for s in shards]


@pytest.mark.parametrize("seed", range(40))
def test_every_task_in_exactly_one_shard(seed: int) -> None:
    rng = random.Random(seed)
    tasks = random_grid(rng)
    count = rng.randint(1, 9)
    shards = plan(tasks, count)
    assert len(shards) == count
    flat = [i for s in shards for i in s]
    assert sorted(flat) == list(range(len(tasks)))  # union = all, and disjoint
    assert all(s == sorted(s) for s in shards)  # grid order kept inside a shard
    # shard() agrees with plan()
    assert [t for i in range(count) for t in shard(tasks, i, count)] == [
        tasks[i] for s in shards for i in s
    ]


@pytest.mark.parametrize("seed", range(20))
def test_deterministic_and_independent_of_call_history(seed: int) -> None:
    rng = random.Random(seed)
    tasks = random_grid(rng)
    count = rng.randint(2, 5)
    first = plan(tasks, count)
    plan(random_grid(rng), count)  # nothing carries over between calls
    assert plan(list(tasks), count) == first
    assert [shard(tasks, i, count) for i in range(count)] == [[tasks[i] for i in s] for s in first]


@pytest.mark.parametrize("seed", range(40))
def test_balance_bound(seed: int) -> None:
    """The longest shard is within tolerance of total/count plus the costliest task."""
    rng = random.Random(seed)
    tasks = random_grid(rng)
    count = rng.randint(2, 8)
    tolerance = 0.02
    longest = max(loads(tasks, plan(tasks, count, tolerance=tolerance)))
    costs = [predicted_cost(t) for t in tasks]
    # Indivisible blocks: one task, or all dense baselines of a seq_len.
    block = max(
        max(costs),
        max(
            sum(
                c
                for t, c in zip(tasks, costs, strict=True)
                if t.point.seq_len == s and t.point.n_buckets is None and t.point.drop_rate is None
            )
            for s in {t.point.seq_len for t in tasks}
        ),
    )
    assert longest <= (1 + tolerance) * (sum(costs) / count + block) + 1e-9


def test_hash_suite_on_two_cards_is_balanced() -> None:
    """The shipped hash grid (6 seq_lens, 6 bucket counts, 3 dense) splits within 2%."""
    tasks = grid(
        [1024, 2048, 4096, 8192, 16384, 32768],
        [2, 4, 8, 16, 32, 64],
        dense=("sdpa_cudnn", "sdpa_flash", "flex_dense"),
    )
    per_shard = loads(tasks, plan(tasks, 2, baseline="sdpa_cudnn"))
    assert max(per_shard) <= 1.02 * sum(per_shard) / 2


def test_seq_len_groups_stay_whole_when_they_fit() -> None:
    """Equal seq_len groups: each lands whole on one shard (baselines with their rows)."""
    # Eight seq_lens of (almost) the same cost on four shards: two whole groups each.
    tasks = grid([1000 + k for k in range(8)], n_buckets=[2, 4])
    shards = plan(tasks, 4)
    assert all(len({tasks[i].point.seq_len for i in s}) == 2 for s in shards)
    for s in shards:
        seq_lens = {tasks[i].point.seq_len for i in s}
        for seq_len in seq_lens:  # every task of that seq_len is here
            assert {i for i, t in enumerate(tasks) if t.point.seq_len == seq_len} <= set(s)


@pytest.mark.parametrize("seed", range(30))
def test_baseline_tasks_of_a_seq_len_stay_together(seed: int) -> None:
    rng = random.Random(seed)
    tasks = random_grid(rng)
    count = rng.randint(2, 6)
    owner = {i: k for k, s in enumerate(plan(tasks, count, baseline="flex_dense")) for i in s}
    for seq_len in {t.point.seq_len for t in tasks}:
        dense = [
            owner[i]
            for i, t in enumerate(tasks)
            if t.point.seq_len == seq_len and t.impl == "flex_dense"
        ]
        assert len(set(dense)) == 1


@pytest.mark.parametrize("seed", range(30))
def test_groups_whole_unless_balance_needs_a_split(seed: int) -> None:
    """With no tolerance limit nothing is split: each seq_len, baseline and sparse tasks,
    is on one shard; with the default, a group is split only if whole groups miss the bound."""
    rng = random.Random(seed)
    tasks = random_grid(rng)
    count = rng.randint(2, 6)
    whole = plan(tasks, count, tolerance=float("inf"))
    owner = {i: k for k, s in enumerate(whole) for i in s}
    for seq_len in {t.point.seq_len for t in tasks}:
        assert len({owner[i] for i, t in enumerate(tasks) if t.point.seq_len == seq_len}) == 1
    costs = [predicted_cost(t) for t in tasks]
    bound = max(sum(costs) / count, max(costs))
    if max(loads(tasks, whole)) <= 1.02 * bound:
        assert plan(tasks, count) == whole


def test_large_group_is_split_for_balance() -> None:
    """One seq_len far costlier than the rest: split across shards, not left on one."""
    tasks = grid([128, 256, 65536], n_buckets=[1, 2, 4, 8, 16, 32, 64])
    shards = plan(tasks, 2)
    owners = {k for k, s in enumerate(shards) for i in s if tasks[i].point.seq_len == 65536}
    assert owners == {0, 1}
    per_shard = loads(tasks, shards)
    assert max(per_shard) <= 1.02 * sum(per_shard) / 2


def test_split_groups_false_keeps_every_seq_len_on_one_shard() -> None:
    """The grid above, where balance would split T=65536: kept whole, whatever the balance."""
    tasks = grid([128, 256, 65536], n_buckets=[1, 2, 4, 8, 16, 32, 64])
    shards = plan(tasks, 2, split_groups=False)
    owners = {k for k, s in enumerate(shards) for i in s if tasks[i].point.seq_len == 65536}
    assert len(owners) == 1
    assert shards == plan(tasks, 2, tolerance=float("inf"))
    assert sorted(i for s in shards for i in s) == list(range(len(tasks)))
    for index in range(2):
        assert shard(tasks, index, 2, split_groups=False) == [tasks[i] for i in shards[index]]


def test_more_shards_than_tasks_leaves_some_empty() -> None:
    tasks = grid([64], n_buckets=[2], dense=("sdpa_math",))
    shards = plan(tasks, 5)
    assert sorted(i for s in shards for i in s) == [0, 1]
    assert sum(1 for s in shards if not s) == 3


def test_measured_cost_from_rows() -> None:
    def row(impl: str, t: int, mode: str, ms: float, nb: int | None = None) -> ResultRow:
        return ResultRow(
            suite="s",
            impl=impl,
            mode=mode,
            batch=1,
            heads=1,
            head_dim=16,
            seq_len=t,
            n_buckets=nb,
            drop_rate=None,
            dtype="fp16",
            ms_median=ms,
            warmup_ms=25.0,
            rep_ms=100.0,
        )

    rows = [row("sdpa_cudnn", 1024, m, 1.0) for m in MODES] + [
        row("sdpa_cudnn", 32768, m, 200.0) for m in MODES
    ]
    cost = measured_cost(rows)
    small = cost(Task("sdpa_cudnn", Point(1024), MODES))
    large = cost(Task("sdpa_cudnn", Point(32768), MODES))
    # 1 ms rows are bounded by the 125 ms timing window; 200 ms rows by 10 timed calls
    assert small == pytest.approx(3 * (0.6 + (25 + 100 + 7) / 1000))
    assert large == pytest.approx(3 * (0.6 + (25 + 2000 + 1400) / 1000))
    # a task it has not seen: predicted cost scaled to seconds, positive and finite
    unseen = cost(Task("scfa_hash", Point(4096, n_buckets=8), MODES))
    assert 0 < unseen < large

    # Rows that recorded their wall time (compilation, checks) are costed by it, not estimated;
    # an implementation's first task (here T=1024, which paid 8 s of set-up) is costed from
    # its other tasks instead, since every shard pays the set-up again.
    walls = (9.0, 0.5, 0.5, 5.0, 5.0, 5.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0)
    more = [row("sdpa_cudnn", 8192, m, 10.0) for m in MODES] + [
        row("sdpa_cudnn", 16384, m, 40.0) for m in MODES
    ]
    timed = [replace(r, wall_s=w) for r, w in zip(rows + more, walls, strict=True)]
    cost = measured_cost(timed)
    assert cost(Task("sdpa_cudnn", Point(32768), MODES)) == pytest.approx(15.0)
    assert cost(Task("sdpa_cudnn", Point(16384), MODES)) == pytest.approx(6.0)
    ratios = sorted(
        cost(task) / predicted_cost(task)
        for task in (Task("sdpa_cudnn", Point(t), MODES) for t in (8192, 16384, 32768))
    )
    first = Task("sdpa_cudnn", Point(1024), MODES)
    assert cost(first) == pytest.approx(predicted_cost(first) * ratios[1])
    assert cost(first) < 5.0  # not the 10 s its rows took
    # another implementation, unseen: scaled by the ratio over every measured task
    unseen = Task("scfa_hash", Point(4096, n_buckets=8), MODES)
    assert cost(unseen) == pytest.approx(predicted_cost(unseen) * ratios[1])


@pytest.mark.parametrize(("text", "expected"), [("0/1", (0, 1)), ("1/2", (1, 2)), ("7/8", (7, 8))])
def test_parse_shard(text: str, expected: tuple[int, int]) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["2/2", "-1/2", "1", "a/b", "1/0", "0/2/3", ""])
def test_parse_shard_rejects(text: str) -> None:
    with pytest.raises(InputError, match="--shard"):
        parse_shard(text)


def test_bad_cost_and_index_rejected() -> None:
    tasks = grid([64])
    with pytest.raises(InputError, match="cost of"):
        plan(tasks, 2, cost=lambda t: float("nan"))
    with pytest.raises(InputError, match="shard index"):
        shard(tasks, 2, 2)
    with pytest.raises(InputError, match="count"):
        plan(tasks, 0)


def test_suite_split_groups_reaches_every_planner(tmp_path) -> None:
    """`split_groups: false` in a suite: the supervisor's shards (`state.plan_shards`) and each
    worker's own selection keep every seq_len whole, and agree with each other."""
    from pathlib import Path

    from scfa_bench.results.merge import grid_keys
    from scfa_bench.run.sharded.state import plan_shards
    from scfa_bench.run.sharded.worker import _select
    from scfa_bench.suite.grid import expand
    from scfa_bench.suite.parse import load_suite

    path = tmp_path / "multi.yaml"
    text = Path(__file__).with_name("multi.yaml").read_text()
    path.write_text(text.replace("seq_len: [128, 256, 512]", "seq_len: [64, 128, 4096]"))
    split = load_suite(path)
    path.write_text(path.read_text() + "split_groups: false\n")
    whole = load_suite(path)
    tasks = expand(whole)

    def owners(suite) -> set[int]:
        return {
            k
            for k in range(2)
            for t in _select(tasks, index=k, count=2, cost_from=None, suite=suite)
            if t.point.seq_len == 4096
        }

    assert owners(split) == {0, 1}  # the costly group is split for balance by default
    assert len(owners(whole)) == 1
    for index, planned in enumerate(plan_shards(whole, 2, tmp_path, cost_from=None)):
        mine = _select(tasks, index=index, count=2, cost_from=None, suite=whole)
        assert planned.keys == set(grid_keys(whole, mine))
