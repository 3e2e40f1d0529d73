"""scfa-bench: the benchmarking harness for Sparse Causal Flash Attention kernels.

The sub-packages are the stages, and imports flow one way (ARCHITECTURE.md; a test checks it):
`errors`/`constants` -> `impls` (what can be measured) -> `suite` (what to measure: schema,
YAML, grid) -> `measure` (one point: inputs, check, timing, memory) -> `results` (rows, CSV,
meta, speedups, resume) -> `run` (the run loop) -> `analysis` (summary, plots, report, gate)
-> `cli`.
"""

from __future__ import annotations

__version__ = "0.1.0"
