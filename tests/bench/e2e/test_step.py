"""Building and measuring a model step on the CPU; the attention-share rule on kernel names."""

from __future__ import annotations

import math

import pytest
import torch

from scfa_bench.e2e import measurement
from scfa_bench.e2e.kernel_share import is_attention_kernel, split_kernel_times
from scfa_bench.e2e.measurement import MeasureSettings, is_out_of_memory, measure_step
from scfa_bench.e2e.model import ModelConfig
from scfa_bench.e2e.step import StepConfig, StepConfigError, build_step

from .step_configs import step_config_factory

TINY = ModelConfig(layers=2, d_model=32, heads=2, mlp_ratio=4, vocab=64)
QUICK = MeasureSettings(warmup_steps=1, timed_steps=3, profile_steps=0)


config = step_config_factory(
    model=TINY, batch=2, seq_len=64, attention="sdpa_math", dtype="fp32", device="cpu"
)


def test_measurement_on_the_cpu_has_sane_fields() -> None:
    result = measure_step(config(), QUICK)
    assert result.status == "ok", result.error
    assert result.timer == "wall_clock"
    assert 0 < result.ms_q20 <= result.ms_median <= result.ms_q80
    assert result.tokens_per_s == pytest.approx(2 * 64 / (result.ms_median / 1e3))
    assert math.isfinite(result.loss) and result.loss > 0
    # 2 blocks of (qkv 32x96+96, out 32x32+32, fc 32x128+128, proj 128x32+32, 2 LN of 64),
    # token (64x32) and position (64x32) tables, final LN; the head is tied.
    block = (32 * 96 + 96) + (32 * 32 + 32) + (32 * 128 + 128) + (128 * 32 + 32) + 2 * 64
    assert result.n_params == 2 * block + 64 * 32 + 64 * 32 + 64
    # No CUDA: no allocator peak, no kernel profile, no NVML samples (the summary says why).
    assert result.peak_mem_mib is None and result.attention_share is None
    assert result.gpu_ms is None and result.telemetry is None  # no sampler given


def test_a_given_sampler_runs_around_the_timed_steps_only() -> None:
    class Sampler:
        entered = 0

        def __enter__(self):
            self.entered += 1

        def __exit__(self, *exc):
            return None

        def summary(self):
            return "summary"

    sampler = Sampler()
    result = measure_step(config(), QUICK, sampler)
    assert result.status == "ok", result.error
    assert (sampler.entered, result.telemetry) == (1, "summary")


def test_the_optimizer_step_changes_the_weights() -> None:
    with_adamw = build_step(config(optimizer=True))
    before = with_adamw.model.wte.weight.detach().clone()
    with_adamw.run()
    assert not torch.equal(before, with_adamw.model.wte.weight)

    without = build_step(config())
    before = without.model.wte.weight.detach().clone()
    loss_1, loss_2 = without.run(), without.run()
    assert torch.equal(before, without.model.wte.weight)
    assert loss_1 == loss_2  # same inputs, same weights: the same step every time
    assert without.model.wte.weight.grad is not None


def test_each_step_starts_from_no_gradient() -> None:
    """A step's gradients are its own: the next step does not add to them (as it would if
    the step forgot to drop the last one's)."""
    step = build_step(config())
    step.run()
    first = [p.grad.clone() for p in step.model.parameters()]
    step.run()  # the same batch, no optimizer: the same gradients, not twice them
    for p, g in zip(step.model.parameters(), first, strict=True):
        torch.testing.assert_close(p.grad, g)


def test_steps_are_seeded() -> None:
    assert build_step(config(seed=1)).run() == build_step(config(seed=1)).run()
    assert build_step(config(seed=1)).run() != build_step(config(seed=2)).run()


