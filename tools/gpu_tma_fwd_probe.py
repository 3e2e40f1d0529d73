"""Hopper levers on the forward (docs/performance-notes.md): a developer tool.

    python tools/gpu_tma_fwd_probe.py --out FILE.jsonl [--seq-lens 16384 4096]

An experiment kept outside `kernels/`: the forward kernel rewritten to read q, k and v through
tensor descriptors (TMA loads on Hopper) from a bucket-sorted contiguous copy of each, which
a gather kernel writes first, and with Triton's warp specialisation on its key loops or not.
Triton generates warp specialisation for descriptor loads only: with the pointer (gather)
loads of our kernels, Triton 3.6 ignores `warp_specialize` on sm_90 and Triton 3.9 aborts.

Per point (B=4, H=48, D=64 bf16, and D=128 at H=24) it records, each a do_bench median:
* `ours`: today's forward (`_launch.forward`: tile ranges + kernel, today's configuration);
* `copy`: the gather of q, k and v into sorted rows (three launches);
* `tma`: tile ranges + the descriptor forward, per tile configuration and WS on/off;
* `limit_fwd`: the registry's `limit_hash` / `limit_qk` forward (cuDNN on the limit's work);
and checks each variant's output and LSE against today's forward on the same plan.
The plan, the sort and the backward are untouched: this measures the forward alone.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import triton
import triton.language as tl
from triton.testing import do_bench
from triton.tools.tensor_descriptor import TensorDescriptor

from scfa_bench.impls.base import AttentionInputs
from scfa_bench.impls.registry import get_spec
from scfa_bench.measure.inputs import make_inputs
from scfa_bench.suite.grid import Point
from scfa_bench.suite.schema import Shape
from scfa_kernels import _launch
from scfa_kernels import config as kcfg
from scfa_kernels._triton_common import (
    KEY_PAD_BUCKET,
    QUERY_PAD_BUCKET,
    query_tile_range,
    tile_loads,
)
from scfa_kernels._triton_fwd import LOG2E, _store_output
from scfa_kernels.config import ceil_div
from scfa_kernels.plan import hash_plan, qk_plan, query_tile_ranges


@triton.jit
def sorted_rows_copy_kernel(
    Src,
    perm,
    Dst,
    stride_b,
    stride_t,
    stride_h,
    H,
    T,
    n_tiles,
    ROWS: tl.constexpr,
    HEAD_DIM: tl.constexpr,
):
    """Dst[bh * T + slot, :] = Src[b, perm[bh, slot], h, :]: rows in the plan's sorted order."""
    pid = tl.program_id(0)
    bh = pid // n_tiles
    tile = pid % n_tiles
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    row_base = bh.to(tl.int64) * T
    slots = tile * ROWS + tl.arange(0, ROWS)
    ok = slots < T
    pos = tl.load(perm + row_base + slots, mask=ok, other=0).to(tl.int64)
    offs_d = tl.arange(0, HEAD_DIM)
    src = Src + b * stride_b + h * stride_h + pos[:, None] * stride_t + offs_d[None, :]
    rows = tl.load(src, mask=ok[:, None], other=0.0)
    dst = Dst + (row_base + slots)[:, None] * HEAD_DIM + offs_d[None, :]
    tl.store(dst, rows, mask=ok[:, None])


