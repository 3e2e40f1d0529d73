"""Hopper backward in Gluon for plans of one bucket: dK/dV and dQ on TMA and async wgmma.

With one bucket (dense hash-sparse, and QK-sparse) a query sees a key iff both are in range
and the key is not later: dense causal attention in original order, except that some rows
take no part. Such a query has LSE = +inf from the forward (so P = 0 in its row); such a key
gets an additive bias of -inf (so P = 0 in its column). The kernels therefore walk original
positions in rectangular tiles, which TMA copies, whatever the plan; only the causal
diagonal is masked. A first Triton kernel (`hopper_bwd_prep_kernel`, portable, also run by
the CPU tests) writes the three row vectors they read, in original order:

* LSE moved from the forward's sorted order to original positions (base 2, scaled);
* Delta_i = rowsum(dO_i * O_i);
* the key bias: 0 for a key in range, -inf otherwise.

dK/dV (`hopper_bwd_dkdv_kernel`): one program per (key tile, batch*head), keys along the
rows, queries along the columns (the transposed form: dK and dV accumulate in registers);
the query tiles from the diagonal on stream through a TMA ring of Q and dO. Per query tile:
  issue S^T = K Q^T and dP^T = V dO^T (async, together) | wait | prefetch by TMA into the
  stage the previous tile freed | P^T, dS^T in registers | dV += P^T dO and dK += dS^T Q,
  retired before the next tile (in flight across the loop's back edge, ptxas serialises
  every wgmma: its C7514 notice).
dQ (`hopper_bwd_dq_kernel`): one program per (query tile, batch*head), the key tiles up to
the diagonal through a TMA ring of K and V, the same shape of loop with dQ += dS K (that
one product left in flight into the next tile's wait, as in the forward).

All waits are for zero outstanding groups (as in the forward, `_gluon_fwd`: with "all but
one" ptxas serialises the wgmmas). Rows of a tile past T read the next batch's rows (or
TMA's zeros past the end): their LSE loads as +inf and their bias as -inf, so they add 0.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._gluon_fwd import GLUON_IMPORT_ERROR, LOG2E
from .plan import SparsityPlan

if GLUON_IMPORT_ERROR is None:
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.hopper import (
        mbarrier,
        warpgroup_mma,
        warpgroup_mma_init,
        warpgroup_mma_wait,
    )

    from ._gluon_fwd import _cta_barrier, _descriptor, _issue_kv, _tma_compatible, _tma_load


def tile_shapes(head_dim: int) -> dict[str, tuple[int, int, int, int]]:
    """(BLOCK_M queries, BLOCK_N keys, num_warps, STAGES) of the dK/dV and dQ kernels.

    dK/dV: 128 keys over two warpgroups (64 rows each), so dK and dV hold 64 x D float32 per
    warpgroup; at D=128 that is 128 registers a thread, and query tiles of 64 spill (ptxas,
    sm_90), so D=128 streams query tiles of 32. dQ: 128 queries over two warpgroups, key
    tiles of 64 (128 spills at D=64). Three stages everywhere; the shared memory and
    registers of each are in the performance notes.
    """
    if head_dim == 64:
        return {"dkdv": (64, 128, 8, 3), "dq": (128, 64, 8, 3)}
    return {"dkdv": (32, 128, 8, 3), "dq": (128, 64, 8, 3)}


@triton.jit
def hopper_bwd_prep_kernel(
    Out, dOut, LSE, q_perm, k_perm, k_bucket_sorted,
    LSEOrig, Delta, KeyBias,
    stride_ob, stride_ot, stride_oh, stride_dob, stride_dot, stride_doh,
    H, T, n_tiles, n_buckets,
    BLOCK: tl.constexpr, HEAD_DIM: tl.constexpr,
):  # fmt: skip
    """One program per (tile of BLOCK positions, batch*head): the three row vectors in
    original order (the module docstring)."""
    pid = tl.program_id(0)
    bh = pid // n_tiles
    tile = pid % n_tiles
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    row_base = bh.to(tl.int64) * T
    idx = tile * BLOCK + tl.arange(0, BLOCK)
    ok = idx < T
    # Sorted slot idx -> original position: LSE and the key's bias move there.
    q_pos = tl.load(q_perm + row_base + idx, mask=ok, other=0)
    lse = tl.load(LSE + row_base + idx, mask=ok, other=float("inf"))
    tl.store(LSEOrig + row_base + q_pos, lse, mask=ok)
    k_pos = tl.load(k_perm + row_base + idx, mask=ok, other=0)
    k_bucket = tl.load(k_bucket_sorted + row_base + idx, mask=ok, other=n_buckets)
    bias = tl.where(k_bucket < n_buckets, 0.0, float("-inf"))
    tl.store(KeyBias + row_base + k_pos, bias, mask=ok)
    # idx as an original position: Delta there.
    offs_d = tl.arange(0, HEAD_DIM)
    o_ptrs = Out + b * stride_ob + h * stride_oh + idx[:, None].to(tl.int64) * stride_ot
    do_ptrs = dOut + b * stride_dob + h * stride_doh + idx[:, None].to(tl.int64) * stride_dot
    o = tl.load(o_ptrs + offs_d[None, :], mask=ok[:, None], other=0.0).to(tl.float32)
    do = tl.load(do_ptrs + offs_d[None, :], mask=ok[:, None], other=0.0).to(tl.float32)
    tl.store(Delta + row_base + idx, tl.sum(o * do, 1), mask=ok)


if GLUON_IMPORT_ERROR is None:

    @gluon.jit
    def _program_tile(n_tiles, H, T, HEAD_DIM: gl.constexpr, REVERSED: gl.constexpr):
        """(tile, b, h, row_base, col) of this program: tile `tile` of row bh = b * H + h
        (REVERSED: the last tile first), its rows' base in (BH, T) vectors and its column
        in the (B*T, H*D) TMA view."""
        pid = gl.program_id(0)
        bh = pid // n_tiles
        tile = pid % n_tiles
        if REVERSED:
            tile = n_tiles - 1 - tile
        h = (bh % H).to(gl.int64)
        return tile, (bh // H).to(gl.int64), h, bh.to(gl.int64) * T, (h * HEAD_DIM).to(gl.int32)

    @gluon.jit
    def _ready_barriers(STAGES: gl.constexpr):
        """STAGES + 1 mbarriers: one per stage of the streamed tiles, and the last for the
        tiles loaded once."""
        bars = gl.allocate_shared_memory(gl.int64, [STAGES + 1, 1], mbarrier.MBarrierLayout())
        for i in gl.static_range(STAGES + 1):
            mbarrier.init(bars.index(i), count=1)
        return bars

    @gluon.jit
    def _dkdv_loop(
        q_desc, do_desc, k_smem, v_smem, q_smem, do_smem, bars, state,
        t_begin, t_end, n, i_first, q_row0, col, k_pos, key_bias, lse_bh, delta_bh, T, qk_scale,
        MASKED: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
        STAGES: gl.constexpr, s_layout: gl.constexpr, acc_layout: gl.constexpr,
    ):  # fmt: skip
        """Streamed query tiles [t_begin, t_end) (query tile i_first + t) of one key tile;
        `state` = (dk, dv), every product retired."""
        op_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=acc_layout, k_width=2)
        col_layout: gl.constexpr = gl.SliceLayout(0, s_layout)
        dk, dv = state
        s_zero = gl.zeros([BLOCK_N, BLOCK_M], gl.float32, layout=s_layout)
        for t in range(t_begin, t_end):
            stage = t % STAGES
            mbarrier.wait(bars.index(stage), (t // STAGES) & 1)
            q_t = q_smem.index(stage)
            do_t = do_smem.index(stage)
            s_t = warpgroup_mma(k_smem, q_t.permute((1, 0)), s_zero, use_acc=False, is_async=True)
            dp_t = warpgroup_mma(v_smem, do_t.permute((1, 0)), s_zero, use_acc=False, is_async=True)
            q_idx = (i_first + t) * BLOCK_M + gl.arange(0, BLOCK_M, layout=col_layout)
            q_ok = q_idx < T
            lse = gl.load(lse_bh + q_idx, mask=q_ok, other=float("inf"))
            delta = gl.load(delta_bh + q_idx, mask=q_ok, other=0.0)
            s_t, dp_t = warpgroup_mma_wait(num_outstanding=0, deps=(s_t, dp_t))
            # Every warpgroup is done with tile t-1's stage: refill it with tile t+STAGES-1.
            _cta_barrier()
            _issue_kv(
                q_desc, do_desc, q_smem, do_smem, bars, t + STAGES - 1, n, q_row0, col,
                STAGES, BLOCK_M,
            )  # fmt: skip
            p_t = gl.exp2(s_t * qk_scale - lse[None, :] + key_bias[:, None])
            if MASKED:
                p_t = gl.where(k_pos[:, None] <= q_idx[None, :], p_t, 0.0)
            ds_t = p_t * (dp_t - delta[None, :])
            p_op = gl.convert_layout(p_t.to(q_smem.dtype), op_layout)
            ds_op = gl.convert_layout(ds_t.to(q_smem.dtype), op_layout)
            dv = warpgroup_mma(p_op, do_t, dv, is_async=True)
            dk = warpgroup_mma(ds_op, q_t, dk, is_async=True)
            # dK, dV retire here, not in the next iteration's wait: with them in flight
            # across the loop's back edge ptxas serialises every wgmma (C7514), whether
            # the next wait comes first thing or after S^T, dP^T are issued.
            dk, dv = warpgroup_mma_wait(num_outstanding=0, deps=(dk, dv))
            dk = warpgroup_mma_init(dk)
            dv = warpgroup_mma_init(dv)
        return dk, dv

    @gluon.jit
    def hopper_bwd_dkdv_kernel(
        q_desc, k_desc, v_desc, do_desc, dK, dV, LSEOrig, Delta, KeyBias,
        stride_dkb, stride_dkt, stride_dkh, stride_dvb, stride_dvt, stride_dvh,
        H, T, n_tiles, qk_scale, sm_scale,
        BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, HEAD_DIM: gl.constexpr,
        STAGES: gl.constexpr, num_warps: gl.constexpr,
    ):  # fmt: skip
        gl.static_assert(STAGES >= 2)
        # The key tiles that see the most queries (the first) start first.
        tile, b, h, row_base, col = _program_tile(n_tiles, H, T, HEAD_DIM, False)
        n0 = tile * BLOCK_N

        s_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, BLOCK_M, 16]
        )
        acc_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, HEAD_DIM, 16]
        )
        row_layout: gl.constexpr = gl.SliceLayout(1, s_layout)

        k_smem = gl.allocate_shared_memory(k_desc.dtype, k_desc.block_type.shape, k_desc.layout)
        v_smem = gl.allocate_shared_memory(v_desc.dtype, v_desc.block_type.shape, v_desc.layout)
        q_smem = gl.allocate_shared_memory(q_desc.dtype, [STAGES, BLOCK_M, HEAD_DIM], q_desc.layout)
        do_smem = gl.allocate_shared_memory(
            do_desc.dtype, [STAGES, BLOCK_M, HEAD_DIM], do_desc.layout
        )
        bars = _ready_barriers(STAGES)

        # Query tiles from the one holding key n0 to the last: the first ones up to
        # i_full cross the diagonal (masked), the rest see every key of the tile.
        n_q = (T + BLOCK_M - 1) // BLOCK_M
        i_first = n0 // BLOCK_M
        i_full = gl.minimum((n0 + BLOCK_N - 1 + BLOCK_M - 1) // BLOCK_M, n_q)
        n = n_q - i_first
        q_row0 = (b * T + i_first * BLOCK_M).to(gl.int32)

        kv_bar = bars.index(STAGES)
        k_row = (b * T + n0).to(gl.int32)
        mbarrier.expect(kv_bar, k_desc.block_type.nbytes + v_desc.block_type.nbytes)
        _tma_load(k_desc, [k_row, col], kv_bar, k_smem)
        _tma_load(v_desc, [k_row, col], kv_bar, v_smem)
        for t in gl.static_range(STAGES - 1):
            _issue_kv(q_desc, do_desc, q_smem, do_smem, bars, t, n, q_row0, col, STAGES, BLOCK_M)
        k_pos = n0 + gl.arange(0, BLOCK_N, layout=row_layout)
        key_bias = gl.load(KeyBias + row_base + k_pos, mask=k_pos < T, other=float("-inf"))
        mbarrier.wait(kv_bar, 0)

        zero = gl.zeros([BLOCK_N, HEAD_DIM], gl.float32, layout=acc_layout)
        state = (warpgroup_mma_init(zero), warpgroup_mma_init(zero))
        lse_bh = LSEOrig + row_base
        delta_bh = Delta + row_base
        t_full = i_full - i_first
        state = _dkdv_loop(
            q_desc, do_desc, k_smem, v_smem, q_smem, do_smem, bars, state,
            0, t_full, n, i_first, q_row0, col, k_pos, key_bias, lse_bh, delta_bh, T, qk_scale,
            True, BLOCK_M, BLOCK_N, STAGES, s_layout, acc_layout,
        )  # fmt: skip
        state = _dkdv_loop(
            q_desc, do_desc, k_smem, v_smem, q_smem, do_smem, bars, state,
            t_full, n, n, i_first, q_row0, col, k_pos, key_bias, lse_bh, delta_bh, T, qk_scale,
            False, BLOCK_M, BLOCK_N, STAGES, s_layout, acc_layout,
        )  # fmt: skip
        dk, dv = state
        dk, dv = warpgroup_mma_wait(num_outstanding=0, deps=(dk, dv))
        for i in gl.static_range(STAGES + 1):
            mbarrier.invalidate(bars.index(i))

        acc_rows: gl.constexpr = gl.SliceLayout(1, acc_layout)
        rows = n0 + gl.arange(0, BLOCK_N, layout=acc_rows)
        rows_ok = rows < T
        offs_d = gl.arange(0, HEAD_DIM, layout=gl.SliceLayout(0, acc_layout))
        dk_ptrs = dK + b * stride_dkb + h * stride_dkh + rows.to(gl.int64)[:, None] * stride_dkt
        dv_ptrs = dV + b * stride_dvb + h * stride_dvh + rows.to(gl.int64)[:, None] * stride_dvt
        gl.store(
            dk_ptrs + offs_d[None, :],
            (dk * sm_scale).to(dK.dtype.element_ty),
            mask=rows_ok[:, None],
        )
        gl.store(dv_ptrs + offs_d[None, :], dv.to(dV.dtype.element_ty), mask=rows_ok[:, None])

    @gluon.jit
    def _dq_loop(
        k_desc, v_desc, q_smem, do_smem, k_smem, v_smem, bars, dq,
        t_begin, t_end, n, k_row0, col, q_idx, lse, delta, bias_bh, T, qk_scale,
        MASKED: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
        STAGES: gl.constexpr, s_layout: gl.constexpr, acc_layout: gl.constexpr,
    ):  # fmt: skip
        """Key tiles [t_begin, t_end) of one query tile; dq's last product maybe in flight."""
        op_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=acc_layout, k_width=2)
        col_layout: gl.constexpr = gl.SliceLayout(0, s_layout)
        s_zero = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, layout=s_layout)
        for t in range(t_begin, t_end):
            stage = t % STAGES
            mbarrier.wait(bars.index(stage), (t // STAGES) & 1)
            k_t = k_smem.index(stage)
            v_t = v_smem.index(stage)
            s = warpgroup_mma(q_smem, k_t.permute((1, 0)), s_zero, use_acc=False, is_async=True)
            dp = warpgroup_mma(do_smem, v_t.permute((1, 0)), s_zero, use_acc=False, is_async=True)
            k_idx = t * BLOCK_N + gl.arange(0, BLOCK_N, layout=col_layout)
            bias = gl.load(bias_bh + k_idx, mask=k_idx < T, other=float("-inf"))
            s, dp, dq = warpgroup_mma_wait(num_outstanding=0, deps=(s, dp, dq))
            _cta_barrier()
            _issue_kv(
                k_desc, v_desc, k_smem, v_smem, bars, t + STAGES - 1, n, k_row0, col,
                STAGES, BLOCK_N,
            )  # fmt: skip
            p = gl.exp2(s * qk_scale - lse[:, None] + bias[None, :])
            if MASKED:
                p = gl.where(k_idx[None, :] <= q_idx[:, None], p, 0.0)
            ds = p * (dp - delta[:, None])
            ds_op = gl.convert_layout(ds.to(q_smem.dtype), op_layout)
            dq = warpgroup_mma(ds_op, k_t, dq, is_async=True)
        return dq

    @gluon.jit
    def hopper_bwd_dq_kernel(
        q_desc, k_desc, v_desc, do_desc, dQ, LSEOrig, Delta, KeyBias,
        stride_dqb, stride_dqt, stride_dqh,
        H, T, n_tiles, qk_scale, sm_scale,
        BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, HEAD_DIM: gl.constexpr,
        STAGES: gl.constexpr, num_warps: gl.constexpr,
    ):  # fmt: skip
        gl.static_assert(STAGES >= 2)
        # The last query tiles (the most keys) start first.
        tile, b, h, row_base, col = _program_tile(n_tiles, H, T, HEAD_DIM, True)
        m0 = tile * BLOCK_M

        s_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, BLOCK_N, 16]
        )
        acc_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, HEAD_DIM, 16]
        )
        row_layout: gl.constexpr = gl.SliceLayout(1, s_layout)

        q_smem = gl.allocate_shared_memory(q_desc.dtype, q_desc.block_type.shape, q_desc.layout)
        do_smem = gl.allocate_shared_memory(do_desc.dtype, do_desc.block_type.shape, do_desc.layout)
        k_smem = gl.allocate_shared_memory(k_desc.dtype, [STAGES, BLOCK_N, HEAD_DIM], k_desc.layout)
        v_smem = gl.allocate_shared_memory(v_desc.dtype, [STAGES, BLOCK_N, HEAD_DIM], v_desc.layout)
        bars = _ready_barriers(STAGES)

        # Key tiles 0 .. up to the one holding query m0 + BLOCK_M - 1; those before j_full
        # lie wholly before the tile's first query (unmasked), the rest cross the diagonal.
        n_k = (T + BLOCK_N - 1) // BLOCK_N
        n = gl.minimum((m0 + BLOCK_M + BLOCK_N - 1) // BLOCK_N, n_k)
        j_full = gl.minimum((m0 + 1) // BLOCK_N, n)
        k_row0 = (b * T).to(gl.int32)

        qo_bar = bars.index(STAGES)
        q_row = (b * T + m0).to(gl.int32)
        mbarrier.expect(qo_bar, q_desc.block_type.nbytes + do_desc.block_type.nbytes)
        _tma_load(q_desc, [q_row, col], qo_bar, q_smem)
        _tma_load(do_desc, [q_row, col], qo_bar, do_smem)
        for t in gl.static_range(STAGES - 1):
            _issue_kv(k_desc, v_desc, k_smem, v_smem, bars, t, n, k_row0, col, STAGES, BLOCK_N)
        q_idx = m0 + gl.arange(0, BLOCK_M, layout=row_layout)
        q_ok = q_idx < T
        lse = gl.load(LSEOrig + row_base + q_idx, mask=q_ok, other=float("inf"))
        delta = gl.load(Delta + row_base + q_idx, mask=q_ok, other=0.0)
        mbarrier.wait(qo_bar, 0)

        dq = warpgroup_mma_init(gl.zeros([BLOCK_M, HEAD_DIM], gl.float32, layout=acc_layout))
        bias_bh = KeyBias + row_base
        dq = _dq_loop(
            k_desc, v_desc, q_smem, do_smem, k_smem, v_smem, bars, dq,
            0, j_full, n, k_row0, col, q_idx, lse, delta, bias_bh, T, qk_scale,
            False, BLOCK_M, BLOCK_N, STAGES, s_layout, acc_layout,
        )  # fmt: skip
        dq = _dq_loop(
            k_desc, v_desc, q_smem, do_smem, k_smem, v_smem, bars, dq,
            j_full, n, n, k_row0, col, q_idx, lse, delta, bias_bh, T, qk_scale,
            True, BLOCK_M, BLOCK_N, STAGES, s_layout, acc_layout,
        )  # fmt: skip
        dq = warpgroup_mma_wait(num_outstanding=0, deps=(dq,))
        for i in gl.static_range(STAGES + 1):
            mbarrier.invalidate(bars.index(i))

        acc_rows: gl.constexpr = gl.SliceLayout(1, acc_layout)
        rows = m0 + gl.arange(0, BLOCK_M, layout=acc_rows)
        offs_d = gl.arange(0, HEAD_DIM, layout=gl.SliceLayout(0, acc_layout))
        dq_ptrs = dQ + b * stride_dqb + h * stride_dqh + rows.to(gl.int64)[:, None] * stride_dqt
        gl.store(
            dq_ptrs + offs_d[None, :],
            (dq * sm_scale).to(dQ.dtype.element_ty),
            mask=(rows < T)[:, None],
        )


PREP_BLOCK = 64


def prepare(
    do: Tensor, out: Tensor, lse: Tensor, plan: SparsityPlan, n_buckets: int
) -> tuple[Tensor, Tensor, Tensor]:
    """(LSE, Delta, key bias), each (BH, T) float32 in original order (the module
    docstring); runs under the interpreter too."""
    B, T, H, D = out.shape
    BH = B * H
    lse_orig = torch.empty((BH, T), dtype=torch.float32, device=out.device)
    delta = torch.empty_like(lse_orig)
    key_bias = torch.empty_like(lse_orig)
    n_tiles = -(-T // PREP_BLOCK)
    hopper_bwd_prep_kernel[(BH * n_tiles,)](
        out, do, lse, plan.queries.perm, plan.keys.perm, plan.keys.bucket,
        lse_orig, delta, key_bias,
        *out.stride()[:3], *do.stride()[:3],
        H, T, n_tiles, n_buckets,
        BLOCK=PREP_BLOCK, HEAD_DIM=D,
    )  # fmt: skip
    return lse_orig, delta, key_bias


def backward(
    do: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, plan: SparsityPlan,
    sm_scale: float, n_buckets: int, tiles: dict[str, tuple[int, int, int, int]] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """(dq, dk, dv), each (B, T, H, D) in q's dtype: the Gluon backward of a plan of one
    bucket (`n_buckets` must be 1). Callers check `hopper.use_hopper` first. `tiles`:
    instead of `tile_shapes` (tuning probes)."""
    if n_buckets != 1:
        raise ValueError(f"the Hopper backward takes plans of one bucket, not {n_buckets}")
    B, T, H, D = q.shape
    BH = B * H
    shapes = tiles or tile_shapes(D)
    q, k, v, do = (t if _tma_compatible(t) else t.contiguous() for t in (q, k, v, do))
    lse_orig, delta, key_bias = prepare(do, out, lse, plan, n_buckets)
    dq = torch.empty((B, T, H, D), dtype=q.dtype, device=q.device)
    dk = torch.empty((B, T, H, D), dtype=k.dtype, device=q.device)
    dv = torch.empty((B, T, H, D), dtype=v.dtype, device=q.device)
    rows = (lse_orig, delta, key_bias)
    scales = (sm_scale * LOG2E, sm_scale)

    block_m, block_n, num_warps, stages = shapes["dkdv"]
    n_tiles = -(-T // block_n)
    descs = (_descriptor(q, block_m, D), _descriptor(k, block_n, D))
    descs += (_descriptor(v, block_n, D), _descriptor(do, block_m, D))
    hopper_bwd_dkdv_kernel[(BH * n_tiles,)](
        *descs, dk, dv, *rows,
        *dk.stride()[:3], *dv.stride()[:3],
        H, T, n_tiles, *scales,
        BLOCK_M=block_m, BLOCK_N=block_n, HEAD_DIM=D, STAGES=stages, num_warps=num_warps,
    )  # fmt: skip

    block_m, block_n, num_warps, stages = shapes["dq"]
    n_tiles = -(-T // block_m)
    descs = (_descriptor(q, block_m, D), _descriptor(k, block_n, D))
    descs += (_descriptor(v, block_n, D), _descriptor(do, block_m, D))
    hopper_bwd_dq_kernel[(BH * n_tiles,)](
        *descs, dq, *rows,
        *dq.stride()[:3],
        H, T, n_tiles, *scales,
        BLOCK_M=block_m, BLOCK_N=block_n, HEAD_DIM=D, STAGES=stages, num_warps=num_warps,
    )  # fmt: skip
    return dq, dk, dv
