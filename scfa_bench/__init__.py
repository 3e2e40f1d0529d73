"""scfa-bench: the benchmarking harness for Sparse Causal Flash Attention kernels.

Data flows one way: suite YAML (`suite`) -> grid of points (`grid`) -> per point and
implementation (`registry`, `impls`): inputs (`inputs`) -> check (`correctness`) ->
timings (`timing`) + memory (`memory`) -> CSV rows (`results`), driven by `runner`.
"""

from __future__ import annotations

__version__ = "0.1.0"
