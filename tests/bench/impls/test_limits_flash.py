"""Limit baselines (with SDPA's math backend standing in for cuDNN on the CPU) and the
FlashAttention-3/4 wrappers (with fake packages)."""

from __future__ import annotations

import sys
import types

import pytest
import torch
import torch.nn.functional as F

from scfa_bench.impls import flash, limits
from scfa_bench.impls.base import AttentionInputs, ImplUnavailable
from scfa_bench.measure.correctness import check_against_reference, sample_rows
from scfa_kernels import reference


class MathLimitHash(limits.LimitHash):
    backend_name = "MATH"


class MathLimitQk(limits.LimitQk):
    backend_name = "MATH"


def _inputs(t=64, nb=4, drop=None, requires_grad=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (
        torch.randn((2, t, 3, 16), generator=gen).requires_grad_(requires_grad) for _ in range(3)
    )
    inputs = AttentionInputs(q=q, k=k, v=v)
    if nb is not None:
        inputs.q_hash, inputs.k_hash = (
            torch.randint(0, nb, (2, t, 3), generator=gen, dtype=torch.int32) for _ in range(2)
        )
        inputs.q_hash[0, 0, 0] = nb - 1  # the largest id is present
    if drop is not None:
        inputs.q_keep, inputs.k_keep = (
            torch.rand((2, t, 3), generator=gen) >= drop for _ in range(2)
        )
    return inputs


def test_limits_are_labelled_and_cuda_only():
    for impl in (limits.LimitHash(), limits.LimitQk()):
        assert impl.kind == "limit"
        assert not impl.available("cpu")[0]


@pytest.mark.parametrize(("t", "nb"), [(64, 4), (48, 2), (32, 1), (96, 32)])
def test_limit_hash_is_causal_attention_on_equal_segments(t, nb):
    impl = MathLimitHash()
    effective = impl.effective_inputs(_inputs(t, nb))
    seg = t // nb
    assert effective.q_hash[0, :, 0].tolist() == [i // seg for i in range(t)]
    out = impl.prepare(effective)()
    # The same thing computed segment by segment with the dense reference.
    for s in range(nb):
        part = slice(s * seg, (s + 1) * seg)
        q, k, v = (x[:, part].detach() for x in effective.leaves)
        ones = torch.zeros(q.shape[:3], dtype=torch.int32)
        expected = reference.hash_sparse_attention(q, k, v, ones, ones)
        torch.testing.assert_close(out[:, part], expected, atol=1e-5, rtol=1e-5)
    result = check_against_reference(
        impl.prepare(effective),
        effective,
        dtype="fp32",
        rows=sample_rows(t, 256, seed=0),
        with_grads=True,
        seed=0,
    )
    assert result.passed, result.detail


def test_limit_hash_refuses_lengths_not_divisible_by_the_bucket_count():
    with pytest.raises(ImplUnavailable, match="multiple of the bucket count 3"):
        MathLimitHash().effective_inputs(_inputs(t=64, nb=3))


def test_limit_qk_runs_on_the_compacted_rows():
    impl = MathLimitQk()
    inputs = _inputs(t=80, nb=None, drop=0.75)
    effective = impl.effective_inputs(inputs)
    m = round(inputs.q_keep.float().mean().item() * 80)
    assert effective.q.shape == (2, m, 3, 16)
    assert effective.q.is_leaf and effective.q.requires_grad
    assert torch.equal(effective.q, inputs.q[:, :m])
    out = impl.prepare(effective)()
    expected = F.scaled_dot_product_attention(
        *(x.detach().transpose(1, 2) for x in effective.leaves), is_causal=True
    ).transpose(1, 2)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)
    result = check_against_reference(
        impl.prepare(effective),
        effective,
        dtype="fp32",
        rows=sample_rows(m, 256, seed=0),
        with_grads=True,
        seed=0,
    )
    assert result.passed, result.detail


def test_limits_need_their_pattern():
    with pytest.raises(ImplUnavailable, match="bucket ids"):
        MathLimitHash().effective_inputs(_inputs(nb=None, drop=0.5))
    with pytest.raises(ImplUnavailable, match="keep masks"):
        MathLimitQk().effective_inputs(_inputs(nb=4))


# --- FlashAttention-3 / -4 --------------------------------------------------------------


def _fake_flash(monkeypatch, module_name, returns_tuple, fail=None):
    module = types.ModuleType(module_name)

    def flash_attn_func(q, k, v, causal=False):
        if fail:
            raise RuntimeError(fail)
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal
        ).transpose(1, 2)
        return (out, None) if returns_tuple else out

    module.flash_attn_func = flash_attn_func
    monkeypatch.setitem(sys.modules, module_name, module)


@pytest.mark.parametrize(
    ("impl_class", "module", "returns_tuple"),
    [
        (flash.FlashAttention3, "flash_attn_interface", False),
        (flash.FlashAttention4, "flash_attn.cute", True),
    ],
)
def test_flash_wrappers_call_the_package_causally(monkeypatch, impl_class, module, returns_tuple):
    _fake_flash(monkeypatch, module, returns_tuple)
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn((1, 32, 2, 16), generator=gen).half() for _ in range(3))
    out = impl_class().prepare(AttentionInputs(q=q, k=k, v=v))()
    ones = torch.zeros((1, 32, 2), dtype=torch.int32)
    expected = reference.hash_sparse_attention(q, k, v, ones, ones)
    torch.testing.assert_close(out.float(), expected, atol=2e-3, rtol=2e-3)


def test_flash_wrappers_turn_failures_into_unavailable(monkeypatch):
    _fake_flash(monkeypatch, "flash_attn_interface", False, fail="head dim 16 not supported")
    q = torch.zeros((1, 8, 1, 16), dtype=torch.float16)
    with pytest.raises(ImplUnavailable, match="head dim 16 not supported"):
        flash.FlashAttention3().prepare(AttentionInputs(q=q, k=q, v=q))
    with pytest.raises(ImplUnavailable, match="fp16/bf16"):
        flash.FlashAttention3().prepare(AttentionInputs(q=q.float(), k=q.float(), v=q.float()))


def test_flash_wrappers_say_why_they_are_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "flash_attn_interface", None)  # import fails
    ok, reason = flash.FlashAttention3().available("cpu")
    assert not ok and "CUDA" in reason
    if not torch.cuda.is_available():
        return
    ok, reason = flash.FlashAttention3().available("cuda")
    assert not ok and "flash_attn_interface" in reason
