"""The Gluon Hopper kernels on a GPU: correctness, parity with the portable kernels, timing.

    python tools/gpu_hopper_check.py --out FILE.json [--skip-timing]

For an H100 (torch 2.11, Triton 3.6), in about two minutes:
(a) the Gluon forward (`scfa_kernels._gluon_fwd.forward`) against the float32 masked
    reference on random inputs: T not a multiple of the tile, T=1, D 64 and 128, bf16 and
    fp16; dense (one bucket: the TMA path), ids out of range and four buckets (the gathered
    path, run by calling the kernel directly); into NaN-poisoned buffers, so an unwritten
    element shows;
(b) agreement with the portable forward (`_launch.forward`, and the public API under
    SCFA_FORCE_PORTABLE=1) on the same plan: output, LSE, and the backward's gradients from
    each forward's LSE;
(c) do_bench medians, dense causal bf16 (B=4, H=48, T=16384, D=64; B=4, H=24, D=128): cuDNN
    SDPA forward, the public `hash_sparse_attention` (one bucket, all ids 0, as the
    dense_parity suite) forced portable and on the Gluon path, and both forward kernels
    alone on a precomputed plan; a table with ratios to cuDNN comes last;
(d) the Gluon backward (`scfa_kernels._gluon_bwd.backward`) against the float32 reference's
    gradients and the portable backward, on plans of one bucket: dense, ids out of range,
    QK-sparse with dropped rows, T=1; and in (c), fwd+bwd of the public call (portable, and
    Gluon both ways) and both backwards alone, against cuDNN's fwd+bwd;
(e) last (a deadlock there would hang only the end of the run): the warp-specialised
    forward (`warp_specialize=True`: one loader warp) checked as in (a) and timed as in (c).
Every part runs in its own try block: a failure is printed in full (compile errors too) and
recorded, and the rest goes on. Everything goes to the JSON file given by --out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from scfa_kernels import _gluon_bwd, _gluon_fwd, _launch, hash_sparse_attention, reference
from scfa_kernels import config as kcfg
from scfa_kernels.hopper import use_hopper
from scfa_kernels.plan import hash_plan, qk_plan

# (case, B, T, H, D, dtype): dense = one bucket, ids 0 (TMA path); oob = one bucket with
# some ids out of range (mixed programs); hash4 = four buckets (gathered path).
CORRECTNESS = [
    ("dense", 2, 1000, 3, 64, torch.bfloat16),
    ("dense", 1, 1, 2, 64, torch.float16),
    ("dense", 1, 130, 2, 128, torch.bfloat16),
    ("dense", 2, 384, 2, 128, torch.float16),
    ("dense", 1, 4096, 2, 64, torch.bfloat16),
    ("oob", 1, 300, 2, 64, torch.bfloat16),
    ("hash4", 1, 257, 4, 64, torch.float16),
    ("hash4", 1, 200, 2, 128, torch.bfloat16),
]
# (case, B, T, H, D, dtype) of the backward: plans of one bucket; qk = QK-sparse, 40% dropped.
BWD_CORRECTNESS = [
    ("dense", 2, 1000, 3, 64, torch.bfloat16),
    ("dense", 1, 1, 2, 64, torch.float16),
    ("dense", 1, 130, 2, 128, torch.float16),
    ("oob", 1, 300, 2, 64, torch.bfloat16),
    ("qk", 1, 513, 2, 128, torch.bfloat16),
    ("qk", 2, 4096, 2, 64, torch.float16),
]
# Gradient bound, relative to the largest reference gradient element.
GRAD_REL = {torch.bfloat16: 3e-2, torch.float16: 5e-3}
TIMING = [(4, 48, 16384, 64), (4, 24, 16384, 128)]
# Output tolerance against the float32 reference (values are O(1) averages of V rows).
ATOL = {torch.bfloat16: 3e-2, torch.float16: 5e-3}


@contextlib.contextmanager
def force_portable(on: bool) -> Iterator[None]:
    previous = os.environ.get("SCFA_FORCE_PORTABLE")
    os.environ["SCFA_FORCE_PORTABLE"] = "1" if on else "0"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("SCFA_FORCE_PORTABLE", None)
        else:
            os.environ["SCFA_FORCE_PORTABLE"] = previous


OUT: Path | None = None
STARTED = time.perf_counter()
VARIANT_BUDGET_S = 100.0  # the tile variants are timed only if the run is this young


def run_part(record: dict, name: str, fn: Callable[[], object]) -> object:
    """Run one part; on failure print the whole error and record it. The JSON is rewritten
    after every part, so a hang (a kernel waiting forever) still leaves what came before."""
    started = time.perf_counter()
    print(f"[{name}] ...", flush=True)
    try:
        result = fn()
        torch.cuda.synchronize()
        record.setdefault("parts", {})[name] = {"ok": True, "s": time.perf_counter() - started}
    except Exception as exc:  # one part's failure must not stop the others
        text = "".join(traceback.format_exception(exc))
        print(f"[{name}] FAILED:\n{text}", flush=True)
        record.setdefault("parts", {})[name] = {"ok": False, "error": text}
        result = None
    if OUT is not None:
        OUT.write_text(json.dumps(record, indent=2, default=str))
    return result


def make_inputs(case: str, B: int, T: int, H: int, D: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q, k, v = (torch.randn(B, T, H, D, device="cuda", dtype=dtype, generator=g) for _ in "qkv")
    if case == "hash4":
        n_buckets = 4
        q_hash = torch.randint(0, 4, (B, T, H), device="cuda", generator=g)
        k_hash = torch.randint(0, 4, (B, T, H), device="cuda", generator=g)
    else:
        n_buckets = 1
        q_hash = torch.zeros(B, T, H, dtype=torch.int64, device="cuda")
        k_hash = torch.zeros(B, T, H, dtype=torch.int64, device="cuda")
        if case == "oob":  # some rows match nothing: their queries output 0
            q_hash[:, T // 3 : T // 3 + 7] = -1
            k_hash[:, T // 2 : T // 2 + 5] = 5
    return q, k, v, q_hash, k_hash, n_buckets


def check_case(
    case: str, B: int, T: int, H: int, D: int, dtype: torch.dtype, ws: bool = False
) -> dict:
    q, k, v, q_hash, k_hash, n_buckets = make_inputs(case, B, T, H, D, dtype)
    scale = 1.0 / math.sqrt(D)
    plan = hash_plan(q_hash, k_hash, n_buckets)
    out = torch.full((B, T, H, D), float("nan"), dtype=dtype, device="cuda")
    lse = torch.full((B * H, T), float("nan"), dtype=torch.float32, device="cuda")
    out, lse = _gluon_fwd.forward(q, k, v, plan, scale, out=out, lse=lse, warp_specialize=ws)
    torch.cuda.synchronize()
    ref = reference.hash_sparse_attention(
        q.float(), k.float(), v.float(), q_hash, k_hash, scale, n_buckets=n_buckets
    )
    cfg = kcfg.select(q.device, dtype, D, T / n_buckets)
    p_out, p_lse = _launch.forward(q, k, v, plan, scale, cfg)
    finite = torch.isfinite(p_lse)
    row = {
        "case": case,
        "warp_specialize": ws,
        "shape": [B, T, H, D],
        "dtype": str(dtype).removeprefix("torch."),
        "nan_out": int(out.isnan().sum()),
        "nan_lse": int(lse.isnan().sum()),
        "max_err_vs_reference": float((out.float() - ref).abs().max()),
        "max_diff_vs_portable": float((out.float() - p_out.float()).abs().max()),
        "lse_inf_pattern_equal": bool(torch.equal(torch.isfinite(lse), finite)),
        "max_lse_diff_vs_portable": float((lse - p_lse)[finite].abs().max())
        if finite.any()
        else 0.0,
    }
    row["ok"] = (
        row["nan_out"] == 0
        and row["nan_lse"] == 0
        and row["max_err_vs_reference"] <= ATOL[dtype]
        and row["max_diff_vs_portable"] <= ATOL[dtype]
        and row["lse_inf_pattern_equal"]
        and row["max_lse_diff_vs_portable"] <= 1e-2
    )
    print(f"[correctness] {row}", flush=True)
    return row


def check_backward_case(case: str, B: int, T: int, H: int, D: int, dtype: torch.dtype) -> dict:
    """Gluon backward vs the float32 reference's gradients and the portable backward, from
    the portable forward's output and LSE."""
    q, k, v, q_hash, k_hash, _ = make_inputs("oob" if case == "oob" else "dense", B, T, H, D, dtype)
    scale = 1.0 / math.sqrt(D)
    g = torch.Generator(device="cuda").manual_seed(5)
    do = torch.randn(B, T, H, D, device="cuda", dtype=dtype, generator=g)
    f32 = [t.float() for t in (q, k, v)]
    if case == "qk":
        q_keep, k_keep = (torch.rand(B, T, H, device="cuda", generator=g) >= 0.4 for _ in "qk")
        plan = qk_plan(q_keep, k_keep)
        want = reference.qk_sparse_attention_grads(*f32, q_keep, k_keep, do.float(), scale)
    else:
        plan = hash_plan(q_hash, k_hash, 1)
        want = reference.hash_sparse_attention_grads(
            *f32, q_hash, k_hash, do.float(), scale, n_buckets=1
        )
    cfg = kcfg.select(q.device, dtype, D, float(T))
    out, lse = _launch.forward(q, k, v, plan, scale, cfg)
    got = _gluon_bwd.backward(do, q, k, v, out, lse, plan, scale, 1)
    portable = _launch.backward(do, q, k, v, out, lse, plan, scale, cfg)
    torch.cuda.synchronize()
    row = {"case": case, "shape": [B, T, H, D], "dtype": str(dtype).removeprefix("torch.")}
    for name, a, ref, port in zip(("dq", "dk", "dv"), got, want, portable, strict=True):
        size = float(ref.abs().max()) or 1.0
        row[f"{name}_nan"] = int(a.isnan().sum())
        row[f"{name}_rel_err_vs_reference"] = float((a.float() - ref).abs().max()) / size
        row[f"{name}_rel_diff_vs_portable"] = float((a.float() - port.float()).abs().max()) / size
    bound = GRAD_REL[dtype]
    row["ok"] = all(
        row[f"{n}_nan"] == 0
        and row[f"{n}_rel_err_vs_reference"] <= bound
        and row[f"{n}_rel_diff_vs_portable"] <= bound
        for n in ("dq", "dk", "dv")
    )
    print(f"[backward] {row}", flush=True)
    return row


