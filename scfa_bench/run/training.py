"""Run a training suite (`training:` section): every unit (data x seq_len x seed x attention
setting) trained by `quality.train`, one CSV row per evaluation, written as it comes.

The CSV is `<suite>-<time>.csv` (or, with `resume`, the CSV of an interrupted run) and its
meta says `"kind": "quality"` with the corpus fingerprint. Checkpoints live beside it in
`<csv stem>.checkpoints/`; a resumed run skips finished units, continues the others from their
last checkpoint and writes no row twice. Ctrl-C stops the sweep with every finished row kept.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from scfa_bench.errors import InputError
from scfa_bench.measure.envinfo import environment, resolve_device
from scfa_bench.quality.config import TrainingSettings
from scfa_bench.quality.data import CorpusSource, DataSource, RecallSource
from scfa_bench.quality.train import EvalResult, train_unit
from scfa_bench.quality.unit_setup import TrainOptions, Unit, initial_state
from scfa_bench.results.meta import meta_path_for, new_meta, read_meta, write_meta
from scfa_bench.results.quality_rows import (
    QualityRow,
    QualityWriter,
    drop_cut_row,
    read_quality_rows,
)
from scfa_bench.results.resume import check_suite_unchanged
from scfa_bench.run.loop import RunOptions, new_csv_path
from scfa_bench.run.progress import Reporter, SilentReporter
from scfa_bench.suite.schema import Suite


@dataclass(frozen=True)
class TrainingOutcome:
    csv_path: Path
    meta_path: Path
    rows: list[QualityRow]  # every row of the CSV
    new_rows: int
    interrupted: bool
    notes: tuple[str, ...] = ()


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def row_written(row: QualityRow) -> None:
    """Called after each row reaches the file (tests stop a run here)."""


def checkpoint_dir_for(csv_path: Path) -> Path:
    return csv_path.with_name(csv_path.name.removesuffix(".csv") + ".checkpoints")


def _sources(training: TrainingSettings, corpus: Any) -> Iterator[tuple[int, int, DataSource]]:
    """(seq_len, seed, data) in run order: data, then seq_len, then seed."""
    datas: list[Any] = ["corpus"] if training.corpus is not None else []
    datas += list(training.tasks)
    for data in datas:
        for seq_len in training.seq_len:
            for seed in training.seeds:
                common = (seq_len, training.batch, seed, training.eval_batches)
                if data == "corpus":
                    assert training.corpus is not None
                    yield seq_len, seed, CorpusSource(corpus, *common, kind=training.corpus.kind)
                else:
                    yield seq_len, seed, RecallSource(data, *common)


def load_corpus_checked(training: TrainingSettings) -> Any:
    """The corpus (None for recall tasks); InputError naming the key when it cannot be used."""
    if training.corpus is None:
        return None
    from scfa_bench.quality.data import load

    try:
        corpus = load(training.corpus)
    except (ValueError, OSError) as exc:
        raise InputError(f"training.corpus: {exc}") from None
    for i, seq_len in enumerate(training.seq_len):
        if len(corpus.val) < seq_len + 1 or len(corpus.train) < seq_len + 1:
            raise InputError(
                f"training.seq_len[{i}]: {seq_len} is longer than the corpus allows "
                f"({len(corpus.train)} training and {len(corpus.val)} validation tokens)"
            )
    return corpus


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def quality_row(
    suite: Suite, unit: Unit, data: DataSource, result: EvalResult, dtype: str, device: str
) -> QualityRow:
    """One evaluation as a CSV row."""
    training = suite.training
    assert training is not None
    stats = result.stats
    loss = _finite(stats.loss) if stats is not None else None
    bits = None if loss is None else loss / math.log(2)
    bpb = bits / data.bytes_per_token if bits is not None and data.bytes_per_token else None
    s = unit.setting
    return QualityRow(
        suite=suite.name,
        setting=s.label(),
        impl=s.impl,
        n_buckets=s.n_buckets,
        drop_rate=s.drop_rate,
        shared_qk=training.shared_qk,
        task=data.task,
        corpus=training.corpus.label() if training.corpus and data.task == "corpus" else "",
        seq_len=unit.seq_len,
        batch=unit.batch,
        model=unit.model.label(),
        dtype=dtype,
        seed=unit.seed,
        step=result.step,
        tokens=result.tokens,
        epochs=None if result.epochs is None else round(result.epochs, 6),
        train_seconds=result.train_seconds,
        val_loss=loss,
        val_bpb=bpb,
        val_bits_per_token=bits if data.token_file else None,
        val_accuracy=None if stats is None else stats.accuracy,
        loss_by_position="" if stats is None else _json_list(stats.loss_by_position),
        density=None if stats is None else stats.density,
        status=result.status,
        error=result.error,
        device=device,
    )


def row_line(row: QualityRow) -> str:
    """One evaluation as a log line."""
    loss = "-" if row.val_loss is None else f"{row.val_loss:.4f}"
    where = f"{row.setting} {row.task} T={row.seq_len} seed={row.seed} step {row.step}"
    status = "" if row.status == "ok" else f" {row.status}: {row.error}"
    return f"{where}: val_loss {loss}, train {row.train_seconds:.1f} s{status}"


def _json_list(values: list[float | None]) -> str:
    import json

    return json.dumps([_finite(v) for v in values])


def _start(suite: Suite, options: RunOptions, env: dict[str, Any], argv: list[str], name: str):
    """(csv path, meta, rows already there, notes): a new run, or the one to resume."""
    if options.resume is None:
        try:
            options.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"--out {options.out_dir}: cannot create folder ({exc})") from None
        csv_path = new_csv_path(options.out_dir, name)
        return csv_path, new_meta(suite, env, argv, _now()), [], []
    csv_path = options.resume
    if not csv_path.is_file():
        raise InputError(f"--resume {csv_path}: no such file")
    try:
        meta = read_meta(meta_path_for(csv_path))
    except InputError:
        meta = new_meta(suite, env, argv, _now())
    if meta.get("kind", "quality") != "quality":
        raise InputError(f"--resume {csv_path}: not the CSV of a training suite")
    notes = [check_suite_unchanged(meta, suite, csv_path, options.force)]
    if drop_cut_row(csv_path):
        notes.append(f"{csv_path}: dropped a row cut short by the interruption")
    meta.setdefault("resumed", []).append({"at": _now(), "argv": argv})
    meta.update(state="running", pid=os.getpid(), hostname=env["hostname"], finished=None)
    return csv_path, meta, read_quality_rows(csv_path), [n for n in notes if n]


def _unit_done(rows: list[QualityRow], unit: Unit) -> bool:
    """A unit with a failed row, or whose last step was evaluated, is not run again."""
    return any(r.status != "ok" or r.step >= unit.total_steps for r in rows)


def run_training(
    suite: Suite,
    options: RunOptions,
    reporter: Reporter | None = None,
    shard: tuple[int, int] | None = None,
) -> TrainingOutcome:
    """Train every pending unit of a training suite; returns where the rows went. With
    `shard` (I, N) only every N-th unit from the I-th, into `<suite>-partIofN-<time>.csv`."""
    training = suite.training
    if training is None:
        raise ValueError(f"suite {suite.name} has no training section")
    reporter = reporter or SilentReporter()
    device = resolve_device(options.device or suite.device)
    dtype = training.dtype if device == "cuda" else "fp32"
    env = environment(device)
    argv = list(options.argv) if options.argv else list(sys.argv)
    corpus = load_corpus_checked(training)
    name = suite.name if shard is None else f"{suite.name}-part{shard[0]}of{shard[1]}"
    csv_path, meta, rows, notes = _start(suite, options, env, argv, name)
    for note in notes:
        reporter.note(note)
    meta_path = meta_path_for(csv_path)
    if options.resume is not None and meta.get("shard") != (None if shard is None else list(shard)):
        given = "no --shard" if shard is None else f"--shard {shard[0]}/{shard[1]}"
        raise InputError(f"--resume {csv_path}: it ran with shard {meta.get('shard')}, not {given}")
    meta.update(kind="quality", corpus=None if corpus is None else corpus.fingerprint)
    meta["shard"] = None if shard is None else list(shard)
    meta["training"] = {"device": device, "dtype": dtype, "checkpoints": str(
        checkpoint_dir_for(csv_path).name)}  # fmt: skip
    write_meta(meta_path, meta)
    topts = TrainOptions(training, device, dtype, checkpoint_dir_for(csv_path))
    plan = list(_sources(training, corpus))
    total = sum(len(training.settings) * _evals_per_unit(training, t) for t, _, _ in plan)
    new_rows, interrupted, units = 0, False, 0
    if shard is not None:
        total = -(-total // shard[1])
    writer = QualityWriter(csv_path)
    reporter.start(max(total, len(rows)), min(len(rows), total))
    try:
        for seq_len, seed, data in plan:
            init: dict[str, Any] | None = None
            for setting in training.settings:
                units += 1
                if shard is not None and (units - 1) % shard[1] != shard[0]:
                    continue
                config = training.model.config(data.vocab_size, seq_len)
                steps = training.steps_for(seq_len)
                unit = Unit(setting, data.task, seq_len, training.batch, seed, config, steps)
                mine = [r for r in rows if r.unit() == (setting.label(), data.task, seq_len, seed)]
                if _unit_done(mine, unit):
                    continue
                reporter.task(f"{setting.label()} {data.task} T={seq_len} seed={seed}")
                init = init if init is not None else initial_state(config, training.shared_qk, seed)
                seen = {(r.step, r.status) for r in mine}
                for result in train_unit(unit, data, init, topts):
                    row = quality_row(suite, unit, data, result, dtype, env["device_name"])
                    if (row.step, row.status) in seen:
                        continue
                    writer.write(row)
                    rows.append(row)
                    new_rows += 1
                    reporter.advance(1)
                    reporter.note(row_line(row))
                    row_written(row)
                if device == "cuda":
                    torch.cuda.empty_cache()
    except KeyboardInterrupt:
        interrupted = True
    except BaseException as exc:
        _finish(meta_path, meta, "failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        reporter.stop()
    _finish(meta_path, meta, "interrupted" if interrupted else "complete")
    return TrainingOutcome(csv_path, meta_path, rows, new_rows, interrupted, tuple(notes))


def _evals_per_unit(training: TrainingSettings, seq_len: int) -> int:
    steps = training.steps_for(seq_len)
    return 1 + -(-steps // training.eval_every)


def _finish(meta_path: Path, meta: dict[str, Any], state: str, error: str = "") -> None:
    meta.update(state=state, finished=_now(), interrupted=state == "interrupted")
    if error:
        meta["error"] = error[:500]
    with contextlib.suppress(InputError):
        write_meta(meta_path, meta)


__all__ = [
    "TrainingOutcome",
    "checkpoint_dir_for",
    "load_corpus_checked",
    "quality_row",
    "row_written",
    "run_training",
]
