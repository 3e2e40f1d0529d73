"""Kernel launches of one attention call: forward, and backward (delta, dK/dV, dQ).

Host-side only: tile sizes come from the config and the plan's shapes, never from device
data, so nothing here waits for the GPU.
"""

from __future__ import annotations

import torch

from . import config as _config
from ._triton_bwd import (
    attention_bwd_delta_kernel,
    sparse_attention_bwd_dkdv_kernel,
    sparse_attention_bwd_dq_kernel,
    sparse_attention_bwd_store_rows_kernel,
)
from ._triton_fwd import (
    LOG2E,
    sparse_attention_fwd_combine_kernel,
    sparse_attention_fwd_kernel,
)
from .config import ceil_div
from .plan import KeyTileRanges, QueryTileRanges, SparsityPlan, key_tile_ranges, query_tile_ranges


def dot_input_precision(dtype: torch.dtype) -> str | None:
    """tl.dot's `input_precision` for `dtype` operands.

    It only affects float32 operands: "ieee" gives true float32 products instead of TF32.
    Float16/bfloat16 products are exact (accumulated in float32) whatever it says, so they
    get None: Triton's default, no claim about a precision that does not apply.
    """
    return "ieee" if dtype == torch.float32 else None


def _strides(name: str, x: torch.Tensor) -> dict[str, int]:
    """Keyword arguments stride_<name>b, _<name>t, _<name>h, _<name>d of a (B, T, H, D) tensor."""
    return {f"stride_{name}{axis}": step for axis, step in zip("bthd", x.stride(), strict=True)}


def _tile_launch(
    launch: _config.LaunchConfig, split: _config.RangeSplit, pieces: int, device: torch.device
) -> dict:
    """The keyword arguments every range kernel takes: tiles, warps, stages and how its
    ranges may be cut into pieces (MAX_PIECES = 1: never; the piece buffers are then None)."""
    return {
        "n_slots": split.slots(device),
        "BLOCK_M": launch.block_m,
        "BLOCK_N": launch.block_n,
        "MAX_PIECES": pieces,
        "MIN_TILES": split.min_tiles,
        "num_warps": launch.num_warps,
        "num_stages": launch.num_stages,
    }


# What the merge kernels take of `_tile_launch` (they run with the default warps and stages).
_PIECE_ARGS = ("n_slots", "BLOCK_M", "BLOCK_N", "MAX_PIECES", "MIN_TILES")


def _sorted_rows(plan: SparsityPlan) -> dict[str, torch.Tensor]:
    return {
        "q_perm": plan.queries.perm,
        "q_bucket_sorted": plan.queries.bucket,
        "k_perm": plan.keys.perm,
        "k_bucket_sorted": plan.keys.bucket,
    }


def _range_bounds(ranges: QueryTileRanges | KeyTileRanges) -> dict[str, torch.Tensor | None]:
    """What every kernel that walks the plan's tile ranges takes of them: each range's first
    and one-past-last slot, and the work counter (None unless split launches count work)."""
    return {"tile_start": ranges.start, "tile_end": ranges.end, "Work": ranges.work}


def forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    plan: SparsityPlan,
    sm_scale: float,
    cfg: _config.KernelConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(out (B, T, H, D), lse (BH, T) float32 base-2 log-sum-exp in sorted order)."""
    B, T, H, D = q.shape
    BH = B * H
    n_tiles = ceil_div(T, cfg.fwd.block_m)
    pieces = cfg.fwd_split.pieces(BH * n_tiles, T)
    work = torch.zeros(1, dtype=torch.int32, device=q.device) if pieces > 1 else None
    ranges = query_tile_ranges(plan, cfg.fwd.block_m, cfg.fwd.block_n, work)
    out = torch.empty((B, T, H, D), dtype=q.dtype, device=q.device)
    lse = torch.empty((BH, T), dtype=torch.float32, device=q.device)
    # Partial outputs of split tiles, written and read only where a range was split.
    out_part = lse_part = None
    if pieces > 1:
        out_part = torch.empty((pieces, BH, T, D), dtype=torch.float32, device=q.device)
        lse_part = torch.empty((pieces, BH, T), dtype=torch.float32, device=q.device)
    tiles = _tile_launch(cfg.fwd, cfg.fwd_split, pieces, q.device)
    # What the forward and the kernel that combines its split tiles both take.
    shared = {
        "Out": out,
        "LSE": lse,
        "OutPart": out_part,
        "LSEPart": lse_part,
        **_range_bounds(ranges),
        **_strides("o", out),
        "H": H,
        "T": T,
        "n_tiles": n_tiles,
        "part_rows": BH * T,
        "HEAD_DIM": D,
    }
    sparse_attention_fwd_kernel[(pieces * BH * n_tiles,)](
        Q=q,
        K=k,
        V=v,
        **_sorted_rows(plan),
        tile_n_full=ranges.n_full,
        **_strides("q", q),
        **_strides("k", k),
        **_strides("v", v),
        qk_scale=sm_scale * LOG2E,
        DOT_PRECISION=dot_input_precision(q.dtype),
        **shared,
        **tiles,
    )
    if pieces > 1:
        sparse_attention_fwd_combine_kernel[(BH * n_tiles,)](
            q_perm=plan.queries.perm,
            **shared,
            **{name: tiles[name] for name in _PIECE_ARGS},
        )
    return out, lse


def backward(
    do: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    plan: SparsityPlan,
    sm_scale: float,
    cfg: _config.KernelConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv), each (B, T, H, D) in the dtype of q."""
    B, T, H, D = q.shape
    BH = B * H

    delta = torch.empty((BH, T), dtype=torch.float32, device=q.device)
    n_delta_tiles = ceil_div(T, cfg.delta_block_m)
    attention_bwd_delta_kernel[(BH * n_delta_tiles,)](
        Out=out,
        dOut=do,
        Delta=delta,
        q_perm=plan.queries.perm,
        **_strides("o", out),
        **_strides("do", do),
        H=H,
        T=T,
        n_tiles=n_delta_tiles,
        BLOCK_M=cfg.delta_block_m,
        HEAD_DIM=D,
    )

    dq = torch.empty((B, T, H, D), dtype=q.dtype, device=q.device)
    dk = torch.empty((B, T, H, D), dtype=k.dtype, device=q.device)
    dv = torch.empty((B, T, H, D), dtype=v.dtype, device=q.device)

    n_key_tiles = ceil_div(T, cfg.dkdv.block_n)
    n_query_tiles = ceil_div(T, cfg.dq.block_m)
    dkdv_pieces = cfg.dkdv_split.pieces(BH * n_key_tiles, T)
    dq_pieces = cfg.dq_split.pieces(BH * n_query_tiles, T)
    # Split tiles add their float32 gradients here (in sorted order): dK, dV, dQ; and the
    # range kernels count the work of split launches in the two int32 words after them.
    # One zeroed buffer: a single fill for all of it. Unsplit launches get None.
    n_acc = 2 * (dkdv_pieces > 1) + (dq_pieces > 1)
    dk_acc = dv_acc = dq_acc = kr_work = qr_work = None
    if n_acc:
        size = n_acc * BH * T * D
        zeroed = torch.zeros(size + 2, dtype=torch.float32, device=q.device)
        acc = zeroed[:size].view(n_acc, BH * T, D)
        counters = zeroed[size:].view(torch.int32)
        if dkdv_pieces > 1:
            dk_acc, dv_acc, kr_work = acc[0], acc[1], counters[0:1]
        if dq_pieces > 1:
            dq_acc, qr_work = acc[n_acc - 1], counters[1:2]
    kr = key_tile_ranges(plan, cfg.dkdv.block_m, cfg.dkdv.block_n, kr_work)
    qr = query_tile_ranges(plan, cfg.dq.block_m, cfg.dq.block_n, qr_work)
    common = {
        "Q": q,
        "K": k,
        "V": v,
        "dOut": do,
        "LSE": lse,
        "Delta": delta,
        **_sorted_rows(plan),
        **_strides("q", q),
        **_strides("k", k),
        **_strides("v", v),
        **_strides("do", do),
        "H": H,
        "T": T,
        "qk_scale": sm_scale * LOG2E,
        "sm_scale": sm_scale,
        "HEAD_DIM": D,
        "DOT_PRECISION": dot_input_precision(q.dtype),
    }

    tiles = _tile_launch(cfg.dkdv, cfg.dkdv_split, dkdv_pieces, q.device)
    sparse_attention_bwd_dkdv_kernel[(dkdv_pieces * BH * n_key_tiles,)](
        dK=dk,
        dV=dv,
        dKAcc=dk_acc,
        dVAcc=dv_acc,
        **_range_bounds(kr),
        tile_n_diag=kr.n_diag,
        tile_n_full=kr.n_full,
        **_strides("dk", dk),
        **_strides("dv", dv),
        n_tiles=n_key_tiles,
        **common,
        **tiles,
    )
    if dkdv_pieces > 1:
        _store_split_rows((dk_acc, dk, dv_acc, dv), plan.keys.perm, kr, n_key_tiles, tiles)

    tiles = _tile_launch(cfg.dq, cfg.dq_split, dq_pieces, q.device)
    sparse_attention_bwd_dq_kernel[(dq_pieces * BH * n_query_tiles,)](
        dQ=dq,
        dQAcc=dq_acc,
        **_range_bounds(qr),
        tile_n_full=qr.n_full,
        **_strides("dq", dq),
        n_tiles=n_query_tiles,
        **common,
        **tiles,
    )
    if dq_pieces > 1:
        _store_split_rows((dq_acc, dq), plan.queries.perm, qr, n_query_tiles, tiles)
    return dq, dk, dv


def _store_split_rows(
    pairs: tuple[torch.Tensor, ...],
    perm: torch.Tensor,
    ranges: QueryTileRanges | KeyTileRanges,
    n_tiles: int,
    tiles: dict,
) -> None:
    """Rows of split tiles from their float32 sums (in sorted order) to the gradients:
    `pairs` = (acc, grad) or (acc, grad, acc_b, grad_b) (dK and dV of the same key tiles).
    Key tiles hold BLOCK_N rows and ranges of query tiles (BLOCK_M); query tiles the other
    way round."""
    acc, dst = pairs[:2]
    acc_b, dst_b = pairs[2:] if len(pairs) == 4 else (None, None)
    keys = len(pairs) == 4
    B, T, H, D = dst.shape
    sparse_attention_bwd_store_rows_kernel[(B * H * n_tiles,)](
        Acc=acc,
        Dst=dst,
        AccB=acc_b,
        DstB=dst_b,
        perm=perm,
        **_range_bounds(ranges),
        **_strides("", dst),
        H=H,
        T=T,
        n_tiles=n_tiles,
        n_slots=tiles["n_slots"],
        ROWS=tiles["BLOCK_N"] if keys else tiles["BLOCK_M"],
        RANGE_BLOCK=tiles["BLOCK_M"] if keys else tiles["BLOCK_N"],
        HEAD_DIM=D,
        MAX_PIECES=tiles["MAX_PIECES"],
        MIN_TILES=tiles["MIN_TILES"],
        PAIRS=2 if keys else 1,
    )
