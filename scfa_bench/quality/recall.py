"""Synthetic long-range recall batches: multi-query associative recall (MQAR, as defined in
Arora et al. 2023, "Zoology: Measuring and Improving Recall in Efficient Language Models") and
passkey retrieval (Mohtashami & Jaggi 2023, "Landmark Attention").

Every batch is (idx, targets, answer_mask), all (batch, seq_len): targets[t] is the token the
model must predict after reading idx[..t]; it is -100 (ignored by `cross_entropy`) everywhere but
at the answer positions, which `answer_mask` marks, so the loss and the accuracy count answers
only.

MQAR: the sequence opens with `n_pairs` key-value pairs k1 v1 k2 v2 ... (keys distinct, drawn from
the lower half of the vocabulary without 0, values from the upper half), then random tokens in
which each key appears once more, at an even offset 2*g after the pairs; the gap g is drawn
without replacement with probability proportional to g**(alpha - 1), so most queries come soon
and a few come far. The answer at a query is the value paired with its key.

Passkey: random filler tokens, a marker followed by a random digit string planted at a uniform
random position, and at the end a question marker after which the model must spell the digits.
Digits are token ids 0..9, the two markers 10 and 11, filler 12..vocab-1, so the digit string
appears exactly once before the question.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

RecallTask = Literal["mqar", "passkey"]
RECALL_TASKS: tuple[str, ...] = ("mqar", "passkey")
IGNORE = -100
N_DIGITS = 10
PASSKEY_MARK = 10
QUESTION_MARK = 11
FIRST_FILLER = 12


class RecallError(ValueError):
    """A recall setting that cannot produce a valid batch."""


@dataclass(frozen=True)
class RecallSpec:
    task: RecallTask = "mqar"
    seq_len: int = 256
    vocab: int = 8192
    n_pairs: int = 16  # mqar: key-value pairs (and queries) per sequence
    alpha: float = 0.01  # mqar: power-law exponent of the query gaps, as in Zoology
    seed: int = 0
    passkey_digits: int = 5  # passkey: length of the digit string


def validate_recall(spec: RecallSpec) -> None:
    """Raise RecallError naming the setting that makes `spec` impossible."""
    if spec.task not in RECALL_TASKS:
        raise RecallError(f"recall task {spec.task!r}: expected one of {list(RECALL_TASKS)}")
    if spec.seq_len < 2:
        raise RecallError(f"recall seq_len {spec.seq_len}: expected at least 2")
    if spec.task == "mqar":
        _validate_mqar(spec)
    else:
        _validate_passkey(spec)


def _validate_mqar(spec: RecallSpec) -> None:
    if spec.vocab <= spec.seq_len:
        raise RecallError(
            f"mqar vocab {spec.vocab} must exceed seq_len {spec.seq_len} (as in Zoology)"
        )
    if spec.n_pairs < 1:
        raise RecallError(f"mqar n_pairs {spec.n_pairs}: expected at least 1")
    if 4 * spec.n_pairs > spec.seq_len:
        raise RecallError(
            f"mqar n_pairs {spec.n_pairs} too large for seq_len {spec.seq_len}: the pairs and "
            "their queries need 4 * n_pairs <= seq_len"
        )
    if spec.n_pairs > spec.vocab // 2 - 1:
        raise RecallError(f"mqar n_pairs {spec.n_pairs}: vocab {spec.vocab} has too few keys")
    if spec.alpha <= 0:
        raise RecallError(f"mqar alpha {spec.alpha}: expected > 0")


def _validate_passkey(spec: RecallSpec) -> None:
    if spec.passkey_digits < 1:
        raise RecallError(f"passkey_digits {spec.passkey_digits}: expected at least 1")
    if spec.vocab <= FIRST_FILLER:
        raise RecallError(
            f"passkey vocab {spec.vocab}: expected more than {FIRST_FILLER} (10 digits, 2 markers,"
            " filler)"
        )
    if spec.seq_len < 2 * (spec.passkey_digits + 1):
        raise RecallError(
            f"passkey seq_len {spec.seq_len} too short for {spec.passkey_digits} digits: the key "
            "and the question need 2 * (digits + 1) positions"
        )


def recall_batch(spec: RecallSpec, batch: int, step_seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """(idx, targets, answer_mask) for `batch` sequences; the same (spec, step_seed) gives the
    same batch. Use one step_seed per training step and a fixed one for evaluation."""
    validate_recall(spec)
    if batch < 1:
        raise RecallError(f"recall batch {batch}: expected at least 1")
    generator = torch.Generator().manual_seed(_mix(spec.seed, step_seed))
    if spec.task == "mqar":
        idx, targets = _mqar(spec, batch, generator)
    else:
        idx, targets = _passkey(spec, batch, generator)
    return idx, targets, targets != IGNORE


def mqar_gap_weights(spec: RecallSpec) -> Tensor:
    """Probability of each query gap g = 0..space-1 (offset 2*g after the pairs): ~ (g+1)**(a-1)."""
    space = (spec.seq_len - 2 * spec.n_pairs) // 2
    weights = spec.alpha * torch.arange(1, space + 1, dtype=torch.float64) ** (spec.alpha - 1)
    return weights / weights.sum()


def _mqar(spec: RecallSpec, batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    n, half, context = spec.n_pairs, spec.vocab // 2, 2 * spec.n_pairs
    # Distinct keys in 1..half-1 and distinct values in half..vocab-1 per sequence.
    keys = torch.rand(batch, half - 1, generator=generator).argsort(dim=1)[:, :n] + 1
    values = torch.rand(batch, spec.vocab - half, generator=generator).argsort(dim=1)[:, :n] + half
    idx = torch.randint(spec.vocab, (batch, spec.seq_len), generator=generator)
    idx[:, 0:context:2], idx[:, 1:context:2] = keys, values
    gaps = torch.multinomial(
        mqar_gap_weights(spec).expand(batch, -1), n, replacement=False, generator=generator
    )
    query_pos = context + 2 * gaps
    idx.scatter_(1, query_pos, keys)
    targets = torch.full_like(idx, IGNORE)
    targets.scatter_(1, query_pos, values)
    return idx, targets


def _passkey(spec: RecallSpec, batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    digits, seq_len = spec.passkey_digits, spec.seq_len
    idx = torch.randint(FIRST_FILLER, spec.vocab, (batch, seq_len), generator=generator)
    key = torch.randint(N_DIGITS, (batch, digits), generator=generator)
    question = seq_len - digits  # the question marker, then digits-1 teacher-forced digits
    # The plant (marker + digits) ends before the question starts.
    plant = torch.randint(question - digits, (batch,), generator=generator)
    rows = torch.arange(batch)
    for i in range(digits + 1):
        idx[rows, plant + i] = PASSKEY_MARK if i == 0 else key[:, i - 1]
    idx[:, question] = QUESTION_MARK
    idx[:, question + 1 :] = key[:, :-1]
    targets = torch.full_like(idx, IGNORE)
    targets[:, question:] = key
    return idx, targets


def _mix(*values: int) -> int:
    text = ",".join(str(v) for v in values).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1
