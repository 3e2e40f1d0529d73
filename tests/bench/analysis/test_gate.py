"""The regression gate (`check`): verdicts, exit codes, and validation of its input files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from scfa_bench.analysis import gate, gate_table
from scfa_bench.analysis.gate import Verdict
from scfa_bench.cli.analysis_commands import register
from scfa_bench.errors import InputError

from ..results_factory import H100, default_meta, make_row, set_status, suite_rows, write_results


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def _small_grid(**kwargs: Any) -> list[dict[str, Any]]:
    return suite_rows(seq_lens=(1024, 2048), n_buckets=(2, 8), drop_rates=(0.5,), **kwargs)


def _scale(rows: list[dict], factor: float, **match: Any) -> list[dict]:
    """Multiply the timings of the matching rows by `factor` (intervals move with them)."""
    hits = 0
    for row in rows:
        if all(row[k] == v for k, v in match.items()):
            for col in ("ms_median", "ms_q20", "ms_q80"):
                row[col] = row[col] * factor
            hits += 1
    assert hits == 1, f"expected one row matching {match}, got {hits}"
    return rows


HASH_POINT = {"impl": "scfa_hash", "n_buckets": 8, "seq_len": 2048, "mode": "fwd+bwd"}


def _pair(
    tmp_path: Path,
    new_rows: list[dict],
    base_rows: list[dict] | None = None,
    new_meta: dict | None = None,
) -> tuple[Path, Path]:
    base = write_results(tmp_path / "base.csv", base_rows or _small_grid())
    new = write_results(tmp_path / "new.csv", new_rows, meta=new_meta)
    return new, base


def test_runs_timed_with_different_clocks_are_bad_input(tmp_path: Path) -> None:
    graph_rows = _small_grid()
    for row in graph_rows:
        row["timer"] = "cuda_graph"
    new, base = _pair(tmp_path, graph_rows)
    with pytest.raises(
        InputError, match=r"not comparable: .*\(cuda_event in the baseline, cuda_graph now\)"
    ):
        gate.compare(new, base)
    same, _ = _pair(tmp_path, [dict(r) for r in graph_rows], [dict(r) for r in graph_rows])
    assert gate.compare(same, same).passed


def test_identical_runs_pass_with_only_noise(tmp_path: Path) -> None:
    new, base = _pair(tmp_path, _small_grid())
    result = gate.compare(new, base)
    assert result.passed and result.exit_code == 0
    assert {r.verdict for r in result.rows} == {Verdict.NOISE}
    assert len(result.rows) == len(_small_grid())


def test_twenty_percent_slowdown_with_tight_intervals_is_a_regression(tmp_path: Path) -> None:
    new, base = _pair(tmp_path, _scale(_small_grid(spread=0.01), 1.2, **HASH_POINT))
    result = gate.compare(new, base)
    assert result.exit_code == 1
    assert [r.key.label() for r in result.regressions] == [
        "scfa_hash nb=8 T=2048 fwd+bwd B=4 H=48 D=64 bf16"
    ]
    assert result.regressions[0].ratio == pytest.approx(1.2, rel=1e-6)
    assert len(result.noise) == len(result.rows) - 1


def test_twenty_percent_change_with_overlapping_intervals_is_noise(tmp_path: Path) -> None:
    wide = _small_grid(spread=0.15)
    new, base = _pair(tmp_path, _scale(_small_grid(spread=0.15), 1.2, **HASH_POINT), wide)
    result = gate.compare(new, base)
    assert result.passed
    assert not result.regressions


def test_three_percent_change_is_noise_even_when_significant(tmp_path: Path) -> None:
    tight = _small_grid(spread=0.001)
    new, base = _pair(tmp_path, _scale(_small_grid(spread=0.001), 1.03, **HASH_POINT), tight)
    result = gate.compare(new, base)
    assert result.passed and not result.regressions and not result.improvements


def test_threshold_is_configurable(tmp_path: Path) -> None:
    tight = _small_grid(spread=0.001)
    new, base = _pair(tmp_path, _scale(_small_grid(spread=0.001), 1.03, **HASH_POINT), tight)
    assert len(gate.compare(new, base, max_slowdown=0.02).regressions) == 1


def test_faster_rows_are_improvements_and_pass(tmp_path: Path) -> None:
    new, base = _pair(tmp_path, _scale(_small_grid(), 0.7, **HASH_POINT))
    result = gate.compare(new, base)
    assert result.passed
    assert [r.key.impl for r in result.improvements] == ["scfa_hash"]
    assert result.improvements[0].ratio == pytest.approx(0.7, rel=1e-6)


@pytest.mark.parametrize("status", ["incorrect", "oom", "error", "unavailable"])
def test_ok_to_any_other_status_fails(tmp_path: Path, status: str) -> None:
    rows = set_status(_small_grid(), status, "max rel err 0.3", **HASH_POINT)
    result = gate.compare(*_pair(tmp_path, rows))
    assert result.exit_code == 1
    assert [r.verdict for r in result.failing] == [Verdict.LOST]
    assert result.lost[0].new is not None and result.lost[0].new.status == status


def test_recovered_and_still_failing_rows_do_not_fail(tmp_path: Path) -> None:
    base_rows = set_status(_small_grid(), "oom", "out of memory", **HASH_POINT)
    base_rows = set_status(base_rows, "error", "boom", impl="scfa_qk", seq_len=1024, mode="fwd")
    new_rows = set_status(_small_grid(), "error", "boom", impl="scfa_qk", seq_len=1024, mode="fwd")
    result = gate.compare(*_pair(tmp_path, new_rows, base_rows))
    assert result.passed
    counts = result.counts()
    assert counts["recovered"] == 1 and counts["still failing"] == 1


def test_missing_rows_are_listed_and_fail_only_when_asked(tmp_path: Path) -> None:
    new_rows = [r for r in _small_grid() if r["seq_len"] != 2048]
    new, base = _pair(tmp_path, new_rows)
    result = gate.compare(new, base)
    expected_missing = len(_small_grid()) - len(new_rows)
    assert len(result.missing) == expected_missing > 0
    assert all(r.key.seq_len == 2048 and r.new is None for r in result.missing)
    assert result.passed
    assert gate.compare(new, base, fail_on_missing=True).exit_code == 1


def test_rows_only_in_new_are_reported_as_new(tmp_path: Path) -> None:
    base_rows = [r for r in _small_grid() if r["impl"] != "scfa_qk"]
    result = gate.compare(*_pair(tmp_path, _small_grid(), base_rows))
    assert result.passed
    assert {r.key.impl for r in result.with_verdict(Verdict.NEW)} == {"scfa_qk"}


def test_rows_match_on_every_key_column(tmp_path: Path) -> None:
    # Same point written differently (0.50 vs 0.5, 8.0 vs 8) must still match.
    base = [make_row(n_buckets=8), make_row(impl="scfa_qk", n_buckets="", drop_rate=0.5)]
    new = [make_row(n_buckets="8.0"), make_row(impl="scfa_qk", n_buckets="", drop_rate="0.50")]
    result = gate.compare(*_pair(tmp_path, new, base))
    assert [r.verdict for r in result.rows] == [Verdict.NOISE, Verdict.NOISE]
    # A different dtype is a different row.
    result = gate.compare(*_pair(tmp_path, [make_row(dtype="fp16"), base[1]], base))
    assert result.counts()["missing"] == 1 and result.counts()["new"] == 1


def test_different_cards_are_bad_input_unless_allowed(tmp_path: Path) -> None:
    other = "NVIDIA A100-SXM4-80GB"
    new_rows = _small_grid(device=other)
    new, base = _pair(tmp_path, new_rows, new_meta=default_meta(device_name=other))
    with pytest.raises(InputError, match="different cards"):
        gate.compare(new, base)
    result = gate.compare(new, base, allow_different_device=True)
    assert result.new_device == other and result.base_device == H100


def test_device_falls_back_to_csv_column_without_meta(tmp_path: Path) -> None:
    new, base = _pair(tmp_path, _small_grid(device="cpu"))
    new.with_name("new.meta.json").unlink()
    with pytest.raises(InputError, match="'cpu'"):
        gate.compare(new, base)


def test_no_rows_in_common_is_bad_input(tmp_path: Path) -> None:
    new_rows = [make_row(seq_len=333)]
    with pytest.raises(InputError, match="no rows in common"):
        gate.compare(*_pair(tmp_path, new_rows))


def test_duplicate_rows_are_bad_input(tmp_path: Path) -> None:
    new, base = _pair(tmp_path, [make_row(), make_row()], [make_row()])
    with pytest.raises(InputError, match="line 3 repeats the row of line 2"):
        gate.compare(new, base)


def test_negative_threshold_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="max-slowdown"):
        gate.compare(*_pair(tmp_path, _small_grid()), max_slowdown=-0.1)


def test_result_table_lists_each_verdict(tmp_path: Path) -> None:
    from rich.console import Console

    rows = _scale(_small_grid(), 1.5, **HASH_POINT)
    rows = _scale(rows, 0.5, impl="scfa_qk", seq_len=1024, mode="fwd", drop_rate=0.5)
    rows = set_status(rows, "incorrect", "rel err 0.4", impl="sdpa_flash", seq_len=1024, mode="bwd")
    result = gate.compare(*_pair(tmp_path, rows))
    console = Console(width=200, record=True)
    console.print(gate_table.result_table(result))
    text = console.export_text()
    for word in ("regression", "improvement", "lost", "noise", "rel err 0.4", "FAIL"):
        assert word in text
    # Failing rows come first.
    assert text.index("regression") < text.index("improvement") < text.index("noise")


# ------------------------------------------------------------------------------ CLI


def test_cli_exit_0_on_itself(tmp_path: Path, cli: typer.Typer) -> None:
    path = write_results(tmp_path / "run.csv", _small_grid())
    result = CliRunner().invoke(cli, ["check", str(path), "--baseline", str(path)])
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output


def test_cli_exit_1_on_regression_and_json_output(tmp_path: Path, cli: typer.Typer) -> None:
    new, base = _pair(tmp_path, _scale(_small_grid(), 1.2, **HASH_POINT))
    result = CliRunner().invoke(cli, ["check", str(new), "--baseline", str(base), "--json"])
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["passed"] is False and payload["exit_code"] == 1
    assert payload["counts"]["regression"] == 1
    regression = [r for r in payload["rows"] if r["verdict"] == "regression"]
    assert regression[0]["impl"] == "scfa_hash" and regression[0]["n_buckets"] == 8
    assert regression[0]["ratio"] == pytest.approx(1.2, rel=1e-6)


def test_cli_max_slowdown_option(tmp_path: Path, cli: typer.Typer) -> None:
    new, base = _pair(tmp_path, _scale(_small_grid(), 1.2, **HASH_POINT))
    args = ["check", str(new), "--baseline", str(base), "--max-slowdown", "0.3"]
    assert CliRunner().invoke(cli, args).exit_code == 0


def test_cli_exit_1_on_lost_correctness(tmp_path: Path, cli: typer.Typer) -> None:
    new, base = _pair(tmp_path, set_status(_small_grid(), "incorrect", "wrong", **HASH_POINT))
    result = CliRunner().invoke(cli, ["check", str(new), "--baseline", str(base)])
    assert result.exit_code == 1
    assert "lost" in result.output


def test_cli_exit_2_on_missing_file(tmp_path: Path, cli: typer.Typer) -> None:
    path = write_results(tmp_path / "run.csv", _small_grid())
    result = CliRunner().invoke(cli, ["check", str(tmp_path / "nope.csv"), "--baseline", str(path)])
    assert result.exit_code == 2
    assert "not found" in result.stderr
    assert "Traceback" not in result.output


def test_cli_exit_2_on_no_rows_in_common(tmp_path: Path, cli: typer.Typer) -> None:
    new, base = _pair(tmp_path, [make_row(seq_len=333)])
    result = CliRunner().invoke(cli, ["check", str(new), "--baseline", str(base)])
    assert result.exit_code == 2
    assert "no rows in common" in result.stderr


def test_cli_exit_2_on_different_cards_unless_allowed(tmp_path: Path, cli: typer.Typer) -> None:
    other = "NVIDIA A100-SXM4-80GB"
    new, base = _pair(tmp_path, _small_grid(device=other), new_meta=default_meta(device_name=other))
    args = ["check", str(new), "--baseline", str(base)]
    assert CliRunner().invoke(cli, args).exit_code == 2
    assert CliRunner().invoke(cli, [*args, "--allow-different-device"]).exit_code == 0


# ------------------------------------------------------------------ input validation


def _write_raw(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_cli_exit_2_on_malformed_csv(tmp_path: Path, cli: typer.Typer) -> None:
    good = write_results(tmp_path / "good.csv", _small_grid())
    bad = _write_raw(tmp_path / "bad.csv", "impl,mode\nscfa_hash,fwd\n")
    result = CliRunner().invoke(cli, ["check", str(bad), "--baseline", str(good)])
    assert result.exit_code == 2
    assert "missing column(s)" in result.stderr and "seq_len" in result.stderr
