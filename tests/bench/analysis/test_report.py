"""The Markdown report: environment, speedup tables, embedded plots, failed rows."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from scfa_bench.analysis import plot_plan, plots, report
from scfa_bench.analysis.frame import PreparedResults, prepare
from scfa_bench.cli.analysis_commands import register
from scfa_bench.results.reader import read_results

from ..results_factory import (
    H100,
    default_meta,
    make_row,
    model_rows,
    set_status,
    suite_rows,
    write_results,
)


def load(path: Path) -> PreparedResults:
    return prepare(read_results(path))


IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)]+)\)")


def _rows() -> list[dict]:
    rows = suite_rows(
        seq_lens=(512, 1024), n_buckets=(2, 8), drop_rates=(0.5,), modes=("fwd", "fwd+bwd")
    )
    set_status(rows, "oom", "CUDA out of memory | tried 2 GiB", impl="scfa_hash", n_buckets=8,
               seq_len=1024, mode="fwd")  # fmt: skip
    set_status(rows, "incorrect", "max rel err 0.31 > 0.02", impl="scfa_qk", seq_len=512,
               mode="fwd+bwd")  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    tmp = tmp_path_factory.mktemp("report")
    csv = write_results(tmp / "results" / "run.csv", _rows())
    path = report.write_report(load(csv), tmp / "out")
    return csv, path, path.read_text(encoding="utf-8")


def test_report_is_readme_in_the_output_folder(written) -> None:
    _, path, text = written
    assert path.name == "README.md"
    assert text.startswith("# scfa-bench report: test")


def test_report_embeds_every_plot_with_relative_links(written) -> None:
    csv, path, text = written
    images = IMAGE_LINK.findall(text)
    planned = plot_plan.plan_figures(load(csv))
    assert sorted(images) == sorted(spec.png_name for spec in planned)
    svgs = [link for link in LINK.findall(text) if link.endswith(".svg")]
    assert sorted(svgs) == sorted(spec.svg_name for spec in planned)
    for link in images + svgs:
        assert not Path(link).is_absolute()
        assert (path.parent / link).is_file(), f"broken link {link}"


def test_report_lists_failed_rows_with_status_and_message(written) -> None:
    _, _, text = written
    failures = text[text.index("## Failed rows") :]
    assert "2 row(s) did not produce a timing" in failures
    assert "| scfa_hash | fwd | 1024 | 8 |  | **oom** | CUDA out of memory \\| tried 2 GiB |" in (
        failures
    )
    assert "| scfa_qk | fwd+bwd | 512 |  | 0.5 | **incorrect** | max rel err 0.31 > 0.02 |" in (
        failures
    )


def test_report_shows_environment_from_meta(written) -> None:
    _, _, text = written
    env = text[text.index("## Environment") : text.index("## Speedups")]
    for expected in (f"| card | {H100} |", "| driver | 560.35.03 |", "| triton | 3.6.0 |",
                     "| shape | B=4 H=48 D=64 bf16 |", "| git revision | abc1234 |",
                     "warm-up 25 ms, repetitions 100 ms"):  # fmt: skip
        assert expected in env


def test_speedup_tables_hold_csv_values_fwd_bwd_first(written) -> None:
    csv, _, text = written
    frame = load(csv).frame
    section = text[text.index("## Speedups") : text.index("## Plots")]
    headings = re.findall(r"^### (.+)$", section, flags=re.M)
    assert headings[:3] == [
        "scfa_hash, fwd+bwd",
        "scfa_qk, fwd+bwd",
        "dense implementations, fwd+bwd",
    ]
    assert headings[3].endswith(", fwd")
    row = frame[
        (frame["impl"] == "scfa_hash")
        & (frame["n_buckets"] == 8)
        & (frame["seq_len"] == 512)
        & (frame["mode"] == "fwd+bwd")
    ].iloc[0]
    cell = f"{row['speedup']:.2f}x ({row['speedup'] * row['density']:.0%})"
    hash_table = section[section.index("### scfa_hash, fwd+bwd") :]
    hash_table = hash_table[: hash_table.index("###", 4)]
    assert "| T | nb=2 | nb=8 |" in hash_table
    assert re.search(rf"^\| 512 \| [^|]+ \| {re.escape(cell)} \|$", hash_table, flags=re.M)
    # Failed cells carry their status instead of a number.
    fwd_hash = section[section.index("### scfa_hash, fwd\n") :]
    assert re.search(r"^\| 1024 \| [^|]+ \| \*oom\* \|$", fwd_hash, flags=re.M)


def test_report_draws_missing_plots_and_keeps_existing_ones(tmp_path: Path) -> None:
    rows = suite_rows(seq_lens=(256, 512), n_buckets=(4,), drop_rates=(), modes=("fwd",))
    results = load(write_results(tmp_path / "run.csv", rows))
    out = tmp_path / "out"
    existing = plots.make_plots(results, out)
    os.utime(existing[0].png, (1_000_000, 1_000_000))
    existing[-1].png.unlink()
    report.write_report(results, out)
    assert existing[0].png.stat().st_mtime == 1_000_000
    assert existing[-1].png.is_file()


def test_report_without_meta_or_failures(tmp_path: Path) -> None:
    rows = suite_rows(seq_lens=(256,), n_buckets=(4,), drop_rates=(), modes=("fwd",))
    csv = write_results(tmp_path / "run.csv", rows)
    csv.with_name("run.meta.json").unlink()
    text = report.write_report(load(csv), tmp_path / "out").read_text()
    assert "No meta file found beside `run.csv`" in text
    assert "None: every row has status ok." in text
    # Card and baseline still come from the CSV columns.
    assert H100 in text and "`sdpa_cudnn`" in text


def test_report_of_only_failed_rows_has_no_plots(tmp_path: Path) -> None:
    rows = [make_row(status="unavailable", error="no CUDA", ms_median="", ms_q20="", ms_q80="")]
    text = report.write_report(
        load(write_results(tmp_path / "run.csv", rows)), tmp_path / "out"
    ).read_text()
    assert "No plots: no row has data to draw." in text
    assert "**unavailable** | no CUDA |" in text


def test_cli_report_exit_codes(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    csv = write_results(tmp_path / "run.csv", _rows())
    result = CliRunner().invoke(app, ["report", str(csv), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "rep" / "README.md").is_file()
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "nope.csv")])
    assert bad.exit_code == 2 and "not found" in bad.stderr


def _environment_of(tmp_path: Path, rows: list[dict], meta: dict | None = None) -> str:
    text = report.render_report(load(write_results(tmp_path / "run.csv", rows, meta)), [], tmp_path)
    return text[text.index("## Environment") : text.index("## Speedups")]


def test_report_names_do_bench_only_for_rows_it_timed(tmp_path: Path) -> None:
    rows = suite_rows(seq_lens=(512,), n_buckets=(2,), drop_rates=(), modes=("fwd",))
    wall = [{**r, "timer": "wall_clock", "device": "cpu"} for r in rows]
    env = _environment_of(tmp_path, wall, default_meta(device_name="cpu"))
    full = report.render_report(load(tmp_path / "run.csv"), [], tmp_path)
    assert "do_bench" not in full
    assert (
        f"| clocks | wall clock on the CPU (time.perf_counter around each call): {len(rows)} rows |"
        in env
    )

    mixed = [{**r, "timer": "cuda_graph"} if r["impl"] == "scfa_hash" else r for r in rows]
    env = _environment_of(tmp_path, mixed)
    n_graph = sum(r["impl"] == "scfa_hash" for r in rows)
    assert f"do_bench (CUDA events, L2 flushed between calls): {len(rows) - n_graph} rows" in env
    assert "CUDA-graph replays, each timed with CUDA events" in env
    assert f"(L2 flushed before each): {n_graph} row |" in env


def test_report_describes_model_step_clocks_not_do_bench(tmp_path: Path) -> None:
    rows = model_rows(seq_lens=(4096,))
    env = _environment_of(tmp_path, rows)
    assert "do_bench" not in env
    assert f"CUDA events around back-to-back training steps: {len(rows)} rows" in env
