"""A tiny training suite on a folder corpus (fast on the CPU) and ways to run it."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import yaml

from scfa_bench.results.quality_rows import QualityRow, read_quality_rows
from scfa_bench.run.loop import RunOptions
from scfa_bench.run.training import TrainingOutcome, run_training
from scfa_bench.suite.parse import load_suite


def folder_corpus(root: Path, files: int = 40, size: int = 400) -> Path:
    """`files` files of printable text, the same for the same arguments."""
    rng = random.Random(0)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        text = "".join(rng.choice("abcdefgh ij\n") for _ in range(size))
        (root / f"f{i:03d}.txt").write_text(text)
    return root


def training_data(corpus: Path, **overrides: Any) -> dict[str, Any]:
    """A suite mapping: 1 x 32 model, T=32, 4 steps evaluated every 2, three attentions."""
    training: dict[str, Any] = {
        "corpus": {"kind": "folder", "path": str(corpus), "val_fraction": 0.3},
        "model": {"layers": 1, "d_model": 32, "heads": 2, "mlp_ratio": 2},
        "batch": 2,
        "seq_len": [32],
        "steps": 4,
        "eval_every": 2,
        "eval_batches": 1,
        "seeds": [0],
        "settings": [
            {"impl": "sdpa_math", "name": "dense"},
            {"impl": "naive_hash", "n_buckets": 4},
            {"impl": "naive_qk", "drop_rate": 0.5},
        ],
    }
    training.update(overrides)
    return {"name": "tiny_training", "device": "cpu", "training": training}


def write_suite(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run(suite_file: Path, out: Path, resume: Path | None = None) -> TrainingOutcome:
    options = RunOptions(out_dir=out, resume=resume, argv=("test",))
    return run_training(load_suite(suite_file), options)


def losses(rows: list[QualityRow]) -> list[tuple[Any, ...]]:
    """What must repeat exactly: every row's identity, step, losses and accuracy."""
    names = ("setting", "task", "seq_len", "seed", "step", "tokens", "status", "val_loss")
    names += ("val_accuracy", "loss_by_position", "density")
    return [tuple(getattr(r, n) for n in names) for r in rows]


def csv_rows(path: Path) -> list[QualityRow]:
    return read_quality_rows(path)
