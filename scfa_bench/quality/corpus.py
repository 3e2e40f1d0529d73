"""Text corpora for quality runs: the standard library's own `.py` source (byte-level, present
wherever Python is), a folder of files (byte-level), or a nanoGPT-style token file (uint16).

Files are read in sorted relative-path order and each file goes to train or val by a hash of its
relative path, so the split is the same on every machine and does not move when other files are
added, removed or listed in another order. Batches are drawn from a per-epoch permutation of
sequence-long chunks, seeded by (seed, epoch), so step n's batch can be computed without
replaying steps 0..n-1 (a resumed run sees exactly what an uninterrupted one would).
"""

from __future__ import annotations

import hashlib
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from scfa_bench.quality.corpus_files import (
    CorpusError,
    digest,
    goes_to_val,
    read_tokens,
    read_tree,
    split_files,
    stdlib_files,
)

CorpusKind = Literal["stdlib", "folder", "tokens"]
CORPUS_KINDS: tuple[str, ...] = ("stdlib", "folder", "tokens")
BYTE_VOCAB = 256
# Token files are uint16, so no token id can reach this.
MAX_TOKEN_VOCAB = 1 << 16
# A single token file (no val.bin beside it) is cut into blocks of this many tokens, each sent to
# train or val by a hash of its index: the same interleaving for every length of file.
TOKEN_BLOCK = 8192


@dataclass(frozen=True)
class CorpusSpec:
    """Which text to train on. `max_bytes` (e.g. 1_000_000 for a quick run) keeps that many bytes:
    each split its share (val `val_fraction` of it) from its first files in path order."""

    kind: CorpusKind = "stdlib"
    path: str | None = None
    vocab: int = BYTE_VOCAB
    max_bytes: int | None = None
    val_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in CORPUS_KINDS:
            raise CorpusError(f"corpus kind {self.kind!r}: expected one of {list(CORPUS_KINDS)}")
        if self.kind == "stdlib" and self.path is not None:
            raise CorpusError("corpus kind 'stdlib' takes no path (it reads this Python's own)")
        if self.kind != "stdlib" and not self.path:
            raise CorpusError(f"corpus kind {self.kind!r} needs a path")
        if self.kind != "tokens" and self.vocab != BYTE_VOCAB:
            raise CorpusError(f"corpus kind {self.kind!r} is byte-level: vocab must be 256")
        if self.kind == "tokens" and not 2 <= self.vocab <= MAX_TOKEN_VOCAB:
            raise CorpusError(f"token corpus vocab {self.vocab}: expected 2..{MAX_TOKEN_VOCAB}")
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise CorpusError(f"corpus max_bytes {self.max_bytes}: expected a positive number")
        if not 0.0 < self.val_fraction < 1.0:
            raise CorpusError(f"corpus val_fraction {self.val_fraction}: expected 0 < f < 1")


