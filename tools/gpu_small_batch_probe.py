"""Why hash attention's fwd+bwd is less faster than cuDNN at B=1, H=12 than at B=4, H=48.

    python tools/gpu_small_batch_probe.py --out DIR

A developer tool (docs/performance-notes.md, "Small grids"): for each shape it prints
* do_bench medians of forward and fwd+bwd (ours with n_buckets, cuDNN), ours both through
  the public function and through the `scfa` custom operator called directly (the same path
  on main; on a branch whose public function skips the operator's dispatch for eager calls,
  the two host paths compare in one run);
* a torch.profiler pass over several fwd+bwd calls: CUDA time per kernel and per call,
  against the wall time per call, so launch gaps (host-bound calls) show as the difference;
* the host time to *issue* one fwd+bwd (no synchronisation), which bounds the call from
  below when the GPU work is shorter;
* at B=1, H=12: fwd+bwd under other dK/dV and dQ launch configurations.
Writes DIR/small_batch_probe.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
import triton
from torch.nn.attention import SDPBackend, sdpa_kernel

from scfa_kernels import config as kcfg
from scfa_kernels import hash_sparse_attention, ops

T, D, NB = 16384, 64, 8


def _ms(fn: Callable[[], object], grads: list[torch.Tensor]) -> float:
    return float(triton.testing.do_bench(fn, grad_to_none=grads, return_mode="median"))


def _setup(B: int, H: int):
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v, do = (
        torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(4)
    )
    q, k, v = (x.requires_grad_() for x in (q, k, v))
    q_hash, k_hash = (
        torch.randint(0, NB, (B, T, H), device="cuda", generator=g, dtype=torch.int32)
        for _ in range(2)
    )

    def ours() -> None:
        hash_sparse_attention(q, k, v, q_hash, k_hash, n_buckets=NB).backward(do)

    def ours_op() -> None:
        ops.hash_sparse_attention_op(q, k, v, q_hash, k_hash, D**-0.5, NB)[0].backward(do)

    def cudnn() -> None:
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            out = torch.nn.functional.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
            )
        out.transpose(1, 2).backward(do)

    def ours_fwd() -> None:
        with torch.no_grad():
            hash_sparse_attention(q, k, v, q_hash, k_hash, n_buckets=NB)

    return [q, k, v], ours, ours_op, cudnn, ours_fwd


def profile_call(fn: Callable[[], None], grads: list[torch.Tensor], calls: int = 20) -> dict:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(calls):
            for g in grads:
                g.grad = None
            fn()
        torch.cuda.synchronize()
        wall = (time.perf_counter() - start) * 1e3 / calls
    per_kernel: dict[str, list[float]] = defaultdict(list)
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA and event.device_time > 0:
            per_kernel[event.name[:90]].append(event.device_time / 1e3)
    kernels = {
        name: {"calls_per_call": len(t) / calls, "ms_per_call": sum(t) / calls}
        for name, t in sorted(per_kernel.items(), key=lambda kv: -sum(kv[1]))
    }
    busy = sum(k["ms_per_call"] for k in kernels.values())
    return {"wall_ms_per_call_profiled": wall, "kernel_ms_per_call": busy, "kernels": kernels}


def _issue_ms(fn: Callable[[], None], grads: list[torch.Tensor], calls: int = 20) -> float:
    """Host time to issue one call, measured while the GPU is still busy with earlier ones."""
    torch.cuda.synchronize()
    total = 0.0
    for _ in range(calls):
        for g in grads:
            g.grad = None
        start = time.perf_counter()
        fn()
        total += time.perf_counter() - start
    torch.cuda.synchronize()
    return total * 1e3 / calls


def _config_sweep(ours, grads) -> list[dict]:
    base = kcfg.select(torch.device("cuda"), torch.bfloat16, D, T / NB)
    L = kcfg.LaunchConfig
    candidates = {
        "dkdv": [
            L(32, 64, 4, 1),
            L(32, 64, 4, 2),
            L(64, 64, 4, 2),
            L(32, 128, 4, 3),
            L(64, 128, 8, 2),
            L(16, 64, 4, 2),
            L(32, 32, 4, 2),
        ],
        "fwd": [
            L(128, 64, 4, 3),
            L(64, 64, 4, 2),
            L(64, 64, 4, 3),
            L(64, 32, 4, 3),
            L(128, 32, 4, 3),
            L(128, 128, 8, 2),
        ],
        "dq": [
            L(64, 32, 4, 3),
            L(64, 64, 4, 2),
            L(128, 32, 4, 5),
            L(128, 64, 8, 2),
            L(32, 64, 4, 2),
            L(64, 32, 4, 2),
        ],
    }
    rows = []
    for which, launches in candidates.items():
        for launch in launches:
            cfg = dataclasses.replace(base, **{which: launch})
            try:
                with kcfg.override(cfg):
                    ms = _ms(ours, grads)
            except Exception as exc:  # out of shared memory etc.: record and go on
                ms = None
                print(f"  {which} {launch}: {type(exc).__name__}: {str(exc)[:120]}")
            rows.append({"kernel": which, "launch": list(launch.__dict__.values()), "ms": ms})
            print(f"  {which} {tuple(launch.__dict__.values())}: fwd+bwd {ms} ms")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"device": torch.cuda.get_device_name(), "T": T, "D": D, "n_buckets": NB}
    for B, H in ((1, 12), (4, 48)):
        grads, ours, ours_op, cudnn, ours_fwd = _setup(B, H)
        _ms(ours, grads)  # warm-up: the first timed call after an idle GPU read high (v6)
        row = {
            "ours_fwd_ms": _ms(ours_fwd, grads),
            "ours_fwd_bwd_ms": _ms(ours, grads),
            "ours_op_fwd_bwd_ms": _ms(ours_op, grads),
            "cudnn_fwd_bwd_ms": _ms(cudnn, grads),
            "ours_issue_ms": _issue_ms(ours, grads),
            "ours_op_issue_ms": _issue_ms(ours_op, grads),
            "cudnn_issue_ms": _issue_ms(cudnn, grads),
            "ours_profile": profile_call(ours, grads),
            "ours_op_profile": profile_call(ours_op, grads),
            "cudnn_profile": profile_call(cudnn, grads),
        }
        row["speedup"] = row["cudnn_fwd_bwd_ms"] / row["ours_fwd_bwd_ms"]
        print(
            f"B={B} H={H}: ours fwd {row['ours_fwd_ms']:.3f}, fwd+bwd "
            f"{row['ours_fwd_bwd_ms']:.3f} ms, cuDNN {row['cudnn_fwd_bwd_ms']:.3f} ms "
            f"({row['speedup']:.2f}x); issue ours {row['ours_issue_ms']:.3f} / cuDNN "
            f"{row['cudnn_issue_ms']:.3f} ms; custom-operator path: fwd+bwd "
            f"{row['ours_op_fwd_bwd_ms']:.3f} ms, issue {row['ours_op_issue_ms']:.3f} ms"
        )
        for name in ("ours_profile", "ours_op_profile", "cudnn_profile"):
            prof = row[name]
            print(
                f"  {name}: wall {prof['wall_ms_per_call_profiled']:.3f} ms/call, kernels "
                f"{prof['kernel_ms_per_call']:.3f} ms/call"
            )
            for kernel, info in list(prof["kernels"].items())[:12]:
                print(f"    {info['ms_per_call']:8.3f} ms  x{info['calls_per_call']:.0f}  {kernel}")
        if (B, H) == (1, 12):
            row["config_sweep"] = _config_sweep(ours, grads)
        report[f"{B}x{H}"] = row
        del grads, ours, ours_op, cudnn, ours_fwd
        torch.cuda.empty_cache()
    path = args.out / "small_batch_probe.json"
    path.write_text(json.dumps(report, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
