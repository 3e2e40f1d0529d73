"""Long ranges cut into pieces (docs/performance-notes.md): with and without, in one run.

    python tools/gpu_split_probe.py --out DIR [--seq-len 16384] [--skip-model]

A developer tool. Every measurement is taken twice, under the configuration's default
`RangeSplit` ("split") and under `config.NO_SPLIT` ("whole"), on the same card:
* kernels alone, fwd+bwd, bf16, D=64: the profiler's kernel time per call (what a model step
  pays: at B=1 the calls are host-bound, docs/performance-notes.md) and the do_bench median,
  with cuDNN's for the ratio; at B x H = 1 x 12 (hash nb=8, nb=32 with uniform ids, nb=8 with
  one bucket holding 60% of the ids, QK p=0.8), 4 x 48 (nb=8) and the CI gate's 4 x 16 at T=4096;
* a GPT-2-small training step (B=1, eager, the e2e suites' model and LSH buckets): the median
  step time over 10 steps (CUDA events) and the attention kernels' GPU time per step.
Writes DIR/split_probe.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
import triton
from gpu_small_batch_probe import profile_call  # this folder is on sys.path when run
from torch.nn.attention import SDPBackend, sdpa_kernel

from scfa_bench.e2e.kernel_share import is_attention_kernel, profile_kernels, split_kernel_times
from scfa_bench.e2e.model import GPT2_SMALL
from scfa_bench.e2e.step import StepConfig, build_step
from scfa_kernels import config as kcfg
from scfa_kernels import hash_sparse_attention, qk_sparse_attention

D = 64
# Each mode: the overrides of `config.override_split` (none: the configuration's default).
MODES = {
    "split": {},
    "whole": {"split": kcfg.NO_SPLIT},
    "dkdv only": {"fwd": kcfg.NO_SPLIT, "dq": kcfg.NO_SPLIT},
}
# (label, B, H, T, pattern): pattern is ("hash", nb, share of bucket 0 or None) or ("qk", drop).
KERNEL_POINTS = (
    ("1x12 nb=8", 1, 12, 16384, ("hash", 8, None)),
    ("1x12 nb=32", 1, 12, 16384, ("hash", 32, None)),
    ("1x12 qk p=0.8", 1, 12, 16384, ("qk", 0.8)),
)
MODEL_POINTS = (
    ("sdpa_cudnn", {}),
    ("scfa_hash", {"n_buckets": 8}),
    ("scfa_hash", {"n_buckets": 32}),
    ("scfa_qk", {"drop_rate": 0.8}),
)


def _split(mode: str):
    return kcfg.override_split(**MODES[mode]) if MODES[mode] else contextlib.nullcontext()


def _ids(B: int, T: int, H: int, nb: int, skew: float | None, g: torch.Generator) -> torch.Tensor:
    ids = torch.randint(0, nb, (B, T, H), device="cuda", generator=g, dtype=torch.int32)
    if skew is not None:
        hot = torch.rand(B, T, H, device="cuda", generator=g) < skew
        ids = torch.where(hot, torch.zeros_like(ids), ids)
    return ids


def _kernel_point(B: int, H: int, T: int, pattern: tuple) -> dict:
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v, do = (
        torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(4)
    )
    q, k, v = (x.requires_grad_() for x in (q, k, v))
    grads = [q, k, v]
    if pattern[0] == "hash":
        _, nb, skew = pattern
        q_ids, k_ids = _ids(B, T, H, nb, skew, g), _ids(B, T, H, nb, skew, g)

        def ours() -> None:
            hash_sparse_attention(q, k, v, q_ids, k_ids, n_buckets=nb).backward(do)
    else:
        drop = pattern[1]
        q_keep, k_keep = (torch.rand(B, T, H, device="cuda", generator=g) >= drop for _ in range(2))

        def ours() -> None:
            qk_sparse_attention(q, k, v, q_keep, k_keep).backward(do)

    def cudnn() -> None:
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            torch.nn.functional.scaled_dot_product_attention(
                *(x.transpose(1, 2) for x in (q, k, v)), is_causal=True
            ).backward(do.transpose(1, 2))

    def bench(fn: Callable[[], None]) -> float:
        return float(triton.testing.do_bench(fn, grad_to_none=grads, return_mode="median"))

    row: dict = {"cudnn_do_bench_ms": bench(cudnn)}
    row["cudnn_kernel_ms"] = profile_call(cudnn, grads, calls=10)["kernel_ms_per_call"]
    for mode in MODES:
        with _split(mode):
            ours()  # compile outside the timings
            prof = profile_call(ours, grads, calls=10)
            row[mode] = {
                "do_bench_ms": bench(ours),
                "kernel_ms": prof["kernel_ms_per_call"],
                "kernels": {n: i["ms_per_call"] for n, i in list(prof["kernels"].items())[:8]},
            }
    return row


def _model_point(impl: str, axes: dict, seq_len: int, mode: str) -> dict:
    with _split(mode):
        step = build_step(
            StepConfig(model=GPT2_SMALL, batch=1, seq_len=seq_len, attention=impl, **axes)
        )
        for _ in range(3):
            step.run()
        times = []
        for _ in range(10):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step.run()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        kernels = profile_kernels(step.run, 3)
    del step
    torch.cuda.empty_cache()
    share = split_kernel_times(kernels, 3)
    per_name: dict[str, float] = defaultdict(float)
    for name, us in kernels:
        if is_attention_kernel(name):
            per_name[name[:50]] += us / 1e3 / 3
    return {
        "step_ms_median": statistics.median(times),
        "attention_gpu_ms": share.attention_ms,
        "total_gpu_ms": share.total_ms,
        "attention_kernels_ms": dict(sorted(per_name.items(), key=lambda kv: -kv[1])[:6]),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--seq-len", type=int, default=16384)
    parser.add_argument("--skip-model", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"device": torch.cuda.get_device_name(), "kernels": {}, "model": {}}
    path = args.out / "split_probe.json"
    for label, B, H, T, pattern in KERNEL_POINTS:
        try:
            row = _kernel_point(B, H, T, pattern)
        except Exception as exc:  # record and go on
            row = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            print(f"{label}: {row['error']}")
        else:
            print(
                f"{label}: cuDNN {row['cudnn_kernel_ms']:.3f} ms kernels; "
                + "; ".join(
                    f"{m} kernels {row[m]['kernel_ms']:.3f} ms "
                    f"({row['cudnn_kernel_ms'] / row[m]['kernel_ms']:.2f}x), do_bench "
                    f"{row[m]['do_bench_ms']:.3f} ms "
                    f"({row['cudnn_do_bench_ms'] / row[m]['do_bench_ms']:.2f}x)"
                    for m in MODES
                )
            )
        report["kernels"][label] = row
        path.write_text(json.dumps(report, indent=1))
    if not args.skip_model:
        for impl, axes in MODEL_POINTS:
            for mode in MODES if impl != "sdpa_cudnn" else ("whole",):
                label = f"{impl} {axes} {mode}"
                try:
                    row = _model_point(impl, axes, args.seq_len, mode)
                except Exception as exc:  # record and go on
                    row = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
                print(f"T={args.seq_len} step {label}: {row}")
                report["model"][label] = row
                path.write_text(json.dumps(report, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
