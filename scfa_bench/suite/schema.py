"""The suite schema: frozen dataclasses for a validated suite (see `suite.parse` for the keys)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scfa_bench.constants import MODES, STEP_MODES
from scfa_bench.e2e.model import ModelConfig
from scfa_bench.quality.config import TrainingSettings


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
    """How long to warm up and to repeat each timed call, and the GPU clock: `do_bench` (host
    launch cost included) or replays of a CUDA graph of the call (GPU work alone)."""

    warmup_ms: float = 25.0
    rep_ms: float = 100.0
    cuda_graph: bool = False


@dataclass(frozen=True)
class StepCounts:
    """Model suites: steps run before timing (compilation happens in the first), timed, and
    profiled for the attention share (0: no profile)."""

    warmup: int = 3
    timed: int = 10
    profile: int = 3


@dataclass(frozen=True)
class ModelSettings:
    """The `model:` section: a suite that times a training step of this model instead of one
    attention call. `compile` is a sweep axis."""

    config: ModelConfig
    dtype: str  # canonical, as Shape.dtype; autocast dtype on CUDA
    batch: int | None = None  # exactly one of batch and tokens_per_step is set
    tokens_per_step: int | None = None
    compile: tuple[bool, ...] = (False,)
    optimizer: bool = False
    cuda_graph: bool = False  # capture each step in a CUDA graph, time its replays
    steps: StepCounts = field(default_factory=StepCounts)

    def batch_for(self, seq_len: int) -> int:
        """The batch at this seq_len: fixed, or tokens_per_step // seq_len (at least 1)."""
        if self.batch is not None:
            return self.batch
        assert self.tokens_per_step is not None
        return max(1, self.tokens_per_step // seq_len)

    @property
    def mode(self) -> str:
        return STEP_MODES[1] if self.optimizer else STEP_MODES[0]


@dataclass(frozen=True)
class Suite:
    name: str
    shape: Shape | None  # None for model suites (the model section gives the shape)
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
    model: ModelSettings | None = None
    training: TrainingSettings | None = None  # a training suite (`suite.training_section`)
    split_groups: bool = True  # may shards split a seq_len's tasks (run.sharded.plan)
    source: str = ""  # the file it came from ("" when built in code)
    sha256: str = ""  # of the file's bytes
