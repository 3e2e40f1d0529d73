"""Kernel tuning on a GPU: a developer tool, not the benchmark suite.

    python tools/tune.py --out DIR --sections base,current,plan [--tag NAME]

Sections: `base` (cuDNN at T=16384), `current` (our kernels, every pattern, fwd / bwd /
fwd+bwd), `plan` (the sort and tile ranges alone), `sparse_sweep`, `small_t_sweep`, `d128`
(launch configurations per kernel), `profile` and `host` (kernel against host time per call
at short T). Appends JSON lines to DIR/tune.jsonl. The numbers users see come from
`scfa-bench run`; this script exists to choose configurations and find costs
(docs/performance-notes.md). Times are `triton.testing.do_bench` medians, as the harness takes them.
Correctness on a GPU: `python -m scfa_kernels.verify`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import triton
from triton.testing import do_bench

from scfa_kernels import config as kcfg
from scfa_kernels import hash_sparse_attention, ops, qk_sparse_attention, validation
from scfa_kernels.plan import (
    counting_sort_pair,
    hash_plan,
    key_tile_ranges,
    qk_plan,
    query_tile_ranges,
)

B, H, D = 4, 48, 64


def _bench(fn, grad_to_none=None) -> tuple[float, float, float]:
    med, q20, q80 = do_bench(
        fn, warmup=25, rep=100, quantiles=[0.5, 0.2, 0.8], grad_to_none=grad_to_none
    )
    return med, q20, q80


def _inputs(T: int, dtype=torch.bfloat16, d: int = D, h: int = H):
    g = torch.Generator(device="cuda").manual_seed(0)
    return [
        torch.randn(B, T, h, d, device="cuda", dtype=dtype, generator=g).requires_grad_()
        for _ in range(3)
    ]


def _pattern(kind: str, param: float, T: int, h: int = H):
    g = torch.Generator(device="cuda").manual_seed(1)
    if kind == "hash":
        nb = int(param)
        return (
            torch.randint(0, nb, (B, T, h), device="cuda", generator=g, dtype=torch.int32),
            torch.randint(0, nb, (B, T, h), device="cuda", generator=g, dtype=torch.int32),
        )
    keep = 1.0 - param
    return (
        torch.rand(B, T, h, device="cuda", generator=g) < keep,
        torch.rand(B, T, h, device="cuda", generator=g) < keep,
    )


def _fn(kind, param):
    """The kernel of a pattern; hash ids lie in [0, nb), passed as n_buckets (no host sync)."""
    if kind == "hash":
        return lambda q, k, v, a, b: hash_sparse_attention(q, k, v, a, b, n_buckets=int(param))
    return qk_sparse_attention


def time_modes(fn_fwd, q, k, v):
    fwd = _bench(fn_fwd)
    out = fn_fwd()
    do = torch.randn_like(out)
    bwd = _bench(lambda: out.backward(do, retain_graph=True), grad_to_none=[q, k, v])

    def both():
        fn_fwd().backward(do)

    total = _bench(both, grad_to_none=[q, k, v])
    return fwd, bwd, total


def sdpa_cudnn(q, k, v):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))

    def run():
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            return torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=True)

    return run


def _time_patterns(log, q, k, v, T, patterns, tag, d=D, h=H):
    for kind, param in patterns:
        a, b = _pattern(kind, param, T, h=h)
        fn = _fn(kind, param)
        fwd, bwd, tot = time_modes(lambda a=a, b=b, fn=fn: fn(q, k, v, a, b), q, k, v)
        log(
            {
                "what": "ours",
                "tag": tag,
                "kind": kind,
                "param": param,
                "T": T,
                "D": d,
                "fwd": fwd,
                "bwd": bwd,
                "total": tot,
            }
        )


def _sweep(log, q, k, v, T, part, space, base, patterns, d=D, h=H):
    for bm, bn, w, s in space:
        lc = kcfg.LaunchConfig(bm, bn, w, s)
        cfg = kcfg.KernelConfig(
            fwd=lc if part == "fwd" else base.fwd,
            dkdv=lc if part.startswith("dkdv") else base.dkdv,
            dq=lc if part == "dq" else base.dq,
        )
        for kind, param in patterns:
            a, b = _pattern(kind, param, T, h=h)
            try:
                with kcfg.override(cfg):
                    fn = _fn(kind, param)
                    if part == "fwd":
                        ms = _bench(lambda a=a, b=b, fn=fn: fn(q, k, v, a, b))
                    else:
                        out = fn(q, k, v, a, b)
                        do = torch.randn_like(out)
                        ms = _bench(
                            lambda out=out, do=do: out.backward(do, retain_graph=True),
                            grad_to_none=[q, k, v],
                        )
                log(
                    {
                        "what": "sweep",
                        "part": part,
                        "cfg": [bm, bn, w, s],
                        "kind": kind,
                        "param": param,
                        "T": T,
                        "D": d,
                        "ms": ms,
                    }
                )
            except Exception as exc:
                log(
                    {
                        "what": "sweep",
                        "part": part,
                        "cfg": [bm, bn, w, s],
                        "kind": kind,
                        "param": param,
                        "D": d,
                        "error": str(exc)[:300],
                    }
                )


T_MEDIUM_BUCKET = 2048.0  # rows per bucket at T=16384, 8 buckets
ALL = [("hash", 1), ("hash", 2), ("hash", 8), ("hash", 32), ("qk", 0.2), ("qk", 0.5), ("qk", 0.8)]


CANDIDATES = {
    # Deeper software pipelines and larger key tiles for the dense-like patterns.
    "dkdv": [
        (64, 64, 4, 2),
        (32, 128, 4, 3),
        (32, 128, 4, 4),
        (32, 128, 4, 5),
        (64, 128, 4, 3),
        (64, 128, 8, 3),
        (64, 64, 4, 3),
        (64, 64, 4, 4),
        (32, 64, 4, 3),
        (32, 64, 4, 4),
    ],
    "dq": [
        (64, 64, 4, 2),
        (128, 32, 4, 3),
        (128, 32, 4, 4),
        (128, 32, 4, 5),
        (128, 64, 8, 3),
        (64, 64, 4, 3),
        (64, 64, 4, 4),
        (128, 64, 4, 3),
    ],
    "fwd": [
        (128, 128, 4, 2),
        (128, 128, 4, 3),
        (128, 64, 8, 3),
        (128, 64, 8, 4),
        (128, 128, 8, 2),
        (64, 64, 4, 4),
        (128, 64, 4, 4),
    ],
}
SMALL_T_CANDIDATES = {
    "fwd": [
        (128, 128, 4, 2),
        (128, 64, 4, 3),
        (64, 64, 4, 2),
        (64, 32, 4, 3),
        (128, 64, 4, 2),
        (64, 128, 4, 2),
    ],
    "dkdv": [(32, 128, 4, 3), (32, 64, 4, 1), (64, 64, 4, 2), (32, 64, 4, 2)],
    "dq": [(128, 32, 4, 5), (64, 32, 4, 3), (64, 64, 4, 2), (64, 64, 4, 4)],
}
SPARSE = [("hash", 1), ("hash", 2), ("hash", 8), ("qk", 0.2), ("qk", 0.5), ("qk", 0.8)]


def profile_small(log) -> None:
    """Where the time goes when T is small: kernel time against host time per call."""
    from torch.profiler import ProfilerActivity, profile

    for T, kind, param in [(1024, "hash", 8), (4096, "hash", 2), (4096, "qk", 0.2)]:
        q, k, v = _inputs(T)
        a, b = _pattern(kind, param, T)
        fn = _fn(kind, param)
        do = torch.randn_like(q)

        def step(fn=fn, q=q, k=k, v=v, a=a, b=b, do=do):
            fn(q, k, v, a, b).backward(do)

        step()
        torch.cuda.synchronize()
        wall = _bench(step, grad_to_none=[q, k, v])
        # Host time to issue one call when the GPU queue is empty (the validation sync waits).
        n = 20
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        torch.cuda.synchronize()
        host_ms = (time.perf_counter() - t0) * 1e3 / n
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                step()
            torch.cuda.synchronize()
        kernels = {}
        for evt in prof.key_averages():
            if evt.device_time_total > 0:
                kernels[evt.key[:60]] = round(evt.device_time_total / 5 / 1e3, 4)
        log(
            {
                "what": "profile",
                "T": T,
                "kind": kind,
                "param": param,
                "do_bench_ms": wall,
                "loop_ms_per_call": host_ms,
                "gpu_ms_per_call": round(sum(kernels.values()), 4),
                "kernels_ms": dict(sorted(kernels.items(), key=lambda kv: -kv[1])[:14]),
            }
        )


def host_costs(log) -> None:
    """Host (CPU) time of each step of a forward call, GPU queue kept busy or idle."""
    T = 4096
    q, k, v = _inputs(T)
    a, b = _pattern("hash", 2, T)
    Dd = q.shape[-1]
    n = 50

    def per_call(fn) -> float:
        fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        host = (time.perf_counter() - t0) * 1e3 / n
        torch.cuda.synchronize()
        return round(host, 4)

    plan = hash_plan(a, b, 2)
    cfg = kcfg.select(q.device, q.dtype, Dd, T / 2)
    log(
        {
            "what": "host_ms",
            "T": T,
            "step": "bucket count read (sync, only without n_buckets)",
            "ms": per_call(lambda: validation.bucket_count_from_ids(a, b)),
        }
    )
    log(
        {
            "what": "host_ms",
            "T": T,
            "step": "check_qkv",
            "ms": per_call(lambda: validation.check_qkv(q, k, v)),
        }
    )
    log(
        {
            "what": "host_ms",
            "T": T,
            "step": "hash_plan (sort launch)",
            "ms": per_call(lambda: hash_plan(a, b, 2)),
        }
    )
    log(
        {
            "what": "host_ms",
            "T": T,
            "step": "query_tile_ranges",
            "ms": per_call(lambda: query_tile_ranges(plan, cfg.fwd.block_m, cfg.fwd.block_n)),
        }
    )
    log(
        {
            "what": "host_ms",
            "T": T,
            "step": "scfa::hash_sparse_attention op (sort, ranges, fwd launch)",
            "ms": per_call(lambda: ops.hash_sparse_attention_op(q, k, v, a, b, 0.125, 2)),
        }
    )
    with torch.no_grad():
        log(
            {
                "what": "host_ms",
                "T": T,
                "step": "hash_sparse_attention no_grad",
                "ms": per_call(lambda: hash_sparse_attention(q, k, v, a, b, n_buckets=2)),
            }
        )
    log(
        {
            "what": "host_ms",
            "T": T,
            "step": "hash_sparse_attention",
            "ms": per_call(lambda: hash_sparse_attention(q, k, v, a, b, n_buckets=2)),
        }
    )
    log(
        {
            "what": "fwd_do_bench",
            "T": T,
            "ms": _bench(lambda: hash_sparse_attention(q, k, v, a, b, n_buckets=2)),
        }
    )
    log(
        {
            "what": "fwd_op_only_do_bench",
            "T": T,
            "ms": _bench(lambda: ops.hash_sparse_attention_op(q, k, v, a, b, 0.125, 2)),
        }
    )


SECTIONS = ("base", "current", "plan", "sparse_sweep", "small_t_sweep", "d128", "profile", "host")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("."))
    ap.add_argument(
        "--sections",
        default="base,current,plan,sparse_sweep,d128",
        help=f"comma-separated, of: {','.join(SECTIONS)}",
    )
    ap.add_argument("--tag", default="current")
    args = ap.parse_args(argv)
    sections = args.sections.split(",")
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        ap.error(f"--sections: unknown {', '.join(unknown)} (known: {', '.join(SECTIONS)})")
    if not torch.cuda.is_available():
        print("error: no CUDA device; this script tunes the kernels on a GPU", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    sink = open(args.out / "tune.jsonl", "a")

    def log(row):
        print(json.dumps(row), flush=True)
        sink.write(json.dumps(row) + "\n")
        sink.flush()

    log(
        {
            "what": "env",
            "device": torch.cuda.get_device_name(),
            "torch": torch.__version__,
            "triton": triton.__version__,
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
    )
    base = kcfg.select(torch.device("cuda"), torch.bfloat16, D, T_MEDIUM_BUCKET)
    if "host" in sections:
        host_costs(log)
    if "profile" in sections:
        profile_small(log)

    T = 16384
    q, k, v = _inputs(T)
    if "base" in sections:
        fwd, bwd, tot = time_modes(sdpa_cudnn(q, k, v), q, k, v)
        log({"what": "sdpa_cudnn", "T": T, "D": D, "fwd": fwd, "bwd": bwd, "total": tot})
    if "current" in sections:
        _time_patterns(log, q, k, v, T, [*ALL, ("hash", 64)], args.tag)
    if "plan" in sections:
        a, b = _pattern("hash", 8, T)

        def plan_all():
            p = hash_plan(a, b, 8)
            query_tile_ranges(p, base.fwd.block_m, base.fwd.block_n)
            key_tile_ranges(p, base.dkdv.block_m, base.dkdv.block_n)
            query_tile_ranges(p, base.dq.block_m, base.dq.block_n)

        log({"what": "plan_hash8_all", "T": T, "ms": _bench(plan_all)})
        log({"what": "plan_hash8_sort", "T": T, "ms": _bench(lambda: hash_plan(a, b, 8))})
        a, b = _pattern("qk", 0.5, T)
        log({"what": "plan_qk_sort", "T": T, "ms": _bench(lambda: qk_plan(a, b))})
        for nb in (8, 16, 32, 64):
            a, b = _pattern("hash", nb, T)
            for by_sort in (False, True):
                ms = _bench(
                    lambda a=a, b=b, nb=nb, s=by_sort: counting_sort_pair(a, b, nb, False, s)
                )
                log({"what": "sort_rank", "T": T, "nb": nb, "rank_by_sort": by_sort, "ms": ms})
    if "small_t_sweep" in sections:
        T4 = 4096
        q4, k4, v4 = _inputs(T4)
        large = kcfg.select(torch.device("cuda"), torch.bfloat16, D, float(T4))
        pats = [("hash", 2), ("hash", 4), ("qk", 0.2), ("qk", 0.5)]
        for part, space in SMALL_T_CANDIDATES.items():
            _sweep(log, q4, k4, v4, T4, part, space, large, pats)
        del q4, k4, v4
    if "sparse_sweep" in sections:
        large = kcfg.select(torch.device("cuda"), torch.bfloat16, D, float(T))
        for part, space in CANDIDATES.items():
            _sweep(log, q, k, v, T, part, space, large, SPARSE)
    if "d128" in sections:
        del q, k, v
        torch.cuda.empty_cache()
        h = 24
        q, k, v = _inputs(T, d=128, h=h)
        fwd, bwd, tot = time_modes(sdpa_cudnn(q, k, v), q, k, v)
        log({"what": "sdpa_cudnn", "T": T, "D": 128, "fwd": fwd, "bwd": bwd, "total": tot})
        _time_patterns(
            log, q, k, v, T, [("hash", 1), ("hash", 8), ("qk", 0.5)], args.tag, d=128, h=h
        )
    sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
