"""Hopper forward in Gluon: TMA loads on mbarriers, asynchronous wgmma, softmax overlapped.

Same contract as the portable forward (`_triton_fwd.sparse_attention_fwd_kernel`): one
program per (query tile in sorted order, batch*head), the plan's sorted rows, its key range
per query tile (the first `n_full` key tiles unmasked, the rest masked by bucket and
causality from the plan's own positions and buckets), output rows written back to their
original positions, LSE (base 2, scaled) in sorted order, +inf and output 0 for rows that
see no key. It never cuts a range into pieces.

Which programs use TMA: TMA copies rectangular tiles, so a program takes the fast path only
when its query tile and its whole key range are runs of consecutive original positions in
one bucket (checked on the device from the plan's composite keys: two loads per side).
That holds for every tile of dense causal attention (one bucket, all ids 0: the plan's
permutation is the identity). Any other program (ids out of range, several buckets) gathers
its rows with plain loads into shared memory and runs unpipelined wgmma: correct, slow. The
host (`hopper.use_hopper`) therefore sends only the dense case here.

The fast path's loop, per key tile j (S_j = Q K_j^T already in registers; P_{j-1} V_{j-1}
maybe still on the tensor cores):
  issue S_{j+1} (async wgmma) | softmax of S_j | wait for both | prefetch tile j+2 by TMA |
  rescale the output | issue P_j V_j (async, left in flight into the next iteration).
The softmax of tile j runs while the tensor cores compute S_{j+1} and finish P_{j-1} V,
the overlap Triton's pipeliner does not make (FlashAttention-3's intra-warpgroup overlap,
Shah et al. 2024). The wait is for zero outstanding groups: with "all but one", ptxas
(Triton 3.6's) cannot tell which group retired and serialises every wgmma (its C7514
notice). The last iteration recomputes S of its own tile instead of a predicated issue
(one extra Q K^T per query tile).

The 2-D TMA view of q/k/v is (B*T, H*D): a key tile whose slots pass T reads the next
batch's rows (or zeros past the end); those slots are masked (they lie after the range's
end), so they only need to be finite, as with the portable kernel's rows after the end.
"""

from __future__ import annotations

import torch

try:  # Gluon is experimental: absent from old Triton, moved between releases.
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.hopper import (
        fence_async_shared,
        mbarrier,
        tma,
        warpgroup_mma,
        warpgroup_mma_init,
        warpgroup_mma_wait,
    )
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    # The TMA load's name: `async_copy_global_to_shared` up to Triton 3.6, removed in
    # favour of `async_load` (same arguments) by 3.9.
    _tma_load = getattr(tma, "async_load", None) or tma.async_copy_global_to_shared
    # The CTA barrier: `thread_barrier` up to 3.6, `barrier` by 3.9.
    _cta_barrier = getattr(gl, "thread_barrier", None) or gl.barrier
    GLUON_IMPORT_ERROR: str | None = None
except Exception as exc:  # pragma: no cover - depends on the installed Triton
    GLUON_IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

from ._triton_common import KEY_PAD_BUCKET, QUERY_PAD_BUCKET

LOG2E = 1.4426950408889634
# The warp-specialised forward's launch register cap: 8 computing warps plus the loader's
# warpgroup (4 warps, 24 registers each: the least a warp may have) fit the register file at
# launch; the computing warps then take the loader's share (setmaxnreg), 240 each.
WS_MAXNREG = 168


