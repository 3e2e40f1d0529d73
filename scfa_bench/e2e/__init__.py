"""End-to-end measurement: a decoder-only LM training step with pluggable attention.

`model` (the LM and its config), `attention` (implementation name -> plug; the per-layer
functions in `layer_attention`), `step` (build one training step), `measurement` (time it,
its memory and its attention share; `kernel_share` says which profiled kernels are attention).
Imports only torch, `scfa_kernels` and the implementation registry.
"""

from __future__ import annotations

from scfa_bench.e2e.attention import PLUGS, AttentionConfigError, AttentionUnavailable
from scfa_bench.e2e.measurement import MeasureSettings, StepMeasurement, measure_step
from scfa_bench.e2e.model import GPT2_SMALL, DecoderLM, ModelConfig, ModelConfigError
from scfa_bench.e2e.step import StepConfig, StepConfigError, build_step

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