@triton.jit
def _attend_sorted_tile(
    acc,
    m_i,
    l_i,
    q,
    q_pos,
    q_bucket,
    k_desc,
    v_desc,
    k_perm_bh,
    k_bucket_bh,
    row0,
    slot0,
    T,
    qk_scale,
    MASKED: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    k = k_desc.load([row0 + slot0, 0])
    v = v_desc.load([row0 + slot0, 0])
    s = tl.dot(q, tl.trans(k)) * qk_scale
    if MASKED:
        slots = slot0 + tl.arange(0, BLOCK_N)
        in_range = slots < T
        k_pos = tl.load(k_perm_bh + slots, mask=in_range, other=0).to(tl.int64)
        k_bucket = tl.load(k_bucket_bh + slots, mask=in_range, other=KEY_PAD_BUCKET)
        allowed = (q_bucket[:, None] == k_bucket[None, :]) & (k_pos[None, :] <= q_pos[:, None])
        s = tl.where(allowed, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_shift = tl.where(m_new == float("-inf"), 0.0, m_new)
    else:
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_shift = m_new
    p = tl.math.exp2(s - m_shift[:, None])
    alpha = tl.math.exp2(m_i - m_shift)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None]
    acc = tl.dot(p.to(v.dtype), v, acc)
    return acc, m_new, l_i


@triton.jit
def sorted_rows_fwd_kernel(
    q_desc,
    k_desc,
    v_desc,
    Out,
    LSE,
    q_perm,
    q_bucket_sorted,
    k_perm,
    k_bucket_sorted,
    tile_start,
    tile_n_full,
    tile_end,
    stride_ob,
    stride_ot,
    stride_oh,
    stride_od,
    H,
    T,
    n_tiles,
    qk_scale,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    WS: tl.constexpr,
):
    """Today's forward (whole ranges, no pieces) on sorted copies read through descriptors."""
    _bh, tile, b, h, row_base, _piece, start, n_full, end = query_tile_range(
        tile_start, tile_n_full, tile_end, H, T, n_tiles, MAX_PIECES=1
    )
    slots = tile * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok, load_ok = tile_loads(slots, T, start, end)
    q_pos = tl.load(q_perm + row_base + slots, mask=row_ok, other=0).to(tl.int64)
    q_bucket = tl.load(q_bucket_sorted + row_base + slots, mask=load_ok, other=QUERY_PAD_BUCKET)
    row0 = row_base.to(tl.int32)
    k_perm_bh = k_perm + row_base
    k_bucket_bh = k_bucket_sorted + row_base
    q = q_desc.load([row0 + tile * BLOCK_M, 0])
    n_range = (tl.maximum(end - start, 0) + BLOCK_N - 1) // BLOCK_N
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    if WS:
        # One loop, the mask on every tile: the form Triton 3.6 warp-specialises.
        for j in tl.range(0, n_range, warp_specialize=True):
            acc, m_i, l_i = _attend_sorted_tile(
                acc,
                m_i,
                l_i,
                q,
                q_pos,
                q_bucket,
                k_desc,
                v_desc,
                k_perm_bh,
                k_bucket_bh,
                row0,
                start + j * BLOCK_N,
                T,
                qk_scale,
                MASKED=True,
                BLOCK_N=BLOCK_N,
            )
    else:
        for j in tl.range(0, tl.minimum(n_range, n_full)):
            acc, m_i, l_i = _attend_sorted_tile(
                acc,
                m_i,
                l_i,
                q,
                q_pos,
                q_bucket,
                k_desc,
                v_desc,
                k_perm_bh,
                k_bucket_bh,
                row0,
                start + j * BLOCK_N,
                T,
                qk_scale,
                MASKED=False,
                BLOCK_N=BLOCK_N,
            )
        for j in tl.range(tl.minimum(n_range, n_full), n_range):
            acc, m_i, l_i = _attend_sorted_tile(
                acc,
                m_i,
                l_i,
                q,
                q_pos,
                q_bucket,
                k_desc,
                v_desc,
                k_perm_bh,
                k_bucket_bh,
                row0,
                start + j * BLOCK_N,
                T,
                qk_scale,
                MASKED=True,
                BLOCK_N=BLOCK_N,
            )
    seen = l_i > 0.0
    out = acc / tl.where(seen, l_i, 1.0)[:, None]
    lse = tl.where(seen, m_i + tl.math.log2(tl.where(seen, l_i, 1.0)), float("inf"))
    o_strides = (stride_ob, stride_ot, stride_oh, stride_od)
    _store_output(Out, LSE, out, lse, b, h, q_pos, row_base, slots, row_ok, o_strides)


def sorted_copies(q, k, v, plan) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    B, T, H, D = q.shape
    rows = 64
    n_tiles = ceil_div(T, rows)
    copies = []
    for src, perm in ((q, plan.queries.perm), (k, plan.keys.perm), (v, plan.keys.perm)):
        dst = torch.empty((B * H * T, D), dtype=src.dtype, device=src.device)
        sorted_rows_copy_kernel[(B * H * n_tiles,)](
            src, perm, dst, src.stride(0), src.stride(1), src.stride(2), H, T, n_tiles,
            ROWS=rows, HEAD_DIM=D, num_warps=4,
        )  # fmt: skip
        copies.append(dst)
    return copies[0], copies[1], copies[2]


def sorted_rows_forward(q, copies, plan, sm_scale, tiles, ws):
    B, T, H, D = q.shape
    block_m, block_n, num_warps, num_stages = tiles
    n_tiles = ceil_div(T, block_m)
    ranges = query_tile_ranges(plan, block_m, block_n, None)
    qs, ks, vs = copies
    q_desc = TensorDescriptor.from_tensor(qs, [block_m, D])
    k_desc = TensorDescriptor.from_tensor(ks, [block_n, D])
    v_desc = TensorDescriptor.from_tensor(vs, [block_n, D])
    out = torch.empty_like(q)
    lse = torch.empty((B * H, T), dtype=torch.float32, device=q.device)
    sorted_rows_fwd_kernel[(B * H * n_tiles,)](
        q_desc, k_desc, v_desc, out, lse,
        plan.queries.perm, plan.queries.bucket, plan.keys.perm, plan.keys.bucket,
        ranges.start, ranges.n_full, ranges.end,
        *out.stride(), H, T, n_tiles, sm_scale * LOG2E,
        BLOCK_M=block_m, BLOCK_N=block_n, HEAD_DIM=D, WS=ws,
        num_warps=num_warps, num_stages=num_stages,
    )  # fmt: skip
    return out, lse


def _median(fn) -> float:
    return float(do_bench(fn, warmup=25, rep=100))


def _limit_fwd(inputs: AttentionInputs, kind: str) -> float:
    """The registry's limit (`limit_hash` / `limit_qk`), forward only, on this point."""
    limit = get_spec(f"limit_{kind}").create()
    with torch.no_grad():
        return _median(limit.prepare(limit.effective_inputs(inputs)))


def _point(kind, param, B, T, H, D, configs, log):
    point = Point(T, n_buckets=int(param)) if kind == "hash" else Point(T, drop_rate=param)
    inputs = make_inputs(Shape(B, H, D, "bf16"), point, seed=0, device="cuda")
    q, k, v = inputs.leaves
    if kind == "hash":
        plan = hash_plan(inputs.q_hash, inputs.k_hash, point.n_buckets)
        mean_rows = T / point.n_buckets
    else:
        plan = qk_plan(inputs.q_keep, inputs.k_keep)
        mean_rows = T
    sm_scale = 1.0 / math.sqrt(D)
    cfg = kcfg.select(q.device, q.dtype, D, mean_rows)
    ref_out, ref_lse = _launch.forward(q, k, v, plan, sm_scale, cfg)
    base = {"kind": kind, "param": param, "B": B, "T": T, "H": H, "D": D}
    ours = _median(lambda: _launch.forward(q, k, v, plan, sm_scale, cfg))
    copies = sorted_copies(q, k, v, plan)
    copy = _median(lambda: sorted_copies(q, k, v, plan))
    limit = _limit_fwd(inputs, kind)
    f = cfg.fwd
    log({**base, "what": "ours", "ms": ours, "tiles": [f.block_m, f.block_n, f.num_warps,
                                                          f.num_stages]})  # fmt: skip
    log({**base, "what": "copy", "ms": copy})
    log({**base, "what": "limit_fwd", "ms": limit})
    finite = torch.isfinite(ref_lse)
    for tiles, ws in configs:
        row = {**base, "what": "tma", "tiles": list(tiles), "ws": ws}
        try:
            out, lse = sorted_rows_forward(q, copies, plan, sm_scale, tiles, ws)
            torch.cuda.synchronize()
            row["out_max_abs_diff"] = float((out.float() - ref_out.float()).abs().max())
            row["lse_same_inf"] = bool(torch.equal(torch.isfinite(lse), finite))
            row["lse_max_abs_diff"] = float((lse[finite] - ref_lse[finite]).abs().max())
            row["ms"] = _median(
                lambda tiles=tiles, ws=ws: sorted_rows_forward(q, copies, plan, sm_scale, tiles, ws)
            )
            row["ours_over_tma"] = ours / row["ms"]
            row["ours_over_copy_plus_tma"] = ours / (row["ms"] + copy)
        except Exception as exc:  # recorded, the sweep goes on
            row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        log(row)


# (block_m, block_n, warps, stages), warp-specialised or not. Triton 3.6 warp-specialises
# only 64-row tiles here (128-row tiles fail in its NVGPUWarpSpecialization pass) and only a
# single key loop (the mask then on every tile).
D64_CONFIGS = (
    ((128, 64, 4, 3), False),
    ((128, 128, 4, 2), False),
    ((64, 32, 4, 3), False),
    ((128, 64, 8, 3), False),
    ((64, 32, 4, 3), True),
    ((64, 64, 4, 3), True),
    ((64, 64, 4, 2), True),
)
D128_CONFIGS = (((64, 64, 4, 2), False), ((128, 64, 8, 2), False), ((64, 64, 4, 2), True))
PATTERNS = (("hash", 1), ("hash", 2), ("hash", 8), ("hash", 32), ("qk", 0.5), ("qk", 0.8))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[16384, 4096])
    parser.add_argument("--skip-d128", action="store_true")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def log(row: dict) -> None:
        row["elapsed_s"] = round(time.perf_counter() - started, 1)
        print(json.dumps(row), flush=True)
        with args.out.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")

    log({"what": "env", "device": torch.cuda.get_device_name(), "torch": torch.__version__,
         "triton": triton.__version__})  # fmt: skip
    for T in args.seq_lens:
        for kind, param in PATTERNS:
            _point(kind, param, 4, T, 48, 64, D64_CONFIGS, log)
            torch.cuda.empty_cache()
    if not args.skip_d128:
        for kind, param in (("hash", 8), ("hash", 32), ("qk", 0.8)):
            _point(kind, param, 4, 16384, 24, 128, D128_CONFIGS, log)
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