def check_public_api(B: int, T: int, H: int, D: int, dtype: torch.dtype) -> dict:
    """The public call routes dense forwards to Gluon (and not under SCFA_FORCE_PORTABLE),
    and the backward from the Gluon forward's LSE matches the portable one's."""
    q, k, v, q_hash, k_hash, _ = make_inputs("dense", B, T, H, D, dtype, seed=1)
    grads = {}
    outs = {}
    for label, portable in (("gluon", False), ("portable", True)):
        leaves = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]
        with force_portable(portable):
            routed = use_hopper(leaves[0], dense=True)
            o = hash_sparse_attention(*leaves, q_hash, k_hash, n_buckets=1)
        g = torch.Generator(device="cuda").manual_seed(2)
        do = torch.randn(o.shape, dtype=o.dtype, device=o.device, generator=g)
        o.backward(do)
        outs[label] = (o.detach().float(), routed)
        grads[label] = [t.grad.float() for t in leaves]
    row = {
        "shape": [B, T, H, D],
        "dtype": str(dtype).removeprefix("torch."),
        "gluon_routed": outs["gluon"][1],
        "portable_routed_to_gluon": outs["portable"][1],
        "max_out_diff": float((outs["gluon"][0] - outs["portable"][0]).abs().max()),
        "max_grad_diff": [
            float((a - b).abs().max())
            for a, b in zip(grads["gluon"], grads["portable"], strict=True)
        ],
    }
    tol = ATOL[dtype]
    row["ok"] = (
        row["gluon_routed"]
        and not row["portable_routed_to_gluon"]
        and row["max_out_diff"] <= tol
        and all(d <= 4 * tol for d in row["max_grad_diff"])
    )
    print(f"[public api] {row}", flush=True)
    return row


