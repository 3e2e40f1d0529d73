"""`scfa-bench tables`: the README's headline table and docs/results.md rendered from committed
results, the newest file of each suite and card chosen, and `--check` catching a hand edit."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from scfa_bench.analysis import tables
from scfa_bench.cli.analysis_commands import register

from ..results_factory import default_meta, model_rows, suite_rows, write_results

ROOT = Path(__file__).resolve().parents[3]
README_STUB = (
    "# project\n\nIntro.\n\n<!-- tables:headline:start -->\nstale\n"
    "<!-- tables:headline:end -->\n\nAfter.\n<!-- tables:quality:start -->\n"
    "<!-- tables:quality:end -->\n"
)


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command("noop", hidden=True)
    def _noop() -> None:  # a second command keeps Typer from collapsing the app to one command
        pass

    return app


def _set(rows: list[dict[str, Any]], value: Any, column: str, **match: Any) -> None:
    hits = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(hits) == 1, f"expected one row matching {match}, got {len(hits)}"
    hits[0][column] = value


def _kernel_file(root: Path, suite: str, stamp: str, started: str, nb8_speedup: float) -> None:
    rows = suite_rows(seq_lens=(16384, 32768), n_buckets=(8, 32), drop_rates=(0.5, 0.8))
    for row in rows:
        row["suite"] = suite
    _set(rows, nb8_speedup, "speedup", impl="scfa_hash", mode="fwd+bwd", seq_len=16384, n_buckets=8)
    _set(rows, 7.25, "speedup", impl="scfa_qk", mode="fwd+bwd", seq_len=32768, drop_rate=0.8)
    _set(
        rows,
        0.61,
        "fraction_of_limit",
        impl="scfa_hash",
        mode="fwd+bwd",
        seq_len=16384,
        n_buckets=8,
    )
    meta = default_meta(
        suite_name=suite, started=started, git_rev="1234567abc", kernels_hash="ab" * 32
    )
    write_results(root / "results/baselines/h100" / f"{suite}-{stamp}.csv", rows, meta)


def _model_file(root: Path) -> None:
    rows = model_rows(seq_lens=(16384, 32768))
    for row in rows:
        row["suite"] = "e2e_targets"
    _set(rows, 1.5, "speedup", impl="scfa_hash", seq_len=16384, compile="false")
    meta = default_meta(suite_name="e2e_targets", shape=None, started="2026-11-27T09:00:00")
    write_results(root / "results/baselines/h100/e2e_targets-20261127-090000.csv", rows, meta)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A tiny repository: two runs of `hash` (the older one slower), one of `qk` and a model
    suite, all on an H100, and a README with the headline markers."""
    _kernel_file(tmp_path, "hash", "20261126-100000", "2026-11-26T10:00:00", nb8_speedup=1.11)
    _kernel_file(tmp_path, "hash", "20261127-100000", "2026-11-27T10:00:00", nb8_speedup=4.56)
    _kernel_file(tmp_path, "qk", "20261127-110000", "2026-11-27T11:00:00", nb8_speedup=2.0)
    _model_file(tmp_path)
    (tmp_path / "README.md").write_text(README_STUB)
    return tmp_path


def test_the_newest_file_of_each_suite_and_card_is_current(repo: Path) -> None:
    current = tables.current_sources(tables.load_sources(repo))
    names = [s.name for s in current]
    assert "results/baselines/h100/hash-20261127-100000.csv" in names
    assert "results/baselines/h100/hash-20261126-100000.csv" not in names
    assert len(names) == 3


def test_headline_cells_come_from_the_newest_files(repo: Path) -> None:
    headline = tables.render_headline(tables.current_sources(tables.load_sources(repo)))
    lines = headline.splitlines()
    assert "| hash-sparse nb=8, fwd+bwd | 4.56x | 5.71x |" in lines  # 5.71x: the factory's model
    assert "| QK-sparse p=0.8, fwd+bwd | 14.29x | 7.25x |" in lines
    assert "| GPT-2 small step, eager, hash nb=8 | 1.50x | – |" in lines  # no speedup written
    assert "| GPT-2 small step, eager, QK p=0.8 | – | – |" in lines  # not measured
    assert any("hash-20261127-100000.csv" in line and "commit 1234567" in line for line in lines)


