"""The settings of a training suite (`training:` section, parsed by `suite.training_section`).

Frozen values only; what they mean at run time is in `quality.train` and `quality.settings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scfa_bench.e2e.model import ModelConfig
from scfa_bench.quality.corpus import CORPUS_KINDS
from scfa_bench.quality.recall import RECALL_TASKS

LSH_MODES = ("per_call", "fixed")
TRAIN_DTYPES = ("bf16", "fp32")


@dataclass(frozen=True)
class CorpusSettings:
    """`training.corpus`: which text (or token file) to train on."""

    kind: str  # stdlib | folder | tokens
    path: str | None = None
    vocab: int | None = None  # tokens files only (byte-level corpora have 256)
    max_bytes: int | None = None
    val_fraction: float | None = None  # None: the corpus loader's default

    def label(self) -> str:
        name = self.kind if self.path is None else f"{self.kind}:{self.path}"
        return name if self.max_bytes is None else f"{name}[{self.max_bytes}B]"


@dataclass(frozen=True)
class TaskSettings:
    """One entry of `training.task`: a synthetic recall task."""

    name: str  # mqar | passkey
    vocab: int
    n_pairs: int | None = None  # mqar
    alpha: float | None = None  # mqar: power-law exponent of the query distances


@dataclass(frozen=True)
class AttentionSetting:
    """One entry of `training.settings`: the attention every layer of one model uses."""

    impl: str
    n_buckets: int | None = None
    drop_rate: float | None = None
    lsh: str = "per_call"  # hash settings: fresh LSH rotations per call, or fixed per layer
    name: str | None = None  # the `setting` column; a default is derived from the rest
    # Query heads of this setting's model, in place of the run's (same d_model, same weights).
    heads: int | None = None

    def label(self) -> str:
        if self.name is not None:
            return self.name
        heads = "" if self.heads is None else f" heads={self.heads}"
        if self.n_buckets is not None:
            suffix = "" if self.lsh == "per_call" else " fixed"
            return f"{self.impl} nb={self.n_buckets}{suffix}{heads}"
        if self.drop_rate is not None:
            return f"{self.impl} p={self.drop_rate:g}{heads}"
        return self.impl + heads


@dataclass(frozen=True)
class ModelShape:
    """`training.model`; the vocabulary comes from the data."""

    layers: int
    d_model: int
    heads: int
    mlp_ratio: float = 4.0

    def config(self, vocab: int, max_seq_len: int) -> ModelConfig:
        return ModelConfig(
            layers=self.layers,
            d_model=self.d_model,
            heads=self.heads,
            mlp_ratio=self.mlp_ratio,
            vocab=vocab,
            max_seq_len=max_seq_len,
        )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads


@dataclass(frozen=True)
class OptimizerSettings:
    """AdamW with linear warm-up then cosine decay to `min_lr_fraction` of `lr`."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1
    warmup_fraction: float = 0.05
    min_lr_fraction: float = 0.1
    grad_clip: float | None = 1.0


@dataclass(frozen=True)
class TrainingSettings:
    """A whole `training:` section. A corpus, recall tasks or both; exactly one of `steps` and
    `tokens` sizes the schedule; `max_seconds` can stop a setting earlier."""

    model: ModelShape
    batch: int
    seq_len: tuple[int, ...]
    settings: tuple[AttentionSetting, ...]
    corpus: CorpusSettings | None = None
    tasks: tuple[TaskSettings, ...] = ()
    steps: int | None = None
    tokens: int | None = None
    max_seconds: float | None = None
    eval_every: int = 50
    eval_batches: int = 4
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)
    dtype: str = "bf16"  # autocast on CUDA; the CPU trains in fp32
    compile: bool = False
    seeds: tuple[int, ...] = (0,)
    shared_qk: bool = True  # keys = normalised queries in every model of the run (the paper's)

    def steps_for(self, seq_len: int) -> int:
        """Optimizer steps at this seq_len: `steps`, or `tokens` / (batch x seq_len), >= 1."""
        if self.steps is not None:
            return self.steps
        assert self.tokens is not None
        return max(1, self.tokens // (self.batch * seq_len))

    def data_names(self) -> tuple[str, ...]:
        """The `task` column values: 'corpus', or each recall task's name."""
        corpus = ("corpus",) if self.corpus is not None else ()
        return corpus + tuple(t.name for t in self.tasks)


__all__ = [
    "CORPUS_KINDS",
    "LSH_MODES",
    "RECALL_TASKS",
    "TRAIN_DTYPES",
    "AttentionSetting",
    "CorpusSettings",
    "ModelShape",
    "OptimizerSettings",
    "TaskSettings",
    "TrainingSettings",
]
