"""`sorted_varlen`: hash-sparse attention for shared buckets with stock PyTorch.

When queries and keys share their buckets (q_hash == k_hash, as in the SCFA paper's
Hashformer, whose keys are the normalised queries), hash-sparse causal attention is dense
causal attention inside each bucket: sort each (batch, head)'s tokens by (bucket, position),
treat every (batch, head, bucket) segment as one sequence of a variable-length batch, run
PyTorch's varlen FlashAttention with a causal window, and scatter the output back. Within a
segment positions ascend, so "causal on sorted slots" is "causal on original positions".

Exact only for shared buckets: with q_hash != k_hash a query's keys are not the tokens of
its own segment, so the implementation refuses such points (`unavailable`, naming the suite
option `buckets: lsh_shared` that feeds shared buckets). The timed call pays the sort, the
gathers, one host synchronisation (the longest segment, which the varlen kernel takes as an
int) and the scatter, as a user of this recipe would.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from scfa_bench.impls.base import AttentionInputs, ImplUnavailable
from scfa_bench.impls.registry import register

# (packed q, packed k, packed v, cu_seqlens, max_len) -> packed causal output; packed tensors
# are (N, 1, D): every segment is one sequence of one head.
SegmentAttention = Callable[[Tensor, Tensor, Tensor, Tensor, int], Tensor]


@dataclass(frozen=True)
class Segments:
    """Tokens of every (batch, head) sorted by (bucket, position), as varlen sequences."""

    perm: Tensor  # (B, H, T) int64: original position of each sorted slot
    cu_seqlens: Tensor  # (S + 1,) int32: segment starts in the flattened (B*H*T) order
    max_len: int  # longest segment


def segments(bucket: Tensor, n_buckets: int) -> Segments:
    """Sort (B, H, T) bucket ids in [0, n_buckets) into per-(batch, head, bucket) segments.

    Empty segments are dropped (one host sync, shared with the longest length's).
    """
    b, h, t = bucket.shape
    positions = torch.arange(t, device=bucket.device, dtype=torch.int64)
    _, perm = torch.sort((bucket.to(torch.int64) * t + positions).contiguous(), dim=-1)
    segment_ids = torch.arange(b * h, device=bucket.device, dtype=torch.int64).view(
        b, h, 1
    ) * n_buckets + bucket.to(torch.int64)
    lengths = torch.bincount(segment_ids.flatten(), minlength=b * h * n_buckets)
    lengths = lengths[lengths > 0]
    cu_seqlens = torch.zeros(lengths.numel() + 1, dtype=torch.int32, device=bucket.device)
    torch.cumsum(lengths, dim=0, out=cu_seqlens[1:])
    return Segments(perm=perm, cu_seqlens=cu_seqlens, max_len=int(lengths.max().item()))


def pack(x: Tensor, perm: Tensor) -> Tensor:
    """(B, T, H, D) -> (B*H*T, 1, D) in sorted order."""
    xt = x.transpose(1, 2)
    index = perm[..., None].expand(-1, -1, -1, x.shape[-1])
    return xt.gather(2, index).reshape(-1, 1, x.shape[-1])


def unpack(packed: Tensor, perm: Tensor) -> Tensor:
    """(B*H*T, 1, D) in sorted order -> (B, T, H, D) at original positions (a view)."""
    b, h, t = perm.shape
    sorted_out = packed.reshape(b, h, t, -1)
    index = perm[..., None].expand(-1, -1, -1, sorted_out.shape[-1])
    return torch.empty_like(sorted_out).scatter(2, index, sorted_out).transpose(1, 2)


def sorted_segment_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    bucket: Tensor,
    n_buckets: int,
    attend: SegmentAttention,
) -> Tensor:
    """Shared-bucket hash-sparse causal attention: q, k, v (B, T, H, D), bucket (B, T, H)."""
    seg = segments(bucket.transpose(1, 2), n_buckets)
    packed = [pack(x, seg.perm) for x in (q, k, v)]
    return unpack(attend(*packed, seg.cu_seqlens, seg.max_len), seg.perm)


def varlen_causal() -> SegmentAttention:
    """PyTorch's `varlen_attn`, causal: `window_size=(-1, 0)` (torch >= 2.10) or `is_causal`."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError as exc:
        raise ImplUnavailable(f"this torch has no torch.nn.attention.varlen: {exc}") from None
    params = inspect.signature(varlen_attn).parameters
    if "window_size" in params:
        causal: dict[str, object] = {"window_size": (-1, 0)}
    elif "is_causal" in params:
        causal = {"is_causal": True}
    else:
        raise ImplUnavailable("torch.nn.attention.varlen.varlen_attn takes no causal option")

    def attend(q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, max_len: int) -> Tensor:
        return varlen_attn(q, k, v, cu_seqlens, cu_seqlens, max_len, max_len, **causal)

    return attend


@register(
    name="sorted_varlen",
    pattern="hash",
    devices=("cuda",),
    dtypes=("fp16", "bf16"),
    description=(
        "shared buckets only: sort by bucket, torch varlen FlashAttention (causal) over the "
        "bucket segments, unsort"
    ),
)
class SortedVarlen:
    def available(self, device: str) -> tuple[bool, str]:
        if device != "cuda":
            return False, "torch's varlen attention (FlashAttention) runs on CUDA only"
        if not torch.cuda.is_available():
            return False, "no CUDA device"
        try:
            varlen_causal()
        except ImplUnavailable as exc:
            return False, str(exc)
        return True, ""

    def prepare(self, inputs: AttentionInputs) -> Callable[[], Tensor]:
        q, k, v, q_hash, k_hash = inputs.q, inputs.k, inputs.v, inputs.q_hash, inputs.k_hash
        if q_hash is None or k_hash is None:
            raise ImplUnavailable("sorted_varlen needs bucket ids (a hash-sparse point)")
        if q_hash is not k_hash and not torch.equal(q_hash, k_hash):
            raise ImplUnavailable(
                "sorted_varlen is exact only for shared buckets (q_hash == k_hash); "
                "this point's buckets differ: use `buckets: lsh_shared` in the suite"
            )
        if q.dtype not in (torch.float16, torch.bfloat16):
            raise ImplUnavailable(f"varlen FlashAttention takes fp16/bf16, not {q.dtype}")
        n_buckets = int(q_hash.max().item()) + 1  # known to the user; not part of the call
        attend = varlen_causal()
        return lambda: sorted_segment_attention(q, k, v, q_hash, n_buckets, attend)
