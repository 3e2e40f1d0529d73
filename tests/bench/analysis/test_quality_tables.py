"""The README's quality block: rendered from the newest committed `quality` and `recall` runs,
numbers as `quality_summary` defines them, and `tables --check` catching a hand edit."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from scfa_bench.analysis import tables
from scfa_bench.analysis.quality_tables import render_quality_block

README_STUB = (
    "# project\n\n<!-- tables:headline:start -->\n<!-- tables:headline:end -->\n\n"
    "<!-- tables:quality:start -->\nstale\n<!-- tables:quality:end -->\n"
)


def _write_run(root: Path, suite: str, started: str, rows: list[dict]) -> None:
    folder = root / "results/quality/h100"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{suite}-{started.replace(':', '').replace('-', '')}"
    pd.DataFrame(rows).to_csv(folder / f"{stem}.csv", index=False)
    meta = {
        "suite_name": suite,
        "device_name": "NVIDIA H100",
        "git_rev": "abc1234def",
        "started": started,
    }
    (folder / f"{stem}.meta.json").write_text(json.dumps(meta))


def _row(setting: str, seed: int, step: int, seconds: float, loss: float, **extra) -> dict:
    row = {
        "suite": "s",
        "setting": setting,
        "impl": "x",
        "task": "corpus",
        "seq_len": 64,
        "seed": seed,
        "step": step,
        "tokens": step * 64,
        "train_seconds": seconds,
        "val_loss": loss,
        "val_bpb": loss,
        "val_accuracy": 0.5,
        "status": "ok",
    }
    row.update(extra)
    return row


def _quality_rows(offset: float = 0.0) -> list[dict]:
    # (setting, seed) -> (loss at step 50, final loss at step 100); bpb = loss here.
    finals = {
        ("dense", 0): (3.5, 3.0),
        ("dense", 1): (3.6, 3.2),
        ("hash nb=8", 0): (2.95, 2.9),
        ("hash nb=8", 1): (3.1, 3.0),
    }
    rows = []
    for (setting, seed), (mid, final) in finals.items():
        rows.append(_row(setting, seed, 50, 5.0, mid + offset))
        rows.append(_row(setting, seed, 100, 10.0, final + offset))
    return rows


def _recall_rows() -> list[dict]:
    rows = []
    for seq_len, accuracy in ((32, 0.9), (64, 0.25)):
        for setting in ("dense", "hash nb=8"):
            for seed in (0, 1):
                acc = accuracy + 0.1 * seed if setting == "dense" else accuracy / 5
                rows.append(
                    _row(
                        setting,
                        seed,
                        100,
                        1.0,
                        1.0,
                        task="mqar",
                        seq_len=seq_len,
                        val_bpb=None,
                        val_accuracy=acc,
                    )
                )
    return rows


def _repo(tmp_path: Path) -> Path:
    _write_run(tmp_path, "quality", "2026-12-01T10:00:00", _quality_rows(offset=1.0))
    _write_run(tmp_path, "quality", "2026-12-02T10:00:00", _quality_rows())
    _write_run(tmp_path, "recall", "2026-12-02T09:00:00", _recall_rows())
    (tmp_path / "README.md").write_text(README_STUB)
    return tmp_path


def test_block_shows_difference_interval_speedup_and_recall_at_the_longest_length(
    tmp_path: Path,
) -> None:
    block = render_quality_block(_repo(tmp_path))
    lines = {line.split(" | ")[0].strip("| "): line for line in block.splitlines()}
    # dense: mean of 3.0 and 3.2; recall at T=64 only: 0.25 and 0.35.
    assert lines["dense"] == "| dense | 3.100 | 1.00x | 0.300 (0.250-0.350) |"
    # hash: mean 2.95, -0.15 from dense; pairs 2.9-3.0, 2.9-3.2, 3.0-3.0, 3.0-3.2.
    # time-to-quality: seed 0 reaches dense's 3.0 at 5 s (2.00x), seed 1 its 3.2 at 5 s.
    hash_line = lines["hash nb=8"]
    assert "2.950 (-0.150 [-0.300, +0.000])" in hash_line
    assert "2.00x (2.00-2.00)" in hash_line
    assert hash_line.endswith("| 0.050 (0.050-0.050) |")
    assert "mqar accuracy, T=64" in block and "T=32" not in block
    assert "quality-20261202T100000.csv" in block  # the newest quality run, not the older one
    assert "commit abc1234, 2026-12-02, 100 steps, 2 seeds" in block


def test_a_hand_edit_of_the_quality_block_fails_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = _repo(tmp_path)
    (repo / "results/baselines").mkdir(parents=True)
    monkeypatch.setattr(tables, "render_headline", lambda current: "headline")
    tables.write_pages(repo)
    assert tables.page_diffs(repo) == []
    readme = repo / "README.md"
    readme.write_text(readme.read_text().replace("3.100", "3.000"))
    diffs = tables.page_diffs(repo)
    assert len(diffs) == 1 and "-| dense | 3.000" in diffs[0]


def test_no_quality_run_says_so(tmp_path: Path) -> None:
    assert "No committed `quality` run" in render_quality_block(tmp_path)
