"""What the trainer reads: one `DataSource` per (data, seq_len), over a corpus or a recall task.

Both give the same batches for the same seed whatever the attention, and can start at any
step (`train_batches(start_step=n)` is what an uninterrupted run sees from step n on), so a
resumed run reads exactly what it would have read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from torch import Tensor

from scfa_bench.quality.config import CorpusSettings, TaskSettings

Batch = tuple[Tensor, Tensor]  # (idx, targets), int64 (batch, seq_len); -100 = no loss
# Step seeds of recall validation batches: far from any training step's.
VAL_STEP_SEED = 10**12
VAL_SPEC_SEED = 0  # one validation set for every seed of a run


class DataSource(Protocol):
    task: str  # the `task` column: corpus | mqar | passkey
    vocab_size: int
    bytes_per_token: float | None  # None: not byte-level (no bpb)
    token_file: bool  # bits per token are reported

    def train_batches(self, start_step: int = 0) -> Iterator[Batch]: ...

    def val_batches(self) -> list[Batch]: ...

    def epochs_at(self, step: int) -> float | None: ...


def corpus_spec(settings: CorpusSettings) -> Any:
    """The loader's `CorpusSpec` of a suite's corpus settings."""
    from scfa_bench.quality.corpus import CorpusSpec

    extra: dict[str, Any] = {}
    if settings.vocab is not None:
        extra["vocab"] = settings.vocab
    if settings.val_fraction is not None:
        extra["val_fraction"] = settings.val_fraction
    path = settings.path
    return CorpusSpec(kind=settings.kind, path=path, max_bytes=settings.max_bytes, **extra)


def load(settings: CorpusSettings) -> Any:
    """The loaded corpus (`quality.corpus.Corpus`); CorpusError when it cannot be."""
    from scfa_bench.quality.corpus import load_corpus

    return load_corpus(corpus_spec(settings))


@dataclass
class CorpusSource:
    corpus: Any  # quality.corpus.Corpus
    seq_len: int
    batch: int
    seed: int
    eval_batches: int
    kind: str
    task: str = "corpus"

    @property
    def vocab_size(self) -> int:
        return int(self.corpus.vocab_size)

    @property
    def bytes_per_token(self) -> float | None:
        return self.corpus.bytes_per_token

    @property
    def token_file(self) -> bool:
        return self.kind == "tokens"

    def train_batches(self, start_step: int = 0) -> Iterator[Batch]:
        return self.corpus.train_batches(self.seq_len, self.batch, self.seed, start_step=start_step)

    def val_batches(self) -> list[Batch]:
        return list(self.corpus.val_batches(self.seq_len, self.batch, self.eval_batches))

    def epochs_at(self, step: int) -> float | None:
        return float(self.corpus.epochs_at(step, self.seq_len, self.batch))


@dataclass
class RecallSource:
    settings: TaskSettings
    seq_len: int
    batch: int
    seed: int
    eval_batches: int
    bytes_per_token: float | None = None
    token_file: bool = False

    @property
    def task(self) -> str:
        return self.settings.name

    @property
    def vocab_size(self) -> int:
        return self.settings.vocab

    def spec(self, seed: int) -> Any:
        from scfa_bench.quality.recall import RecallSpec

        extra: dict[str, Any] = {}
        if self.settings.n_pairs is not None:
            extra["n_pairs"] = self.settings.n_pairs
        if self.settings.alpha is not None:
            extra["alpha"] = self.settings.alpha
        return RecallSpec(
            task=self.settings.name,
            seq_len=self.seq_len,
            vocab=self.settings.vocab,
            seed=seed,
            **extra,
        )

    def _batch(self, spec: Any, step_seed: int) -> Batch:
        from scfa_bench.quality.recall import recall_batch

        idx, targets, _answers = recall_batch(spec, self.batch, step_seed)
        return idx, targets

    def train_batches(self, start_step: int = 0) -> Iterator[Batch]:
        spec = self.spec(self.seed)
        step = start_step
        while True:
            yield self._batch(spec, step)
            step += 1

    def val_batches(self) -> list[Batch]:
        spec = self.spec(VAL_SPEC_SEED)
        return [self._batch(spec, VAL_STEP_SEED + i) for i in range(self.eval_batches)]

    def epochs_at(self, step: int) -> float | None:
        return None  # fresh samples every step


def validate_task(settings: TaskSettings, seq_len: int) -> None:
    """RecallError (a ValueError) when the task cannot be built at this seq_len."""
    from scfa_bench.quality.recall import validate_recall

    validate_recall(RecallSource(settings, seq_len, 1, 0, 1).spec(0))


__all__ = [
    "Batch",
    "CorpusSource",
    "DataSource",
    "RecallSource",
    "corpus_spec",
    "load",
    "validate_task",
]
