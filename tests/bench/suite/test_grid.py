"""Grid expansion: axis relevance, run order, sizes."""

from __future__ import annotations

from collections import Counter

from scfa_bench.suite.grid import Point, expand, row_count
from scfa_bench.suite.parse import parse_suite

SUITE = {
    "name": "g",
    "shape": {"batch": 1, "heads": 1, "head_dim": 16, "dtype": "fp32"},
    "sweep": {"seq_len": [64, 128], "n_buckets": [2, 4, 8], "drop_rate": [0.2, 0.5]},
    "implementations": ["scfa_hash", "scfa_qk", "sdpa_math", "naive_hash"],
    "baseline": "sdpa_math",
    "modes": ["fwd", "fwd+bwd"],
}


def test_each_impl_uses_only_its_axes() -> None:
    tasks = expand(parse_suite(SUITE))
    per_impl = Counter(t.impl for t in tasks)
    # 2 seq_len x 3 buckets, 2 x 2 drop rates, dense once per seq_len
    assert per_impl == {"scfa_hash": 6, "naive_hash": 6, "scfa_qk": 4, "sdpa_math": 2}
    for task in tasks:
        p = task.point
        if task.impl in ("scfa_hash", "naive_hash"):
            assert p.n_buckets in (2, 4, 8) and p.drop_rate is None
        elif task.impl == "scfa_qk":
            assert p.drop_rate in (0.2, 0.5) and p.n_buckets is None
        else:
            assert p.n_buckets is None and p.drop_rate is None
    assert row_count(tasks) == 2 * len(tasks)
    assert len(set(tasks)) == len(tasks)


def test_baseline_runs_first_within_each_seq_len() -> None:
    suite = parse_suite(SUITE)
    tasks = expand(suite)
    seen_seq_lens: list[int] = []
    for task in tasks:
        if task.point.seq_len not in seen_seq_lens:
            seen_seq_lens.append(task.point.seq_len)
            assert task.impl == "sdpa_math"
    assert seen_seq_lens == [64, 128]  # the suite's order


def test_modes_follow_the_suite() -> None:
    tasks = expand(parse_suite({**SUITE, "modes": ["bwd"]}))
    assert {t.modes for t in tasks} == {("bwd",)}


def test_point_label() -> None:
    assert Point(128, n_buckets=4).label() == "T=128 nb=4"
    assert Point(64, drop_rate=0.5).label() == "T=64 p=0.5"
    assert Point(64).label() == "T=64"