def test_results_page_names_its_files_and_shows_times_and_limits(repo: Path) -> None:
    every = tables.load_sources(repo)
    page = tables.render_results_page(tables.current_sources(every), every)
    assert "From `results/baselines/h100/hash-20261127-100000.csv`" in page
    assert "kernels abababab, 2026-11-27" in page
    # The older run is listed as history, not tabulated.
    history = page.split("## Older runs")[1]
    assert "hash-20261126-100000.csv" in history
    assert "| `scfa_hash` nb=8 | 4.56x (" in page and "| `scfa_hash` nb=8 | 1.11x" not in page
    assert "| `sdpa_cudnn` (baseline, ms) | 939.5 | 3758.1 |" in page  # 1e-6 T^2 x 3.5
    assert "Fraction of the limit:" in page and "| `scfa_hash` nb=8 | 0.61 | – |" in page
    # The model suite: step ms / GPU ms, eager and compiled rows.
    assert "| 16384 (1) | off |" in page and "| 32768 (1) | on |" in page


def test_write_then_check_passes_and_a_hand_edit_fails(repo: Path, cli: typer.Typer) -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["tables", "--root", str(repo)])
    assert first.exit_code == 0, first.output
    readme = (repo / "README.md").read_text()
    assert "stale" not in readme and readme.startswith("# project") and "After." in readme
    assert runner.invoke(cli, ["tables", "--check", "--root", str(repo)]).exit_code == 0

    page = repo / "docs/results.md"
    page.write_text(page.read_text().replace("4.56x", "4.66x"))
    failed = runner.invoke(cli, ["tables", "--check", "--root", str(repo)])
    assert failed.exit_code == 1
    assert "-| `scfa_hash` nb=8 | 4.66x" in failed.output
    assert "+| `scfa_hash` nb=8 | 4.56x" in failed.output


def test_missing_markers_are_bad_input(repo: Path, cli: typer.Typer) -> None:
    (repo / "README.md").write_text("# no markers\n")
    result = CliRunner().invoke(cli, ["tables", "--check", "--root", str(repo)])
    assert result.exit_code == 2
    assert "tables:headline:start" in result.output


def _copy_of_the_repository(tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    (copy / "docs").mkdir(parents=True)
    shutil.copy(ROOT / "README.md", copy / "README.md")
    shutil.copy(ROOT / "docs/results.md", copy / "docs/results.md")
    shutil.copytree(ROOT / "results/baselines", copy / "results/baselines")
    shutil.copytree(ROOT / "results/quality", copy / "results/quality")
    return copy


def test_committed_pages_match_the_committed_results(tmp_path: Path, cli: typer.Typer) -> None:
    runner = CliRunner()
    ok = runner.invoke(cli, ["tables", "--check", "--root", str(ROOT)])
    assert ok.exit_code == 0, f"run `scfa-bench tables` and commit the pages:\n{ok.output}"

    copy = _copy_of_the_repository(tmp_path)
    readme = copy / "README.md"
    start = readme.read_text().index("<!-- tables:headline:start -->")
    text = readme.read_text()
    cell = text.index("x |", start)  # the first speedup cell of the headline table
    readme.write_text(text[: cell - 1] + "9" + text[cell:])
    failed = runner.invoke(cli, ["tables", "--check", "--root", str(copy)])
    assert failed.exit_code == 1
    assert "README.md (committed)" in failed.output


def test_a_run_with_approximate_methods_gets_its_density_bands(repo: Path) -> None:
    rows = suite_rows(seq_lens=(16384,), n_buckets=(8,), drop_rates=(0.5,))
    peer = next(r for r in rows if r["impl"] == "scfa_qk" and r["mode"] == "fwd+bwd")
    moba = {"impl": "moba", "impl_kind": "approximate", "density": 0.2, "drop_rate": ""}
    rows.append({**peer, **moba, "ms_median": peer["ms_median"] / 10, "speedup": 30.0})
    for row in rows:
        row["suite"] = "peers"
    meta = default_meta(suite_name="peers", started="2026-11-28T10:00:00")
    write_results(repo / "results/baselines/h100/peers-20261128-100000.csv", rows, meta)
    page = tables.render_results_page(*_current_and_every(repo))
    peers_part = page[page.index("### `peers`") :]
    assert "#### Fastest method by density (fwd+bwd)" in peers_part
    assert "| 16384 | [0.15, 0.35) | moba | 0.200 |" in peers_part
    # Runs of our kernels and dense baselines only get no band table.
    assert page.count("Fastest method by density") == 1


def _current_and_every(root: Path) -> tuple[list[tables.Source], list[tables.Source]]:
    every = tables.load_sources(root)
    return tables.current_sources(every), every
