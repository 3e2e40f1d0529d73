"""Timing helpers: do_bench's quantile rule and the CPU wall-clock timer."""

from __future__ import annotations

import pytest
import torch
from triton.testing import _quantile

from scfa_bench.measure.timing import CPU_MAX_REPS, CPU_MIN_REPS, quantile, time_call


@pytest.mark.parametrize("samples", [[3.0], [5.0, 1.0], [4.0, 1.0, 9.0, 2.5, 7.0, 3.0]])
def test_quantile_matches_do_bench(samples: list[float]) -> None:
    for q in (0.0, 0.2, 0.5, 0.8, 1.0):
        assert quantile(samples, q) == pytest.approx(_quantile(samples, [q])[0])


def test_wall_clock_timer_counts_and_clears_grads() -> None:
    calls = []
    x = torch.ones(3, requires_grad=True)

    def fn() -> None:
        assert x.grad is None  # cleared before every call
        calls.append(1)
        (x * 2).sum().backward()

    timings = time_call(fn, device="cpu", warmup_ms=0, rep_ms=1e-9, grad_to_none=[x])
    assert timings.timer == "wall_clock"
    assert timings.ms_q20 <= timings.ms_median <= timings.ms_q80
    # one estimate call, no warm-up, then the minimum number of reps
    assert len(calls) == 1 + CPU_MIN_REPS


def test_wall_clock_rep_cap() -> None:
    calls = []
    time_call(lambda: calls.append(1), device="cpu", warmup_ms=0, rep_ms=1e9)
    assert len(calls) == 1 + CPU_MAX_REPS
