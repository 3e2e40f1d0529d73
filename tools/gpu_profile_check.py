"""GPU check of the profiling additions: new baselines, stage tables, telemetry.

Run on a CUDA machine from the repository root:

    python tools/gpu_profile_check.py                      # defaults below, ~5-8 min on an H100
    python tools/gpu_profile_check.py --seq-len 4096 --n-buckets 2 8 32 --skip-profile

Prints, and writes to $OUT (or ./gpu_profile_check/) as JSON plus trace files:
1. the environment and why each optional baseline is or is not available;
2. every new implementation checked against its reference (its own for limits and Reformer)
   in bf16 with gradients, at small T;
3. forward+backward medians (do_bench) at the requested shape, beside scfa_* and cuDNN, with
   NVML telemetry of each timing;
4. Reformer's relative error against exact hash-sparse attention;
5. stage tables (torch.profiler) of scfa_hash, scfa_qk and flex_hash at the requested
   point, with the measured call time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

import torch
import triton

from scfa_bench.analysis.profile_report import markdown
from scfa_bench.impls.base import ImplUnavailable
from scfa_bench.impls.registry import all_specs, get_spec
from scfa_bench.measure.correctness import check_against_reference, sample_rows
from scfa_bench.measure.inputs import make_inputs, output_grad
from scfa_bench.measure.profile_call import profile_call
from scfa_bench.measure.stages import profile_stages
from scfa_bench.measure.telemetry import TelemetrySampler
from scfa_bench.suite.grid import Point
from scfa_bench.suite.schema import Shape

NEW_HASH = [
    "flex_hash",
    "flex_hash_prebuilt",
    "flex_hash_ranges",
    "sorted_varlen",
    "reformer_lsh",
    "reformer_lsh_r4",
    "limit_hash",
]
NEW_QK = ["flex_qk", "flex_qk_prebuilt", "flex_qk_ranges", "limit_qk"]
NEW_DENSE = ["fa3", "fa4"]


def log(*parts: object) -> None:
    print(*parts, flush=True)


def point_for(impl: str, seq_len: int, nb: int, p: float) -> Point:
    pattern = get_spec(impl).pattern
    if pattern == "hash":
        return Point(seq_len, n_buckets=nb)
    if pattern == "qk":
        return Point(seq_len, drop_rate=p)
    return Point(seq_len)


def prepared(impl: str, shape: Shape, point: Point, *, grad: bool, buckets: str):
    spec = get_spec(impl)
    obj = spec.create()
    ok, reason = obj.available("cuda")
    if not ok:
        raise ImplUnavailable(reason)
    bucket_kind = "lsh_shared" if impl == "sorted_varlen" else buckets
    inputs = make_inputs(
        shape, point, seed=0, device="cuda", buckets=bucket_kind, requires_grad=grad
    )
    effective = obj.effective_inputs(inputs) if hasattr(obj, "effective_inputs") else inputs
    return obj, inputs, effective, obj.prepare(effective)


def bench(fn, grad_to_none) -> float:
    return triton.testing.do_bench(fn, warmup=25, rep=100, grad_to_none=grad_to_none)


def fwd_bwd_step(forward, effective):
    out = forward()
    do = output_grad(out, seed=0)
    del out
    return lambda: forward().backward(do)


def check_all(args, results) -> None:
    log("\n== 2. correctness (bf16, with gradients) ==")
    shape = Shape(batch=2, heads=4, head_dim=64, dtype="bf16")
    for impl in NEW_HASH + NEW_QK + NEW_DENSE:
        for t in (1024,):
            point = point_for(impl, t, 8, 0.5)
            entry = {"impl": impl, "seq_len": t}
            try:
                obj, _, effective, forward = prepared(
                    impl, shape, point, grad=True, buckets="random"
                )
                result = check_against_reference(
                    forward,
                    effective,
                    dtype="bf16",
                    rows=sample_rows(effective.q.shape[1], 256, seed=0),
                    with_grads=True,
                    seed=0,
                )
                entry.update(
                    passed=result.passed,
                    rel_err=result.rel_err,
                    detail=result.detail,
                    kind=getattr(obj, "kind", "exact"),
                )
            except ImplUnavailable as exc:
                entry.update(unavailable=str(exc))
            except Exception as exc:
                entry.update(
                    error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc()[-2000:]
                )
            log(json.dumps(entry)[:400])
            results["checks"].append(entry)
            torch.cuda.empty_cache()


def time_all(args, results) -> None:
    log("\n== 3. fwd+bwd medians (ms) with telemetry ==")
    shape = Shape(batch=args.batch, heads=args.heads, head_dim=args.head_dim, dtype="bf16")
    impls = [
        "sdpa_cudnn",
        "sdpa_flash",
        "flex_dense",
        *NEW_DENSE,
        "scfa_hash",
        *NEW_HASH,
        "scfa_qk",
        *NEW_QK,
    ]
    if args.impls:
        impls = args.impls
    for t in args.seq_len:
        for impl in impls:
            pattern = get_spec(impl).pattern
            values = (
                args.n_buckets
                if pattern == "hash"
                else args.drop_rates
                if pattern == "qk"
                else [None]
            )
            for value in values:
                point = point_for(impl, t, value or 0, value or 0.0)
                entry = {
                    "impl": impl,
                    "seq_len": t,
                    "n_buckets": point.n_buckets,
                    "drop_rate": point.drop_rate,
                    "mode": args.mode,
                }
                try:
                    _, _, effective, forward = prepared(
                        impl, shape, point, grad=args.mode != "fwd", buckets=args.buckets
                    )
                    if args.mode == "fwd":

                        def step(forward=forward):
                            with torch.no_grad():
                                forward()
                    else:
                        step = fwd_bwd_step(forward, effective)
                    started = time.perf_counter()
                    with TelemetrySampler.for_current_device() as sampler:
                        ms = bench(step, effective.leaves if args.mode != "fwd" else None)
                    entry.update(
                        ms=ms,
                        wall_s=round(time.perf_counter() - started, 1),
                        telemetry=asdict(sampler.summary()),
                    )
                except ImplUnavailable as exc:
                    entry.update(unavailable=str(exc))
                except torch.OutOfMemoryError as exc:
                    entry.update(oom=str(exc)[:200])
                except Exception as exc:
                    entry.update(error=f"{type(exc).__name__}: {exc}"[:600])
                tel = entry.get("telemetry") or {}
                log(
                    f"{impl:20s} T={t:6d} nb={point.n_buckets} p={point.drop_rate} "
                    f"ms={entry.get('ms', '-')!s:>10.8} sm_med={tel.get('sm_mhz_median')} "
                    f"throttled={tel.get('throttled')} reasons={tel.get('reasons')} "
                    f"{entry.get('unavailable') or entry.get('error') or entry.get('oom') or ''}"
                )
                results["timings"].append(entry)
                torch.cuda.empty_cache()


def reformer_error(args, results) -> None:
    log("\n== 4. Reformer against exact hash-sparse attention ==")
    shape = Shape(batch=2, heads=8, head_dim=64, dtype="bf16")
    for impl in ("reformer_lsh", "reformer_lsh_r4"):
        for t in (4096, 16384):
            for nb in (2, 8, 32):
                for buckets in ("random", "lsh"):
                    point = Point(t, n_buckets=nb)
                    try:
                        _, inputs, _, forward = prepared(
                            impl, shape, point, grad=False, buckets=buckets
                        )
                        exact = check_against_reference(
                            forward,
                            inputs,
                            dtype="bf16",
                            rows=sample_rows(t, 256, seed=0),
                            with_grads=False,
                            seed=0,
                        )
                        entry = {
                            "impl": impl,
                            "seq_len": t,
                            "n_buckets": nb,
                            "buckets": buckets,
                            "rel_err_vs_exact": exact.rel_err,
                        }
                    except Exception as exc:
                        entry = {
                            "impl": impl,
                            "seq_len": t,
                            "n_buckets": nb,
                            "error": str(exc)[:300],
                        }
                    log(json.dumps(entry))
                    results["reformer"].append(entry)


def profiles(args, results, out: Path) -> None:
    log("\n== 5. stage tables ==")
    shape = Shape(batch=args.batch, heads=args.heads, head_dim=args.head_dim, dtype="bf16")
    t = args.seq_len[-1]
    for impl in (
        "scfa_hash",
        "scfa_qk",
        "flex_hash",
        "flex_hash_ranges",
        "sorted_varlen",
        "sdpa_cudnn",
    ):
        point = point_for(impl, t, 8, 0.5)
        try:
            _, _, effective, forward = prepared(impl, shape, point, grad=True, buckets=args.buckets)
            step = fwd_bwd_step(forward, effective)
            ms = bench(step, effective.leaves)
            profiled = profile_call(forward, effective, "fwd+bwd", calls=5)
            table = profile_stages(profiled.events)
            text = markdown(table, title=f"{impl} {point.label()} fwd+bwd", measured_ms=ms)
            trace = out / f"trace-{impl}.json"
            profiled.profiler.export_chrome_trace(str(trace))
            log(text)
            results["profiles"].append(
                {
                    "impl": impl,
                    "ms": ms,
                    "markdown": text,
                    "trace": trace.name,
                    "stages": [asdict(s) for s in table.stages],
                    "idle": asdict(table.idle),
                }
            )
        except Exception as exc:
            log(f"{impl}: {type(exc).__name__}: {exc}")
            results["profiles"].append(
                {
                    "impl": impl,
                    "error": f"{type(exc).__name__}: {exc}"[:600],
                    "trace_tail": traceback.format_exc()[-1500:],
                }
            )
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seq-len", type=int, nargs="+", default=[16384])
    parser.add_argument("--n-buckets", type=int, nargs="+", default=[8])
    parser.add_argument("--drop-rates", type=float, nargs="+", default=[0.5])
    parser.add_argument("--buckets", default="random", choices=["random", "lsh"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--heads", type=int, default=48)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--mode", default="fwd+bwd", choices=["fwd", "fwd+bwd"])
    parser.add_argument("--impls", nargs="*", help="time only these")
    parser.add_argument("--skip-check", action="store_true")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--skip-reformer", action="store_true")
    parser.add_argument("--skip-profile", action="store_true")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("needs a CUDA device", file=sys.stderr)
        return 2
    out = Path(os.environ.get("OUT") or "gpu_profile_check")
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list] = {"checks": [], "timings": [], "reformer": [], "profiles": []}

    log("== 1. environment ==")
    env = {
        "torch": torch.__version__,
        "triton": triton.__version__,
        "device": torch.cuda.get_device_name(),
        "capability": torch.cuda.get_device_capability(),
    }
    specs = all_specs()
    env["available"] = {
        name: specs[name].create().available("cuda") for name in NEW_HASH + NEW_QK + NEW_DENSE
    }
    try:
        import inspect

        from torch.nn.attention.varlen import varlen_attn

        env["varlen_attn"] = str(inspect.signature(varlen_attn))
    except Exception as exc:
        env["varlen_attn"] = f"missing: {exc}"
    log(json.dumps(env, indent=1, default=str))
    results["env"] = env

    sections = [
        (args.skip_check, check_all),
        (args.skip_timing, time_all),
        (args.skip_reformer, reformer_error),
    ]
    for skip, section in sections:
        if not skip:
            section(args, results)
    if not args.skip_profile:
        profiles(args, results, out)
    (out / "gpu_profile_check.json").write_text(json.dumps(results, indent=1, default=str))
    log(f"\nwritten: {out}/gpu_profile_check.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
