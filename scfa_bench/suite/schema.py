"""The suite schema: frozen dataclasses for a validated suite (see `suite.parse` for the keys)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scfa_bench.constants import MODES


@dataclass(frozen=True)
class Shape:
    batch: int
    heads: int
    head_dim: int
    dtype: str  # canonical: fp16 | bf16 | fp32


@dataclass(frozen=True)
class Sweep:
    seq_len: tuple[int, ...]
    n_buckets: tuple[int, ...] | None = None
    drop_rate: tuple[float, ...] | None = None

    def values(self, axis: str) -> tuple[Any, ...] | None:
        return getattr(self, axis)


@dataclass(frozen=True)
class TimingSettings:
    """How long to warm up and to repeat each timed call (passed to `do_bench`)."""

    warmup_ms: float = 25.0
    rep_ms: float = 100.0


@dataclass(frozen=True)
class Suite:
    name: str
    shape: Shape
    sweep: Sweep
    implementations: tuple[str, ...]
    description: str = ""
    seed: int = 0
    buckets: str = "random"
    baseline: str | None = None
    modes: tuple[str, ...] = MODES
    timing: TimingSettings = field(default_factory=TimingSettings)
    check: bool = True
    check_rows: int = 256
    max_check_seq_len: int | None = None
    device: str = "auto"
    source: str = ""  # the file it came from ("" when built in code)
    sha256: str = ""  # of the file's bytes