def tile_shape(head_dim: int, warp_specialize: bool = False) -> tuple[int, int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps, STAGES): two warpgroups of 64 query rows each; three
    K/V stages (D=128: 64-row key tiles to fit 3 stages in shared memory). Warp-specialised,
    the computing warps have 240 registers, not 255: at D=64 128-key tiles spill there
    (ptxas, Triton 3.6), so it takes 64-key tiles and four stages."""
    if head_dim == 64:
        return (128, 64, 8, 4) if warp_specialize else (128, 128, 8, 3)
    return 128, 64, 8, 3


def _tma_compatible(t: torch.Tensor) -> bool:
    """(B, T, H, D) viewable as 2-D (B*T, H*D) rows for TMA: unit feature stride, batch
    stride T rows, 16-byte aligned base and row stride."""
    T, D = t.shape[1], t.shape[3]
    size = t.element_size()
    return (
        t.stride(3) == 1
        and t.stride(2) == D
        and t.stride(0) == T * t.stride(1)
        and (t.stride(1) * size) % 16 == 0
        and t.data_ptr() % 16 == 0
    )


if GLUON_IMPORT_ERROR is None:

    @gluon.jit
    def _run_contiguous(composite_bh, bucket_bh, first, last):
        """Slots [first, last] hold consecutive original positions of one bucket: the
        composite key bucket * T + position strictly increases along the slots, so equal
        end buckets and a composite step of exactly one per slot mean exactly that."""
        c0 = gl.load(composite_bh + first)
        c1 = gl.load(composite_bh + last)
        same_bucket = gl.load(bucket_bh + first) == gl.load(bucket_bh + last)
        return same_bucket & ((c1 - c0) == (last - first).to(gl.int64))

    @gluon.jit
    def _softmax_step(
        s, m_i, l_i, q_pos, q_bucket, k_perm_bh, k_bucket_bh, slot0, T, qk_scale, masked,
        BLOCK_N: gl.constexpr, s_layout: gl.constexpr,
    ):  # fmt: skip
        """One key tile of the online softmax: (p, alpha, m_new, l_new) from S = Q K^T."""
        s = s * qk_scale
        if masked:
            cols = slot0 + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout))
            in_range = cols < T
            k_pos = gl.load(k_perm_bh + cols, mask=in_range, other=0)
            k_bucket = gl.load(k_bucket_bh + cols, mask=in_range, other=KEY_PAD_BUCKET)
            allowed = (q_bucket[:, None] == k_bucket[None, :]) & (k_pos[None, :] <= q_pos[:, None])
            s = gl.where(allowed, s, float("-inf"))
        m_new = gl.maximum(m_i, gl.max(s, 1))
        # A row with nothing allowed so far keeps m = -inf; shift by 0 to avoid inf - inf.
        m_shift = gl.where(m_new == float("-inf"), 0.0, m_new)
        p = gl.exp2(s - m_shift[:, None])
        alpha = gl.exp2(m_i - m_shift)
        l_new = l_i * alpha + gl.sum(p, 1)
        return p, alpha, m_new, l_new

    @gluon.jit
    def _issue_kv(
        k_desc,
        v_desc,
        k_smem,
        v_smem,
        bars,
        tile,
        n,
        row0,
        col,
        STAGES: gl.constexpr,
        BLOCK_N: gl.constexpr,
    ):
        """TMA of key tile `tile` (K and V on one barrier) into its stage, if tile < n."""
        stage = tile % STAGES
        ok = tile < n
        bar = bars.index(stage)
        mbarrier.expect(bar, k_desc.block_type.nbytes + v_desc.block_type.nbytes, pred=ok)
        row = row0 + tile * BLOCK_N
        _tma_load(k_desc, [row, col], bar, k_smem.index(stage), pred=ok)
        _tma_load(v_desc, [row, col], bar, v_smem.index(stage), pred=ok)

    @gluon.jit
    def _tma_loop(
        k_desc, v_desc, q_smem, k_smem, v_smem, bars, empty, k_row, col, j_begin, j_end, n,
        start, q_pos, q_bucket, k_perm_bh, k_bucket_bh, T, qk_scale, state,
        MASKED: gl.constexpr, BLOCK_N: gl.constexpr, STAGES: gl.constexpr,
        s_layout: gl.constexpr, o_layout: gl.constexpr, WS: gl.constexpr,
    ):  # fmt: skip
        """Key tiles [j_begin, j_end) of the fast path. `state` = (S of tile j_begin in
        registers, the output accumulator with P V of the previous tile maybe in flight,
        row max, row sum). `bars`: a stage's tiles arrived; with WS a loader partition
        (`_ws_loader`) fills the stages and waits on `empty` for each to be released,
        else the loop refills a stage itself once it is free."""
        p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
        s, acc, m_i, l_i = state
        s_zero = gl.zeros_like(s)

        for j in range(j_begin, j_end):
            # S_{j+1} on the tensor cores while this tile's softmax runs (the last
            # iteration recomputes its own tile: no predicated issue).
            nxt = gl.minimum(j + 1, n - 1)
            mbarrier.wait(bars.index(nxt % STAGES), (nxt // STAGES) & 1)
            k_next = k_smem.index(nxt % STAGES).permute((1, 0))
            s_next = warpgroup_mma(q_smem, k_next, s_zero, use_acc=False, is_async=True)
            p, alpha, m_i, l_i = _softmax_step(
                s, m_i, l_i, q_pos, q_bucket, k_perm_bh, k_bucket_bh,
                start + j * BLOCK_N, T, qk_scale, MASKED, BLOCK_N, s_layout,
            )  # fmt: skip
            # S_{j+1} and P_{j-1} V_{j-1} done: tile j-1's stage is free.
            acc, s_next = warpgroup_mma_wait(num_outstanding=0, deps=(acc, s_next))
            # wgmma waits are per warpgroup: the other one may still read that stage.
            _cta_barrier()
            if WS:
                mbarrier.arrive(empty.index((j + STAGES - 1) % STAGES), pred=j > 0)
            else:
                _issue_kv(
                    k_desc, v_desc, k_smem, v_smem, bars, j + STAGES - 1, n, k_row, col,
                    STAGES, BLOCK_N,
                )  # fmt: skip
            acc = acc * gl.convert_layout(alpha, gl.SliceLayout(1, o_layout))[:, None]
            p_op = gl.convert_layout(p.to(q_smem.dtype), p_layout)
            acc = warpgroup_mma(p_op, v_smem.index(j % STAGES), acc, is_async=True)
            s = s_next
        return s, acc, m_i, l_i

    @gluon.jit
    def _consume(
        k_desc, v_desc, q_smem, k_smem, v_smem, bars, empty, k_row, col, n, n_full, start,
        q_pos, q_bucket, k_perm_bh, k_bucket_bh, T, qk_scale,
        BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, HEAD_DIM: gl.constexpr,
        STAGES: gl.constexpr, s_layout: gl.constexpr, o_layout: gl.constexpr, WS: gl.constexpr,
    ):  # fmt: skip
        """The fast path's computation once Q is in shared memory: (acc, row max, row sum)."""
        row_layout: gl.constexpr = gl.SliceLayout(1, s_layout)
        s_zero = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, layout=s_layout)
        # S_0 (skipped for an empty range: its barrier would never complete).
        mbarrier.wait(bars.index(0), 0, pred=n > 0)
        s = warpgroup_mma(q_smem, k_smem.index(0).permute((1, 0)), s_zero, use_acc=False)
        acc = warpgroup_mma_init(gl.zeros([BLOCK_M, HEAD_DIM], gl.float32, layout=o_layout))
        m_i = gl.full([BLOCK_M], float("-inf"), gl.float32, layout=row_layout)
        l_i = gl.zeros([BLOCK_M], gl.float32, layout=row_layout)
        # Leading tiles every query may see, then the rest with the mask: two loops with
        # the mask a compile-time choice (a branch inside one loop would split the
        # wgmma pipeline across basic blocks, which ptxas serialises).
        n_unmasked = gl.minimum(n_full, n)
        state = (s, acc, m_i, l_i)
        state = _tma_loop(
            k_desc, v_desc, q_smem, k_smem, v_smem, bars, empty, k_row, col, 0, n_unmasked, n,
            start, q_pos, q_bucket, k_perm_bh, k_bucket_bh, T, qk_scale, state,
            False, BLOCK_N, STAGES, s_layout, o_layout, WS,
        )  # fmt: skip
        state = _tma_loop(
            k_desc, v_desc, q_smem, k_smem, v_smem, bars, empty, k_row, col, n_unmasked, n, n,
            start, q_pos, q_bucket, k_perm_bh, k_bucket_bh, T, qk_scale, state,
            True, BLOCK_N, STAGES, s_layout, o_layout, WS,
        )  # fmt: skip
        s, acc, m_i, l_i = state
        acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))
        return acc, m_i, l_i

    @gluon.jit
    def _attend_tma(
        q_desc, k_desc, v_desc, q_smem, k_smem, v_smem, bars, empty, q_row, k_row, col, n,
        n_full, start, q_pos, q_bucket, k_perm_bh, k_bucket_bh, T, qk_scale,
        BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, HEAD_DIM: gl.constexpr,
        STAGES: gl.constexpr, s_layout: gl.constexpr, o_layout: gl.constexpr,
    ):  # fmt: skip
        """The fast path in one partition: the key range [start, start + n * BLOCK_N) by
        TMA, pipelined, the loads issued by the computing warps themselves."""
        q_bar = bars.index(STAGES)
        mbarrier.expect(q_bar, q_desc.block_type.nbytes)
        _tma_load(q_desc, [q_row, col], q_bar, q_smem)
        for t in gl.static_range(STAGES - 1):
            _issue_kv(k_desc, v_desc, k_smem, v_smem, bars, t, n, k_row, col, STAGES, BLOCK_N)
        mbarrier.wait(q_bar, 0)
        return _consume(
            k_desc, v_desc, q_smem, k_smem, v_smem, bars, empty, k_row, col, n, n_full, start,
            q_pos, q_bucket, k_perm_bh, k_bucket_bh, T, qk_scale,
            BLOCK_M, BLOCK_N, HEAD_DIM, STAGES, s_layout, o_layout, False,
        )  # fmt: skip

    @gluon.jit
    def _ws_compute(
        k_desc, v_desc, q_smem, k_smem, v_smem, bars, empty, k_row, col, n, n_full, start,
        q_pos, q_bucket, k_perm_bh, k_bucket_bh, T, qk_scale,
        BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, HEAD_DIM: gl.constexpr,
        STAGES: gl.constexpr, s_layout: gl.constexpr, o_layout: gl.constexpr,
    ):  # fmt: skip
        """The warp-specialised fast path's default partition: the computation, fed by
        `_ws_loader`."""
        mbarrier.wait(bars.index(STAGES), 0)
        return _consume(
            k_desc, v_desc, q_smem, k_smem, v_smem, bars, empty, k_row, col, n, n_full, start,
            q_pos, q_bucket, k_perm_bh, k_bucket_bh, T, qk_scale,
            BLOCK_M, BLOCK_N, HEAD_DIM, STAGES, s_layout, o_layout, True,
        )  # fmt: skip

    @gluon.jit
    def _ws_loader(
        q_desc, k_desc, v_desc, q_smem, k_smem, v_smem, bars, empty, q_row, k_row, col, n,
        STAGES: gl.constexpr, BLOCK_N: gl.constexpr,
    ):  # fmt: skip
        """The loader partition (one warp): Q, then key tile j into stage j % STAGES once
        the computation has released the tile that stage held (mbarriers start as if
        their phase before the first had completed, so the first round waits on nothing)."""
        q_bar = bars.index(STAGES)
        mbarrier.expect(q_bar, q_desc.block_type.nbytes)
        _tma_load(q_desc, [q_row, col], q_bar, q_smem)
        for j in range(n):
            stage = j % STAGES
            mbarrier.wait(empty.index(stage), ((j // STAGES) & 1) ^ 1)
            bar = bars.index(stage)
            mbarrier.expect(bar, k_desc.block_type.nbytes + v_desc.block_type.nbytes)
            row = k_row + j * BLOCK_N
            _tma_load(k_desc, [row, col], bar, k_smem.index(stage))
            _tma_load(v_desc, [row, col], bar, v_smem.index(stage))

    @gluon.jit
    def _gather_rows(
        X,
        base,
        perm_bh,
        slot0,
        n_rows,
        T,
        stride_t,
        ok_bound,
        ROWS: gl.constexpr,
        HEAD_DIM: gl.constexpr,
        layout: gl.constexpr,
    ):
        """Rows of sorted slots [slot0, slot0 + ROWS) of one (b, h), through the
        permutation; zeros for slots at or past `ok_bound`."""
        slots = slot0 + gl.arange(0, ROWS, layout=gl.SliceLayout(1, layout))
        ok = slots < ok_bound
        pos = gl.load(perm_bh + slots, mask=ok, other=0).to(gl.int64)
        offs_d = gl.arange(0, HEAD_DIM, layout=gl.SliceLayout(0, layout))
        ptrs = X + base + pos[:, None] * stride_t + offs_d[None, :]
        return gl.load(ptrs, mask=ok[:, None], other=0.0)

    @gluon.jit
    def _attend_gather(
        Q, K, V, q_smem, k_smem, v_smem, q_base, k_base, v_base, q_perm_bh, q_slot0, q_bound,
        n, n_full, start, q_pos, q_bucket, k_perm_bh, k_bucket_bh, T,
        stride_qt, stride_kt, stride_vt, qk_scale,
        BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, HEAD_DIM: gl.constexpr,
        s_layout: gl.constexpr, o_layout: gl.constexpr, num_warps: gl.constexpr,
    ):  # fmt: skip
        """The general path: rows gathered through the permutation, unpipelined."""
        p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
        row_layout: gl.constexpr = gl.SliceLayout(1, s_layout)
        ld_layout: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [num_warps, 1], [1, 0])
        q = _gather_rows(
            Q,
            q_base,
            q_perm_bh,
            q_slot0,
            BLOCK_M,
            T,
            stride_qt,
            q_bound,
            BLOCK_M,
            HEAD_DIM,
            ld_layout,
        )
        q_smem.store(q)
        s_zero = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, layout=s_layout)
        acc = gl.zeros([BLOCK_M, HEAD_DIM], gl.float32, layout=o_layout)
        m_i = gl.full([BLOCK_M], float("-inf"), gl.float32, layout=row_layout)
        l_i = gl.zeros([BLOCK_M], gl.float32, layout=row_layout)
        for j in range(n):
            slot0 = start + j * BLOCK_N
            k = _gather_rows(
                K, k_base, k_perm_bh, slot0, BLOCK_N, T, stride_kt, T, BLOCK_N, HEAD_DIM, ld_layout
            )
            v = _gather_rows(
                V, v_base, k_perm_bh, slot0, BLOCK_N, T, stride_vt, T, BLOCK_N, HEAD_DIM, ld_layout
            )
            _cta_barrier()  # every warpgroup is done with the previous tile
            k_smem.store(k)
            v_smem.store(v)
            fence_async_shared()
            _cta_barrier()
            s = warpgroup_mma(q_smem, k_smem.permute((1, 0)), s_zero, use_acc=False)
            p, alpha, m_i, l_i = _softmax_step(
                s, m_i, l_i, q_pos, q_bucket, k_perm_bh, k_bucket_bh,
                slot0, T, qk_scale, j >= n_full, BLOCK_N, s_layout,
            )  # fmt: skip
            acc = acc * gl.convert_layout(alpha, gl.SliceLayout(1, o_layout))[:, None]
            p_op = gl.convert_layout(p.to(Q.dtype.element_ty), p_layout)
            acc = warpgroup_mma(p_op, v_smem, acc)
        return acc, m_i, l_i

    @gluon.jit
    def hopper_attention_fwd_kernel(
        q_desc, k_desc, v_desc, Q, K, V, Out, LSE,
        q_perm, q_bucket_sorted, q_composite, k_perm, k_bucket_sorted, k_composite,
        tile_start, tile_n_full, tile_end,
        stride_qb, stride_qt, stride_qh, stride_kb, stride_kt, stride_kh,
        stride_vb, stride_vt, stride_vh, stride_ob, stride_ot, stride_oh,
        H, T, n_tiles, qk_scale,
        BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, HEAD_DIM: gl.constexpr,
        STAGES: gl.constexpr, num_warps: gl.constexpr, WARP_SPECIALIZE: gl.constexpr,
    ):  # fmt: skip
        # The loop waits for tile j+1 before issuing tile j+STAGES-1: at least 3 stages.
        gl.static_assert(STAGES >= 3)
        # Program order as the portable kernel: the last query tile of each row first.
        pid = gl.program_id(0)
        bh = pid // n_tiles
        tile = n_tiles - 1 - pid % n_tiles
        b = (bh // H).to(gl.int64)
        h = (bh % H).to(gl.int64)
        row_base = bh.to(gl.int64) * T
        tile_idx = bh * n_tiles + tile
        start = gl.load(tile_start + tile_idx)
        n_full = gl.load(tile_n_full + tile_idx)
        end = gl.load(tile_end + tile_idx)
        n = (gl.maximum(end - start, 0) + BLOCK_N - 1) // BLOCK_N

        s_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, BLOCK_N, 16]
        )
        o_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, HEAD_DIM, 16]
        )
        row_layout: gl.constexpr = gl.SliceLayout(1, s_layout)

        # The tile's queries: positions, and buckets (the padding bucket where the range is
        # empty or past T, as in the portable kernel).
        q_slot0 = tile * BLOCK_M
        slots = q_slot0 + gl.arange(0, BLOCK_M, layout=row_layout)
        row_ok = slots < T
        q_bound = gl.where(end > start, T, 0)
        q_pos = gl.load(q_perm + row_base + slots, mask=row_ok, other=0)
        q_bucket = gl.load(
            q_bucket_sorted + row_base + slots, mask=slots < q_bound, other=QUERY_PAD_BUCKET
        )

        q_smem = gl.allocate_shared_memory(q_desc.dtype, q_desc.block_type.shape, q_desc.layout)
        k_smem = gl.allocate_shared_memory(k_desc.dtype, [STAGES, BLOCK_N, HEAD_DIM], k_desc.layout)
        v_smem = gl.allocate_shared_memory(v_desc.dtype, [STAGES, BLOCK_N, HEAD_DIM], v_desc.layout)
        bars = gl.allocate_shared_memory(gl.int64, [STAGES + 1, 1], mbarrier.MBarrierLayout())
        # Stages released by the computation, for the loader partition (WARP_SPECIALIZE).
        empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        for i in gl.static_range(STAGES + 1):
            mbarrier.init(bars.index(i), count=1)
        for i in gl.static_range(STAGES):
            mbarrier.init(empty.index(i), count=1)

        k_perm_bh = k_perm + row_base
        k_bucket_bh = k_bucket_sorted + row_base
        q_last = gl.minimum(q_slot0 + BLOCK_M, T) - 1
        contiguous = _run_contiguous(
            q_composite + row_base, q_bucket_sorted + row_base, q_slot0, q_last
        )
        if end > start:
            contiguous = contiguous & _run_contiguous(
                k_composite + row_base, k_bucket_bh, start, end - 1
            )
        if contiguous:
            # TMA rows of the (B*T, H*D) view: original positions of the first slots.
            q_row = b * T + gl.load(q_perm + row_base + q_slot0)
            k_row = b * T + gl.load(k_perm_bh + gl.minimum(start, T - 1))
            q_row = q_row.to(gl.int32)
            k_row = k_row.to(gl.int32)
            col = (h * HEAD_DIM).to(gl.int32)
            if WARP_SPECIALIZE:
                # One loader warp issues every TMA; the computing warps only wait on it.
                acc, m_i, l_i = gl.warp_specialize(
                    [
                        (
                            _ws_compute,
                            (
                                k_desc, v_desc, q_smem, k_smem, v_smem, bars, empty, k_row, col,
                                n, n_full, start, q_pos, q_bucket, k_perm_bh, k_bucket_bh, T,
                                qk_scale, BLOCK_M, BLOCK_N, HEAD_DIM, STAGES, s_layout, o_layout,
                            ),
                        ),
                        (
                            _ws_loader,
                            (
                                q_desc, k_desc, v_desc, q_smem, k_smem, v_smem, bars, empty,
                                q_row, k_row, col, n, STAGES, BLOCK_N,
                            ),
                        ),
                    ],
                    [1],
                    [24],
                )  # fmt: skip
            else:
                acc, m_i, l_i = _attend_tma(
                    q_desc, k_desc, v_desc, q_smem, k_smem, v_smem, bars, empty, q_row, k_row,
                    col, n, n_full, start, q_pos, q_bucket, k_perm_bh, k_bucket_bh, T, qk_scale,
                    BLOCK_M, BLOCK_N, HEAD_DIM, STAGES, s_layout, o_layout,
                )  # fmt: skip
        else:
            acc, m_i, l_i = _attend_gather(
                Q, K, V, q_smem, k_smem.index(0), v_smem.index(0),
                b * stride_qb + h * stride_qh, b * stride_kb + h * stride_kh,
                b * stride_vb + h * stride_vh, q_perm + row_base, q_slot0, q_bound,
                n, n_full, start, q_pos, q_bucket, k_perm_bh, k_bucket_bh, T,
                stride_qt, stride_kt, stride_vt, qk_scale,
                BLOCK_M, BLOCK_N, HEAD_DIM, s_layout, o_layout, num_warps,
            )  # fmt: skip
        for i in gl.static_range(STAGES + 1):
            mbarrier.invalidate(bars.index(i))
        for i in gl.static_range(STAGES):
            mbarrier.invalidate(empty.index(i))

        seen = l_i > 0.0
        l_safe = gl.where(seen, l_i, 1.0)
        out = acc / gl.convert_layout(l_safe, gl.SliceLayout(1, o_layout))[:, None]
        lse = gl.where(seen, m_i + gl.log2(l_safe), float("inf"))
        gl.store(LSE + row_base + slots, lse, mask=row_ok)
        o_rows: gl.constexpr = gl.SliceLayout(1, o_layout)
        o_pos = gl.convert_layout(q_pos, o_rows).to(gl.int64)
        o_ok = gl.convert_layout(row_ok, o_rows)
        offs_d = gl.arange(0, HEAD_DIM, layout=gl.SliceLayout(0, o_layout))
        o_ptrs = Out + b * stride_ob + h * stride_oh + o_pos[:, None] * stride_ot
        o_ptrs = o_ptrs + offs_d[None, :]
        gl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=o_ok[:, None])


