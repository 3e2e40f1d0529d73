"""Testing the kernels against the reference: seeded inputs, patterns, error measures, checks.

`scfa_kernels.testing` is what the kernel tests (and any caller checking the kernels) use:
the kernels are compared with `scfa_kernels.reference` computed in float32 from the SAME
rounded inputs the kernel saw, so only the kernel's own arithmetic error is measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from . import reference
from .attention import hash_sparse_attention, qk_sparse_attention
from .tolerances import TOLERANCES, max_rel_err


@dataclass(frozen=True)
class SparsityMask:
    """The masks of one test case: kind 'hash' (a, c = q_hash, k_hash) or 'qk' (a, c =
    q_keep, k_keep), with the kernel call and the reference that go with it."""

    kind: str
    a: Tensor
    c: Tensor
    # hash only: passed to the kernel; ids outside [0, n_buckets) then match nothing.
    n_buckets: int | None = None

    def kernel(self, q: Tensor, k: Tensor, v: Tensor, sm_scale: float | None = None) -> Tensor:
        if self.kind == "hash":
            return hash_sparse_attention(q, k, v, self.a, self.c, sm_scale, self.n_buckets)
        return qk_sparse_attention(q, k, v, self.a, self.c, sm_scale=sm_scale)

    def mask(self) -> Tensor:
        if self.kind == "hash":
            return reference.hash_mask(self.a, self.c, n_buckets=self.n_buckets)
        return reference.qk_mask(self.a, self.c)

    def reference_out(self, q: Tensor, k: Tensor, v: Tensor, sm_scale: float | None = None):
        return reference.masked_attention(q, k, v, self.mask(), sm_scale)

    def reference_grads(self, q, k, v, do, sm_scale: float | None = None):
        if self.kind == "hash":
            return reference.hash_sparse_attention_grads(
                q, k, v, self.a, self.c, do, sm_scale=sm_scale, n_buckets=self.n_buckets
            )
        return reference.qk_sparse_attention_grads(q, k, v, self.a, self.c, do, sm_scale=sm_scale)

    def stranded(self) -> Tensor:
        """(B, T, H) bool: queries with no allowed key."""
        return ~self.mask().any(dim=-1).permute(0, 2, 1)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_qkv(
    b: int, t: int, h: int, d: int, dtype: torch.dtype, device: str, seed: int
) -> tuple[Tensor, Tensor, Tensor]:
    gen = generator(seed)
    return tuple(
        torch.randn(b, t, h, d, generator=gen).to(dtype=dtype, device=device) for _ in range(3)
    )


def random_hash(
    b: int,
    t: int,
    h: int,
    n_buckets: int,
    device: str,
    seed: int,
    *,
    given: bool = False,
    out_of_range: float = 0.0,
) -> SparsityMask:
    """Ids in [0, n_buckets); `given` passes n_buckets to the kernel, and then a fraction
    `out_of_range` of the ids is moved outside (negative or >= n_buckets)."""
    gen = generator(seed)
    q_hash, k_hash = (torch.randint(0, n_buckets, (b, t, h), generator=gen) for _ in range(2))
    if out_of_range:
        for ids in (q_hash, k_hash):
            outside = torch.rand(ids.shape, generator=gen) < out_of_range
            far = torch.randint(0, 2, ids.shape, generator=gen).bool()
            ids[outside] = torch.where(far[outside], n_buckets + 5, -1 - ids[outside])
    count = n_buckets if (given or out_of_range) else None
    return SparsityMask("hash", q_hash.to(device), k_hash.to(device), count)


def random_keep(b: int, t: int, h: int, drop, device: str, seed: int) -> SparsityMask:
    """drop: a float, or one drop rate per head (heads with different sparsity)."""
    gen = generator(seed)
    p_drop = torch.as_tensor(drop, dtype=torch.float32).expand(h)
    q_keep, k_keep = (torch.rand(b, t, h, generator=gen) >= p_drop for _ in range(2))
    return SparsityMask("qk", q_keep.to(device), k_keep.to(device))


def expect(condition: object, message: str) -> None:
    """`assert` that survives `python -O`: raise AssertionError(message) unless condition."""
    if not condition:
        raise AssertionError(message)


def assert_matches(got: Tensor, want: Tensor, bound: float, what: str) -> None:
    """Same shape, finite, and `max_rel_err` within `bound`."""
    expect(got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}")
    expect(torch.isfinite(got).all(), f"{what}: non-finite values")
    err = max_rel_err(got, want)
    expect(err <= bound, f"{what}: norm-relative error {err:.3g} > {bound:.3g}")


def check_forward(
    pattern: SparsityMask, q: Tensor, k: Tensor, v: Tensor, sm_scale: float | None = None
) -> Tensor:
    """Kernel output against the reference; stranded rows must be exactly 0. Returns it."""
    out = pattern.kernel(q, k, v, sm_scale)
    expect(out.dtype == q.dtype and out.device == q.device, f"out is {out.dtype} on {out.device}")
    want = pattern.reference_out(q.float(), k.float(), v.float(), sm_scale).cpu()
    got = out.float().cpu()
    assert_matches(got, want, TOLERANCES[q.dtype].out, "out")
    stranded = pattern.stranded().cpu()
    expect(torch.count_nonzero(got[stranded]) == 0, "stranded queries must output exactly 0")
    return out


def check_backward(
    pattern: SparsityMask,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    sm_scale: float | None = None,
    seed: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Kernel dq, dk, dv (autograd, random upstream grad) against the exact reference."""
    leaves = [x.detach().clone().requires_grad_() for x in (q, k, v)]
    out = pattern.kernel(*leaves, sm_scale)
    do = torch.randn(out.shape, generator=generator(seed)).to(dtype=q.dtype, device=q.device)
    out.backward(do)
    want = pattern.reference_grads(q.float(), k.float(), v.float(), do.float(), sm_scale)
    grads = tuple(x.grad for x in leaves)
    for name, g, w in zip(("dq", "dk", "dv"), grads, want, strict=True):
        expect(g is not None, f"{name}: no gradient")
        expect(g.dtype == q.dtype and g.shape == q.shape, f"{name}: {g.dtype} {tuple(g.shape)}")
        assert_matches(g.float().cpu(), w.cpu(), TOLERANCES[q.dtype].grad, name)
    stranded = pattern.stranded().cpu()
    expect(torch.count_nonzero(grads[0].float().cpu()[stranded]) == 0, "stranded dq must be 0")
    return grads
