"""The end-to-end model and its attention plugs, on the CPU with a tiny model.

The SCFA kernels run through Triton's interpreter here, so each test that uses them runs one
forward + backward of a 2-layer model at T=64 and compares it with the dense masked reference.
"""

from __future__ import annotations

import inspect

import pytest
import torch

import scfa_kernels
from scfa_bench.e2e import layer_attention
from scfa_bench.e2e.attention import AttentionConfigError, AttentionUnavailable, build_attention
from scfa_bench.e2e.layer_attention import LayerLsh, hash_attention, qk_attention
from scfa_bench.e2e.model import GPT2_SMALL, DecoderLM, ModelConfig, ModelConfigError
from scfa_kernels import lsh_buckets

TINY = ModelConfig(layers=2, d_model=32, heads=2, mlp_ratio=4, vocab=64, max_seq_len=64)
B, T = 1, 64  # B=1: the interpreter is slow


def tokens(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, TINY.vocab, (B, T + 1), generator=gen)
    return ids[:, :-1], ids[:, 1:]


def tiny_model(name: str, **axes: object) -> DecoderLM:
    attention = build_attention(
        name, heads=2, head_dim=TINY.head_dim, dtype=torch.float32, device="cpu", seed=3, **axes
    )
    torch.manual_seed(0)
    return DecoderLM(TINY, attention.for_layer, shared_qk=attention.shared_qk)


def loss_and_grads(model: DecoderLM, *, rng_seed: int = 0) -> tuple[float, dict[str, torch.Tensor]]:
    idx, targets = tokens()
    torch.manual_seed(rng_seed)  # keep masks come from the global generator
    loss = model(idx, targets)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


def assert_same(a: tuple[float, dict], b: tuple[float, dict], tol: float = 1e-4) -> None:
    loss_a, grads_a = a
    loss_b, grads_b = b
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    assert grads_a.keys() == grads_b.keys()
    for name, ga in grads_a.items():
        gb = grads_b[name]
        scale = gb.abs().max().clamp_min(1e-12)
        assert ((ga - gb).abs().max() / scale) < tol, name


# ---------------------------------------------------------------- the model


def test_gpt2_small_shape() -> None:
    assert (GPT2_SMALL.layers, GPT2_SMALL.d_model, GPT2_SMALL.heads) == (12, 768, 12)
    assert (GPT2_SMALL.head_dim, GPT2_SMALL.mlp_hidden, GPT2_SMALL.vocab) == (64, 3072, 50304)


def test_loss_is_finite_and_every_parameter_gets_a_gradient() -> None:
    model = tiny_model("sdpa_math")
    loss, grads = loss_and_grads(model)
    # Random init, random tokens: the loss is close to ln(vocab).
    assert loss == pytest.approx(float(torch.log(torch.tensor(64.0))), abs=0.1)
    assert set(grads) == {name for name, _ in model.named_parameters()}
    for name, grad in grads.items():
        assert torch.isfinite(grad).all(), name
    assert all(grads[f"blocks.{i}.qkv.weight"].abs().sum() > 0 for i in range(TINY.layers))


def test_head_is_tied_to_the_token_embedding() -> None:
    model = tiny_model("identity")
    idx, _ = tokens()
    logits = model.logits(idx)
    assert logits.shape == (B, T, TINY.vocab)
    with torch.no_grad():
        model.wte.weight.zero_()
    assert torch.equal(model.logits(idx), torch.zeros_like(logits))


def test_identity_attention_passes_v_through() -> None:
    q, k, v = torch.randn(3, 1, 8, 2, 16).unbind(0)
    attend = build_attention("identity", heads=2, head_dim=16, dtype=torch.float32, device="cpu")
    assert attend.for_layer(0)(q, k, v) is v


def test_sdpa_math_is_causal_attention() -> None:
    q, k, v = torch.randn(3, 2, 16, 2, 16, dtype=torch.float64).unbind(0)
    attend = build_attention("sdpa_math", heads=2, head_dim=16, dtype=torch.float64, device="cpu")
    every_key = torch.zeros(2, 16, 2, dtype=torch.int32)
    expected = scfa_kernels.reference.hash_sparse_attention(q, k, v, every_key, every_key)
    torch.testing.assert_close(attend.for_layer(0)(q, k, v), expected)