@dataclass(frozen=True, eq=False)  # tensors: compare their contents, not the objects
class Corpus:
    train: Tensor
    val: Tensor
    vocab_size: int
    bytes_per_token: float | None
    fingerprint: dict[str, Any]

    def epochs_at(self, step: int, seq_len: int, batch: int) -> float:
        """Passes over the train split after `step` steps of `batch` sequences."""
        return step * batch * seq_len / self.train.numel()

    def train_batches(
        self, seq_len: int, batch: int, seed: int, start_step: int = 0
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Endless (idx, targets) batches; step n depends only on (seed, n), never on history."""
        _check_batch_args(seq_len, batch)
        n_chunks = (self.train.numel() - seq_len) // seq_len
        if n_chunks < 1:
            raise CorpusError(
                f"train split has {self.train.numel()} tokens: too small for seq_len {seq_len}"
            )
        epochs = _EpochOrder(n_chunks, seq_len, seed)
        step = start_step
        while True:
            starts = [epochs.chunk_start(step * batch + b) for b in range(batch)]
            yield _windows(self.train, starts, seq_len)
            step += 1

    def val_batches(
        self, seq_len: int, batch: int, max_batches: int
    ) -> list[tuple[Tensor, Tensor]]:
        """Fixed batches of chunks spread evenly over the val split (the last may be smaller)."""
        _check_batch_args(seq_len, batch)
        if max_batches < 1:
            raise CorpusError(f"max_batches {max_batches}: expected at least 1")
        n_chunks = (self.val.numel() - 1) // seq_len
        if n_chunks < 1:
            raise CorpusError(
                f"val split has {self.val.numel()} tokens: too small for seq_len {seq_len}"
            )
        count = min(n_chunks, batch * max_batches)
        chunks = np.linspace(0, n_chunks - 1, count).round().astype(np.int64)
        starts = [int(c) * seq_len for c in chunks]
        return [_windows(self.val, starts[i : i + batch], seq_len) for i in range(0, count, batch)]


def _check_batch_args(seq_len: int, batch: int) -> None:
    if seq_len < 1 or batch < 1:
        raise CorpusError(f"seq_len {seq_len} and batch {batch}: both must be at least 1")


class _EpochOrder:
    """Sample g of the stream = chunk perm_e[g mod n] of epoch e = g // n; each epoch also
    shifts every chunk by an offset below seq_len so epochs do not repeat the same windows."""

    def __init__(self, n_chunks: int, seq_len: int, seed: int) -> None:
        self.n_chunks, self.seq_len, self.seed = n_chunks, seq_len, seed
        self._epoch = -1
        self._perm = torch.empty(0, dtype=torch.int64)
        self._offset = 0

    def chunk_start(self, sample: int) -> int:
        epoch, pos = divmod(sample, self.n_chunks)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(_mix(self.seed, epoch))
            self._perm = torch.randperm(self.n_chunks, generator=generator)
            self._offset = int(torch.randint(self.seq_len, (1,), generator=generator))
            self._epoch = epoch
        return int(self._perm[pos]) * self.seq_len + self._offset


def _mix(*values: int) -> int:
    """A 63-bit generator seed from several integers (distinct tuples give unrelated streams)."""
    text = ",".join(str(v) for v in values).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1


def _windows(tokens: Tensor, starts: list[int], seq_len: int) -> tuple[Tensor, Tensor]:
    rows = torch.stack([tokens[s : s + seq_len + 1] for s in starts])
    return rows[:, :-1].contiguous(), rows[:, 1:].contiguous()


def _as_tensor(files: tuple[tuple[str, bytes], ...]) -> Tensor:
    data = bytearray(b"".join(d for _, d in files))
    return torch.frombuffer(data, dtype=torch.uint8).to(torch.int64)


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def load_corpus(spec: CorpusSpec) -> Corpus:
    """Read, cap and split the corpus `spec` names; raises CorpusError when it cannot be used."""
    if spec.kind == "tokens":
        return _load_tokens(spec)
    if spec.kind == "stdlib":
        root = stdlib_root()
        files = stdlib_files(str(root))
    else:
        root = Path(spec.path or "")
        if not root.is_dir():
            raise CorpusError(f"corpus folder {root}: not found (or not a folder)")
        files = read_tree(root, python_only=False)
    where = "the standard library at " + str(root) if spec.kind == "stdlib" else str(root)
    if not files:
        raise CorpusError(f"corpus {where}: no files to read")
    train, val = split_files(files, spec.val_fraction, spec.max_bytes, where)
    fingerprint: dict[str, Any] = {"kind": spec.kind, **digest(train + val)}
    if spec.kind == "stdlib":
        fingerprint["python"] = sys.version
    else:
        fingerprint["path"] = str(root)
    return Corpus(_as_tensor(train), _as_tensor(val), BYTE_VOCAB, 1.0, fingerprint)


def _load_tokens(spec: CorpusSpec) -> Corpus:
    """A nanoGPT-style uint16 token corpus: `train.bin` with `val.bin` beside it (a folder holding
    both, or the train file's path), or one `.bin` file split by hashed blocks of tokens."""
    path = Path(spec.path or "")
    train_path = path / "train.bin" if path.is_dir() else path
    val_path = train_path.with_name("val.bin")
    if not train_path.is_file():
        raise CorpusError(f"token corpus {train_path}: not found")
    paired = train_path.name == "train.bin" and val_path.is_file()
    budget = None if spec.max_bytes is None else max(spec.max_bytes // 2, 1)
    if paired:
        val_budget = None if budget is None else max(round(budget * spec.val_fraction), 1)
        train_budget = None if budget is None else max(budget - (val_budget or 0), 1)
        train = read_tokens(train_path, train_budget, spec.vocab)
        val = read_tokens(val_path, val_budget, spec.vocab)
        pieces = (("train.bin", train.tobytes()), ("val.bin", val.tobytes()))
    else:
        tokens = read_tokens(train_path, budget, spec.vocab)
        blocks = [tokens[i : i + TOKEN_BLOCK] for i in range(0, tokens.size, TOKEN_BLOCK)]
        in_val = [goes_to_val(f"block {i}", spec.val_fraction) for i in range(len(blocks))]
        empty = np.empty(0, dtype=np.uint16)
        train = np.concatenate([empty, *(b for b, v in zip(blocks, in_val, strict=True) if not v)])
        val = np.concatenate([empty, *(b for b, v in zip(blocks, in_val, strict=True) if v)])
        pieces = ((train_path.name, tokens.tobytes()),)
        if train.size == 0 or val.size == 0:
            raise CorpusError(
                f"token corpus {train_path}: too small, its {len(blocks)} block(s) of "
                f"{TOKEN_BLOCK} tokens leave the {'train' if train.size == 0 else 'val'} split "
                "empty; put a val.bin beside a train.bin, or use a longer file"
            )
    fingerprint = {"kind": "tokens", **digest(pieces), "path": str(path), "vocab": spec.vocab}
    return Corpus(
        torch.from_numpy(train.astype(np.int64)),
        torch.from_numpy(val.astype(np.int64)),
        spec.vocab,
        None,
        fingerprint,
    )
