"""Seeded inputs: deterministic, shared q/k/v across patterns, patterns as specified."""

from __future__ import annotations

import torch

from scfa_bench.measure.inputs import make_inputs, stable_seed
from scfa_bench.suite.grid import Point
from scfa_bench.suite.schema import Shape

SHAPE = Shape(batch=2, heads=3, head_dim=16, dtype="fp16")


def test_stable_seed_is_deterministic_and_sensitive() -> None:
    assert stable_seed(0, "qkv", 64) == stable_seed(0, "qkv", 64)
    assert stable_seed(0, "qkv", 64) != stable_seed(1, "qkv", 64)
    assert 0 <= stable_seed("x") < 2**63


def test_same_point_same_tensors_other_seed_differs() -> None:
    a = make_inputs(SHAPE, Point(64, n_buckets=4), seed=0, device="cpu")
    b = make_inputs(SHAPE, Point(64, n_buckets=4), seed=0, device="cpu")
    c = make_inputs(SHAPE, Point(64, n_buckets=4), seed=1, device="cpu")
    assert torch.equal(a.q, b.q) and torch.equal(a.q_hash, b.q_hash)
    assert not torch.equal(a.q, c.q)
    assert a.q.dtype == torch.float16 and a.q.shape == (2, 64, 3, 16)
    assert not torch.equal(a.q, a.k)


def test_qkv_shared_across_patterns_of_a_seq_len() -> None:
    dense = make_inputs(SHAPE, Point(64), seed=0, device="cpu")
    hashed = make_inputs(SHAPE, Point(64, n_buckets=8), seed=0, device="cpu")
    kept = make_inputs(SHAPE, Point(64, drop_rate=0.5), seed=0, device="cpu")
    assert torch.equal(dense.v, hashed.v) and torch.equal(dense.v, kept.v)
    assert dense.q_hash is None and dense.q_keep is None


def test_random_buckets_in_range() -> None:
    inputs = make_inputs(SHAPE, Point(128, n_buckets=4), seed=0, device="cpu")
    for ids in (inputs.q_hash, inputs.k_hash):
        assert ids.shape == (2, 128, 3) and int(ids.min()) >= 0 and int(ids.max()) < 4
    assert set(inputs.q_hash.unique().tolist()) == {0, 1, 2, 3}


def test_lsh_buckets_in_range_and_deterministic() -> None:
    a = make_inputs(SHAPE, Point(64, n_buckets=4), seed=0, device="cpu", buckets="lsh")
    b = make_inputs(SHAPE, Point(64, n_buckets=4), seed=0, device="cpu", buckets="lsh")
    assert torch.equal(a.q_hash, b.q_hash) and torch.equal(a.k_hash, b.k_hash)
    assert int(a.q_hash.min()) >= 0 and int(a.q_hash.max()) < 4


def test_keep_masks_follow_drop_rate() -> None:
    shape = Shape(batch=4, heads=8, head_dim=16, dtype="fp32")
    inputs = make_inputs(shape, Point(512, drop_rate=0.8), seed=0, device="cpu")
    kept = inputs.q_keep.float().mean().item()
    assert inputs.q_keep.dtype == torch.bool
    assert abs(kept - 0.2) < 0.02  # 16384 Bernoulli(0.2) draws


def test_requires_grad_only_when_asked() -> None:
    assert not make_inputs(SHAPE, Point(16), seed=0, device="cpu").q.requires_grad
    inputs = make_inputs(SHAPE, Point(16), seed=0, device="cpu", requires_grad=True)
    assert all(x.requires_grad and x.is_leaf for x in inputs.leaves)


def test_hash_point_carries_its_bucket_count_to_our_kernel(monkeypatch) -> None:
    """scfa_hash is timed as a training step calls it: with n_buckets, so the call never
    reads the ids back to the host (that read would be timed as part of the kernel)."""
    import scfa_kernels.validation as validation
    from scfa_bench.impls.registry import get_spec
    from scfa_kernels import reference

    inputs = make_inputs(
        Shape(batch=1, heads=2, head_dim=16, dtype="fp32"),
        Point(64, n_buckets=4),
        seed=0,
        device="cpu",
    )
    assert inputs.n_buckets == 4

    def no_host_read(*_args, **_kwargs):
        raise AssertionError("scfa_hash read the bucket ids back to count them")

    monkeypatch.setattr(validation, "bucket_count_from_ids", no_host_read)
    out = get_spec("scfa_hash").create().prepare(inputs)()
    want = reference.hash_sparse_attention(
        *(x.double() for x in inputs.leaves), inputs.q_hash, inputs.k_hash
    )
    torch.testing.assert_close(out.double(), want, atol=1e-4, rtol=1e-4)
