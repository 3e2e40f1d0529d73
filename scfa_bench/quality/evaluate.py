"""Validation of a model: mean loss and accuracy over the scored tokens, loss by position, and
the attention's density, under a fixed random state (QK masks and per-call LSH draws are the
same at every evaluation, and the training run's generator is left untouched)."""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from scfa_bench.e2e.model import DecoderLM
from scfa_bench.quality.settings import DensityMeter

IGNORE = -100  # targets without a loss (recall tasks score only the answers)
POSITION_BINS = 16
EVAL_SEED = 0x5CFA


@dataclass(frozen=True)
class EvalStats:
    loss: float  # mean over scored tokens (nats)
    accuracy: float | None  # next-token / answer accuracy; None without scored tokens
    loss_by_position: list[float | None]  # equal bins of the sequence; None: nothing scored
    density: float | None


def _bin_means(sums: Tensor, counts: Tensor, bins: int) -> list[float | None]:
    edges = [round(i * sums.numel() / bins) for i in range(bins + 1)]
    out: list[float | None] = []
    for lo, hi in itertools.pairwise(edges):
        n = float(counts[lo:hi].sum())
        out.append(round(float(sums[lo:hi].sum()) / n, 6) if n else None)
    return out


def evaluate(
    model: DecoderLM,
    batches: Sequence[tuple[Tensor, Tensor]],
    *,
    autocast: Callable[[], contextlib.AbstractContextManager[object]],
    meter: DensityMeter,
    device: str,
) -> EvalStats:
    """Scores `batches` one sequence at a time (bounded logits memory)."""
    was_training = model.training
    model.eval()
    seq_len = batches[0][0].shape[1]
    sums = torch.zeros(seq_len, dtype=torch.float64, device=device)
    counts = torch.zeros(seq_len, dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.float64, device=device)
    devices = [torch.cuda.current_device()] if device == "cuda" else []
    meter.reset()
    meter.active = True
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(EVAL_SEED)
            for idx, targets in batches:
                for row in range(idx.shape[0]):
                    x = idx[row : row + 1].to(device)
                    y = targets[row : row + 1].to(device)
                    with autocast():
                        logits = model.logits(x)
                    logits = logits.float()[0]
                    scored = y[0] != IGNORE
                    loss = F.cross_entropy(logits, y[0], ignore_index=IGNORE, reduction="none")
                    sums += loss.double() * scored
                    counts += scored.double()
                    correct += ((logits.argmax(dim=-1) == y[0]) & scored).sum()
    finally:
        meter.active = False
        model.train(was_training)
    total = float(counts.sum())
    loss_value = float(sums.sum()) / total if total else math.nan
    return EvalStats(
        loss=loss_value,
        accuracy=float(correct) / total if total else None,
        loss_by_position=_bin_means(sums.cpu(), counts.cpu(), min(POSITION_BINS, seq_len)),
        density=meter.density,
    )


__all__ = ["EVAL_SEED", "IGNORE", "POSITION_BINS", "EvalStats", "evaluate"]
