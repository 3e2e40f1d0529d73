"""Where the host time of one sparse attention call goes (docs/performance-notes.md).

    python tools/gpu_host_cost_probe.py --out DIR [--seq-len 16384] [--calls 50]
        [--pattern "hash nb=8"] ... [--path eager] ...

A developer tool, written for the next GPU session. At B=1, H=12, D=64, bf16 (the GPT-2-small
layer of the e2e suites), hash nb=8 with uniform ids and QK p=0.8, on two paths: `eager` (the
public functions, as eager models call them) and `compiled` (a `torch.compile`d function
calling them, so the graph calls the `scfa::` custom operators, as compiled models do). For
each it measures:
* host time per fwd+bwd: `--calls` calls issued back to back without a sync (perf_counter),
  against the GPU time of the same calls (CUDA events). The call is host-paced where the
  first exceeds the second;
* Triton launches and caching-allocator requests per call;
* each of our Triton kernels' own launch cost: every `kernel[grid](...)` of one call is
  recorded with its arguments and re-issued `--calls` times alone;
* `cProfile` of the back-to-back calls: the functions with the most own time and the most
  cumulative time (text files);
* a census of the CUDA runtime and driver API calls of one call (torch.profiler): launches,
  memsets, copies and any synchronisation, with their host time;
* the host time of the forward alone (no autograd), of the forward that saves for backward,
  and of the backward alone, each issued back to back.
Patterns: hash nb=8 (counting sort), hash nb=32 (torch.sort), qk p=0.8, and dense cuDNN SDPA
for scale. Run it at a short seq_len too (e.g. 1024, `--calls 10`): there the GPU finishes
first and the host time per call is the host's own cost, not the GPU's pace.
Writes DIR/host_cost_probe.json and DIR/cprofile_<point>_<path>.txt.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

B, H, D = 1, 12, 64
PATTERNS = ("hash nb=8", "hash nb=32", "qk p=0.8", "dense cudnn")


def our_kernels() -> dict[str, Any]:
    """Every Triton kernel of the package, by name (objects with a `run` launch method)."""
    from scfa_kernels import _triton_bwd, _triton_fwd, _triton_lsh, _triton_plan, _triton_sort

    found: dict[str, Any] = {}
    for module in (_triton_fwd, _triton_bwd, _triton_plan, _triton_sort, _triton_lsh):
        for name, value in vars(module).items():
            if name.endswith("_kernel") and callable(getattr(value, "run", None)):
                found[name] = value
    return found


class LaunchRecorder:
    """Wraps each kernel's `run` to record (name, args, kwargs) of every launch."""

    def __init__(self, kernels: dict[str, Any]) -> None:
        self.kernels = kernels
        self.launches: list[tuple[str, tuple, dict]] = []

    @contextmanager
    def recording(self) -> Iterator[LaunchRecorder]:
        originals = {name: kernel.run for name, kernel in self.kernels.items()}
        own = {name for name, kernel in self.kernels.items() if "run" in vars(kernel)}

        def wrap(name: str, run: Callable) -> Callable:
            def recorded(*args: Any, **kwargs: Any) -> Any:
                self.launches.append((name, args, kwargs))
                return run(*args, **kwargs)

            return recorded

        for name, kernel in self.kernels.items():
            kernel.run = wrap(name, originals[name])
        try:
            yield self
        finally:  # back to the class's method (or the instance's own, where it had one)
            for name, kernel in self.kernels.items():
                if name in own:
                    kernel.run = originals[name]
                else:
                    del kernel.run

    def counts(self) -> dict[str, int]:
        counted: dict[str, int] = {}
        for name, _args, _kwargs in self.launches:
            counted[name] = counted.get(name, 0) + 1
        return counted


def _inputs(seq_len: int, pattern: str) -> tuple[list[torch.Tensor], Callable[..., torch.Tensor]]:
    from scfa_kernels import hash_sparse_attention, qk_sparse_attention

    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v, do = (
        torch.randn(B, seq_len, H, D, device="cuda", dtype=torch.bfloat16, generator=g)
        for _ in range(4)
    )
    q, k, v = (x.requires_grad_() for x in (q, k, v))
    if pattern.startswith("hash nb="):
        nb = int(pattern.removeprefix("hash nb="))
        ids = [torch.randint(0, nb, (B, seq_len, H), device="cuda", generator=g) for _ in "qk"]

        def attend(q, k, v):
            return hash_sparse_attention(q, k, v, ids[0], ids[1], n_buckets=nb)
    elif pattern == "dense cudnn":
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from torch.nn.functional import scaled_dot_product_attention

        def attend(q, k, v):
            with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                out = scaled_dot_product_attention(
                    *(x.transpose(1, 2) for x in (q, k, v)), is_causal=True
                )
            return out.transpose(1, 2)
    else:
        keep = [torch.rand(B, seq_len, H, device="cuda", generator=g) >= 0.8 for _ in "qk"]

        def attend(q, k, v):
            return qk_sparse_attention(q, k, v, keep[0], keep[1])

    return [q, k, v, do], attend


def _host_and_gpu_ms(call: Callable[[], None], calls: int) -> tuple[float, float]:
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin = time.perf_counter()
    start.record()
    for _ in range(calls):
        call()
    end.record()
    host_ms = (time.perf_counter() - begin) * 1e3 / calls
    torch.cuda.synchronize()
    return host_ms, start.elapsed_time(end) / calls


def _relaunch_us(name: str, args: tuple, kwargs: dict, kernel: Any, calls: int) -> float:
    torch.cuda.synchronize()
    begin = time.perf_counter()
    for _ in range(calls):
        kernel.run(*args, **kwargs)
    elapsed = (time.perf_counter() - begin) * 1e6 / calls
    torch.cuda.synchronize()
    return elapsed


