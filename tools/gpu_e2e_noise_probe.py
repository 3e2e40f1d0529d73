"""Why some T=16384 model steps spread (docs/performance-notes.md): a developer tool.

    python tools/gpu_e2e_noise_probe.py --out DIR [--seq-len 16384] [--steps 30]

For each e2e point at B=1 (dense cuDNN, no attention, hash nb=8 / nb=32, QK p=0.8; eager and
compiled) it builds the e2e suites' GPT-2-small step, warms it up, then times `--steps`
back-to-back steps twice, with Python's garbage collector on and then off, recording per step:
* the CUDA-event time (what the e2e rows report),
* the host's time inside `run()` (equal to the event time when the host sets the pace),
* the garbage collector's pauses (`gc.callbacks`) and the CUDA caching allocator's device
  allocations and frees (`torch.cuda.memory_stats`) during the timed steps,
* the SM clock (NVML, sampled every 10 ms by the suite's telemetry sampler),
and from one profiled pass the GPU's busy time per step (union of kernel intervals) and its
idle time between kernels. A step that is host-bound shows idle GPU time near the gap
between its event time and its busy time. Writes DIR/e2e_noise_probe.json.
"""

from __future__ import annotations

import gc
import statistics
import time

import torch
from e2e_probe_points import probe_args, run_points, warmed_step

from scfa_bench.measure.stages import StagedKernel, idle_summary
from scfa_bench.measure.telemetry import TelemetrySampler

POINTS = (
    ("sdpa_cudnn", {}),
    ("identity", {}),
    ("scfa_hash", {"n_buckets": 8}),
    ("scfa_hash", {"n_buckets": 32}),
    ("scfa_qk", {"drop_rate": 0.8}),
)


class GcPauses:
    """Durations of the garbage collector's runs while installed (gc.callbacks)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._start = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.pauses.append((info["generation"], (time.perf_counter() - self._start) * 1e3))

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def _alloc_counts() -> dict[str, int]:
    stats = torch.cuda.memory_stats()
    keys = ("num_device_alloc", "num_device_free", "num_alloc_retries", "num_sync_all_streams")
    return {key: int(stats.get(key, -1)) for key in keys}


def _timed(run, steps: int) -> dict:
    events = [
        (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
        for _ in range(steps)
    ]
    host_ms = []
    before = _alloc_counts()
    sampler = TelemetrySampler.for_current_device("cuda")
    torch.cuda.synchronize()
    with GcPauses() as pauses, sampler:
        for start, end in events:
            begin = time.perf_counter()
            start.record()
            run()
            end.record()
            host_ms.append((time.perf_counter() - begin) * 1e3)
        torch.cuda.synchronize()
    after = _alloc_counts()
    event_ms = [start.elapsed_time(end) for start, end in events]
    summary = sampler.summary().columns()
    return {
        "event_ms": [round(x, 3) for x in event_ms],
        "host_ms": [round(x, 3) for x in host_ms],
        "event_median": statistics.median(event_ms),
        "event_q20_q80": statistics.quantiles(event_ms, n=5)[0::3],
        "host_median": statistics.median(host_ms),
        "gc_pauses": [(g, round(ms, 3)) for g, ms in pauses.pauses],
        "alloc_delta": {key: after[key] - before[key] for key in after},
        "sm_mhz_min": summary.get("sm_mhz_min"),
        "sm_mhz_median": summary.get("sm_mhz_median"),
        "throttle_reasons": summary.get("throttle_reasons"),
    }


def _busy_idle(run, steps: int) -> dict:
    """GPU busy (union of kernel intervals) and idle time per step, from the profiler."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            run()
        torch.cuda.synchronize()
    kernels = [
        StagedKernel(e.name, "", e.time_range.start, e.time_range.end, call=None)
        for e in prof.events()
        if e.device_type == DeviceType.CUDA and not getattr(e, "is_user_annotation", False)
    ]
    idle = idle_summary(kernels, n_calls=0)  # all profiled steps as one span
    return {
        "busy_ms_per_step": idle.busy_us / steps / 1e3,
        "span_ms_per_step": idle.span_us / steps / 1e3,
        "idle_ms_per_step": idle.idle_us / steps / 1e3,
        "kernels_per_step": len(kernels) / steps,
    }


def _point(impl: str, axes: dict, seq_len: int, compiled: bool, steps: int) -> dict:
    with warmed_step(impl, axes, seq_len, compiled) as step:
        row = {"gc_on": _timed(step.run, steps)}
        gc.collect()
        gc.disable()
        try:
            row["gc_off"] = _timed(step.run, steps)
        finally:
            gc.enable()
        row["profile"] = _busy_idle(step.run, 3)
    return row


def _describe(row: dict) -> str:
    on, off, prof = row["gc_on"], row["gc_off"], row["profile"]
    return (
        f"event {on['event_median']:.2f} "
        f"[{on['event_q20_q80'][0]:.2f}, {on['event_q20_q80'][1]:.2f}] ms, "
        f"host {on['host_median']:.2f} ms, gc pauses {len(on['gc_pauses'])} "
        f"(max {max((p for _, p in on['gc_pauses']), default=0):.2f} ms), "
        f"alloc {on['alloc_delta']}, sm {on['sm_mhz_min']}-{on['sm_mhz_median']} | "
        f"gc off: event {off['event_median']:.2f} "
        f"[{off['event_q20_q80'][0]:.2f}, {off['event_q20_q80'][1]:.2f}] ms, "
        f"host {off['host_median']:.2f} | GPU busy {prof['busy_ms_per_step']:.2f}, "
        f"idle {prof['idle_ms_per_step']:.2f} ms/step, "
        f"{prof['kernels_per_step']:.0f} kernels/step"
    )


def main() -> None:
    args = probe_args(default_steps=30)
    run_points(
        POINTS,
        args.compile,
        args.out / "e2e_noise_probe.json",
        lambda impl, axes, compiled: _point(impl, axes, args.seq_len, compiled, args.steps),
        _describe,
    )


if __name__ == "__main__":
    main()
