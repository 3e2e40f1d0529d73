"""The peers (MoBA, AdaSplash, NSA): their masks, references and densities against brute force,
and their declarations. Their kernels are CUDA-only; what a CPU can check is checked here."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from scfa_bench.impls import adasplash as ada
from scfa_bench.impls import moba, nsa
from scfa_bench.impls.base import AttentionInputs
from scfa_bench.impls.registry import get_spec
from scfa_bench.measure.correctness import check_against_reference
from scfa_kernels import reference


def _randn(*shape: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --- 1.5-entmax ---------------------------------------------------------------------------


def _entmax15_bisect(z: torch.Tensor) -> torch.Tensor:
    """1.5-entmax of one row by bisection on tau: p = [z/2 - tau]_+^2 sums to 1."""
    x = z.double() / 2
    lo, hi = x.max() - 1, x.max()
    for _ in range(200):
        tau = (lo + hi) / 2
        total = ((x - tau).clamp(min=0) ** 2).sum()
        lo, hi = (tau, hi) if total > 1 else (lo, tau)
    return (x - (lo + hi) / 2).clamp(min=0) ** 2


def test_entmax15_matches_bisection_and_is_sparse():
    scores = _randn(6, 40, seed=1, dtype=torch.float64) * 3
    scores[2, 30:] = float("-inf")
    got = ada.entmax15(scores)
    for row in range(scores.shape[0]):
        finite = torch.isfinite(scores[row])
        want = torch.zeros_like(scores[row])
        want[finite] = _entmax15_bisect(scores[row][finite])
        assert torch.allclose(got[row], want, atol=1e-9), row
    assert torch.allclose(got.sum(-1), torch.ones(6, dtype=torch.float64))
    assert (got == 0).any() and (got[2, 30:] == 0).all()


def test_entmax15_gradient_is_exact():
    scores = _randn(3, 9, seed=2, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda s: ada.entmax15(s), (scores,))


def test_entmax_attention_reference_and_density():
    b, t, h, d = 1, 24, 2, 8
    q, k, v = (_randn(b, t, h, d, seed=s) for s in (3, 4, 5))
    rows = torch.tensor([0, 7, 23])
    out = ada.entmax_attention(q[:, rows], k, v, rows)
    for bi, hi, ri in [(0, 0, 0), (0, 1, 1), (0, 0, 2)]:
        t_row = int(rows[ri])
        z = (k[bi, : t_row + 1, hi] @ q[bi, t_row, hi]) / math.sqrt(d)
        p = _entmax15_bisect(z).float()
        assert torch.allclose(out[bi, ri, hi], p @ v[bi, : t_row + 1, hi], atol=1e-5)
    inputs = AttentionInputs(q, k, v)
    kept = 0
    for t_row in range(t):
        z = torch.einsum("hd,thd->ht", q[0, t_row], k[0, : t_row + 1]) / math.sqrt(d)
        kept += sum(int((_entmax15_bisect(z[hi]) > 0).sum()) for hi in range(h))
    want = kept / (h * t * (t + 1) / 2)
    assert ada.entmax_density(inputs, n_rows=t) == pytest.approx(want)


def test_the_check_uses_an_implementations_own_reference():
    b, t, h, d = 1, 16, 2, 8
    q, k, v = (_randn(b, t, h, d, seed=s).requires_grad_() for s in (6, 7, 8))
    entmax_inputs = AttentionInputs(q, k, v, reference_attention=ada.entmax_attention)
    rows = torch.arange(t)
    right = lambda: ada.entmax_attention(q, k, v, rows)
    ok = check_against_reference(
        right, entmax_inputs, dtype="fp32", rows=rows, with_grads=True, seed=0
    )
    assert ok.passed, ok.detail
    softmax = lambda: reference.hash_sparse_attention(
        q, k, v, torch.zeros(b, t, h, dtype=torch.int32), torch.zeros(b, t, h, dtype=torch.int32)
    )
    bad = check_against_reference(
        softmax, entmax_inputs, dtype="fp32", rows=rows, with_grads=False, seed=0
    )
    assert not bad.passed


# --- MoBA ---------------------------------------------------------------------------------


def _moba_brute_force(q, k, block, top_k):
    """allowed[b, h, t, s] from the definition, one query at a time."""
    b, t, h, _ = q.shape
    allowed = torch.zeros((b, h, t, t), dtype=torch.bool)
    for bi in range(b):
        for hi in range(h):
            for ti in range(t):
                own = ti // block
                scores = []
                for blk in range(own):
                    mean = k[bi, blk * block : (blk + 1) * block, hi].double().mean(0)
                    scores.append((float(q[bi, ti, hi].double() @ mean), blk))
                chosen = {blk for _, blk in sorted(scores, reverse=True)[:top_k]} | {own}
                for s in range(ti + 1):
                    allowed[bi, hi, ti, s] = s // block in chosen
    return allowed


@pytest.mark.parametrize(("t", "block", "top_k"), [(64, 16, 2), (72, 16, 1), (48, 8, 3)])
def test_moba_mask_follows_its_definition(t, block, top_k):
    q, k = _randn(1, t, 2, 8, seed=t), _randn(1, t, 2, 8, seed=t + 1)
    choice = moba.moba_choice(q, k, block, top_k)
    got = moba.moba_mask(choice, block, torch.arange(t))
    assert torch.equal(got, _moba_brute_force(q, k, block, top_k))
    causal_pairs = 2 * t * (t + 1) / 2
    assert moba.moba_density(choice, block) == pytest.approx(got.sum().item() / causal_pairs)


def test_moba_tiles_cover_every_allowed_pair_and_skip_some():
    t, block, tile = 512, 128, 128
    q, k = _randn(2, t, 2, 8, seed=11), _randn(2, t, 2, 8, seed=12)
    choice = moba.moba_choice(q, k, block, 1)
    allowed = moba.moba_mask(choice, block, torch.arange(t))
    visit = moba.tile_blocks(choice, block, tile)
    pair_tiles = allowed.view(2, 2, t // tile, tile, t // tile, tile).any(dim=(3, 5))
    assert not (pair_tiles & ~visit).any()  # nothing allowed is skipped
    assert (~visit).any()  # and the mask is sparse


def test_moba_flex_block_mask_gives_the_reference_output():
    from torch.nn.attention.flex_attention import flex_attention

    b, t, h, d, block = 1, 384, 2, 16, 128
    q, k, v = (_randn(b, t, h, d, seed=s) for s in (13, 14, 15))
    choice = moba.moba_choice(q, k, block, 1)
    block_mask = moba._block_mask(choice, block, t)
    with warnings.catch_warnings():  # eager flex on the CPU says (once) that it is unfused
        warnings.simplefilter("ignore", UserWarning)
        out = flex_attention(*(x.transpose(1, 2) for x in (q, k, v)), block_mask=block_mask)
    want = reference.masked_attention(q, k, v, moba.moba_mask(choice, block, torch.arange(t)))
    assert torch.allclose(out.transpose(1, 2), want, atol=1e-5)


# --- NSA ----------------------------------------------------------------------------------


def _nsa_brute_force(q, k, v, chosen, block, gate):
    """Gated selection + compression branches, one query and head at a time (float64)."""
    b, t, hq, d = q.shape
    group = hq // k.shape[2]
    out = torch.zeros((b, t, hq, d), dtype=torch.float64)
    for bi in range(b):
        for hi in range(hq):
            kv = hi // group
            kk, vv = k[bi, :, kv].double(), v[bi, :, kv].double()
            means_k = kk.view(t // block, block, d).mean(1)
            means_v = vv.view(t // block, block, d).mean(1)
            for ti in range(t):
                blocks = {int(x) for x in chosen[bi, ti, kv] if x >= 0}
                keys = [s for s in range(ti + 1) if s // block in blocks]
                qq = q[bi, ti, hi].double() / math.sqrt(d)
                if keys:
                    p = torch.softmax(kk[keys] @ qq, 0)
                    out[bi, ti, hi] += gate * (p @ vv[keys])
                whole = [c for c in range(t // block) if (c + 1) * block - 1 <= ti]
                if whole:
                    p = torch.softmax(means_k[whole] @ qq, 0)
                    out[bi, ti, hi] += gate * (p @ means_v[whole])
    return out


def test_nsa_reference_and_density_follow_their_definition():
    b, t, hq, h_kv, d, block = 1, 64, 4, 1, 8, 16
    q = _randn(b, t, hq, d, seed=21)
    k, v = _randn(b, t, h_kv, d, seed=22), _randn(b, t, h_kv, d, seed=23)
    gen = torch.Generator().manual_seed(24)
    chosen = torch.randint(-1, t // block, (b, t, h_kv, 3), generator=gen)
    rows = torch.arange(t)
    got = nsa.nsa_reference(chosen, block, gate=0.5)(q, k, v, rows)
    assert torch.allclose(got.double(), _nsa_brute_force(q, k, v, chosen, block, 0.5), atol=1e-5)
    mask = nsa.selection_mask(chosen, block, hq // h_kv, rows)
    want = mask[:, ::hq].sum().item() / (h_kv * t * (t + 1) / 2)
    assert nsa.selection_density(chosen, block) == pytest.approx(want)


def test_nsa_density_counts_a_block_chosen_twice_once():
    chosen = torch.tensor([[[[0, 0]]]]).expand(1, 4, 1, 2).contiguous()
    assert nsa.selection_density(chosen, 4) == pytest.approx(1.0)


# --- declarations -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["nsa", "nsa_s4", "moba", "moba_k2_b128", "adasplash"])
def test_peers_are_approximate_cuda_only_and_declare_their_shapes(name):
    spec = get_spec(name)
    assert spec.kind == "approximate"
    assert spec.unsupported("cpu", "bf16", 64) is not None
    assert spec.unsupported("cuda", "bf16", 64, heads=48) is None


def test_nsa_declares_its_grouped_heads():
    spec = get_spec("nsa")
    assert "multiple of 16 heads" in (spec.unsupported("cuda", "bf16", 64, heads=12) or "")
    assert spec.unsupported("cuda", "fp32", 64, heads=16) is not None


def test_adasplash_declares_its_head_dims():
    spec = get_spec("adasplash")
    assert spec.unsupported("cuda", "bf16", 48, heads=4) is not None
    assert spec.unsupported("cuda", "bf16", 256, heads=4) is None


@pytest.mark.parametrize(
    ("module", "impl", "package"), [(ada, "AdaSplash", "adasplash"), (nsa, "Nsa", "fla")]
)
def test_a_missing_package_is_unavailable_with_the_install_command(
    monkeypatch, module, impl, package
):
    import importlib

    real = importlib.import_module

    def refuse(name: str, *args, **kwargs):
        if name.split(".")[0] == package:
            raise ImportError(f"No module named {package!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(importlib, "import_module", refuse)
    ok, reason = getattr(module, impl)().available("cuda")
    assert not ok and "scfa-bench[peers]" in reason


def test_adasplash_refuses_a_sequence_length_that_is_not_a_power_of_two():
    from scfa_bench.impls.base import ImplUnavailable

    q, k, v = (_randn(1, 48, 2, 16, seed=s) for s in (31, 32, 33))
    with pytest.raises(ImplUnavailable, match="power-of-two"):
        ada.AdaSplash().effective_inputs(AttentionInputs(q, k, v))
