"""The Hopper backward's scheme, checked where a CPU can: its prep kernel (portable Triton, run
by the interpreter) and the gradients its Gluon kernels compute from it (dense causal
attention in original order, the LSE moved there, a -inf bias on keys out of range),
written here in float64 torch and compared with the exact reference on plans of one bucket
with rows out of range. The Gluon kernels themselves compile in test_gluon_fwd.py and run on
a GPU in `tools/gpu_hopper_check.py`; which calls take them: test_hopper.py."""

from __future__ import annotations

import pytest
import torch

from scfa_kernels import _gluon_bwd, hash_sparse_attention, ops, qk_sparse_attention, reference
from scfa_kernels.plan import SparsityPlan
from scfa_kernels.testing import generator, make_qkv, random_hash, random_keep

pytestmark = pytest.mark.slow
LOG2E = 1.4426950408889634
B, H, D = 2, 2, 16
SCALE = 0.25
# Dense, out-of-range hash ids, dropped queries and keys; T over one prep tile (64) and not a
# multiple of it.
CASES = ["dense", "hash_out_of_range", "qk_drop"]


def _case(name: str, T: int, device: str):
    """(q, k, v, forward outputs (out, lse, plan), exact gradients' function, key ids valid)."""
    q, k, v = make_qkv(B, T, H, D, torch.float32, device, seed=T)
    if name == "qk_drop":
        pattern = random_keep(B, T, H, 0.5, device, seed=T)
        outputs = ops.qk_sparse_attention_op(q, k, v, pattern.a, pattern.c, SCALE)

        def exact(do):
            return reference.qk_sparse_attention_grads(q, k, v, pattern.a, pattern.c, do, SCALE)

        return q, k, v, outputs, exact, pattern.c
    out_of_range = 0.3 if name == "hash_out_of_range" else 0.0
    pattern = random_hash(B, T, H, 1, device, seed=T, given=True, out_of_range=out_of_range)
    outputs = ops.hash_sparse_attention_op(q, k, v, pattern.a, pattern.c, SCALE, 1)

    def exact(do):
        return reference.hash_sparse_attention_grads(
            q, k, v, pattern.a, pattern.c, do, SCALE, n_buckets=1
        )

    return q, k, v, outputs, exact, pattern.c == 0


def _prepared(outputs, do):
    out, lse, perm, bucket, composite = outputs
    plan = SparsityPlan(perm=perm, bucket=bucket, composite=composite)
    return _gluon_bwd.prepare(do, out, lse, plan, n_buckets=1), plan


def _by_head(rows: torch.Tensor) -> torch.Tensor:
    """(BH, T) -> (B, H, T), float64."""
    return rows.double().view(B, H, -1)


def _gluon_scheme_grads(q, k, v, do, lse_orig, delta, key_bias):
    """What the dK/dV and dQ kernels compute, in float64: P = exp2(S * scale * log2 e - LSE
    + bias) under the causal mask, dS = P (dP - Delta), gradients of dense attention."""
    q, k, v, do = (t.double() for t in (q, k, v, do))
    T = q.shape[1]
    s = torch.einsum("bqhd,bkhd->bhqk", q, k) * SCALE * LOG2E
    p = torch.exp2(s - _by_head(lse_orig)[..., :, None] + _by_head(key_bias)[..., None, :])
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    p = torch.where(causal, p, 0.0)
    dp = torch.einsum("bqhd,bkhd->bhqk", do, v)
    ds = p * (dp - _by_head(delta)[..., :, None])
    dq = torch.einsum("bhqk,bkhd->bqhd", ds, k) * SCALE
    dk = torch.einsum("bhqk,bqhd->bkhd", ds, q) * SCALE
    dv = torch.einsum("bhqk,bqhd->bkhd", p, do)
    return dq, dk, dv


@pytest.mark.parametrize("T", [37, 70])
@pytest.mark.parametrize("name", CASES)
def test_prep_moves_lse_to_original_order_and_biases_keys_out_of_range(device, name, T):
    _q, _k, _v, outputs, _exact, key_valid = _case(name, T, device)
    do = torch.randn(outputs[0].shape, generator=generator(1)).to(device)
    (lse_orig, delta, key_bias), plan = _prepared(outputs, do)
    lse = outputs[1]
    perm = plan.queries.perm.long()
    assert torch.equal(lse_orig.gather(1, perm), lse)
    valid = key_valid.permute(0, 2, 1).reshape(B * H, T)
    assert torch.equal(key_bias == 0, valid) and bool((key_bias[~valid] == -torch.inf).all())
    want = (outputs[0].float() * do.float()).sum(-1).permute(0, 2, 1).reshape(B * H, T)
    torch.testing.assert_close(delta, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("T", [37, 70])
@pytest.mark.parametrize("name", CASES)
def test_the_gluon_kernels_scheme_gives_the_exact_gradients(device, name, T):
    q, k, v, outputs, exact, _valid = _case(name, T, device)
    do = torch.randn(outputs[0].shape, generator=generator(2)).to(device)
    (lse_orig, delta, key_bias), _plan = _prepared(outputs, do)
    got = _gluon_scheme_grads(q, k, v, do, lse_orig, delta, key_bias)
    for g, want, label in zip(got, exact(do), ("dq", "dk", "dv"), strict=True):
        torch.testing.assert_close(g.float(), want.float(), rtol=1e-4, atol=1e-4, msg=label)


def test_the_hopper_backward_takes_only_plans_of_one_bucket(device):
    q, k, v = make_qkv(1, 8, 1, D, torch.float32, device, seed=0)
    with pytest.raises(ValueError, match="one bucket, not 2"):
        _gluon_bwd.backward(q, q, k, v, q, None, None, SCALE, n_buckets=2)


def test_each_call_asks_for_the_hopper_path_with_its_own_density(device, monkeypatch):
    """Forward and backward ask `use_hopper` with dense=True for one-bucket hash-sparse calls
    and dense=False for QK-sparse (eager and operator paths); where it says yes the backward
    is the Gluon one."""
    asked: list[bool] = []

    def portable_and_record(q, dense):
        asked.append(dense)
        return False

    monkeypatch.setattr(ops, "use_hopper", portable_and_record)
    q, k, v = (t.requires_grad_() for t in make_qkv(1, 16, 1, D, torch.float32, device, seed=4))
    ids = torch.zeros(1, 16, 1, dtype=torch.int64, device=device)
    keep = torch.ones(1, 16, 1, dtype=torch.bool, device=device)
    calls = (  # (the call, whether it is the dense case)
        (lambda: hash_sparse_attention(q, k, v, ids, ids, n_buckets=1), True),
        (lambda: hash_sparse_attention(q, k, v, ids, ids % 3, n_buckets=3), False),
        (lambda: qk_sparse_attention(q, k, v, keep, keep), False),
        # The operators, as torch.compile calls them.
        (lambda: ops.hash_sparse_attention_op(q, k, v, ids, ids, SCALE, 1)[0], True),
        (lambda: ops.hash_sparse_attention_op(q, k, v, ids, ids, SCALE, 3)[0], False),
        (lambda: ops.qk_sparse_attention_op(q, k, v, keep, keep, SCALE)[0], False),
    )
    for index, (call, dense) in enumerate(calls):
        asked.clear()
        call().sum().backward()
        assert asked == [dense, dense], index

    marker = (torch.zeros(1),) * 3
    monkeypatch.setattr(ops, "use_hopper", lambda q, dense: dense)
    monkeypatch.setattr(_gluon_bwd, "backward", lambda *args: marker)
    assert ops._backward_kernels(*(q,) * 6, None, SCALE, 1, dense=True) is marker