def bench(fn: Callable[[], object], grad: bool = False) -> float:
    from triton.testing import do_bench

    with torch.set_grad_enabled(grad):
        return float(do_bench(fn, warmup=25, rep=100, return_mode="median"))


def time_point(B: int, H: int, T: int, D: int, record: dict) -> dict:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    dtype = torch.bfloat16
    q, k, v, q_hash, k_hash, _ = make_inputs("dense", B, T, H, D, dtype, seed=3)
    scale = 1.0 / math.sqrt(D)
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
    plan = hash_plan(q_hash, k_hash, 1)
    cfg = kcfg.select(q.device, dtype, D, float(T))
    flops = 4.0 * B * H * T * T * D / 2  # causal: half of the T x T products, 2 matmuls

    def cudnn():
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            return sdpa(qt, kt, vt, is_causal=True)

    def api():
        return hash_sparse_attention(q, k, v, q_hash, k_hash, n_buckets=1)

    leaves = [x.detach().clone().requires_grad_(True) for x in (q, k, v)]
    do = torch.randn_like(q)

    def fwd_bwd(call: Callable[[], torch.Tensor]) -> Callable[[], object]:
        return lambda: torch.autograd.grad(call(), leaves, do)

    def cudnn_graph() -> torch.Tensor:
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            lq, lk, lv = (x.transpose(1, 2) for x in leaves)
            return sdpa(lq, lk, lv, is_causal=True).transpose(1, 2)

    def api_graph() -> torch.Tensor:
        return hash_sparse_attention(*leaves, q_hash, k_hash, n_buckets=1)

    o_ref, lse_ref = _launch.forward(q, k, v, plan, scale, cfg)
    variants = {
        "cudnn": cudnn,
        "portable_api": api,
        "gluon_api": api,
        "portable_kernel": lambda: _launch.forward(q, k, v, plan, scale, cfg),
        "gluon_kernel": lambda: _gluon_fwd.forward(q, k, v, plan, scale),
        "cudnn_fwd_bwd": fwd_bwd(cudnn_graph),
        "portable_api_fwd_bwd": fwd_bwd(api_graph),
        "gluon_api_fwd_bwd": fwd_bwd(api_graph),
        "portable_bwd_kernels": lambda: _launch.backward(
            do, q, k, v, o_ref, lse_ref, plan, scale, cfg
        ),
        "gluon_bwd_kernels": lambda: _gluon_bwd.backward(
            do, q, k, v, o_ref, lse_ref, plan, scale, 1
        ),
    }
    if D == 64 and time.perf_counter() - STARTED < VARIANT_BUDGET_S:
        # Other tiles of the Gluon kernel, for tuning (timed only, checked on the way:
        # their output is compared with the default tiles' below).
        for label, tiles in (
            ("gluon_kernel_n64", (128, 64, 8, 3)),
            ("gluon_kernel_n64_s4", (128, 64, 8, 4)),
        ):
            variants[label] = lambda t=tiles: _gluon_fwd.forward(q, k, v, plan, scale, tiles=t)
    point = {"shape": {"B": B, "H": H, "T": T, "D": D}, "ms": {}, "tflops": {}}
    for label in [n for n in variants if n.startswith("gluon_kernel_")]:
        ok = run_part(
            record,
            f"agree B={B} H={H} T={T} D={D} {label}",
            lambda n=label: float(
                (variants[n]()[0].float() - variants["gluon_kernel"]()[0].float()).abs().max()
            ),
        )
        point.setdefault("variant_max_diff", {})[label] = ok
    for name, fn in variants.items():
        tag = f"time B={B} H={H} T={T} D={D} {name}"

        def measure(fn=fn, name=name):
            with force_portable(name.startswith("portable")):
                return bench(fn, grad=name.endswith("fwd_bwd"))

        ms = run_part(record, tag, measure)
        if ms is not None:
            point["ms"][name] = ms
            # FlashAttention's count: the backward does 2.5x the forward's products.
            factor = 3.5 if name.endswith("fwd_bwd") else 2.5 if "bwd" in name else 1.0
            point["tflops"][name] = factor * flops / (ms * 1e-3) / 1e12
            print(f"[timing] {tag}: {ms:.3f} ms, {point['tflops'][name]:.0f} TFLOP/s", flush=True)
    return point


