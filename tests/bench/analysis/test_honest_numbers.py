"""Honest numbers: wall-clock runs are refused by `check` unless allowed (then with
a wider threshold), flagged in reports and plots; a run without an ok row fails `check`; a
baseline measured on other kernels is flagged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from scfa_bench.analysis import gate, report
from scfa_bench.analysis.frame import prepare
from scfa_bench.analysis.gate_inputs import DEFAULT_WALL_CLOCK_MAX_SLOWDOWN
from scfa_bench.cli.analysis_commands import register
from scfa_bench.constants import WALL_CLOCK_WARNING
from scfa_bench.errors import InputError
from scfa_bench.results.reader import read_results

from ..results_factory import default_meta, set_status, suite_rows, write_results

runner = CliRunner()


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def grid(**kwargs: Any) -> list[dict[str, Any]]:
    return suite_rows(seq_lens=(64, 128), n_buckets=(2,), drop_rates=(0.5,), **kwargs)


def cpu_rows(spread: float = 0.01) -> list[dict[str, Any]]:
    rows = grid(device="cpu", spread=spread)
    for row in rows:
        row["timer"] = "wall_clock"
    return rows


def scale_hash(rows: list[dict[str, Any]], factor: float) -> list[dict[str, Any]]:
    for row in rows:
        if row["impl"] == "scfa_hash" and row["seq_len"] == 128 and row["mode"] == "fwd":
            for column in ("ms_median", "ms_q20", "ms_q80"):
                row[column] *= factor
    return rows


def pair(tmp_path: Path, new_rows: list, base_rows: list, **meta: Any) -> tuple[Path, Path]:
    cpu = {"device_name": "cpu"} if base_rows[0]["device"] == "cpu" else {}
    base = write_results(tmp_path / "base.csv", base_rows, meta=default_meta(**cpu))
    new = write_results(tmp_path / "new.csv", new_rows, meta=default_meta(**cpu, **meta))
    return new, base


def test_check_refuses_wall_clock_runs(tmp_path: Path, cli: typer.Typer) -> None:
    """Two consecutive CPU smoke runs once 'regressed' up to 347x."""
    new, base = pair(tmp_path, cpu_rows(), cpu_rows())
    result = runner.invoke(cli, ["check", str(new), "--baseline", str(base)])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert WALL_CLOCK_WARNING in message and "--allow-wall-clock" in message
    assert str(new) in message and "Traceback" not in message


def test_check_refuses_a_gpu_new_run_against_a_wall_clock_baseline(tmp_path: Path) -> None:
    new = write_results(tmp_path / "new.csv", grid(device="cpu"), meta=default_meta())
    base = write_results(tmp_path / "base.csv", cpu_rows(), meta=default_meta())
    with pytest.raises(InputError, match=r"base\.csv: wall-clock"):
        gate.compare(new, base, allow_different_device=True)


@pytest.mark.parametrize(
    ("factor", "spread", "passed"),
    [
        (1.4, 0.01, True),  # 40% slower, disjoint intervals: within the wide threshold
        (1.6, 0.01, False),  # 60% slower, disjoint: a regression
        (1.6, 0.3, True),  # 60% slower, overlapping intervals: noise
    ],
)
def test_allow_wall_clock_uses_a_wider_threshold_and_disjoint_intervals(
    tmp_path: Path, cli: typer.Typer, factor: float, spread: float, passed: bool
) -> None:
    new, base = pair(tmp_path, scale_hash(cpu_rows(spread), factor), cpu_rows(spread))
    args = ["check", str(new), "--baseline", str(base), "--allow-wall-clock", "--json"]
    result = runner.invoke(cli, args)
    assert result.exit_code == (0 if passed else 1), result.output
    payload = json.loads(result.stdout)
    assert payload["max_slowdown"] == DEFAULT_WALL_CLOCK_MAX_SLOWDOWN
    args = [*args, "--max-slowdown", "0.1"]  # an explicit threshold wins
    assert json.loads(runner.invoke(cli, args).stdout)["max_slowdown"] == 0.1


def test_check_of_a_run_without_ok_rows_fails(tmp_path: Path, cli: typer.Typer) -> None:
    """Every row failed, baseline too: once 'PASS, 162 still failing'; now exit 1."""
    failed = set_status(grid(), "error", "InterpreterError: boom", suite="test")
    new, base = pair(tmp_path, failed, set_status(grid(), "error", "boom", suite="test"))
    result = runner.invoke(cli, ["check", str(new), "--baseline", str(base)])
    assert result.exit_code == 1
    assert f"FAIL: {new} has no ok row at all" in " ".join(result.output.split())
    outcome = gate.compare(new, base)
    assert not outcome.passed and outcome.new_ok_rows == 0 and outcome.to_dict()["exit_code"] == 1


def test_kernels_hash_mismatch_warns_or_exits_2(tmp_path: Path, cli: typer.Typer) -> None:
    new, base = pair(tmp_path, grid(), grid(), kernels_hash="a" * 64)
    result = runner.invoke(cli, ["check", str(new), "--baseline", str(base)])
    assert result.exit_code == 0
    message = " ".join(result.output.split())
    assert f"warning: baseline {base} was measured on other kernels" in message
    assert "ffffffffffff, now aaaaaaaaaaaa" in message
    result = runner.invoke(cli, ["check", str(new), "--baseline", str(base), "--json"])
    assert "other kernels" in json.loads(result.stdout)["warnings"][0]
    args = ["check", str(new), "--baseline", str(base), "--require-same-kernels"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 2 and "--require-same-kernels" in result.output


def test_missing_kernels_hash_warns_and_same_hash_is_quiet(tmp_path: Path) -> None:
    base = write_results(tmp_path / "old.csv", grid(), meta=default_meta(kernels_hash=None))
    new = write_results(tmp_path / "new.csv", grid(), meta=default_meta())
    (warning,) = gate.compare(new, base).warnings
    assert "records no kernels_hash" in warning
    with pytest.raises(InputError, match="records no kernels_hash"):
        gate.compare(new, base, require_same_kernels=True)
    assert gate.compare(new, new, require_same_kernels=True).warnings == ()


def test_a_run_on_another_hopper_path_is_stale(tmp_path: Path) -> None:
    """Same portable kernels, but one run took the opt-in Hopper path (or other Hopper
    kernels): the baseline is stale; a meta from before the key counts as "off"."""
    base = write_results(tmp_path / "old.csv", grid(), meta=default_meta())
    for hopper in ("b" * 64, "c" * 64):
        meta = default_meta(hopper_kernels_hash=hopper)
        new = write_results(tmp_path / f"new-{hopper[0]}.csv", grid(), meta=meta)
        (warning,) = gate.compare(new, base).warnings
        assert "another Hopper path (hopper_kernels_hash off, now " + hopper[:12] in warning
        with pytest.raises(InputError, match="another Hopper path"):
            gate.compare(new, base, require_same_kernels=True)
    off = write_results(tmp_path / "off.csv", grid(), meta=default_meta(hopper_kernels_hash="off"))
    assert gate.compare(off, base, require_same_kernels=True).warnings == ()


def test_report_and_plots_flag_wall_clock_runs(tmp_path: Path) -> None:
    csv = write_results(tmp_path / "cpu.csv", cpu_rows(), meta=default_meta(device_name="cpu"))
    data = prepare(read_results(csv))
    text = report.write_report(data, tmp_path / "out").read_text()
    assert f"**Warning: {WALL_CLOCK_WARNING}.**" in text
    speedups = text[text.index("## Speedups") :]
    assert speedups.index(WALL_CLOCK_WARNING) < speedups.index("x |")  # before any ratio
    svg = next((tmp_path / "out").glob("*.svg")).read_text()
    assert WALL_CLOCK_WARNING.replace("'", "&#39;") in svg or WALL_CLOCK_WARNING in svg

    gpu = write_results(tmp_path / "gpu.csv", grid(), meta=default_meta())
    gpu_text = report.render_report(prepare(read_results(gpu)), [], tmp_path)
    assert WALL_CLOCK_WARNING not in gpu_text


def test_check_prints_bracketed_paths_in_warnings(tmp_path: Path, cli: typer.Typer) -> None:
    """Warnings go through rich: '[h100]' in a path must print as text, not vanish as a tag."""
    new, base = pair(tmp_path / "[h100]", grid(), grid(), kernels_hash="a" * 64)
    result = runner.invoke(cli, ["check", str(new), "--baseline", str(base)])
    assert result.exit_code == 0
    assert f"warning: baseline {base} was measured" in "".join(result.output.split("\n"))
