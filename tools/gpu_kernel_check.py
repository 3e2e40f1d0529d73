"""One GPU check of the kernels: tests, accuracy, no host sync, CUDA graphs, and timings.

Run on a CUDA machine from the repository root::

    python tools/gpu_kernel_check.py            # everything (a few minutes on an H100)
    python tools/gpu_kernel_check.py --skip-tests

1. the kernel tests (``tests/kernels``; on a GPU every case runs on CUDA, bfloat16 and the
   GPU-only sync / CUDA-graph tests included);
2. bfloat16 and float16 forward + backward against the float32 reference
   (`scfa_kernels.verify`), up to B=1, H=12, T=16384, D=64;
3. no host synchronisation (``torch.cuda.set_sync_debug_mode("error")``) over a forward +
   backward of both kernels with ``n_buckets`` given, and a CUDA-graph capture of that step
   replayed on new data, equal to eager;
4. hash (nb=8, ``n_buckets`` given) and QK (p=0.5) forward + backward against cuDNN SDPA at
   (B=1, H=12) and (B=4, H=48), T=16384, D=64, bfloat16 (``triton.testing.do_bench``
   medians), with the plan's share (sort + the three tile-range launches).

Prints a table per part and writes everything as JSON to ``$OUT/gpu_kernel_check.json``
when OUT is set (else to --json). Exit code 0 iff parts 1-3 pass.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import traceback
from collections.abc import Callable

import torch


def run_tests() -> dict:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/kernels"]
    done = subprocess.run(command, capture_output=True, text=True)
    tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
    print("\n".join(tail))
    return {"command": " ".join(command[1:]), "returncode": done.returncode, "tail": tail}


def check_accuracy() -> dict:
    from scfa_kernels import verify

    cases = verify.build_cases(["hash-8", "lsh-8", "qk-0.5"], ["bf16", "fp16"], [64], [4096], 2048)
    cases += [
        verify.Case(pattern, sparsity, dtype, 64, 16384, 1, 12)
        for pattern, sparsity in (("hash", 8), ("qk", 0.5))
        for dtype in ("bf16", "fp16")
    ]
    cases += [verify.Case("hash", 8, "bf16", 128, 4096, 1, 8)]
    torch.backends.cuda.matmul.allow_tf32 = False
    results = [
        verify.run_case_safely(case, "cuda", sample_rows=256, full_max_t=2048, seed=i)
        for i, case in enumerate(cases)
    ]
    verify.print_report(results, verify.environment("cuda"), 0.0)
    return {
        "passed": all(r.passed for r in results),
        "cases": [
            {
                "case": vars(r.case),
                "err_out": r.err_out,
                "err_dq": r.err_dq,
                "err_dk": r.err_dk,
                "err_dv": r.err_dv,
                "tolerance": vars(r.tolerance),
                "problems": list(r.problems),
                "passed": r.passed,
            }
            for r in results
        ],
    }


def _inputs(B: int, T: int, H: int, D: int, seed: int = 0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    shape = (B, T, H, D)
    q, k, v, do = (
        torch.randn(shape, generator=gen, device="cuda", dtype=torch.bfloat16) for _ in range(4)
    )
    q_hash, k_hash = (
        torch.randint(0, 8, (B, T, H), generator=gen, device="cuda") for _ in range(2)
    )
    keep_q, keep_k = (torch.rand((B, T, H), generator=gen, device="cuda") >= 0.5 for _ in range(2))
    return q, k, v, do, q_hash, k_hash, keep_q, keep_k


def _leaves(*tensors):
    return [t.detach().clone().requires_grad_() for t in tensors]


def check_no_sync_and_graphs() -> dict:
    from scfa_kernels import hash_sparse_attention, qk_sparse_attention

    report: dict = {}
    q0, k0, v0, do, q_hash, k_hash, keep_q, keep_k = _inputs(1, 16384, 12, 64)
    q, k, v = _leaves(q0, k0, v0)

    def step():
        out = hash_sparse_attention(q, k, v, q_hash, k_hash, n_buckets=8)
        out = out + qk_sparse_attention(q, k, v, keep_q, keep_k)
        out.backward(do)
        return out

    step()
    torch.cuda.synchronize()
    try:
        torch.cuda.set_sync_debug_mode("error")
        step()
        report["no_sync"] = "passed"
    except Exception as exc:  # reported, the check goes on
        report["no_sync"] = f"FAILED: {type(exc).__name__}: {exc}"
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()

    try:
        for x in (q, k, v):
            x.grad = None
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                for x in (q, k, v):
                    x.grad = None
                step()
        torch.cuda.current_stream().wait_stream(side)
        for x in (q, k, v):
            x.grad = None
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = step()
        fresh = _inputs(1, 16384, 12, 64, seed=1)
        with torch.no_grad():
            for x, new in zip((q, k, v), fresh[:3], strict=True):
                x.copy_(new)
            q_hash.copy_(fresh[4])
            keep_q.copy_(fresh[6])
        graph.replay()
        torch.cuda.synchronize()
        eager = _leaves(*fresh[:3])
        want = hash_sparse_attention(*eager, q_hash, k_hash, n_buckets=8)
        want = want + qk_sparse_attention(*eager, keep_q, keep_k)
        want.backward(do)
        same = torch.equal(static_out, want) and all(
            torch.equal(a.grad, b.grad) for a, b in zip((q, k, v), eager, strict=True)
        )
        report["cuda_graph"] = "passed" if same else "FAILED: replay differs from eager"
    except Exception as exc:
        report["cuda_graph"] = f"FAILED: {type(exc).__name__}: {exc}"
    print(f"no host sync (fwd+bwd, n_buckets given): {report['no_sync']}")
    print(f"CUDA graph capture + replay == eager:    {report['cuda_graph']}")
    return report


def _ms(fn: Callable[[], object], grads: list[torch.Tensor] | None = None) -> float:
    import triton

    return float(triton.testing.do_bench(fn, grad_to_none=grads, return_mode="median"))


def time_against_cudnn(B: int, H: int, T: int = 16384, D: int = 64) -> dict:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from scfa_kernels import config, hash_sparse_attention, plan, qk_sparse_attention

    q0, k0, v0, do, q_hash, k_hash, keep_q, keep_k = _inputs(B, T, H, D)
    q, k, v = _leaves(q0, k0, v0)
    grads = [q, k, v]

    def hash_fwd_bwd(**kwargs):
        return lambda: hash_sparse_attention(q, k, v, q_hash, k_hash, **kwargs).backward(do)

    def qk_fwd_bwd():
        qk_sparse_attention(q, k, v, keep_q, keep_k).backward(do)

    def sdpa_fwd_bwd():
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            out = torch.nn.functional.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
            )
        out.transpose(1, 2).backward(do)

    row = {"B": B, "H": H, "T": T, "D": D, "dtype": "bf16"}
    row["cudnn_fwd_bwd_ms"] = _ms(sdpa_fwd_bwd, grads)
    row["hash8_fwd_bwd_ms"] = _ms(hash_fwd_bwd(n_buckets=8), grads)
    row["hash8_fwd_bwd_ms_without_n_buckets"] = _ms(hash_fwd_bwd(), grads)
    row["qk05_fwd_bwd_ms"] = _ms(qk_fwd_bwd, grads)
    with torch.no_grad():
        row["hash8_fwd_ms"] = _ms(
            lambda: hash_sparse_attention(q, k, v, q_hash, k_hash, n_buckets=8)
        )
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            row["cudnn_fwd_ms"] = _ms(
                lambda: torch.nn.functional.scaled_dot_product_attention(
                    q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
                )
            )

    # The plan: one sort per forward, tile ranges for the forward, dK/dV and dQ.
    cfg = config.select(q.device, q.dtype, D, T / 8)
    the_plan = plan.hash_plan(q_hash, k_hash, 8)
    row["plan_sort_ms"] = _ms(lambda: plan.hash_plan(q_hash, k_hash, 8))
    row["plan_ranges_ms"] = sum(
        _ms(fn)
        for fn in (
            lambda: plan.query_tile_ranges(the_plan, cfg.fwd.block_m, cfg.fwd.block_n),
            lambda: plan.key_tile_ranges(the_plan, cfg.dkdv.block_m, cfg.dkdv.block_n),
            lambda: plan.query_tile_ranges(the_plan, cfg.dq.block_m, cfg.dq.block_n),
        )
    )
    plan_ms = row["plan_sort_ms"] + row["plan_ranges_ms"]
    row["plan_share_of_hash8_fwd_bwd"] = plan_ms / row["hash8_fwd_bwd_ms"]
    row["hash8_speedup_over_cudnn"] = row["cudnn_fwd_bwd_ms"] / row["hash8_fwd_bwd_ms"]
    row["qk05_speedup_over_cudnn"] = row["cudnn_fwd_bwd_ms"] / row["qk05_fwd_bwd_ms"]
    return row


# Column widths and decimals of the timing table's numeric cells.
_WIDTHS = (8, 8, 6, 8, 8, 6, 7, 7)
_DIGITS = (3, 3, 2, 3, 3, 2, 3, 3)


def print_timings(rows: list[dict]) -> None:
    print(f"\nfwd+bwd medians, ms (T=16384, D=64, bf16) on {torch.cuda.get_device_name()}")
    header = (
        f"{'B x H':>7} {'cuDNN':>8} {'hash8':>8} {'x':>6} {'hash8*':>8} {'qk0.5':>8} {'x':>6}"
        f" {'sort':>7} {'ranges':>7} {'plan %':>7}"
    )
    print(header)
    for r in rows:
        times = (r["cudnn_fwd_bwd_ms"], r["hash8_fwd_bwd_ms"], r["hash8_speedup_over_cudnn"])
        times += (r["hash8_fwd_bwd_ms_without_n_buckets"], r["qk05_fwd_bwd_ms"])
        times += (r["qk05_speedup_over_cudnn"], r["plan_sort_ms"], r["plan_ranges_ms"])
        cells = " ".join(f"{t:>{w}.{p}f}" for t, w, p in zip(times, _WIDTHS, _DIGITS, strict=True))
        print(f"{r['B']:>3} x {r['H']:<3}{cells} {100 * r['plan_share_of_hash8_fwd_bwd']:>6.1f}%")
    print("hash8* = without n_buckets (one synchronising read of the ids per call)")
    if len(rows) == 2:
        small, large = rows
        ratio = small["hash8_speedup_over_cudnn"] / large["hash8_speedup_over_cudnn"]
        print(f"speedup at {small['B']}x{small['H']} / at {large['B']}x{large['H']}: {ratio:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--json", default=None, help="JSON path (default: $OUT/...)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: no CUDA device; this script checks the kernels on a GPU", file=sys.stderr)
        return 2
    report: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    import triton

    report["triton"] = triton.__version__
    ok = True
    parts: list[tuple[str, Callable[[], dict]]] = []
    if not args.skip_tests:
        parts.append(("tests", run_tests))
    parts += [("accuracy", check_accuracy), ("no_sync_and_graphs", check_no_sync_and_graphs)]
    for name, part in parts:
        print(f"\n=== {name}")
        try:
            report[name] = part()
        except Exception:
            report[name] = {"error": traceback.format_exc()}
            print(report[name]["error"])
    ok = (
        (args.skip_tests or report.get("tests", {}).get("returncode") == 0)
        and report["accuracy"].get("passed") is True
        and report["no_sync_and_graphs"].get("no_sync") == "passed"
        and report["no_sync_and_graphs"].get("cuda_graph") == "passed"
    )
    if not args.skip_timing:
        print("\n=== timing")
        rows = [time_against_cudnn(1, 12), time_against_cudnn(4, 48)]
        print_timings(rows)
        report["timing"] = rows
    path = args.json or (
        os.path.join(os.environ["OUT"], "gpu_kernel_check.json") if os.environ.get("OUT") else None
    )
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2, default=str)
        print(f"\nwrote {path}")
    print(f"\n{'PASS' if ok else 'FAIL'}: tests, accuracy, no host sync, CUDA graph")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
