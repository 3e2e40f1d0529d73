"""Model-suite rows in the one results model: columns, round trip, old files, speedups."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from scfa_bench.errors import InputError
from scfa_bench.results.reader import read_results
from scfa_bench.results.row import COLUMNS, OPTIONAL_KEY_COLUMNS, ResultRow
from scfa_bench.results.speedup import fill_speedups
from scfa_bench.results.writer import rewrite_rows

from ..results_factory import BASELINE, GPT2_SMALL_LABEL, make_row, model_rows, write_results


def test_model_rows_survive_the_csv_round_trip(tmp_path: Path) -> None:
    path = write_results(tmp_path / "run.csv", model_rows())
    rows = read_results(path).rows
    assert {r.compile for r in rows} == {True, False}
    assert {r.model for r in rows} == {GPT2_SMALL_LABEL}
    assert {r.mode for r in rows} == {"step"}
    assert all(r.tokens_per_s and 0 < r.attention_share < 1 for r in rows)
    rewrite_rows(tmp_path / "again.csv", rows)
    text = (tmp_path / "again.csv").read_text()
    assert ",true," in text and ",false," in text  # booleans written as the suite spells them
    again = read_results(tmp_path / "again.csv").rows
    assert [r.key for r in again] == [r.key for r in rows]  # model and compile included


def test_rows_differing_only_in_compile_have_different_keys() -> None:
    row = ResultRow("s", "scfa_hash", "step", 1, 12, 64, 16384, 8, None, "bf16", "m", False)
    assert row.key != replace(row, compile=True).key
    assert row.key != replace(row, model="other").key


def test_files_without_the_model_columns_still_read(tmp_path: Path) -> None:
    """Results written before model suites existed: the new columns read as blanks."""
    legacy = [c for c in COLUMNS if c not in (*OPTIONAL_KEY_COLUMNS, "tokens_per_s")]
    legacy = [c for c in legacy if c not in ("attention_ms", "attention_share", "gpu_ms")]
    path = write_results(tmp_path / "old.csv", [make_row()], columns=legacy)
    (row,) = read_results(path).rows
    assert (row.model, row.compile, row.tokens_per_s, row.gpu_ms) == ("", None, None, None)


def test_a_bad_compile_cell_is_named(tmp_path: Path) -> None:
    rows = model_rows()
    rows[0]["compile"] = "maybe"
    path = write_results(tmp_path / "run.csv", rows)
    with pytest.raises(InputError, match=r"line 2, column 'compile': 'maybe' is not true or false"):
        read_results(path)


def test_step_rows_are_compared_with_the_baseline_compiled_the_same_way(tmp_path: Path) -> None:
    rows = read_results(write_results(tmp_path / "run.csv", model_rows())).rows
    filled = fill_speedups(rows, BASELINE)
    by_key = {(r.impl, r.seq_len, r.compile): r for r in filled}
    for compiled in (False, True):
        base = by_key[(BASELINE, 16384, compiled)]
        sparse = by_key[("scfa_hash", 16384, compiled)]
        assert base.ms_median is not None and sparse.ms_median is not None
        assert sparse.speedup == pytest.approx(base.ms_median / sparse.ms_median)
    # The compiled step is faster, so pairing across compile values would change the number.
    eager_base = by_key[(BASELINE, 16384, False)]
    compiled_hash = by_key[("scfa_hash", 16384, True)]
    assert compiled_hash.speedup != pytest.approx(eager_base.ms_median / compiled_hash.ms_median)
