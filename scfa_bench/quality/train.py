"""Train one unit (an attention setting on one data source at one seq_len with one seed) and
yield an `EvalResult` at every evaluation.

Every unit of a run starts from the same initial weights (`initial_state`, once per seed),
reads the same batches in the same order and follows the same schedule; only the attention
differs. `train_seconds` counts optimizer steps only: the clock is read after a CUDA
synchronisation at each evaluation boundary, and evaluation and checkpointing are outside it.
A checkpoint is written after each evaluation, before its result is yielded, so a resumed
unit repeats that evaluation (deterministically) and goes on exactly where it stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from scfa_bench.e2e.attention import AttentionConfigError, AttentionUnavailable
from scfa_bench.quality import checkpoint
from scfa_bench.quality.data import DataSource
from scfa_bench.quality.evaluate import EvalStats, evaluate
from scfa_bench.quality.settings import DensityMeter
from scfa_bench.quality.unit_setup import (
    ATTENTION_SEED_OFFSET,
    Trainer,
    TrainOptions,
    Unit,
    build_trainer,
    probe,
    to_device,
)


@dataclass(frozen=True)
class EvalResult:
    step: int
    tokens: int
    epochs: float | None
    train_seconds: float
    stats: EvalStats | None
    status: str = "ok"  # ok | diverged | oom | unavailable | error
    error: str = ""


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _result(unit: Unit, data: DataSource, step: int, seconds: float, **kw: Any) -> EvalResult:
    tokens = step * unit.seq_len * unit.batch
    return EvalResult(step, tokens, data.epochs_at(step), round(seconds, 4), **kw)


def _evaluate(trainer: Trainer, data: DataSource, step: int, seconds: float) -> EvalResult:
    stats = evaluate(
        trainer.model,
        data.val_batches(),
        autocast=trainer.autocast,
        meter=trainer.meter,
        device=trainer.options.device,
    )
    if not math.isfinite(stats.loss):
        return _result(trainer.unit, data, step, seconds, stats=stats, status="diverged",
                       error="validation loss is not finite")  # fmt: skip
    return _result(trainer.unit, data, step, seconds, stats=stats)


def _save(trainer: Trainer, path: Path, step: int, seconds: float, last: EvalResult) -> None:
    finished = last.status != "ok" or step >= trainer.unit.total_steps
    state: dict[str, Any] = {"step": step, "train_seconds": seconds, "finished": finished}
    state["last"] = _result_state(last)
    if not finished:
        state.update(
            model=trainer.model.state_dict(),
            optimizer=trainer.optimizer.state_dict(),
            rng=checkpoint.random_states(trainer.options.device),
        )
    checkpoint.save(path, state)


def _result_state(result: EvalResult) -> dict[str, Any]:
    return json_safe(asdict(result))


def json_safe(value: Any) -> Any:
    """Dataclass dicts as plain lists / dicts / scalars (what `torch.load(weights_only)` reads)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _stored_result(state: dict[str, Any]) -> EvalResult:
    last = dict(state["last"])
    stats = last.pop("stats")
    return EvalResult(**last, stats=None if stats is None else EvalStats(**stats))


def unit_checkpoint(options: TrainOptions, unit: Unit) -> Path:
    name = checkpoint.checkpoint_name(unit.setting.label(), unit.task, unit.seq_len, unit.seed)
    return options.checkpoint_dir / name


def train_unit(
    unit: Unit, data: DataSource, init: dict[str, Tensor], options: TrainOptions
) -> Iterator[EvalResult]:
    """Evaluations of one unit, resumed from its checkpoint when there is one."""
    path = unit_checkpoint(options, unit)
    state = checkpoint.load(path, options.device)
    if state is not None and state["finished"]:
        yield _stored_result(state)  # the run may have stopped before writing it
        return
    meter = DensityMeter()
    try:
        trainer = build_trainer(unit, options, init, meter)
        idx, targets = next(data.train_batches(0))
        probe(trainer, to_device(idx, options.device), to_device(targets, options.device))
    except (AttentionConfigError, AttentionUnavailable, ValueError, RuntimeError) as exc:
        if isinstance(exc, torch.OutOfMemoryError):
            yield _result(unit, data, 0, 0.0, stats=None, status="oom", error=_first_line(exc))
        else:
            yield _result(unit, data, 0, 0.0, stats=None, status="unavailable",
                          error=_first_line(exc))  # fmt: skip
        return
    if state is None:
        step, seconds = 0, 0.0
        torch.manual_seed(unit.seed + ATTENTION_SEED_OFFSET)
    else:
        trainer.model.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        checkpoint.restore_random_states(state["rng"], options.device)
        step, seconds = int(state["step"]), float(state["train_seconds"])
    trainer.evaluated = (step, seconds)
    try:
        yield from _train(trainer, data, path, step, seconds)
    except torch.OutOfMemoryError as exc:
        at = trainer.evaluated
        yield _result(unit, data, *at, stats=None, status="oom", error=_first_line(exc))
    except (RuntimeError, ValueError) as exc:
        error = f"{type(exc).__name__}: {_first_line(exc)}"
        yield _result(unit, data, *trainer.evaluated, stats=None, status="error", error=error)


def _train(
    trainer: Trainer, data: DataSource, path: Path, step: int, seconds: float
) -> Iterator[EvalResult]:
    unit, device = trainer.unit, trainer.options.device
    training = trainer.options.training
    # The first evaluation needs no checkpoint: a fresh unit restarts identically, and a resumed
    # one repeats the evaluation its checkpoint was written after.
    result = _evaluate(trainer, data, step, seconds)
    yield result
    batches = data.train_batches(start_step=step)
    while step < unit.total_steps and result.status == "ok":
        stop_at = min(unit.total_steps, (step // training.eval_every + 1) * training.eval_every)
        bad = torch.zeros((), dtype=torch.bool, device=device)
        _sync(device)
        start = time.perf_counter()
        out_of_time = False
        while step < stop_at and not out_of_time:
            idx, targets = next(batches)
            loss = trainer.step(step, to_device(idx, device), to_device(targets, device))
            bad |= ~torch.isfinite(loss)
            step += 1
            if training.max_seconds is not None:
                out_of_time = seconds + time.perf_counter() - start >= training.max_seconds
        _sync(device)
        seconds += time.perf_counter() - start
        if bool(bad):
            result = _result(unit, data, step, seconds, stats=None, status="diverged",
                             error="training loss is not finite")  # fmt: skip
        else:
            result = _evaluate(trainer, data, step, seconds)
            if out_of_time and result.status == "ok":
                # The wall-clock budget ran out: this step is the unit's last.
                trainer.unit = unit = replace(unit, total_steps=step)
        _save(trainer, path, step, seconds, result)
        trainer.evaluated = (step, seconds)
        yield result


__all__ = ["EvalResult", "json_safe", "train_unit", "unit_checkpoint"]
