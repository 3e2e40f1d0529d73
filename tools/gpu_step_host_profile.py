"""Where a host-paced model step spends its host time, and what the GPU waits for (a
developer tool; docs/performance-notes.md, "The host path").

    python tools/gpu_step_host_profile.py --out DIR [--seq-len 16384] [--steps 5]

For each point (dense cuDNN, hash nb=8 / nb=32, QK p=0.8; eager and compiled) it builds the
e2e suites' GPT-2-small step at B=1, warms it up, then:
* times `--steps` back-to-back steps: CUDA-event time per step and the host's time inside
  `run()` (equal to the event time when the host sets the pace);
* runs `--steps` steps under cProfile and writes the functions with the most own and the most
  cumulative host time (DIR/cprofile_<point>.txt);
* runs 2 steps under torch.profiler and reports, per step, the GPU's busy and idle time, the
  idle time before each kernel name (the kernels the GPU waited for: the host was late
  launching them), and the CUDA API calls' counts and host time.
Writes DIR/step_host_profile.json.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import statistics
import time
from collections import Counter
from pathlib import Path

import torch
from e2e_probe_points import probe_args, run_points, warmed_step

POINTS = (
    ("sdpa_cudnn", {}),
    ("scfa_hash", {"n_buckets": 8}),
    ("scfa_hash", {"n_buckets": 32}),
    ("scfa_qk", {"drop_rate": 0.8}),
)
IDLE_GAP_US = 20.0  # gaps shorter than this are launch latency, not a late host


def gpu_idle_by_kernel(
    kernels: list[tuple[str, float, float]], min_gap_us: float = IDLE_GAP_US
) -> tuple[float, float, Counter[str]]:
    """(busy us, span us, idle us before each kernel name) of (name, start us, end us)
    intervals: busy is their union; a gap longer than `min_gap_us` between the GPU's last
    busy moment and a kernel's start is charged to that kernel (the one the GPU waited for)."""
    idle_before: Counter[str] = Counter()
    ordered = sorted(kernels, key=lambda k: k[1])
    if not ordered:
        return 0.0, 0.0, idle_before
    busy = 0.0
    first = frontier = ordered[0][1]
    for name, start, end in ordered:
        gap = start - frontier
        if gap > min_gap_us:
            idle_before[name[:80]] += gap
        busy += max(0.0, end - max(start, frontier))
        frontier = max(frontier, end)
    return busy, frontier - first, idle_before


def _timed(run, steps: int) -> dict:
    pairs = [
        (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
        for _ in range(steps)
    ]
    host_ms = []
    torch.cuda.synchronize()
    for start, end in pairs:
        begin = time.perf_counter()
        start.record()
        run()
        end.record()
        host_ms.append((time.perf_counter() - begin) * 1e3)
    torch.cuda.synchronize()
    event_ms = [start.elapsed_time(end) for start, end in pairs]
    return {"event_ms": statistics.median(event_ms), "host_ms": statistics.median(host_ms)}


def _cprofile_text(run, steps: int) -> str:
    profiler = cProfile.Profile()
    torch.cuda.synchronize()
    profiler.enable()
    for _ in range(steps):
        run()
    torch.cuda.synchronize()
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    text.write(f"{steps} steps\n")
    stats.sort_stats("tottime").print_stats(35)
    stats.sort_stats("cumulative").print_stats(60)
    return text.getvalue()


def _timeline(run, steps: int) -> dict:
    """GPU idle time per step by the kernel that ended it, and CUDA API calls per step."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            run()
        torch.cuda.synchronize()
    events = prof.events()
    intervals = [
        (e.name, e.time_range.start, e.time_range.end)
        for e in events
        if e.device_type == DeviceType.CUDA
    ]
    busy, span, idle_before = gpu_idle_by_kernel(intervals)
    api: dict[str, list[float]] = {}
    for event in events:
        if event.device_type == DeviceType.CPU and event.name.startswith(("cuda", "cu")):
            entry = api.setdefault(event.name, [0, 0.0])
            entry[0] += 1
            entry[1] += event.cpu_time_total
    return {
        "span_ms_per_step": span / steps / 1e3,
        "busy_ms_per_step": busy / steps / 1e3,
        "kernels_per_step": len(intervals) / steps,
        "idle_ms_before_kernel_per_step": {
            name: round(us / steps / 1e3, 3) for name, us in idle_before.most_common(20)
        },
        "cuda_api_per_step": {
            name: {"calls": n / steps, "host_ms": round(us / steps / 1e3, 3)}
            for name, (n, us) in sorted(api.items(), key=lambda kv: -kv[1][1])
        },
    }


def _point(impl: str, axes: dict, seq_len: int, compiled: bool, steps: int, out: Path) -> dict:
    with warmed_step(impl, axes, seq_len, compiled) as step:
        row = {"timed": _timed(step.run, max(steps, 5))}
        slug = f"{impl}_{'_'.join(f'{k}{v}' for k, v in axes.items())}_{'c' if compiled else 'e'}"
        (out / f"cprofile_{slug}.txt").write_text(_cprofile_text(step.run, steps), "utf-8")
        row["timeline"] = _timeline(step.run, 2)
    return row


def _describe(row: dict) -> str:
    timed, line = row["timed"], row["timeline"]
    top = list(line["idle_ms_before_kernel_per_step"].items())[:3]
    return (
        f"event {timed['event_ms']:.2f} ms, host {timed['host_ms']:.2f} ms, "
        f"GPU busy {line['busy_ms_per_step']:.2f} of {line['span_ms_per_step']:.2f} ms/step; "
        f"idle before {top}"
    )


def main() -> None:
    args = probe_args(default_steps=5)
    run_points(
        POINTS,
        args.compile,
        args.out / "step_host_profile.json",
        lambda impl, axes, compiled: _point(
            impl, axes, args.seq_len, compiled, args.steps, args.out
        ),
        _describe,
    )


if __name__ == "__main__":
    main()
