"""The kernels as custom operators: opcheck, torch.compile without graph breaks, no host sync,
out-of-range bucket ids, the checking mode, and (GPU only) sync-free calls and CUDA graphs."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from scfa_kernels import config, hash_sparse_attention, ops, qk_sparse_attention
from scfa_kernels.testing import (
    check_backward,
    check_forward,
    generator,
    make_qkv,
    random_hash,
    random_keep,
)

# On a CPU every case runs the kernels through Triton's interpreter: seconds each.
pytestmark = pytest.mark.slow
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

B, T, H, D = 1, 40, 2, 16


def _leaves(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.detach().clone().requires_grad_() for t in tensors]


# ---------------------------------------------------------------- opcheck


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_opcheck_hash(device, dtype):
    q, k, v = _leaves(*make_qkv(B, T, H, D, dtype, device, seed=1))
    pattern = random_hash(B, T, H, 3, device, seed=1, out_of_range=0.2)
    args = (q, k, v, pattern.a, pattern.c, 0.25, 3)
    torch.library.opcheck(ops.hash_sparse_attention_op, args)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_opcheck_qk(device, dtype):
    q, k, v = _leaves(*make_qkv(B, T, H, D, dtype, device, seed=2))
    pattern = random_keep(B, T, H, 0.4, device, seed=2)
    torch.library.opcheck(ops.qk_sparse_attention_op, (q, k, v, pattern.a, pattern.c, 0.25))


def test_opcheck_backward(device):
    q, k, v = make_qkv(B, T, H, D, torch.float32, device, seed=3)
    pattern = random_hash(B, T, H, 2, device, seed=3)
    out, lse, perm, bucket, composite = ops.hash_sparse_attention_op(
        q, k, v, pattern.a, pattern.c, 0.25, 2
    )
    do = torch.randn(out.shape, generator=generator(3)).to(device)
    args = (do, q, k, v, out, lse, perm, bucket, composite, 0.25, 2)
    torch.library.opcheck(ops.sparse_attention_backward_op, args)


# ---------------------------------------------------------------- eager path = operators


def _out_and_grads(fn, leaves, do):
    out = fn(*leaves)
    grads = torch.autograd.grad(out, leaves, do)
    return [out.detach(), *grads]


@pytest.mark.parametrize("kind", ["hash", "qk"])
def test_eager_path_equals_the_custom_operator(device, kind):
    """Eager calls skip the operators' dispatch (docs/performance-notes.md): same kernels, so
    the same bits, with out-of-range ids / dropped rows included."""
    q, k, v = make_qkv(B, T, H, D, torch.float32, device, seed=4)
    do = torch.randn((B, T, H, D), generator=generator(4)).to(device)
    if kind == "hash":
        pattern = random_hash(B, T, H, 3, device, seed=4, out_of_range=0.2)
        eager = lambda q, k, v: hash_sparse_attention(q, k, v, pattern.a, pattern.c, 0.25, 3)
        op = lambda q, k, v: ops.hash_sparse_attention_op(q, k, v, pattern.a, pattern.c, 0.25, 3)[0]
    else:
        pattern = random_keep(B, T, H, 0.4, device, seed=4)
        eager = lambda q, k, v: qk_sparse_attention(q, k, v, pattern.a, pattern.c, 0.25)
        op = lambda q, k, v: ops.qk_sparse_attention_op(q, k, v, pattern.a, pattern.c, 0.25)[0]
    got = _out_and_grads(eager, _leaves(q, k, v), do)
    want = _out_and_grads(op, _leaves(q, k, v), do)
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want, strict=True):
        assert torch.equal(g, w), name


# ---------------------------------------------------------------- torch.compile


class _TinyAttentionModel(nn.Module):
    """One projection to q, k, v, then both sparse attentions: a stand-in for a layer."""

    def __init__(self, d: int = D, heads: int = H) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d * heads, 3 * d * heads)

    def forward(self, x, q_hash, k_hash, q_keep, k_keep):
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, self.heads, -1).chunk(3, dim=-1)
        hashed = hash_sparse_attention(q, k, v, q_hash, k_hash, n_buckets=3)
        kept = qk_sparse_attention(q, k, v, q_keep, k_keep)
        return (hashed + kept).float().square().mean()


def _model_inputs(device):
    x = torch.randn(B, T, H * D, generator=generator(4)).to(device)
    hashes = random_hash(B, T, H, 3, device, seed=4, out_of_range=0.1)
    keeps = random_keep(B, T, H, 0.3, device, seed=4)
    return x, hashes.a, hashes.c, keeps.a, keeps.c


def _loss_and_grads(model, fn, inputs):
    model.zero_grad(set_to_none=True)
    loss = fn(*inputs)
    loss.backward()
    return loss.detach(), [p.grad.detach().clone() for p in model.parameters()]


def test_compiled_model_has_no_graph_break(device):
    torch._dynamo.reset()
    model = _TinyAttentionModel().to(device)
    explanation = torch._dynamo.explain(model)(*_model_inputs(device))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_compiled_fullgraph_matches_eager_fwd_and_bwd(device, backend):
    torch._dynamo.reset()
    model = _TinyAttentionModel().to(device)
    inputs = _model_inputs(device)
    want_loss, want_grads = _loss_and_grads(model, model, inputs)
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    got_loss, got_grads = _loss_and_grads(model, compiled, inputs)
    torch.testing.assert_close(got_loss, want_loss, rtol=1e-6, atol=1e-6)
    for got, want in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- no host read on the call path


def test_no_host_read_with_n_buckets(device, monkeypatch):
    """With n_buckets given, nothing converts a tensor to a Python value (a GPU sync)."""
    q, k, v = _leaves(*make_qkv(B, T, H, D, torch.float32, device, seed=5))
    hashes = random_hash(B, T, H, 4, device, seed=5, given=True)
    keeps = random_keep(B, T, H, 0.5, device, seed=5)

    def refuse(*args, **kwargs):
        raise AssertionError("a tensor was read on the host")

    # The interpreter reads tensors through numpy, not through these: only our code could.
    for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    monkeypatch.setattr(torch, "nonzero", refuse)
    out = hash_sparse_attention(q, k, v, hashes.a, hashes.c, n_buckets=4)
    out = out + qk_sparse_attention(q, k, v, keeps.a, keeps.c)
    out.sum().backward()
    monkeypatch.undo()
    assert all(x.grad is not None for x in (q, k, v))


# ---------------------------------------------------------------- out-of-range ids


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize(("n_buckets", "t"), [(1, 50), (3, 70), (8, 97)])
def test_out_of_range_ids_match_nothing(device, dtype, n_buckets, t):
    q, k, v = make_qkv(2, t, 2, 16, dtype, device, seed=t)
    pattern = random_hash(2, t, 2, n_buckets, device, seed=t, out_of_range=0.3)
    ids = torch.cat([pattern.a.flatten(), pattern.c.flatten()]).cpu()
    assert ((ids < 0) | (ids >= n_buckets)).any() and ((ids >= 0) & (ids < n_buckets)).any()
    out = check_forward(pattern, q, k, v)
    check_backward(pattern, q, k, v, seed=t)
    # A query whose own id is out of range outputs exactly 0.
    q_out = ((pattern.a < 0) | (pattern.a >= n_buckets)).cpu()
    assert torch.count_nonzero(out.cpu()[q_out]) == 0


def test_out_of_range_ids_in_wide_and_narrow_dtypes(device):
    q, k, v = make_qkv(1, 40, 1, 16, torch.float32, device, seed=6)
    q_hash = torch.tensor([0, 1, 2**40, -(2**40), 2**32 + 1] * 8).view(1, 40, 1).to(device)
    k_hash = torch.tensor([0, 1, 2**32, 1, 2**32 + 1] * 8).view(1, 40, 1).to(device)
    got = hash_sparse_attention(q, k, v, q_hash, k_hash, n_buckets=2)
    # 2**32 + 1 must not wrap to the in-range id 1 in a narrowing cast.
    # Same pattern with in-range ids: 2 (queries) and 3 (keys) match nothing either.
    q_same, k_same = torch.where(q_hash.abs() > 1, 2, q_hash), torch.where(k_hash > 1, 3, k_hash)
    want = hash_sparse_attention(q, k, v, q_same, k_same)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_n_buckets_given_equals_n_buckets_read(device):
    q, k, v = make_qkv(1, 64, 2, 16, torch.float32, device, seed=7)
    pattern = random_hash(1, 64, 2, 4, device, seed=7)
    read = hash_sparse_attention(q, k, v, pattern.a, pattern.c)
    given = hash_sparse_attention(q, k, v, pattern.a, pattern.c, n_buckets=4)
    larger = hash_sparse_attention(q, k, v, pattern.a, pattern.c, n_buckets=100)
    torch.testing.assert_close(given, read, rtol=0, atol=0)
    torch.testing.assert_close(larger, read, rtol=0, atol=0)  # torch.sort path, same plan


# ---------------------------------------------------------------- the checking mode


def test_checking_mode_raises_on_out_of_range_ids(device, monkeypatch):
    q, k, v = make_qkv(1, 16, 1, 16, torch.float32, device, seed=8)
    ids = torch.zeros(1, 16, 1, dtype=torch.int64, device=device)
    bad = ids.clone()
    bad[0, 3, 0] = 5
    with pytest.raises(
        ValueError, match=r"k_hash: bucket ids must lie in .*\[0, 4\), got ids from 0 to 5"
    ):
        hash_sparse_attention(q, k, v, ids, bad, n_buckets=4, check_ids=True)
    bad[0, 3, 0] = -1
    with pytest.raises(ValueError, match=r"q_hash: .*\[0, 4\), got ids from -1 to 0"):
        hash_sparse_attention(q, k, v, bad, ids, n_buckets=4, check_ids=True)
    monkeypatch.setenv("SCFA_CHECK_BUCKETS", "1")
    with pytest.raises(ValueError, match="SCFA_CHECK_BUCKETS"):
        hash_sparse_attention(q, k, v, bad, ids, n_buckets=4)
    # check_ids=False wins over the environment; in-range ids pass the check.
    hash_sparse_attention(q, k, v, bad, ids, n_buckets=4, check_ids=False)
    hash_sparse_attention(q, k, v, ids, ids, n_buckets=4)


# ---------------------------------------------------------------- GPU only


# Forced: every range of two tiles or more cut into pieces (float32 atomics, merge passes),
# which the default leaves to long sequences on small grids.
SPLITS = {"default": None, "forced": config.RangeSplit(8, 1 << 30, 1, slots_per_sm=1 << 30)}


def _split(name: str):
    split = SPLITS[name]
    return config.override_split(split) if split is not None else contextlib.nullcontext()


@needs_cuda
@pytest.mark.parametrize("split", list(SPLITS))
def test_no_sync_on_cuda_fwd_and_bwd(split):
    with _split(split):
        _no_sync_fwd_and_bwd()


def _no_sync_fwd_and_bwd():
    q, k, v = _leaves(*make_qkv(2, 1024, 4, 64, torch.bfloat16, "cuda", seed=9))
    hashes = random_hash(2, 1024, 4, 8, "cuda", seed=9, given=True)
    keeps = random_keep(2, 1024, 4, 0.5, "cuda", seed=9)
    do = torch.randn(q.shape, device="cuda", dtype=q.dtype)

    def step():
        out = hash_sparse_attention(q, k, v, hashes.a, hashes.c, n_buckets=8)
        out = out + qk_sparse_attention(q, k, v, keeps.a, keeps.c)
        out.backward(do)

    step()  # compile the kernels first: compiling may sync
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()


@needs_cuda
@pytest.mark.parametrize("split", list(SPLITS))
@pytest.mark.parametrize("kind", ["hash", "qk"])
def test_cuda_graph_capture_and_replay_fwd_bwd(kind, split):
    with _split(split):
        _capture_and_replay(kind, exact_grads=split == "default")


def _capture_and_replay(kind: str, exact_grads: bool) -> None:
    shape = (2, 512, 4, 64)
    static = _leaves(*make_qkv(*shape, torch.bfloat16, "cuda", seed=10))
    if kind == "hash":
        pattern = random_hash(*shape[:3], 8, "cuda", seed=10, given=True)
    else:
        pattern = random_keep(*shape[:3], 0.5, "cuda", seed=10)
    static_do = torch.randn(shape, device="cuda", dtype=torch.bfloat16)

    def step():
        out = pattern.kernel(*static)
        out.backward(static_do)
        return out

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):  # warm-up: compile outside the capture
            for x in static:
                x.grad = None
            step()
    torch.cuda.current_stream().wait_stream(side)
    for x in static:
        x.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = step()

    # New data in the static inputs (and new ids), then replay: must equal eager on it.
    fresh = make_qkv(*shape, torch.bfloat16, "cuda", seed=11)
    with torch.no_grad():
        for x, new in zip(static, fresh, strict=True):
            x.copy_(new)
        pattern.a.copy_(pattern.a.roll(1, dims=1))
    graph.replay()
    torch.cuda.synchronize()
    eager = _leaves(*fresh)
    want = pattern.kernel(*eager)
    want.backward(static_do)
    torch.testing.assert_close(static_out, want, rtol=0, atol=0)
    for x, y in zip(static, eager, strict=True):
        if exact_grads:
            torch.testing.assert_close(x.grad, y.grad, rtol=0, atol=0)
        else:  # pieces add in float32 atomics, in no fixed order
            torch.testing.assert_close(x.grad, y.grad, rtol=2e-2, atol=2e-2)
