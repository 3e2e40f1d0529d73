"""Attention settings of training suites: per-call vs fixed LSH, shared-QK hashing, the density
they report, and the learning-rate schedule."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from scfa_bench.quality.config import AttentionSetting, OptimizerSettings
from scfa_bench.quality.settings import (
    DensityMeter,
    PerCallLsh,
    hash_kept_pairs,
    layer_attention,
    qk_kept_pairs,
)
from scfa_bench.quality.unit_setup import lr_at


def _brute_hash(q_hash: torch.Tensor, k_hash: torch.Tensor) -> int:
    b, t, h = q_hash.shape
    return sum(
        int(q_hash[i, row, j] == k_hash[i, col, j])
        for i in range(b)
        for j in range(h)
        for row in range(t)
        for col in range(row + 1)
    )


def test_kept_pair_counts_match_brute_force() -> None:
    g = torch.Generator().manual_seed(0)
    q_hash, k_hash = (torch.randint(0, 4, (2, 9, 3), generator=g) for _ in range(2))
    assert int(hash_kept_pairs(q_hash, k_hash, 4)) == _brute_hash(q_hash, k_hash)
    q_keep, k_keep = (torch.rand((2, 9, 3), generator=g) > 0.5 for _ in range(2))
    brute = sum(
        int(q_keep[i, r, j] and k_keep[i, c, j])
        for i in range(2)
        for j in range(3)
        for r in range(9)
        for c in range(r + 1)
    )
    assert int(qk_kept_pairs(q_keep, k_keep)) == brute


def _attend(setting: AttentionSetting, shared_qk: bool = True, meter: DensityMeter | None = None):
    return layer_attention(
        setting,
        heads=2,
        head_dim=16,
        dtype=torch.float32,
        device="cpu",
        shared_qk=shared_qk,
        meter=meter or DensityMeter(),
    )(0)


def test_per_call_lsh_draws_new_rotations_and_fixed_keeps_them() -> None:
    q = torch.randn(1, 64, 2, 16)
    lsh = PerCallLsh(8, heads=2, head_dim=16)
    torch.manual_seed(0)
    first, second = lsh(q), lsh(q)
    assert not torch.equal(first, second)
    torch.manual_seed(0)
    assert torch.equal(lsh(q), first)  # the global generator replays them
    q, k, v = (torch.randn(1, 32, 2, 16) for _ in range(3))
    k = torch.nn.functional.normalize(q, dim=-1)
    fixed = _attend(AttentionSetting("naive_hash", n_buckets=8, lsh="fixed"))
    assert torch.equal(fixed(q, k, v), fixed(q, k, v))
    per_call = _attend(AttentionSetting("naive_hash", n_buckets=8))
    assert not torch.equal(per_call(q, k, v), per_call(q, k, v))


def test_shared_qk_hashes_the_queries_for_both_sides() -> None:
    from scfa_kernels import reference

    q, v = torch.randn(1, 32, 2, 16), torch.randn(1, 32, 2, 16)
    k = torch.randn(1, 32, 2, 16)  # unrelated keys: only their hash ids would differ
    attend = _attend(AttentionSetting("naive_hash", n_buckets=4), shared_qk=True)
    torch.manual_seed(3)
    out = attend(q, k, v)
    torch.manual_seed(3)
    ids = PerCallLsh(4, heads=2, head_dim=16)(q)
    assert torch.allclose(out, reference.hash_sparse_attention(q, k, v, ids, ids).float())


@pytest.mark.parametrize(
    ("setting", "expected", "tolerance"),
    [
        (AttentionSetting("sdpa_math"), 1.0, 0.0),
        (AttentionSetting("naive_qk", drop_rate=0.5), 0.25, 0.05),
        (AttentionSetting("naive_hash", n_buckets=4), 0.25, 0.1),
    ],
)
def test_density_is_measured_only_while_the_meter_is_on(
    setting: AttentionSetting, expected: float, tolerance: float
) -> None:
    meter = DensityMeter()
    attend = _attend(setting, shared_qk=False, meter=meter)
    q, k, v = (torch.randn(2, 64, 2, 16) for _ in range(3))
    attend(q, k, v)
    assert meter.density is None
    meter.active = True
    attend(q, k, v)
    assert meter.density == pytest.approx(expected, abs=tolerance)


def test_learning_rate_warms_up_then_decays_to_its_floor() -> None:
    opt = OptimizerSettings(lr=1.0, warmup_fraction=0.1, min_lr_fraction=0.1)
    rates = [lr_at(step, 100, opt) for step in range(101)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert rates[10] == pytest.approx(1.0) and rates[100] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(rates[10:]))
    assert rates[55] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
