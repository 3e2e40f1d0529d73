"""Limit baselines: the best dense kernel (cuDNN through SDPA) doing the work the sparse
pattern allows, with the permutation for free. They compute a different attention from the
point's pattern, so they are labelled `kind = "limit"` and checked against a dense reference
of what they do compute (`effective_inputs`), never against the sparse reference.

* `limit_hash`: hash-sparse with nb buckets allows about T^2 / (2 nb) pairs; the limit is
  causal attention on nb equal segments of T / nb tokens, i.e. (B, T) reshaped to
  (B * nb, T / nb) (a view: no copy). nb is the point's bucket count (largest id + 1).
  Equal segments, not the actual bucket sizes: SDPA's cuDNN backend takes no per-sequence
  lengths (torch's varlen API is FlashAttention-2, slower than cuDNN, so a varlen limit
  would be a lower bar), and with random buckets the sizes differ from T / nb by about
  sqrt(T / nb), which changes the pair count by O(T), not O(T^2).
* `limit_qk`: QK-sparse with drop rate p is causal attention over the kept rows; the limit
  is cuDNN causal on (B, m) rows with m = the mean number of kept queries per (batch, head)
  (about (1 - p) T), compacted: the first m rows stand for the kept ones, copied once
  outside the timing.

The reference each is checked against: `limit_hash` the hash pattern "same segment and
causal" over the same q, k, v; `limit_qk` dense causal attention over the m compacted rows.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from scfa_bench.impls.base import AttentionInputs, ImplUnavailable
from scfa_bench.impls.registry import register
from scfa_bench.impls.sdpa import PinnedSdpa


def segment_count(q_hash: Tensor, k_hash: Tensor) -> int:
    """The point's bucket count as the limit sees it: largest id + 1."""
    return int(max(q_hash.max().item(), k_hash.max().item())) + 1


def segment_hashes(batch: int, seq_len: int, heads: int, n_segments: int, device) -> Tensor:
    """(B, T, H) int32 segment ids t // (T / n_segments): the limit's pattern as buckets."""
    if seq_len % n_segments:
        raise ImplUnavailable(
            f"limit_hash: seq_len {seq_len} is not a multiple of the bucket count {n_segments} "
            "(equal segments needed)"
        )
    ids = torch.arange(seq_len, device=device, dtype=torch.int32) // (seq_len // n_segments)
    return ids.view(1, seq_len, 1).expand(batch, seq_len, heads).contiguous()


def kept_rows(q_keep: Tensor) -> int:
    """Mean kept queries per (batch, head), rounded, at least 1."""
    return max(1, round(q_keep.float().mean().item() * q_keep.shape[1]))


class _Limit:
    kind = "limit"
    backend_name = "CUDNN_ATTENTION"  # the tests swap in MATH to run on the CPU

    def _sdpa(self) -> PinnedSdpa:
        sdpa = PinnedSdpa()
        sdpa.backend_name = self.backend_name
        sdpa.cuda_only = self.backend_name != "MATH"
        return sdpa

    def available(self, device: str) -> tuple[bool, str]:
        return self._sdpa().available(device)


@register(
    name="limit_hash",
    pattern="hash",
    devices=("cuda",),
    dtypes=("fp16", "bf16"),  # the cuDNN backend, as sdpa_cudnn
    cuda_graph=False,  # cuDNN's backward, as sdpa_cudnn
    max_head_dim=128,
    head_dim_multiple=8,
    description="limit: cuDNN causal on nb equal segments (B*nb, T/nb); not the hash attention",
)
class LimitHash(_Limit):
    def effective_inputs(self, inputs: AttentionInputs) -> AttentionInputs:
        if inputs.q_hash is None or inputs.k_hash is None:
            raise ImplUnavailable("limit_hash needs bucket ids (a hash-sparse point)")
        b, t, h, _ = inputs.q.shape
        ids = segment_hashes(b, t, h, segment_count(inputs.q_hash, inputs.k_hash), inputs.q.device)
        return AttentionInputs(q=inputs.q, k=inputs.k, v=inputs.v, q_hash=ids, k_hash=ids)

    def prepare(self, inputs: AttentionInputs) -> Callable[[], Tensor]:
        if inputs.q_hash is None:
            raise ImplUnavailable("limit_hash needs its segment ids (effective_inputs)")
        b, t, h, d = inputs.q.shape
        n_segments = int(inputs.q_hash.max().item()) + 1
        # (B, T, H, D) -> (B * nb, T / nb, H, D): a view of contiguous inputs.
        segmented = [x.reshape(b * n_segments, t // n_segments, h, d) for x in inputs.leaves]
        forward = self._sdpa().prepare(AttentionInputs(*segmented))
        return lambda: forward().reshape(b, t, h, d)


@register(
    name="limit_qk",
    pattern="qk",
    devices=("cuda",),
    dtypes=("fp16", "bf16"),
    cuda_graph=False,  # cuDNN's backward, as sdpa_cudnn
    max_head_dim=128,
    head_dim_multiple=8,
    description="limit: cuDNN causal on the (B, ~(1-p)T) compacted rows; not the QK attention",
)
class LimitQk(_Limit):
    def effective_inputs(self, inputs: AttentionInputs) -> AttentionInputs:
        if inputs.q_keep is None:
            raise ImplUnavailable("limit_qk needs keep masks (a QK-sparse point)")
        m = kept_rows(inputs.q_keep)
        compact = lambda x: x[:, :m].detach().clone().requires_grad_(x.requires_grad)
        return AttentionInputs(q=compact(inputs.q), k=compact(inputs.k), v=compact(inputs.v))

    def prepare(self, inputs: AttentionInputs) -> Callable[[], Tensor]:
        return self._sdpa().prepare(inputs)
