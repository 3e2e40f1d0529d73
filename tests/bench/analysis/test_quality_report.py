"""The quality report and figures, from a synthetic quality CSV whose numbers are worked out by
hand: final values, difference from dense with its seed interval, time-to-quality speedups,
"not reached", "inside seed noise", failed runs."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from scfa_bench.analysis.quality_frame import is_quality_csv, read_quality
from scfa_bench.analysis.quality_plots import curve_figure, position_figure, quality_plots
from scfa_bench.analysis.quality_report import quality_report
from scfa_bench.analysis.quality_summary import speedup_text, summarise, time_to_loss
from scfa_bench.errors import InputError

from ..results_factory import suite_rows, write_results

QUALITY_COLUMNS = (
    "suite setting impl n_buckets drop_rate shared_qk task corpus seq_len batch model dtype seed "
    "step tokens epochs train_seconds val_loss val_bpb val_bits_per_token val_accuracy "
    "loss_by_position density status error device"
).split()
LN2 = math.log(2)
SEQ_LEN = 256

# setting -> seed -> (val loss per evaluation, seconds per step); evaluations at steps 0..4.
CURVES: dict[str, dict[int, tuple[list[float], float]]] = {
    "dense": {0: ([4.0, 3.0, 2.5, 2.2, 2.0], 10), 1: ([4.0, 3.1, 2.6, 2.3, 2.1], 10)},
    # Twice as fast per step; seed 1 reaches dense's 2.1 exactly at step 3 (15 s).
    "scfa_hash nb=8": {0: ([4.0, 3.0, 2.5, 2.2, 2.0], 5), 1: ([4.0, 3.0, 2.4, 2.1, 2.05], 5)},
    # Seed 0 reaches 2.0 at 32 s; seed 1 never reaches 2.1.
    "scfa_hash nb=4": {0: ([4.0, 3.0, 2.5, 2.2, 2.0], 8), 1: ([4.0, 3.0, 2.6, 2.3, 2.2], 8)},
    # Fast but worse: never reaches dense's loss.
    "scfa_qk p=0.5": {0: ([4.0, 3.2, 2.8, 2.6, 2.5], 4), 1: ([4.0, 3.3, 2.9, 2.7, 2.6], 4)},
}


def quality_row(**fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(QUALITY_COLUMNS, "")
    row.update(suite="quality-test", task="corpus", corpus="stdlib", seq_len=SEQ_LEN, batch=8)
    row.update(model="tiny", dtype="bf16", status="ok", device="NVIDIA H100 80GB HBM3")
    row.update(fields)
    return row


def curve_rows(curves: dict[str, dict[int, tuple[list[float], float]]]) -> list[dict[str, Any]]:
    rows = []
    for setting, seeds in curves.items():
        for seed, (losses, seconds) in seeds.items():
            for step, loss in enumerate(losses):
                # The loss by position falls along the sequence and with training.
                by_position = [loss + 1.0 / (b + 1) for b in range(4)]
                rows.append(
                    quality_row(
                        setting=setting,
                        impl=setting.split()[0],
                        seed=seed,
                        step=step,
                        tokens=step * 1000,
                        train_seconds=step * seconds,
                        val_loss=loss,
                        val_bpb=loss / LN2,
                        val_accuracy=0.5,
                        epochs=step / 10,
                        loss_by_position=json.dumps(by_position),
                    )
                )
    return rows


def write_quality(path: Path, rows: list[dict[str, Any]], meta: dict | None = None) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=QUALITY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    if meta is not None:
        path.with_name(path.name.removesuffix(".csv") + ".meta.json").write_text(json.dumps(meta))
    return path


FINGERPRINT = {"kind": "stdlib", "files": 1790, "bytes": 31525224, "sha256": "ab12", "python": "3"}


@pytest.fixture
def quality_csv(tmp_path: Path) -> Path:
    rows = curve_rows(CURVES)
    # A run that diverged at its last evaluation.
    diverged = curve_rows({"scfa_qk p=0.9": {0: ([4.0, 3.0, 2.5, 2.2, 2.0], 5)}})
    diverged[-1].update(status="diverged", val_loss="", val_bpb="", error="loss is nan")
    meta = {"kind": "quality", "device_name": "NVIDIA H100", "corpus": FINGERPRINT}
    return write_quality(tmp_path / "quality.csv", rows + diverged, meta)


def by_setting(csv_path: Path) -> dict[str, Any]:
    return {s.setting: s for s in summarise(read_quality(csv_path))}


def test_final_values_and_differences_from_dense(quality_csv: Path) -> None:
    found = by_setting(quality_csv)
    assert list(found) == [
        "dense",
        "scfa_hash nb=4",
        "scfa_hash nb=8",
        "scfa_qk p=0.5",
        "scfa_qk p=0.9",
    ]
    dense, nb4, nb8, worse = (found[k] for k in list(found)[:4])
    assert dense.metric == "val_bpb"
    assert dense.final == pytest.approx(2.05 / LN2)
    assert nb8.final == pytest.approx(2.025 / LN2)
    # mean(2.0, 2.05) - mean(2.0, 2.1); pairs 0, -0.1, 0.05, -0.05.
    assert nb8.diff == pytest.approx(-0.025 / LN2)
    assert nb8.diff_interval == pytest.approx((-0.1 / LN2, 0.05 / LN2))
    assert nb8.verdict == "inside seed noise"
    # Worse on every seed pair: 0.4..0.6 nats.
    assert worse.diff == pytest.approx(0.5 / LN2)
    assert worse.diff_interval == pytest.approx((0.4 / LN2, 0.6 / LN2))
    assert worse.verdict == "worse"
    assert nb4.diff == pytest.approx(0.05 / LN2) and nb4.verdict == "inside seed noise"
    assert dense.verdict == "reference"


def test_time_to_quality_speedups(quality_csv: Path) -> None:
    found = by_setting(quality_csv)
    assert found["dense"].speedups == {0: 1.0, 1: 1.0}
    # Dense needs 40 s to its final loss on both seeds; nb=8 needs 20 s (seed 0) and 15 s
    # (seed 1: exactly 2.1 at step 3 counts as reached).
    assert found["scfa_hash nb=8"].speedups == pytest.approx({0: 2.0, 1: 40 / 15})
    assert speedup_text(found["scfa_hash nb=8"].speedups) == "2.33x (2.00-2.67)"
    assert found["scfa_hash nb=4"].speedups == {0: pytest.approx(1.25), 1: None}
    assert speedup_text(found["scfa_hash nb=4"].speedups) == ("not reached (seed 1); seed 0: 1.25x")
    assert found["scfa_qk p=0.5"].speedups == {0: None, 1: None}
    assert speedup_text(found["scfa_qk p=0.5"].speedups) == "not reached"


def test_time_to_loss_takes_the_first_evaluation_at_or_below() -> None:
    run = pd.DataFrame(
        {
            "step": [2, 0, 1, 3],
            "val_loss": [1.5, 3.0, 2.0, 1.0],
            "train_seconds": [20.0, 0.0, 10.0, 30.0],
            "status": ["ok", "ok", "ok", "ok"],
        }
    )
    assert time_to_loss(run, 2.0) == 10.0
    assert time_to_loss(run, 1.7) == 20.0
    assert time_to_loss(run, 0.5) is None


def test_failed_runs_have_no_final_value(quality_csv: Path) -> None:
    diverged = by_setting(quality_csv)["scfa_qk p=0.9"]
    assert diverged.failed == {0: "diverged"} and diverged.finals == {}
    assert diverged.diff is None
    # Its ok evaluations still count for time-to-quality: 2.2 at step 3 is not 2.0, so not.
    assert diverged.speedups == {0: None}


def test_recall_tasks_are_judged_by_answer_accuracy(tmp_path: Path) -> None:
    rows = [
        quality_row(
            task="mqar",
            corpus="",
            setting=setting,
            seed=seed,
            step=1,
            tokens=10,
            train_seconds=1.0,
            val_loss=1.0,
            val_accuracy=accuracy,
        )
        for setting, seed, accuracy in [
            ("dense", 0, 0.50),
            ("dense", 1, 0.55),
            ("scfa_hash nb=8", 0, 0.90),
            ("scfa_hash nb=8", 1, 0.95),
        ]
    ]
    found = {s.setting: s for s in summarise(read_quality(write_quality(tmp_path / "r.csv", rows)))}
    sparse = found["scfa_hash nb=8"]
    assert sparse.metric == "val_accuracy" and sparse.diff == pytest.approx(0.40)
    assert sparse.verdict == "better"  # higher accuracy is better


def test_one_seed_gives_no_interval(tmp_path: Path) -> None:
    curves = {k: {0: v[0]} for k, v in CURVES.items()}
    found = {
        s.setting: s
        for s in summarise(read_quality(write_quality(tmp_path / "one.csv", curve_rows(curves))))
    }
    assert found["scfa_qk p=0.5"].diff_interval is None
    assert found["scfa_qk p=0.5"].verdict == "one seed: no interval"


def test_report_tables(quality_csv: Path, tmp_path: Path) -> None:
    path = quality_report(quality_csv, tmp_path / "out")
    text = path.read_text()
    assert path.name == "README.md"
    assert "## task corpus, corpus stdlib, seq_len 256, model tiny" in text
    line = next(x for x in text.splitlines() if x.startswith("| scfa_hash nb=8 |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells == [
        "scfa_hash nb=8",
        "0, 1",
        f"{2.025 / LN2:.4f} ({2.0 / LN2:.4f}-{2.05 / LN2:.4f})",
        "2.0250 (2.0000-2.0500)",
        f"{-0.025 / LN2:+.4f}",
        f"[{-0.1 / LN2:+.4f}, {0.05 / LN2:+.4f}]",
        "inside seed noise",
        "2.33x (2.00-2.67)",
    ]
    assert "| scfa_qk p=0.9 | - (seed 0 diverged) |" in text
    assert "| scfa_qk p=0.9 | 0 | 4 | diverged | loss is nan |" in text
    assert "corpus fingerprint: kind stdlib, files 1790, bytes 31525224, sha256 ab12" in text
    for name in ("loss_vs_tokens.png", "loss_vs_seconds.png", "loss_by_position.png"):
        assert f"]({name})" in text and (tmp_path / "out" / name).stat().st_size > 0


def test_plots_write_three_figures(quality_csv: Path, tmp_path: Path) -> None:
    paths = quality_plots(quality_csv, tmp_path / "figs")
    assert [p.name for p in paths] == [
        "loss_vs_tokens.png",
        "loss_vs_seconds.png",
        "loss_by_position.png",
    ]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_figure_lines_axes_and_bands(quality_csv: Path) -> None:
    frame = read_quality(quality_csv)
    figure = curve_figure(frame, "train_seconds", "training time (s)")
    (ax,) = [a for a in figure.axes if a.get_visible()]
    assert ax.get_xlabel() == "training time (s)" and ax.get_ylabel() == "val loss (nats)"
    labels = [line.get_label() for line in ax.lines]
    assert labels == ["dense", "scfa_hash nb=4", "scfa_hash nb=8", "scfa_qk p=0.5", "scfa_qk p=0.9"]
    fast = ax.lines[2]
    # Seeds averaged at each step: x = seconds, y = mean loss over the two seeds.
    assert list(fast.get_xdata()) == [0, 5, 10, 15, 20]
    assert list(fast.get_ydata()) == pytest.approx([4.0, 3.0, 2.45, 2.15, 2.025])
    assert len(ax.collections) == 4  # a min..max band for each two-seed setting
    tokens = curve_figure(frame, "tokens", "tokens seen")
    assert list(tokens.axes[0].lines[0].get_xdata()) == [0, 1000, 2000, 3000, 4000]

    by_position = position_figure(frame)
    pax = by_position.axes[0]
    assert pax.get_xlabel() == "position in the sequence" and len(pax.lines) == 5
    dense = pax.lines[0]
    assert list(dense.get_xdata()) == [32, 96, 160, 224]  # bin centres of 4 bins over 256
    assert list(dense.get_ydata()) == pytest.approx([2.05 + 1 / (b + 1) for b in range(4)])


def test_is_quality_csv(quality_csv: Path, tmp_path: Path) -> None:
    assert is_quality_csv(quality_csv)
    no_meta = write_quality(tmp_path / "bare.csv", curve_rows(CURVES))
    assert is_quality_csv(no_meta)
    other_kind = write_quality(tmp_path / "k.csv", curve_rows(CURVES), {"kind": "kernels"})
    assert not is_quality_csv(other_kind)
    kernels = write_results(tmp_path / "kernels.csv", suite_rows(seq_lens=(1024,), modes=("fwd",)))
    assert not is_quality_csv(kernels)
    assert not is_quality_csv(tmp_path / "missing.csv")


def test_unusable_csvs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such quality results file"):
        read_quality(tmp_path / "missing.csv")
    kernels = write_results(tmp_path / "kernels.csv", suite_rows(seq_lens=(1024,), modes=("fwd",)))
    with pytest.raises(InputError, match="missing column"):
        read_quality(kernels)


def test_report_warns_when_seconds_come_from_different_devices(tmp_path: Path) -> None:
    rows = curve_rows(CURVES)
    for row in rows[:5]:
        row["device"] = "NVIDIA H200"
    text = quality_report(write_quality(tmp_path / "mixed.csv", rows), tmp_path / "out").read_text()
    assert "rows from 2 devices (NVIDIA H100 80GB HBM3, NVIDIA H200)" in text
    assert (
        "rows from"
        not in quality_report(
            write_quality(tmp_path / "one.csv", curve_rows(CURVES)), tmp_path / "out1"
        ).read_text()
    )


def test_a_setting_that_never_ran_has_no_speedup(tmp_path: Path) -> None:
    rows = curve_rows({"dense": CURVES["dense"]})
    rows.append(
        quality_row(setting="scfa_qk p=0.9", seed=0, step=0, status="unavailable", error="no GPU")
    )
    csv_path = write_quality(tmp_path / "u.csv", rows)
    missing = by_setting(csv_path)["scfa_qk p=0.9"]
    assert missing.failed == {0: "unavailable"} and missing.speedups == {}
    text = quality_report(csv_path, tmp_path / "out").read_text()
    # No speedup ("-", not "not reached") and no comparison.
    assert (
        "| scfa_qk p=0.9 | - (seed 0 unavailable) | - | - | - | - | no run ended ok | - |" in text
    )
