"""Timing helpers: do_bench's quantile rule, the CPU wall-clock timer and, on a GPU, the
CUDA-graph timer against do_bench."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from triton.testing import _quantile

from scfa_bench.measure.timing import (
    CPU_MAX_REPS,
    CPU_MIN_REPS,
    quantile,
    time_call,
    time_cuda_graph,
)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


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


def test_cuda_graph_is_ignored_on_the_cpu() -> None:
    calls = []
    timings = time_call(
        lambda: calls.append(1), device="cpu", warmup_ms=0, rep_ms=1e-9, cuda_graph=True
    )
    assert timings.timer == "wall_clock" and len(calls) == 1 + CPU_MIN_REPS


@needs_cuda
def test_cuda_graph_refuses_the_default_stream() -> None:
    with pytest.raises(RuntimeError, match="side stream"):
        time_cuda_graph(lambda: None, warmup_ms=0, rep_ms=1)


def _on_side_stream(fn):
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        result = fn()
    torch.cuda.synchronize()
    return result


@needs_cuda
def test_cuda_graph_agrees_with_do_bench_on_gpu_paced_work() -> None:
    # One 1 GiB copy: memory-bound (no power throttling, unlike a long matmul loop) and the
    # GPU is the bottleneck, so both clocks see the same time.
    src = torch.ones(2**29, device="cuda", dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    fn = lambda: dst.copy_(src)
    event = time_call(fn, device="cuda", warmup_ms=10, rep_ms=100)
    graph = _on_side_stream(
        lambda: time_call(fn, device="cuda", warmup_ms=10, rep_ms=100, cuda_graph=True)
    )
    assert graph.timer == "cuda_graph" and event.timer == "cuda_event"
    assert graph.ms_median == pytest.approx(event.ms_median, rel=0.15)


@needs_cuda
def test_cuda_graph_drops_the_host_launch_cost() -> None:
    # 200 tiny kernels: do_bench waits on the host issuing them, a graph replay does not.
    x = torch.zeros(16, device="cuda")

    def many_launches() -> None:
        for _ in range(200):
            x.add_(1)

    event = time_call(many_launches, device="cuda", warmup_ms=5, rep_ms=50)
    graph = _on_side_stream(
        lambda: time_call(many_launches, device="cuda", warmup_ms=5, rep_ms=50, cuda_graph=True)
    )
    assert graph.ms_median < 0.7 * event.ms_median


@needs_cuda
def test_a_call_that_cannot_be_captured_raises_with_the_reason() -> None:
    # In a child process: a failed capture leaves the process's CUDA generator unusable.
    code = (
        "import torch\n"
        "from scfa_bench.measure.timing import GraphCaptureError, time_call\n"
        "x = torch.zeros(16, device='cuda')\n"
        "def syncs():\n"
        "    x.add_(1)\n"
        "    torch.cuda.synchronize()\n"
        "side = torch.cuda.Stream()\n"
        "with torch.cuda.stream(side):\n"
        "    try:\n"
        "        time_call(syncs, device='cuda', warmup_ms=1, rep_ms=5, cuda_graph=True)\n"
        "    except GraphCaptureError as exc:\n"
        "        print('raised:', exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "raised: CUDA graph capture failed" in done.stdout, done.stderr[-2000:]
    assert "cuda_graph=False" in done.stdout


@needs_cuda
def test_cuda_graph_times_a_backward_and_clears_its_gradients() -> None:
    # The forward ran before, on the side stream: its backward is captured there. The
    # gradients lived in the graph's memory, so the timer must leave them cleared.
    w = torch.randn(256, 256, device="cuda", requires_grad=True)

    def run() -> torch.Tensor:
        out = (w * 3).sum()
        step = lambda: torch.autograd.backward(out, retain_graph=True)
        time_call(step, device="cuda", warmup_ms=1, rep_ms=2, grad_to_none=[w], cuda_graph=True)
        assert w.grad is None  # cleared before the graph's memory was freed
        step()
        return w.grad

    grad = _on_side_stream(run)
    torch.testing.assert_close(grad, torch.full_like(w, 3.0))