def _descriptor(t: torch.Tensor, rows: int, head_dim: int) -> TensorDescriptor:
    """TMA descriptor of the (B*T, H*D) view of `t`, blocks of `rows` x `head_dim`."""
    B, T, H, D = t.shape
    gl_dtype = gl.bfloat16 if t.dtype == torch.bfloat16 else gl.float16
    layout = gl.NVMMASharedLayout.get_default_for([rows, head_dim], gl_dtype)
    return TensorDescriptor(t, [B * T, H * D], [t.stride(1), 1], [rows, head_dim], layout)


def forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    plan,
    sm_scale: float,
    out: torch.Tensor | None = None,
    lse: torch.Tensor | None = None,
    tiles: tuple[int, int, int, int] | None = None,
    warp_specialize: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(out (B, T, H, D), lse (BH, T) float32, base 2, sorted order): the Gluon forward on
    the plan's query tile ranges. Callers check `hopper.use_hopper` first. `out` / `lse`:
    buffers to write into (a check poisons them to see unwritten elements). `tiles`:
    (BLOCK_M, BLOCK_N, num_warps, STAGES) instead of `tile_shape` (tuning probes).
    `warp_specialize`: one loader warp issues the TMA loads (`_ws_loader`), not yet the
    default: it has not been timed."""
    from .plan import query_tile_ranges

    B, T, H, D = q.shape
    BH = B * H
    block_m, block_n, num_warps, stages = tiles or tile_shape(D, warp_specialize)
    if not all(_tma_compatible(t) for t in (q, k, v)):
        q, k, v = (t.contiguous() for t in (q, k, v))
    n_tiles = -(-T // block_m)
    ranges = query_tile_ranges(plan, block_m, block_n, None)
    if out is None:
        out = torch.empty((B, T, H, D), dtype=q.dtype, device=q.device)
    if lse is None:
        lse = torch.empty((BH, T), dtype=torch.float32, device=q.device)
    descs = (_descriptor(q, block_m, D), _descriptor(k, block_n, D), _descriptor(v, block_n, D))
    rows = (plan.queries.perm, plan.queries.bucket, plan.queries.composite)
    rows += (plan.keys.perm, plan.keys.bucket, plan.keys.composite)
    strides = (*q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *out.stride()[:3])
    hopper_attention_fwd_kernel[(BH * n_tiles,)](
        *descs,
        *(q, k, v, out, lse),
        *rows,
        *(ranges.start, ranges.n_full, ranges.end),
        *strides,
        *(H, T, n_tiles, sm_scale * LOG2E),
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        HEAD_DIM=D,
        STAGES=stages,
        WARP_SPECIALIZE=warp_specialize,
        num_warps=num_warps,
        **({"maxnreg": WS_MAXNREG} if warp_specialize else {}),
    )
    return out, lse