@pytest.mark.parametrize(
    ("overrides", "status", "message"),
    [
        (
            {
                "model": ModelConfig(layers=1, d_model=48, heads=2, vocab=64),
                "attention": "scfa_hash",
                "n_buckets": 8,
            },
            "error",
            "head dim 24",
        ),
        ({"attention": "scfa_hash", "n_buckets": 5}, "error", "even number >= 2, got 5"),
        ({"attention": "scfa_qk"}, "error", "'scfa_qk' needs drop_rate"),
        ({"attention": "nope"}, "error", "'nope' has no model plug"),
        ({"attention": "sdpa_flash"}, "unavailable", "sdpa_flash: runs on cuda, not cpu"),
    ],
)
def test_bad_settings_come_back_as_a_status(overrides: dict, status: str, message: str) -> None:
    result = measure_step(config(**overrides), QUICK)
    assert (result.status, result.ms_median) == (status, None)
    assert message in result.error


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"batch": 0}, "batch: expected an integer >= 1, got 0"),
        ({"seq_len": 2.5}, "seq_len: expected an integer >= 1"),
        ({"dtype": "fp8"}, "dtype: expected one of"),
        ({"dtype": "bf16"}, "the CPU step runs in fp32 only"),
        ({"device": "tpu"}, "device: expected one of"),
        ({"compile": "yes"}, "compile: expected true or false"),
        ({"cuda_graph": 1}, "cuda_graph: expected true or false, got 1"),
        ({"cuda_graph": True}, "cuda_graph: a CUDA graph needs device 'cuda', got 'cpu'"),
    ],
)
def test_bad_step_settings_raise_clear_errors(overrides: dict, message: str) -> None:
    with pytest.raises(StepConfigError, match=message):
        config(**overrides)


def test_out_of_memory_is_an_oom_status(monkeypatch) -> None:
    def no_memory(_: StepConfig) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 96.00 GiB")

    monkeypatch.setattr(measurement, "build_step", no_memory)
    result = measure_step(config(), QUICK)
    assert result.status == "oom"
    assert "Tried to allocate 96.00 GiB" in result.error


def test_failures_are_an_error_status_never_a_traceback(monkeypatch) -> None:
    def broken(_: StepConfig) -> None:
        raise RuntimeError("launch failed\nsecond line")

    monkeypatch.setattr(measurement, "build_step", broken)
    result = measure_step(config(), QUICK)
    assert (result.status, result.error) == ("error", "RuntimeError: launch failed")


def test_wrapped_out_of_memory_is_recognised() -> None:
    try:
        try:
            raise torch.OutOfMemoryError("out of memory")
        except torch.OutOfMemoryError as inner:
            raise RuntimeError("backend compiler failed") from inner
    except RuntimeError as outer:
        assert is_out_of_memory(outer)
    assert not is_out_of_memory(RuntimeError("illegal memory access"))


def test_bad_measure_settings_raise_clear_errors() -> None:
    with pytest.raises(StepConfigError, match="timed_steps: expected an integer >= 1, got 0"):
        MeasureSettings(timed_steps=0)


# ---------------------------------------------------------------- attention share


@pytest.mark.parametrize(
    "name",
    [
        "sparse_attention_fwd_kernel",
        "sparse_attention_bwd_dkdv_kernel",
        "sparse_attention_bwd_dq_kernel",
        "attention_bwd_delta_kernel",
        "bucket_sort_pair_kernel",
        "query_tile_ranges_kernel",
        "key_tile_ranges_kernel",
        "lsh_buckets_kernel",
        "cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_3_64x64x64_4x1x1",
        "void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64, 128>, true>(Params)",
        "fmha_cutlassB_bf16_aligned_64x64_k64_sm80",
        "triton_tem_fused_flex_attention_0",
    ],
)
def test_attention_kernels_are_recognised(name: str) -> None:
    assert is_attention_kernel(name)


@pytest.mark.parametrize(
    "name",
    [
        "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64",
        "nvjet_hsh_256x128_64x4_1x2_h_bz_coopA_NNT",
        "void at::native::vectorized_elementwise_kernel<4, at::native::GeluCUDAKernelImpl>",
        "triton_poi_fused__scaled_dot_product_cudnn_attention_transpose_0",
        "triton_red_fused_native_layer_norm_1",
        "Memset (Device)",
    ],
)
def test_other_kernels_are_not_attention(name: str) -> None:
    assert not is_attention_kernel(name)


def test_attention_share_is_attention_time_over_all_gpu_time() -> None:
    kernels = [("sparse_attention_fwd_kernel", 300.0), ("nvjet_gemm", 500.0), ("Memset", 200.0)]
    times = split_kernel_times(kernels * 2, steps=2)
    assert (times.attention_ms, times.total_ms) == (0.3, 1.0)
    assert times.attention_share == pytest.approx(0.3)
    assert split_kernel_times([], steps=1).attention_share is None


def test_capture_needs_a_warm_up_step() -> None:
    from scfa_bench.e2e.graphed import capture_step

    with pytest.raises(ValueError, match="warmup_steps: expected an integer >= 1, got 0"):
        capture_step(lambda: torch.zeros(()), warmup_steps=0)
