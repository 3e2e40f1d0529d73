"""Training suites end to end on the CPU: rows, determinism, resume after a kill, failed units."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import scfa_bench.quality.train as train_module
import scfa_bench.quality.unit_setup as unit_setup
import scfa_bench.run.training as run_training_module
from scfa_bench.results.quality_rows import QUALITY_COLUMNS

from .training_helpers import csv_rows, folder_corpus, losses, run, training_data, write_suite


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    corpus = folder_corpus(tmp_path / "corpus")
    return write_suite(tmp_path / "tiny.yaml", training_data(corpus))


def test_rows_meta_and_columns(suite_file: Path, tmp_path: Path) -> None:
    outcome = run(suite_file, tmp_path / "out")
    rows = csv_rows(outcome.csv_path)
    header = outcome.csv_path.read_text().splitlines()[0]
    assert tuple(header.split(",")) == QUALITY_COLUMNS
    # Three settings, evaluated at steps 0, 2 and 4.
    assert [(r.setting, r.step) for r in rows] == [
        (s, step) for s in ("dense", "naive_hash nb=4", "naive_qk p=0.5") for step in (0, 2, 4)
    ]
    assert all(r.status == "ok" and r.task == "corpus" and r.shared_qk for r in rows)
    assert [r.tokens for r in rows[:3]] == [0, 2 * 2 * 32, 4 * 2 * 32]
    # The same initial weights: step-0 losses of dense and hash settings are close, not equal.
    first = {r.setting: r.val_loss for r in rows if r.step == 0}
    assert len(set(first.values())) == 3
    assert max(first.values()) - min(first.values()) < 0.05
    for r in rows:
        assert r.val_bpb == pytest.approx(r.val_loss / math.log(2))  # byte-level
        assert r.val_bits_per_token is None
        assert len(json.loads(r.loss_by_position)) == 16
        assert 0 <= r.val_accuracy <= 1
    densities = {r.setting: r.density for r in rows}
    assert densities["dense"] == 1.0
    assert 0.1 < densities["naive_hash nb=4"] < 0.7
    assert 0.1 < densities["naive_qk p=0.5"] < 0.45  # about (1 - p)^2
    assert rows[-1].train_seconds > rows[-2].train_seconds > 0 == rows[-3].train_seconds
    meta = json.loads(outcome.meta_path.read_text())
    assert meta["kind"] == "quality" and meta["state"] == "complete"
    assert meta["corpus"]["kind"] == "folder" and len(meta["corpus"]["sha256"]) == 64


def test_same_seed_gives_identical_losses(suite_file: Path, tmp_path: Path) -> None:
    first = csv_rows(run(suite_file, tmp_path / "a").csv_path)
    second = csv_rows(run(suite_file, tmp_path / "b").csv_path)
    assert losses(first) == losses(second)


def test_killed_and_resumed_run_equals_the_uninterrupted_one(
    suite_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = losses(csv_rows(run(suite_file, tmp_path / "whole").csv_path))
    written: list[str] = []

    def kill_after_first_eval_of_a_setting(row: object) -> None:
        written.append(row.setting)  # type: ignore[attr-defined]
        if row.setting == "naive_hash nb=4" and row.step == 2:  # type: ignore[attr-defined]
            raise RuntimeError("killed")

    monkeypatch.setattr(run_training_module, "row_written", kill_after_first_eval_of_a_setting)
    with pytest.raises(RuntimeError, match="killed"):
        run(suite_file, tmp_path / "cut")
    (csv_path,) = (tmp_path / "cut").glob("*.csv")
    assert len(csv_rows(csv_path)) == 5  # dense 0, 2, 4; hash 0, 2
    monkeypatch.setattr(run_training_module, "row_written", lambda row: None)
    resumed = run(suite_file, tmp_path / "unused", resume=csv_path)
    assert resumed.new_rows == 4
    assert losses(csv_rows(csv_path)) == reference


def test_a_kill_between_checkpoint_and_row_repeats_that_evaluation(
    suite_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = losses(csv_rows(run(suite_file, tmp_path / "whole").csv_path))
    real_save = train_module.checkpoint.save
    saves: list[int] = []

    def save_then_die(path: Path, state: dict) -> None:
        real_save(path, state)
        saves.append(state["step"])
        if len(saves) == 3:  # dense's at steps 2 and 4, then the hash setting's step 2
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module.checkpoint, "save", save_then_die)
    outcome = run(suite_file, tmp_path / "cut")
    assert outcome.interrupted and len(csv_rows(outcome.csv_path)) == 4
    monkeypatch.setattr(train_module.checkpoint, "save", real_save)
    run(suite_file, tmp_path / "unused", resume=outcome.csv_path)
    assert losses(csv_rows(outcome.csv_path)) == reference


def test_nan_loss_gives_a_diverged_row_and_the_sweep_goes_on(
    suite_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = unit_setup.layer_attention

    def poisoned(setting, **kwargs):  # the hash setting's output turns NaN once training runs
        for_layer = real(setting, **kwargs)
        if setting.impl != "naive_hash":
            return for_layer
        calls = [0]

        def attend_factory(layer: int):
            attend = for_layer(layer)

            def attend_nan(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
                calls[0] += 1
                out = attend(q, k, v)
                return out * math.nan if calls[0] > 3 and torch.is_grad_enabled() else out

            return attend_nan

        return attend_factory

    monkeypatch.setattr(unit_setup, "layer_attention", poisoned)
    rows = csv_rows(run(suite_file, tmp_path / "out").csv_path)
    hashed = [r for r in rows if r.impl == "naive_hash"]
    assert [(r.step, r.status) for r in hashed] == [(0, "ok"), (2, "diverged")]
    assert "not finite" in hashed[-1].error and hashed[-1].val_loss is None
    assert [r.status for r in rows if r.impl == "naive_qk"] == ["ok", "ok", "ok"]


def test_attention_that_cannot_run_gives_an_unavailable_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = training_data(folder_corpus(tmp_path / "corpus"))
    data["training"]["settings"] = [
        {"impl": "sdpa_math", "name": "dense"},
        {"impl": "naive_qk", "drop_rate": 0.5},
    ]
    suite_file = write_suite(tmp_path / "s.yaml", data)
    real = unit_setup.layer_attention

    def refuses_qk(setting, **kwargs):
        for_layer = real(setting, **kwargs)
        if setting.impl != "naive_qk":
            return for_layer

        def refuse(q, k, v):
            raise ValueError(f"no kernel for T={q.shape[1]}")

        return lambda layer: refuse

    monkeypatch.setattr(unit_setup, "layer_attention", refuses_qk)
    rows = csv_rows(run(suite_file, tmp_path / "out").csv_path)
    assert [(r.setting, r.status) for r in rows] == [("dense", "ok")] * 3 + [
        ("naive_qk p=0.5", "unavailable")
    ]
    assert rows[-1].error == "no kernel for T=32" and rows[-1].step == 0


def test_out_of_memory_gives_an_oom_row(
    suite_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_step = unit_setup.Trainer.step

    def step(self, step: int, idx, targets):
        if self.unit.setting.impl == "naive_qk" and step == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return real_step(self, step, idx, targets)

    monkeypatch.setattr(unit_setup.Trainer, "step", step)
    rows = csv_rows(run(suite_file, tmp_path / "out").csv_path)
    qk = [(r.step, r.status) for r in rows if r.impl == "naive_qk"]
    assert qk == [(0, "ok"), (2, "ok"), (2, "oom")]
    assert rows[-1].error.startswith("CUDA out of memory")


def test_smoke_suite_end_to_end_through_the_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from scfa_bench.cli import app

    suite = Path(__file__).resolve().parents[3] / "suites" / "quality_smoke.yaml"
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(suite), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    (csv_path,) = out.glob("*.csv")
    rows = csv_rows(csv_path)
    assert {(r.task, r.setting) for r in rows} == {
        (task, setting)
        for task in ("corpus", "mqar")
        for setting in ("dense", "naive_hash nb=4", "naive_qk p=0.5")
    }
    assert all(r.status == "ok" for r in rows) and "statuses: ok 18" in result.output
    assert {(r.val_bpb, r.corpus) for r in rows if r.task == "mqar"} == {(None, "")}
    assert {r.corpus for r in rows if r.task == "corpus"} == {"stdlib[1000000B]"}
    again = CliRunner().invoke(app, ["run", str(suite), "--resume", str(csv_path), "--no-progress"])
    assert again.exit_code == 0, again.output
    assert len(csv_rows(csv_path)) == len(rows)  # a finished run resumes to nothing new


def test_every_setting_starts_from_the_same_weights_data_and_draws(tmp_path: Path) -> None:
    """Two settings with the same attention under different names train identically."""
    data = training_data(folder_corpus(tmp_path / "corpus"))
    data["training"]["settings"] = [
        {"impl": "naive_qk", "drop_rate": 0.5, "name": "a"},
        {"impl": "naive_qk", "drop_rate": 0.5, "name": "b"},
    ]
    rows = csv_rows(run(write_suite(tmp_path / "s.yaml", data), tmp_path / "out").csv_path)
    a, b = ([x[1:] for x in losses(rows) if x[0] == name] for name in ("a", "b"))
    assert len(a) == 3 and a == b


def test_a_wall_clock_budget_ends_each_setting_with_a_final_evaluation(tmp_path: Path) -> None:
    data = training_data(folder_corpus(tmp_path / "corpus"), max_seconds=1e-9)
    data["training"]["settings"] = [{"impl": "sdpa_math", "name": "dense"}]
    suite_file = write_suite(tmp_path / "s.yaml", data)
    outcome = run(suite_file, tmp_path / "out")
    assert [(r.step, r.status) for r in csv_rows(outcome.csv_path)] == [(0, "ok"), (1, "ok")]
    again = run(suite_file, tmp_path / "unused", resume=outcome.csv_path)
    assert again.new_rows == 0  # the budget's last evaluation finished the setting


def test_shards_cover_every_unit_once_and_merge_into_the_whole_run(
    suite_file: Path, tmp_path: Path
) -> None:
    from scfa_bench.run.training import run_training
    from scfa_bench.suite.parse import load_suite

    from ..tool_loader import load_tool

    whole = losses(csv_rows(run(suite_file, tmp_path / "whole").csv_path))
    suite = load_suite(suite_file)
    parts = []
    for index in range(2):
        options = run_training_module.RunOptions(out_dir=tmp_path / f"p{index}", argv=("t",))
        parts.append(run_training(suite, options, shard=(index, 2)).csv_path)
    assert parts[0].name.startswith("tiny_training-part0of2-")
    assert {r.setting for r in csv_rows(parts[1])} == {"naive_hash nb=4"}
    merged = tmp_path / "merged.csv"
    assert load_tool("quality_merge").main([str(merged), *map(str, parts)]) == 0
    assert sorted(losses(csv_rows(merged))) == sorted(whole)
    assert json.loads((tmp_path / "merged.meta.json").read_text())["state"] == "complete"
    assert load_tool("quality_merge").main([str(merged), str(parts[0])]) == 1  # a part missing
    with pytest.raises(run_training_module.InputError, match="shard"):
        run_training(suite, run_training_module.RunOptions(resume=parts[0], argv=("t",)))
