"""`tools/quality_summary.py`: the GPU check's last table, its --strict and --agree checks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from scfa_bench.results.quality_rows import QualityRow, QualityWriter

from .tool_loader import load_tool

BASE = QualityRow(
    suite="s", setting="dense", impl="sdpa_math", n_buckets=None, drop_rate=None,
    shared_qk=True, task="corpus", corpus="stdlib", seq_len=64, batch=2, model="L1", dtype="fp32",
    seed=0, step=0, tokens=0, epochs=0.0, train_seconds=0.0, val_loss=5.0, val_bpb=7.2,
    val_bits_per_token=None, val_accuracy=0.1, loss_by_position="[]", density=1.0, status="ok",
    error="", device="cpu",
)  # fmt: skip


def _csv(path: Path, rows: list[dict]) -> Path:
    writer = QualityWriter(path)
    for changes in rows:
        writer.write(dataclasses.replace(BASE, **changes))
    return path


@pytest.fixture
def tool():
    return load_tool("quality_summary")


def test_table_strict_and_agree(tool, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _csv(tmp_path / "run.csv", [
        {}, {"step": 10, "tokens": 1280, "train_seconds": 2.0, "val_loss": 4.0},
        {"setting": "fast"}, {"setting": "fast", "step": 10, "tokens": 1280, "train_seconds": 1.0,
                              "val_loss": 4.04},
    ])  # fmt: skip
    assert tool.main([str(tmp_path), "--strict", "--agree", "dense", "fast"]) == 0
    out = capsys.readouterr().out
    fast = next(line for line in out.splitlines() if " fast " in line)
    assert "4.0400" in fast and " 2.00 " in fast and fast.endswith(" ok")  # dense took 2x as long
    _csv(tmp_path / "run.csv", [{"setting": "fast", "step": 20, "status": "diverged"}])
    assert tool.main([str(tmp_path), "--strict"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_agree_fails_beyond_two_percent(tool, tmp_path: Path) -> None:
    _csv(tmp_path / "run.csv", [{}, {"setting": "other", "val_loss": 5.2}])
    assert tool.main([str(tmp_path), "--agree", "dense", "other"]) == 1


def test_repeat_flags_a_move_larger_than_the_seed_spread(tmp_path: Path, capsys) -> None:
    tool = load_tool("quality_summary")
    first = _csv(tmp_path / "a.csv", [
        {"seed": 0, "step": 10, "val_loss": 3.0}, {"seed": 1, "step": 10, "val_loss": 3.2},
        {"setting": "hash", "seed": 0, "step": 10, "val_loss": 2.9},
        {"setting": "hash", "seed": 1, "step": 10, "val_loss": 2.95},
    ])  # fmt: skip
    same = _csv(tmp_path / "b.csv", [
        {"seed": 0, "step": 10, "val_loss": 3.1}, {"seed": 1, "step": 10, "val_loss": 3.2},
        {"setting": "hash", "seed": 0, "step": 10, "val_loss": 2.94},
        {"setting": "hash", "seed": 1, "step": 10, "val_loss": 2.95},
    ])  # fmt: skip
    assert tool.main(["--repeat", str(first), str(same)]) == 0
    moved = _csv(tmp_path / "c.csv", [
        {"seed": 0, "step": 10, "val_loss": 3.0}, {"seed": 1, "step": 10, "val_loss": 3.2},
        {"setting": "hash", "seed": 0, "step": 10, "val_loss": 2.8},  # moved 0.1 > spread 0.05
        {"setting": "hash", "seed": 1, "step": 10, "val_loss": 2.95},
    ])  # fmt: skip
    assert tool.main(["--repeat", str(first), str(moved)]) == 1
    assert "hash seed 0: 2.9000 -> 2.8000 (moved 0.1000, seed spread 0.0500: OUTSIDE)" in (
        capsys.readouterr().out
    )
