"""A model step captured in a CUDA graph (GPU only): replays compute the eager step."""

from __future__ import annotations

import pytest
import torch

from scfa_bench.e2e.measurement import MeasureSettings, measure_step
from scfa_bench.e2e.model import ModelConfig
from scfa_bench.e2e.step import build_step

from .step_configs import step_config_factory

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")

SMALL = ModelConfig(layers=2, d_model=128, heads=2, mlp_ratio=4, vocab=256)


config = step_config_factory(
    model=SMALL,
    batch=1,
    seq_len=512,
    attention="scfa_hash",
    n_buckets=4,
    dtype="bf16",
    device="cuda",
)


@pytest.mark.parametrize(
    ("attention", "compiled"),
    [
        ("scfa_hash", False),
        ("scfa_hash", True),
        ("hashformer", False),
        ("sdpa_flash", False),
        ("identity", True),
    ],
)
def test_replays_give_the_eager_loss_and_gradients(attention: str, compiled: bool) -> None:
    n_buckets = None if attention in ("sdpa_flash", "identity") else 4
    eager = build_step(config(attention=attention, n_buckets=n_buckets, compile=compiled))
    graphed = build_step(
        config(attention=attention, n_buckets=n_buckets, compile=compiled, cuda_graph=True)
    )
    expected = eager.run()
    for _ in range(2):  # a replay recomputes the gradients; it does not add to them
        loss = graphed.run()
        torch.cuda.synchronize()
        torch.testing.assert_close(loss, expected, rtol=1e-3, atol=1e-3)
        for (name, p_eager), p_graphed in zip(
            eager.model.named_parameters(), graphed.model.parameters(), strict=True
        ):
            assert p_graphed.grad is not None, name
            torch.testing.assert_close(p_graphed.grad, p_eager.grad, rtol=2e-2, atol=2e-3)


def test_replays_survive_other_allocations() -> None:
    # The graph reads the step's token ids by address: they must outlive the capture even
    # when the step function that made them is gone and other tensors are allocated.
    graphed = build_step(config(attention="identity", n_buckets=None, cuda_graph=True))
    expected = float(graphed.run())
    clutter = [torch.randint(-(2**40), 2**40, (n,), device="cuda") for n in (512, 513, 1024, 4096)]
    for _ in range(2):
        assert float(graphed.run()) == expected
    torch.cuda.synchronize()
    del clutter


def test_replays_draw_fresh_keep_masks() -> None:
    step = build_step(config(attention="scfa_qk", n_buckets=None, drop_rate=0.5, cuda_graph=True))
    losses = [float(step.run()) for _ in range(3)]
    assert len(set(losses)) == 3, losses


def test_the_optimizer_step_is_captured_too() -> None:
    step = build_step(config(optimizer=True, cuda_graph=True))
    before = step.model.wte.weight.detach().clone()
    step.run()
    torch.cuda.synchronize()
    assert not torch.equal(before, step.model.wte.weight)


def test_a_graphed_measurement_says_so() -> None:
    settings = MeasureSettings(warmup_steps=1, timed_steps=3, profile_steps=1)
    eager = measure_step(config(), settings)
    result = measure_step(config(cuda_graph=True), settings)
    assert result.status == "ok", result.error
    assert result.timer == "cuda_graph"
    # The peak is the step's (taken while it is built), not what a replay allocates (nothing).
    assert 0.8 * eager.peak_mem_mib <= result.peak_mem_mib <= 2 * eager.peak_mem_mib
    assert result.gpu_ms is not None and result.attention_ms is not None
    assert 0 < result.attention_share < 1