def test_sequence_longer_than_the_position_table_is_refused() -> None:
    model = tiny_model("identity")
    idx = torch.zeros(1, TINY.max_seq_len + 1, dtype=torch.long)
    with pytest.raises(ModelConfigError, match=r"model\.max_seq_len: 64 is shorter than the 65"):
        model(idx, idx)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"heads": 5}, "5 heads do not divide d_model 32"),
        ({"layers": 0}, r"model.layers: expected an integer >= 1, got 0"),
        ({"d_model": 32.0}, "model.d_model: expected an integer"),
        ({"vocab": True}, "model.vocab: expected an integer"),
        ({"mlp_ratio": 0}, "model.mlp_ratio: expected a number > 0"),
        ({"mlp_ratio": 1.01}, "not a whole number of MLP units"),
    ],
)
def test_invalid_model_config_names_the_setting(settings: dict, message: str) -> None:
    fields = {"layers": 2, "d_model": 32, "heads": 2, "mlp_ratio": 4, "vocab": 64} | settings
    with pytest.raises(ModelConfigError, match=message):
        ModelConfig(**fields)


# ---------------------------------------------------------------- plug settings


@pytest.mark.parametrize(
    ("name", "axes", "head_dim", "message"),
    [
        ("flash_v9", {}, 16, "'flash_v9' has no model plug; known: "),
        ("scfa_hash", {}, 16, "'scfa_hash' needs n_buckets"),
        ("scfa_hash", {"n_buckets": 3}, 16, "even number >= 2, got 3"),
        ("hashformer", {"n_buckets": 0}, 16, "even number >= 2, got 0"),
        ("scfa_qk", {"drop_rate": 1.0}, 16, r"drop_rate: expected a number in \[0, 1\), got 1.0"),
        ("sdpa_math", {"n_buckets": 8}, 16, "'sdpa_math' uses no n_buckets"),
        ("scfa_hash", {"n_buckets": 8, "drop_rate": 0.5}, 16, "uses no drop_rate"),
        ("scfa_hash", {"n_buckets": 8}, 24, "head dim 24 .* not supported; .* 16, 32, 64, 128"),
        ("scfa_qk", {"drop_rate": 0.5}, 96, "head dim 96"),
    ],
)
def test_bad_attention_settings_raise_clear_errors(
    name: str, axes: dict, head_dim: int, message: str
) -> None:
    with pytest.raises(AttentionConfigError, match=message):
        build_attention(name, heads=2, head_dim=head_dim, dtype=torch.float32, device="cpu", **axes)


def test_cuda_only_backend_is_unavailable_on_the_cpu() -> None:
    with pytest.raises(AttentionUnavailable, match="sdpa_cudnn: runs on cuda, not cpu"):
        build_attention("sdpa_cudnn", heads=2, head_dim=16, dtype=torch.float32, device="cpu")


# ---------------------------------------------------------------- patterns


def test_layer_lsh_uses_the_same_planes_for_q_k_and_every_step() -> None:
    x = torch.randn(2, 32, 2, 16)
    lsh = LayerLsh(8, seed=11, heads=2, head_dim=16, device="cpu")
    first = lsh(x)
    assert torch.equal(first, lsh(x))  # same planes at the next call (next step, or for k)
    expected = lsh_buckets(x, 8, generator=torch.Generator().manual_seed(11))
    assert torch.equal(first, expected)
    other_layer = LayerLsh(8, seed=12, heads=2, head_dim=16, device="cpu")(x)
    assert not torch.equal(first, other_layer)


def recorder() -> tuple[list[tuple[torch.Tensor, ...]], object]:
    calls: list[tuple[torch.Tensor, ...]] = []

    def kernel(*args: torch.Tensor) -> torch.Tensor:
        calls.append(args)
        return args[2]

    return calls, kernel


def test_hash_attention_hashes_q_and_k_with_the_same_planes() -> None:
    calls, kernel = recorder()
    q, k, v = torch.randn(3, 1, 32, 2, 16).unbind(0)
    hash_attention(
        kernel, LayerLsh(4, seed=5, heads=2, head_dim=16, device="cpu"), shared_buckets=False
    )(q, k, v)
    ((_, _, _, q_hash, k_hash),) = calls
    planes = lambda: torch.Generator().manual_seed(5)
    assert torch.equal(q_hash, lsh_buckets(q, 4, generator=planes()))
    assert torch.equal(k_hash, lsh_buckets(k, 4, generator=planes()))