SYNC_APIS = ("Synchronize", "cudaMemcpy(", "cudaMemcpy ", "cuMemcpyDtoH", "cudaStreamQuery")


def api_census(events: Any, calls: int) -> dict[str, dict[str, float]]:
    """CUDA runtime/driver API calls among profiler `events` (names starting with cuda or cu),
    per call: how many and their host microseconds."""
    totals: dict[str, list[float]] = {}
    for event in events:
        name = event.name
        if not name.startswith("cu") or str(event.device_type) != "DeviceType.CPU":
            continue
        entry = totals.setdefault(name, [0, 0.0])
        entry[0] += 1
        entry[1] += event.cpu_time_total
    return {
        name: {"per_call": n / calls, "host_us_per_call": round(us / calls, 1)}
        for name, (n, us) in sorted(totals.items(), key=lambda kv: -kv[1][1])
    }


def _census(call: Callable[[], None], calls: int) -> dict[str, dict[str, float]]:
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            call()
    torch.cuda.synchronize()
    return api_census(prof.events(), calls)


def _phases(q, k, v, do, fn, calls: int) -> dict[str, float]:
    """Host ms per call of the forward alone, the forward saving for backward, the backward."""

    def forward_only() -> None:
        with torch.no_grad():
            fn(q, k, v)

    def forward_saving() -> None:
        fn(q, k, v)

    out = fn(q, k, v)

    def backward_only() -> None:
        for x in (q, k, v):
            x.grad = None
        out.backward(do, retain_graph=True)

    phases = {"fwd_no_grad": forward_only, "fwd_saving": forward_saving, "bwd": backward_only}
    for phase in phases.values():
        phase()
    return {name: round(_host_and_gpu_ms(phase, calls)[0], 4) for name, phase in phases.items()}


def _profile_text(call: Callable[[], None], calls: int) -> str:
    profiler = cProfile.Profile()
    torch.cuda.synchronize()
    profiler.enable()
    for _ in range(calls):
        call()
    profiler.disable()
    torch.cuda.synchronize()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    text.write(f"{calls} fwd+bwd calls\n\n== by own time ==\n")
    stats.sort_stats("tottime").print_stats(30)
    text.write("\n== by cumulative time ==\n")
    stats.sort_stats("cumulative").print_stats(40)
    return text.getvalue()


def _point(seq_len: int, pattern: str, path: str, calls: int, out: Path) -> dict:
    (q, k, v, do), attend = _inputs(seq_len, pattern)
    fn = torch.compile(attend, fullgraph=True) if path == "compiled" else attend

    def call() -> None:
        for x in (q, k, v):
            x.grad = None
        fn(q, k, v).backward(do)

    for _ in range(3):  # compile, autotune caches, allocator warm
        call()
    host_ms, gpu_ms = _host_and_gpu_ms(call, calls)

    census = _census(call, 3)
    phases = _phases(q, k, v, do, fn, calls)
    kernels = our_kernels()
    recorder = LaunchRecorder(kernels)
    torch.cuda.synchronize()
    before = torch.cuda.memory_stats().get("allocation.all.allocated", 0)
    with recorder.recording():
        call()
    torch.cuda.synchronize()
    allocations = torch.cuda.memory_stats().get("allocation.all.allocated", 0) - before
    relaunch = {
        f"{i}:{name}": round(_relaunch_us(name, a, kw, kernels[name], calls), 1)
        for i, (name, a, kw) in enumerate(recorder.launches)
    }
    slug = f"{pattern.replace(' ', '_').replace('=', '')}_{path}"
    (out / f"cprofile_{slug}.txt").write_text(_profile_text(call, calls), encoding="utf-8")
    return {
        "host_ms_per_call": host_ms,
        "gpu_ms_per_call": gpu_ms,
        "launches_per_call": recorder.counts(),
        "allocations_per_call": allocations,
        "relaunch_host_us": relaunch,
        "relaunch_host_us_total": round(sum(relaunch.values()), 1),
        "api_per_call": census,
        "syncs_per_call": sum(
            c["per_call"] for name, c in census.items() if any(s in name for s in SYNC_APIS)
        ),
        "phase_host_ms": phases,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--seq-len", type=int, default=16384)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--pattern", action="append", choices=PATTERNS)
    parser.add_argument("--path", action="append", choices=("eager", "compiled"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_host_cost_probe: needs a CUDA device")
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"device": torch.cuda.get_device_name(), "seq_len": args.seq_len, "points": {}}
    path_out = args.out / "host_cost_probe.json"
    for pattern in args.pattern or PATTERNS:
        for path in args.path or ("eager", "compiled"):
            label = f"{pattern} {path}"
            try:
                row = _point(args.seq_len, pattern, path, args.calls, args.out)
            except Exception as exc:  # record and go on
                row = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
                print(f"{label}: {row['error']}")
            else:
                print(
                    f"{label}: host {row['host_ms_per_call']:.3f} ms, GPU "
                    f"{row['gpu_ms_per_call']:.3f} ms per fwd+bwd; "
                    f"{sum(row['launches_per_call'].values())} launches "
                    f"(alone: {row['relaunch_host_us_total']:.0f} us host), "
                    f"{row['allocations_per_call']} allocations, "
                    f"{row['syncs_per_call']:g} syncs; phases {row['phase_host_ms']}"
                )
            report["points"][label] = row
            path_out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(f"wrote {path_out}")


if __name__ == "__main__":
    main()
