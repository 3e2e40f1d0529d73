"""`reformer_lsh`: Reformer-style LSH attention (Kitaev, Kaiser, Levskaya 2020) in PyTorch.

Per hash round: sort each (batch, head)'s queries by (bucket, position) and its keys
likewise, cut both sorted orders into chunks of `chunk_size` slots, and let query chunk i
attend key chunks i and i-1, causal on original positions and (by default) only to keys of
its own bucket. Nothing of size T x T: the scores are (B, H, T / chunk, chunk, 2 chunk).

It is approximate: a query loses the same-bucket keys that fall more than one chunk before
its own chunk. With several rounds (the first uses the point's buckets, the others angular
LSH of q and k with fixed seeds, the same planes for both) the result is softmax attention
over the union of the keys any round lets a query see: each round's scores of a pair seen in
c rounds are lowered by log(c) and the rounds are merged by their log-sum-exp, as in the
paper's shared-QK scheme. `reformer_mask` gives exactly that union, so the dense masked
reference of it is this implementation's own reference; `relative_error_vs_exact` measures
how far it is from exact hash-sparse attention.

A query that sees no key in any round outputs 0, as in the other implementations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from scfa_bench.impls.base import AttentionInputs, ImplUnavailable
from scfa_bench.impls.registry import register

# Chunk length of the Reformer paper's experiments.
DEFAULT_CHUNK = 64
# Seeds of the extra rounds' planes: fixed, so every run hashes alike.
_ROUND_SEED = 0x5EF0
# Fill for disallowed scores: finite, so rows without any key stay NaN-free.
_NEG = -1e30


@dataclass(frozen=True)
class _Round:
    """One hash round of one side, (B, H, ...) layout."""

    bucket: Tensor  # (B, H, T) bucket ids at original positions
    perm: Tensor  # (B, H, T) int64: original position of each sorted slot
    slot: Tensor  # (B, H, T) int64: sorted slot of each original position (inverse of perm)


def _sort_round(bucket_bth: Tensor) -> _Round:
    bucket = bucket_bth.transpose(1, 2).to(torch.int64).contiguous()
    t = bucket.shape[-1]
    positions = torch.arange(t, device=bucket.device)
    _, perm = torch.sort(bucket * t + positions, dim=-1)
    slot = torch.empty_like(perm).scatter_(-1, perm, positions.expand_as(perm).contiguous())
    return _Round(bucket=bucket, perm=perm, slot=slot)


def _allowed(
    q_round: _Round,
    k_round: _Round,
    q_pos: Tensor,
    k_pos: Tensor,
    chunk: int,
    same_bucket: bool,
) -> Tensor:
    """Whether the round lets query positions q_pos see key positions k_pos (broadcast)."""
    b = torch.arange(q_pos.shape[0], device=q_pos.device).view(-1, *([1] * (q_pos.dim() - 1)))
    h = torch.arange(q_pos.shape[1], device=q_pos.device).view(1, -1, *([1] * (q_pos.dim() - 2)))
    q_chunk = q_round.slot[b, h, q_pos] // chunk
    k_chunk = k_round.slot[b, h, k_pos] // chunk
    ok = ((q_chunk - k_chunk) >= 0) & ((q_chunk - k_chunk) <= 1) & (k_pos <= q_pos)
    if same_bucket:
        ok = ok & (q_round.bucket[b, h, q_pos] == k_round.bucket[b, h, k_pos])
    return ok


def reformer_mask(
    q_hashes: Sequence[Tensor],
    k_hashes: Sequence[Tensor],
    chunk: int,
    rows: Tensor | None = None,
    *,
    same_bucket: bool = True,
) -> Tensor:
    """(B, H, R, T) bool: the keys some round lets each query row see (the dense truth)."""
    b, t, h = q_hashes[0].shape
    device = q_hashes[0].device
    rows = torch.arange(t, device=device) if rows is None else rows.to(device)
    q_pos = rows.view(1, 1, -1, 1).expand(b, h, -1, 1)
    k_pos = torch.arange(t, device=device).view(1, 1, 1, -1).expand(b, h, 1, -1)
    mask = torch.zeros((b, h, rows.numel(), t), dtype=torch.bool, device=device)
    for qh, kh in zip(q_hashes, k_hashes, strict=True):
        mask |= _allowed(_sort_round(qh), _sort_round(kh), q_pos, k_pos, chunk, same_bucket)
    return mask


def _chunked(x: Tensor, n_chunks: int, chunk: int) -> Tensor:
    """(B, H, T, ...) -> (B, H, n_chunks, chunk, ...), zero padded at the end."""
    pad = n_chunks * chunk - x.shape[2]
    if pad:
        x = torch.cat([x, x.new_zeros((*x.shape[:2], pad, *x.shape[3:]))], dim=2)
    return x.reshape(*x.shape[:2], n_chunks, chunk, *x.shape[3:])


def _with_previous(x: Tensor) -> Tensor:
    """(B, H, n, c, ...) -> (B, H, n, 2c, ...): chunk i-1 (zeros before the first) then i."""
    previous = torch.cat([torch.zeros_like(x[:, :, :1]), x[:, :, :-1]], dim=2)
    return torch.cat([previous, x], dim=3)


def reformer_lsh_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    q_hashes: Sequence[Tensor],
    k_hashes: Sequence[Tensor],
    chunk: int = DEFAULT_CHUNK,
    *,
    same_bucket: bool = True,
    sm_scale: float | None = None,
) -> Tensor:
    """Reformer LSH attention; q, k, v (B, T, H, D), hashes (B, T, H) per round.

    Products in the input dtype, softmax in float32; returns (B, T, H, D) in q's dtype.
    """
    if chunk < 1:
        raise ValueError(f"chunk: expected >= 1, got {chunk}")
    if not q_hashes or len(q_hashes) != len(k_hashes):
        raise ValueError("q_hashes and k_hashes: expected the same number (>= 1) of rounds")
    b, t, h, d = q.shape
    scale = 1.0 / math.sqrt(d) if sm_scale is None else sm_scale
    n_chunks = -(-t // chunk)
    q_rounds = [_sort_round(x) for x in q_hashes]
    k_rounds = [_sort_round(x) for x in k_hashes]
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))  # (B, H, T, D)
    gather = lambda x, perm: x.gather(2, perm[..., None].expand(-1, -1, -1, d))

    outs, lses = [], []
    for qr, kr in zip(q_rounds, k_rounds, strict=True):
        qs = _chunked(gather(qt, qr.perm), n_chunks, chunk)  # (B, H, n, c, D)
        ks = _with_previous(_chunked(gather(kt, kr.perm), n_chunks, chunk))  # (B, H, n, 2c, D)
        vs = _with_previous(_chunked(gather(vt, kr.perm), n_chunks, chunk))
        # Padding slots get position -1 (keys) / T (queries): never allowed, never seen.
        q_pos = _chunked(qr.perm + 1, n_chunks, chunk) - 1
        q_pos = torch.where(q_pos < 0, t, q_pos)
        k_pos = _with_previous(_chunked(kr.perm + 1, n_chunks, chunk)) - 1
        valid = (k_pos >= 0)[..., None, :] & (q_pos < t)[..., :, None]
        qp, kp = q_pos.clamp(max=t - 1)[..., :, None], k_pos.clamp(min=0)[..., None, :]
        allowed = valid & _allowed(qr, kr, qp, kp, chunk, same_bucket)
        scores = torch.matmul(qs, ks.transpose(-1, -2)).float() * scale  # (B, H, n, c, 2c)
        if len(q_rounds) > 1:
            # Pairs several rounds see count once in the merged softmax.
            seen = sum(
                (_allowed(q2, k2, qp, kp, chunk, same_bucket) & valid).float()
                for q2, k2 in zip(q_rounds, k_rounds, strict=True)
            )
            scores = scores - torch.log(seen.clamp(min=1.0))
        scores = scores.masked_fill(~allowed, _NEG)
        any_key = allowed.any(dim=-1)
        lse = torch.where(any_key, torch.logsumexp(scores, dim=-1), float("-inf"))
        probs = torch.softmax(scores, dim=-1) * any_key[..., None]
        out = torch.matmul(probs.to(vs.dtype), vs).float()  # (B, H, n, c, D)
        # Back to original positions (drop the padding slots).
        out = out.reshape(b, h, n_chunks * chunk, d)[:, :, :t]
        lse = lse.reshape(b, h, n_chunks * chunk)[:, :, :t]
        index = qr.perm[..., None].expand(-1, -1, -1, d)
        outs.append(torch.empty_like(out).scatter(2, index, out))
        lses.append(torch.empty_like(lse).scatter(2, qr.perm, lse))

    if len(outs) == 1:
        merged = outs[0]
    else:
        lse_all = torch.stack(lses)  # (R, B, H, T)
        total = torch.logsumexp(lse_all, dim=0)
        safe_total = torch.where(torch.isfinite(total), total, 0.0)
        weights = torch.exp(lse_all - safe_total)  # exp(-inf) = 0 for rounds without keys
        merged = (torch.stack(outs) * weights[..., None]).sum(dim=0)
    return merged.to(q.dtype).transpose(1, 2)


def extra_round_hashes(
    q: Tensor, k: Tensor, n_buckets: int, n_rounds: int, *, seed: int = 0
) -> tuple[list[Tensor], list[Tensor]]:
    """Rounds 1..n_rounds-1: angular LSH of q and k, the same planes for both, fixed seeds."""
    from scfa_kernels import lsh_buckets

    n_buckets = max(2, n_buckets + n_buckets % 2)  # angular LSH needs an even count
    q_hashes, k_hashes = [], []
    for r in range(1, n_rounds):
        round_seed = _ROUND_SEED + 1000 * seed + r
        make = lambda x, s=round_seed: lsh_buckets(
            x, n_buckets, generator=torch.Generator(device=x.device.type).manual_seed(s)
        )
        with torch.no_grad():
            q_hashes.append(make(q))
            k_hashes.append(make(k))
    return q_hashes, k_hashes


def relative_error_vs_exact(
    q: Tensor, k: Tensor, v: Tensor, q_hash: Tensor, k_hash: Tensor, out: Tensor
) -> float:
    """max|out - exact| / max|exact| against exact hash-sparse attention (float32 reference,
    all rows: for small T or sampled use)."""
    from scfa_kernels import reference

    exact = reference.hash_sparse_attention(q.detach(), k.detach(), v.detach(), q_hash, k_hash)
    scale = exact.abs().max().item()
    diff = (out.detach().float() - exact).abs().max().item()
    return diff / scale if scale > 0 else diff


class _ReformerLsh:
    """Reformer LSH attention, `n_rounds` hash rounds, `chunk` slots per chunk."""

    kind = "approximate"  # checked against its own reference (`effective_inputs`)
    n_rounds = 1
    chunk = DEFAULT_CHUNK

    def available(self, device: str) -> tuple[bool, str]:
        if device == "cuda" and not torch.cuda.is_available():
            return False, "no CUDA device"
        return True, ""

    def _hashes(self, inputs: AttentionInputs) -> tuple[list[Tensor], list[Tensor]]:
        if inputs.q_hash is None or inputs.k_hash is None:
            raise ImplUnavailable("reformer_lsh needs bucket ids (a hash-sparse point)")
        cache = getattr(self, "_hash_cache", None)
        if cache is not None and cache[0] is inputs.q_hash and cache[1] is inputs.k_hash:
            return cache[2], cache[3]
        n_buckets = int(max(inputs.q_hash.max().item(), inputs.k_hash.max().item())) + 1
        extra_q, extra_k = extra_round_hashes(inputs.q, inputs.k, n_buckets, self.n_rounds)
        q_hashes, k_hashes = [inputs.q_hash, *extra_q], [inputs.k_hash, *extra_k]
        self._hash_cache = (inputs.q_hash, inputs.k_hash, q_hashes, k_hashes)
        return q_hashes, k_hashes

    def effective_inputs(self, inputs: AttentionInputs) -> AttentionInputs:
        """The same tensors, checked against the mask this implementation computes."""
        q_hashes, k_hashes = self._hashes(inputs)
        chunk = self.chunk
        return replace(
            inputs,
            reference_mask=lambda rows: reformer_mask(q_hashes, k_hashes, chunk, rows),
        )

    def prepare(self, inputs: AttentionInputs) -> Callable[[], Tensor]:
        q_hashes, k_hashes = self._hashes(inputs)  # outside the timing, like round 0's
        q, k, v, chunk = inputs.q, inputs.k, inputs.v, self.chunk
        return lambda: reformer_lsh_attention(q, k, v, q_hashes, k_hashes, chunk)


@register(
    name="reformer_lsh",
    pattern="hash",
    devices=("cuda", "cpu"),
    description=f"Reformer LSH attention (approximate): 1 round, chunks of {DEFAULT_CHUNK}",
)
class ReformerLsh(_ReformerLsh):
    n_rounds = 1


@register(
    name="reformer_lsh_r4",
    pattern="hash",
    devices=("cuda", "cpu"),
    description=f"Reformer LSH attention (approximate): 4 rounds, chunks of {DEFAULT_CHUNK}",
)
class ReformerLshR4(_ReformerLsh):
    n_rounds = 4
