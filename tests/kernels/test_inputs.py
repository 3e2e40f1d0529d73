"""Bad input to the public kernels: the right exception type, and a message naming the argument.

Every case must be refused by validation, before any Triton launch; the message must name
the offending argument as a whole word (``\\bq\\b`` does not match ``q_hash``).
"""

from __future__ import annotations

import re

import pytest
import torch

import scfa_kernels
from scfa_kernels import validation

B, T, H, D = 1, 8, 2, 16


def _qkv(device: str, dtype=torch.float32, d: int = D):
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(B, T, H, d, generator=gen).to(device=device, dtype=dtype) for _ in range(3)]


def _hashes(device: str):
    zeros = torch.zeros(B, T, H, dtype=torch.int64, device=device)
    return [zeros, zeros.clone()]


def _keeps(device: str):
    ones = torch.ones(B, T, H, dtype=torch.bool, device=device)
    return [ones, ones.clone()]


def _raises(exc: type[Exception], arg: str, fn, *args, **kwargs) -> str:
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert re.search(rf"\b{re.escape(arg)}\b", message), f"message does not name {arg!r}: {message}"
    return message


KERNELS = {
    "hash": (scfa_kernels.hash_sparse_attention, _hashes, ("q_hash", "k_hash")),
    "qk": (scfa_kernels.qk_sparse_attention, _keeps, ("q_keep", "k_keep")),
}


@pytest.fixture(params=["hash", "qk"])
def kernel(request):
    return KERNELS[request.param]


# ---------------------------------------------------------------- q, k, v


@pytest.mark.parametrize("which", [1, 2], ids=["k", "v"])
def test_qkv_shapes_that_differ(device, kernel, which):
    fn, pattern, _ = kernel
    qkv = _qkv(device)
    qkv[which] = qkv[which][:, : T - 1]
    _raises(ValueError, "kv"[which - 1], fn, *qkv, *pattern(device))


def test_q_not_4d(device, kernel):
    fn, pattern, _ = kernel
    q, k, v = _qkv(device)
    _raises(ValueError, "q", fn, q[0], k[0], v[0], *pattern(device))


@pytest.mark.parametrize("head_dim", [8, 48, 256])
def test_unsupported_head_dim(device, kernel, head_dim):
    fn, pattern, _ = kernel
    message = _raises(ValueError, "q", fn, *_qkv(device, d=head_dim), *pattern(device))
    assert str(head_dim) in message


def test_float64_is_refused(device, kernel):
    fn, pattern, _ = kernel
    message = _raises(TypeError, "q", fn, *_qkv(device, dtype=torch.float64), *pattern(device))
    assert "float64" in message


def test_dtypes_that_differ(device, kernel):
    fn, pattern, _ = kernel
    q, k, v = _qkv(device)
    _raises(TypeError, "v", fn, q, k, v.half(), *pattern(device))


def test_q_not_a_tensor(device, kernel):
    fn, pattern, _ = kernel
    _, k, v = _qkv(device)
    _raises(TypeError, "q", fn, [[1.0]], k, v, *pattern(device))


def test_qkv_on_different_devices(device, kernel):
    fn, pattern, _ = kernel
    q, k, v = _qkv(device)
    _raises(ValueError, "k", fn, q, k.to("meta"), v, *pattern(device))


@pytest.mark.parametrize("sm_scale", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_sm_scale(device, kernel, sm_scale):
    fn, pattern, _ = kernel
    _raises(ValueError, "sm_scale", fn, *_qkv(device), *pattern(device), sm_scale=sm_scale)


# ---------------------------------------------------------------- hash and keep tensors


@pytest.mark.parametrize("which", [0, 1])
def test_pattern_of_wrong_shape(device, kernel, which):
    fn, pattern, names = kernel
    tensors = pattern(device)
    tensors[which] = tensors[which][:, :, :1]
    _raises(ValueError, names[which], fn, *_qkv(device), *tensors)


@pytest.mark.parametrize("which", [0, 1])
def test_pattern_on_another_device(device, kernel, which):
    fn, pattern, names = kernel
    tensors = pattern(device)
    tensors[which] = tensors[which].to("meta")
    _raises(ValueError, names[which], fn, *_qkv(device), *tensors)


@pytest.mark.parametrize("which", [0, 1])
def test_float_hash_is_refused(device, which):
    hashes = _hashes(device)
    hashes[which] = hashes[which].float()
    name = ("q_hash", "k_hash")[which]
    _raises(TypeError, name, scfa_kernels.hash_sparse_attention, *_qkv(device), *hashes)


@pytest.mark.parametrize("which", [0, 1])
def test_bool_hash_is_refused(device, which):
    hashes = _hashes(device)
    hashes[which] = hashes[which].bool()
    name = ("q_hash", "k_hash")[which]
    _raises(TypeError, name, scfa_kernels.hash_sparse_attention, *_qkv(device), *hashes)


@pytest.mark.parametrize("which", [0, 1])
def test_integer_keep_is_refused(device, which):
    keeps = _keeps(device)
    keeps[which] = keeps[which].to(torch.int64)
    name = ("q_keep", "k_keep")[which]
    _raises(TypeError, name, scfa_kernels.qk_sparse_attention, *_qkv(device), *keeps)


@pytest.mark.parametrize("which", [0, 1])
def test_negative_bucket_id(device, which):
    hashes = _hashes(device)
    hashes[which][0, T - 1, 1] = -1
    name = ("q_hash", "k_hash")[which]
    _raises(ValueError, name, scfa_kernels.hash_sparse_attention, *_qkv(device), *hashes)


@pytest.mark.parametrize("which", [0, 1])
def test_bucket_id_too_large_without_n_buckets(device, which):
    hashes = _hashes(device)
    hashes[which][0, 0, 0] = validation.MAX_BUCKET_ID + 1
    name = ("q_hash", "k_hash")[which]
    _raises(ValueError, name, scfa_kernels.hash_sparse_attention, *_qkv(device), *hashes)


@pytest.mark.parametrize(
    ("n_buckets", "exc"),
    [(0, ValueError), (-3, ValueError), (2**31, ValueError), (True, TypeError), (2.0, TypeError)],
)
def test_bad_n_buckets(device, n_buckets, exc):
    fn = scfa_kernels.hash_sparse_attention
    _raises(exc, "n_buckets", fn, *_qkv(device), *_hashes(device), n_buckets=n_buckets)


# ---------------------------------------------------------------- lsh_buckets


@pytest.mark.parametrize("n_buckets", [0, 1, 3, 7, -2])
def test_lsh_bad_bucket_count(n_buckets):
    x = torch.randn(1, 4, 1, 8)
    _raises(ValueError, "n_buckets", scfa_kernels.lsh_buckets, x, n_buckets)


def test_lsh_x_not_4d():
    _raises(ValueError, "x", scfa_kernels.lsh_buckets, torch.randn(4, 8), 4)


def test_lsh_integer_x():
    _raises(TypeError, "x", scfa_kernels.lsh_buckets, torch.ones(1, 4, 1, 8, dtype=torch.int64), 4)
