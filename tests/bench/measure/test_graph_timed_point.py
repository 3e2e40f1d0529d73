"""On a GPU: every mode of our kernels is timed by CUDA-graph replays (the ci suite's clock),
the cuDNN baseline (registered cuda_graph=False) by do_bench; and the graph rows agree with the
do_bench rows of the same points where the GPU, not the host, sets the time."""

from __future__ import annotations

import pytest
import torch

from scfa_bench.measure.point import measure_task
from scfa_bench.suite.grid import expand
from scfa_bench.suite.parse import parse_suite

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _suite(cuda_graph: bool, seq_len: int, batch: int, heads: int) -> dict:
    return {
        "name": "graph",
        "seed": 0,
        "shape": {"batch": batch, "heads": heads, "head_dim": 64, "dtype": "bf16"},
        "sweep": {"seq_len": [seq_len], "n_buckets": [8], "drop_rate": [0.5]},
        "implementations": ["scfa_hash", "scfa_qk", "sdpa_cudnn"],
        "timing": {"warmup_ms": 5, "rep_ms": 30, "cuda_graph": cuda_graph},
        "device": "cuda",
    }


def _rows(data: dict) -> dict[tuple[str, str], object]:
    suite = parse_suite(data)
    return {
        (task.impl, m.mode): m for task in expand(suite) for m in measure_task(suite, task, "cuda")
    }


def test_every_mode_of_our_kernels_is_captured() -> None:
    rows = _rows(_suite(True, 1024, 1, 8))
    assert len(rows) == 9
    for (impl, mode), m in rows.items():
        assert m.status == "ok", (impl, mode, m.error)
        assert m.timing.timer == ("cuda_event" if impl == "sdpa_cudnn" else "cuda_graph")
        assert 0 < m.timing.ms_q20 <= m.timing.ms_median <= m.timing.ms_q80


def test_graph_and_do_bench_agree_where_the_gpu_sets_the_time() -> None:
    # B=4, H=16, T=16384: each call runs for a millisecond or more, far above its launch cost.
    graph, event = _rows(_suite(True, 16384, 4, 16)), _rows(_suite(False, 16384, 4, 16))
    for key, m in graph.items():
        assert m.timing.ms_median == pytest.approx(event[key].timing.ms_median, rel=0.15), key
