"""End-to-end measurement: a decoder-only LM training step with pluggable attention.

`model` (the LM and its config), `attention` (implementation name -> per-layer attention),
`kernel_share` (which profiled kernels are attention), `step` (build and measure one step).
Imports only torch, `scfa_kernels` and the implementation registry.
"""

from __future__ import annotations

from scfa_bench.e2e.attention import PLUGS, AttentionConfigError, AttentionUnavailable
from scfa_bench.e2e.model import GPT2_SMALL, DecoderLM, ModelConfig, ModelConfigError
from scfa_bench.e2e.step import (
    MeasureSettings,
    StepConfig,
    StepConfigError,
    StepMeasurement,
    build_step,
    measure_step,
)

__all__ = [
    "GPT2_SMALL",
    "PLUGS",
    "AttentionConfigError",
    "AttentionUnavailable",
    "DecoderLM",
    "MeasureSettings",
    "ModelConfig",
    "ModelConfigError",
    "StepConfig",
    "StepConfigError",
    "StepMeasurement",
    "build_step",
    "measure_step",
]
