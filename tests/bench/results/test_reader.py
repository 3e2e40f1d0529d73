"""The one results reader: every malformed cell named by file, line and column; keys that
survive the CSV round trip; resume's stricter header check."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from scfa_bench.errors import InputError
from scfa_bench.results.reader import read_results
from scfa_bench.results.resume import read_for_resume
from scfa_bench.results.row import COLUMNS as RESULT_COLUMNS
from scfa_bench.results.row import ResultRow, RowKey
from scfa_bench.results.writer import rewrite_rows
from scfa_bench.suite.parse import parse_suite

from ..results_factory import H100, make_row, write_results


def _write_raw(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"status": "fine"}, "line 2, column 'status': 'fine' is not one of"),
        ({"mode": "forward"}, "column 'mode'"),
        ({"dtype": "float16"}, "column 'dtype'"),
        ({"seq_len": "abc"}, "column 'seq_len': 'abc' is not an integer"),
        ({"seq_len": "1024.5"}, "is not an integer"),
        ({"seq_len": ""}, "column 'seq_len': empty"),
        ({"ms_median": "fast"}, "column 'ms_median': 'fast' is not a number"),
        ({"ms_median": ""}, "status is ok but ms_median"),
        ({"ms_q20": "12", "ms_q80": "11"}, "ms_q20 12.0 is above ms_q80 11.0"),
        ({"impl": ""}, "empty implementation name"),
    ],
)
def test_reader_names_the_bad_cell(tmp_path: Path, override: dict, message: str) -> None:
    path = write_results(tmp_path / "bad.csv", [make_row(**override)])
    with pytest.raises(InputError, match=message.replace("(", r"\(")) as info:
        read_results(path)
    assert str(path) in str(info.value)


def test_reader_rejects_empty_file_and_bad_meta(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="empty"):
        read_results(_write_raw(tmp_path / "empty.csv", ""))
    path = write_results(tmp_path / "run.csv", [make_row()])
    path.with_name("run.meta.json").write_text("{not json")
    with pytest.raises(InputError, match=r"run\.meta\.json: invalid JSON at line 1"):
        read_results(path)
    path.with_name("run.meta.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="expected a JSON object"):
        read_results(path)


def test_reader_accepts_failed_rows_without_timings_and_extra_columns(
    tmp_path: Path,
) -> None:
    rows = [make_row(), make_row(seq_len=8192, status="oom", ms_median="", ms_q20="", ms_q80="")]
    for row in rows:
        row["note"] = "extra column"
    path = write_results(tmp_path / "run.csv", rows, columns=[*RESULT_COLUMNS, "note"])
    results = read_results(path)
    assert [r.status for r in results.rows] == ["ok", "oom"]
    assert [r.n_buckets for r in results.rows] == [8, 8]
    assert all(r.drop_rate is None for r in results.rows)
    assert results.device_name == H100 and results.baseline == "sdpa_cudnn"


def test_loader_expects_the_shared_column_order() -> None:
    spec = (
        "suite, impl, mode, batch, heads, head_dim, seq_len, n_buckets, drop_rate, dtype, "
        "model, compile, ms_median, ms_q20, ms_q80, tflops_dense_equiv, tflops_effective, "
        "density, speedup, tokens_per_s, peak_mem_mib, nvml_mem_mib, attention_ms, "
        "attention_share, gpu_ms, check_rel_err, status, error, timer, baseline, warmup_ms, "
        "rep_ms, device, impl_kind, approx_rel_err, fraction_of_limit, sm_mhz_min, sm_mhz_median, "
        "mem_mhz_median, temp_c_max, power_w_max, throttle_reasons, throttled, stage_ms, "
        "gpu_idle_ms, wall_s"
    )
    assert tuple(RESULT_COLUMNS) == tuple(spec.split(", "))


def test_a_partly_written_line_is_named(tmp_path: Path) -> None:
    path = write_results(tmp_path / "run.csv", [make_row(), make_row(seq_len=8192)])
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: text.rindex(",bf16,")], encoding="utf-8")  # cut the last row
    with pytest.raises(
        InputError, match=rf"line 3 has \d+ cells, the header {len(RESULT_COLUMNS)}"
    ):
        read_results(path)


def test_keys_survive_the_csv_round_trip(tmp_path: Path) -> None:
    row = ResultRow("s", "qk", "fwd", 1, 2, 16, 64, None, 0.123456789, "fp16", status="oom")
    path = tmp_path / "run.csv"
    rewrite_rows(path, [row])
    (read_back,) = read_results(path).rows
    assert read_back.drop_rate == 0.123457  # six significant digits in the file
    assert read_back.key == row.key
    assert replace(row, drop_rate=0.5).key == replace(row, drop_rate=0.50000000001).key
    assert replace(row, drop_rate=0.5).key != replace(row, drop_rate=0.6).key
    assert RowKey.of(**{**vars(row.key), "drop_rate": 0.5}).drop_rate == 0.5


def test_resume_needs_our_exact_header_and_suite(tmp_path: Path) -> None:
    suite = parse_suite(
        {
            "name": "test",
            "shape": {"batch": 1, "heads": 2, "head_dim": 16, "dtype": "fp32"},
            "sweep": {"seq_len": [16]},
            "implementations": ["sdpa_math"],
        }
    )
    path = write_results(tmp_path / "run.csv", [make_row()])
    assert len(read_for_resume(path, suite).rows) == 1
    reordered = write_results(
        tmp_path / "reordered.csv", [make_row()], columns=reversed(RESULT_COLUMNS)
    )
    assert len(read_results(reordered).rows) == 1  # analysis reads any column order
    with pytest.raises(InputError, match="not a scfa-bench results CSV"):
        read_for_resume(reordered, suite)  # appending would misplace every cell
    other = write_results(tmp_path / "other.csv", [make_row(suite="other")])
    with pytest.raises(InputError, match="cannot resume suite 'test'"):
        read_for_resume(other, suite)