def test_hashformer_hashes_q_once_and_its_keys_share_the_buckets(monkeypatch) -> None:
    calls, kernel = recorder()
    monkeypatch.setattr(layer_attention, "reference_hash", kernel)
    model = tiny_model("naive_hashformer", n_buckets=4)
    assert model.blocks[0].qkv.out_features == 2 * TINY.d_model  # q and v only
    idx, targets = tokens()
    model(idx, targets)
    assert len(calls) == TINY.layers
    for layer, (q, k, _, q_hash, k_hash) in enumerate(calls):
        assert q_hash is k_hash
        torch.testing.assert_close(k, torch.nn.functional.normalize(q, dim=-1))
        # The layer's planes (suite seed 3) give the normalised keys the ids q got.
        lsh = LayerLsh(4, seed=3 * 65536 + layer, heads=2, head_dim=16, device="cpu")
        assert torch.equal(q_hash, lsh(q))
        assert torch.equal(lsh(k), q_hash)


def test_qk_attention_draws_fresh_keep_masks_at_the_drop_rate() -> None:
    calls, kernel = recorder()
    attend = qk_attention(kernel, 0.8)
    q = torch.randn(4, 256, 4, 16)
    attend(q, q, q)
    attend(q, q, q)
    (_, _, _, qk1, kk1), (_, _, _, qk2, _) = calls
    assert qk1.dtype == torch.bool and qk1.shape == (4, 256, 4)
    assert not torch.equal(qk1, qk2) and not torch.equal(qk1, kk1)
    assert qk1.float().mean().item() == pytest.approx(0.2, abs=0.03)


def test_hash_kernel_is_told_the_bucket_count_when_it_takes_one(monkeypatch) -> None:
    def with_count(q, k, v, q_hash, k_hash, sm_scale=None, *, n_buckets=None):
        return n_buckets

    monkeypatch.setattr(scfa_kernels, "hash_sparse_attention", with_count)
    kernel = layer_attention.scfa_hash_kernel(8)
    assert kernel(*([None] * 5)) == 8

    def without_count(q, k, v, q_hash, k_hash, sm_scale=None):
        return "called"

    monkeypatch.setattr(scfa_kernels, "hash_sparse_attention", without_count)
    kernel = layer_attention.scfa_hash_kernel(8)
    assert "n_buckets" not in inspect.signature(kernel).parameters
    assert kernel(*([None] * 5)) == "called"


# ---------------------------------------------------------------- kernels against the reference


@pytest.mark.slow
@pytest.mark.parametrize("name", ["scfa_hash", "hashformer"])
def test_scfa_hash_model_matches_the_reference_with_the_same_buckets(name: str) -> None:
    reference = "naive_hashformer" if name == "hashformer" else "naive_hash"
    expected = loss_and_grads(tiny_model(reference, n_buckets=4))
    assert_same(loss_and_grads(tiny_model(name, n_buckets=4)), expected)


@pytest.mark.slow
def test_scfa_qk_model_matches_the_reference_with_the_same_masks() -> None:
    expected = loss_and_grads(tiny_model("naive_qk", drop_rate=0.5), rng_seed=7)
    assert_same(loss_and_grads(tiny_model("scfa_qk", drop_rate=0.5), rng_seed=7), expected)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "axes"),
    [
        ("sdpa_math", {}),
        ("scfa_hash", {"n_buckets": 4}),
        ("hashformer", {"n_buckets": 4}),
        ("scfa_qk", {"drop_rate": 0.5}),
    ],
)
def test_torch_compile_sees_the_model_as_one_graph(name: str, axes: dict) -> None:
    """No graph break anywhere in the step's forward: LSH planes are drawn outside the step,
    the kernels and the LSH are custom ops, keep masks come from torch.rand."""
    idx, targets = tokens()
    torch._dynamo.reset()
    explained = torch._dynamo.explain(tiny_model(name, **axes))(idx, targets)
    torch._dynamo.reset()
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), [
        str(reason.reason).splitlines()[0] for reason in explained.break_reasons
    ]