def time_ws(point: dict) -> float:
    """The warp-specialised forward kernel on `point`'s inputs, added to its timings."""
    s = point["shape"]
    B, H, T, D = s["B"], s["H"], s["T"], s["D"]
    q, k, v, q_hash, k_hash, _ = make_inputs("dense", B, T, H, D, torch.bfloat16, seed=3)
    plan = hash_plan(q_hash, k_hash, 1)
    scale = 1.0 / math.sqrt(D)
    ms = bench(lambda: _gluon_fwd.forward(q, k, v, plan, scale, warp_specialize=True))
    point["ms"]["gluon_ws_kernel"] = ms
    point["tflops"]["gluon_ws_kernel"] = 4.0 * B * H * T * T * D / 2 / (ms * 1e-3) / 1e12
    print(f"[timing] ws B={B} H={H} T={T} D={D}: {ms:.3f} ms", flush=True)
    return ms


def table(points: list[dict]) -> str:
    names = ["cudnn", "portable_api", "gluon_api", "portable_kernel", "gluon_kernel"]
    names += sorted({n for p in points for n in p["ms"] if n not in names})
    lines = ["| B x H, T, D | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for p in points:
        s, ms = p["shape"], p["ms"]
        base = ms.get("cudnn")
        cells = []
        for n in names:
            if n not in ms:
                cells.append("failed")
            elif base:
                cells.append(f"{ms[n]:.2f} ms ({base / ms[n]:.2f} of cuDNN speed)")
            else:
                cells.append(f"{ms[n]:.2f} ms")
        lines.append(f"| {s['B']}x{s['H']}, {s['T']}, {s['D']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("SCFA_HOPPER", "1")  # the Gluon kernels are opt-in; this checks them
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument(
        "--skip-ws", action="store_true", help="leave out the warp-specialised forward"
    )
    parser.add_argument("--budget-s", type=float, default=150.0, help="skip the API checks after")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    global OUT
    OUT = args.out
    args.out.parent.mkdir(parents=True, exist_ok=True)
    import triton

    record: dict = {
        "torch": torch.__version__,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "gluon_import_error": _gluon_fwd.GLUON_IMPORT_ERROR,
    }
    if torch.cuda.is_available():
        record["device"] = torch.cuda.get_device_name()
        record["capability"] = list(torch.cuda.get_device_capability())
    print(json.dumps(record), flush=True)

    # The compile first, alone: its error (if any) printed in full.
    q, k, v, q_hash, k_hash, _ = make_inputs("dense", 1, 256, 1, 64, torch.bfloat16)
    run_part(
        record,
        "compile",
        lambda: _gluon_fwd.forward(q, k, v, hash_plan(q_hash, k_hash, 1), 0.125),
    )
    record["correctness"] = []
    for case in CORRECTNESS:
        row = run_part(
            record, f"correctness {case[0]} {case[1:5]} {case[5]}", lambda c=case: check_case(*c)
        )
        if row is not None:
            record["correctness"].append(row)
    record["backward"] = []
    for case in BWD_CORRECTNESS:
        row = run_part(
            record,
            f"backward {case[0]} {case[1:5]} {case[5]}",
            lambda c=case: check_backward_case(*c),
        )
        if row is not None:
            record["backward"].append(row)
    points: list[dict] = []
    record["timing"] = points  # filled in place: partial dumps show the points done
    if not args.skip_timing:
        for B, H, T, D in TIMING:
            point = run_part(
                record,
                f"timing {B}x{H} T={T} D={D}",
                lambda p=(B, H, T, D): time_point(*p, record),
            )
            if point is not None:
                points.append(point)
            torch.cuda.empty_cache()
    # Last, as it compiles the backward kernels too: skipped past the time budget.
    record["public_api"] = []
    for shape in ((2, 700, 3, 64, torch.bfloat16), (1, 513, 2, 128, torch.float16)):
        if time.perf_counter() - started > args.budget_s:
            print(f"[public api {shape}] skipped: past the {args.budget_s} s budget")
            record.setdefault("skipped", []).append(f"public api {shape}")
            continue
        row = run_part(record, f"public api {shape}", lambda s=shape: check_public_api(*s))
        if row is not None:
            record["public_api"].append(row)
    record["ws_correctness"] = []
    if not args.skip_ws:
        for case in CORRECTNESS:
            row = run_part(
                record,
                f"ws correctness {case[0]} {case[1:5]} {case[5]}",
                lambda c=case: check_case(*c, ws=True),
            )
            if row is not None:
                record["ws_correctness"].append(row)
        for point in [] if args.skip_timing else points:
            B, H, T, D = (point["shape"][axis] for axis in "BHTD")
            run_part(record, f"time ws B={B} H={H} T={T} D={D}", lambda p=point: time_ws(p))
    checks = record["correctness"] + record["backward"] + record["public_api"]
    checks += record["ws_correctness"]
    record["all_checks_ok"] = bool(checks) and all(r["ok"] for r in checks)
    failed_parts = [n for n, p in record.get("parts", {}).items() if not p["ok"]]
    record["failed_parts"] = failed_parts
    args.out.write_text(json.dumps(record, indent=2, default=str))
    print(f"\nchecks ok: {record['all_checks_ok']}; failed parts: {failed_parts or 'none'}")
    print(table(points))
    return 0 if record["all_checks_ok"] and not failed_parts else 1


if __name__ == "__main__":
    raise SystemExit(main())
