"""Running model suites on the CPU: rows, failures as rows, speedups, the meta."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml

from scfa_bench.constants import LEAD_STEPS
from scfa_bench.e2e import measurement
from scfa_bench.errors import InputError
from scfa_bench.results.meta import meta_path_for
from scfa_bench.results.reader import read_results
from scfa_bench.results.resume import done_keys, pending_tasks
from scfa_bench.run.loop import RunOptions, run_suite
from scfa_bench.suite.grid import expand
from scfa_bench.suite.parse import parse_suite

TINY = {
    "name": "tiny_model",
    "model": {
        "layers": 1,
        "d_model": 32,
        "heads": 2,
        "vocab": 64,
        "tokens_per_step": 64,
        "dtype": "fp32",
        "steps": {"warmup": 1, "timed": 2, "profile": 1},
    },
    "sweep": {"seq_len": [16, 32], "n_buckets": [2]},
    "implementations": ["sdpa_math", "naive_hash", "identity"],
    "device": "cpu",
}


def suite_of(**changes: object):
    data = yaml.safe_load(yaml.safe_dump(TINY))  # a deep copy
    for key, value in changes.items():
        if key.startswith("model_"):
            data["model"][key.removeprefix("model_")] = value
        else:
            data[key] = value
    return parse_suite(data)


def run(tmp_path: Path, suite):
    return run_suite(suite, RunOptions(out_dir=tmp_path, argv=("test",)))


def test_a_model_suite_writes_one_step_row_per_task(tmp_path: Path) -> None:
    outcome = run(tmp_path, suite_of())
    rows = outcome.rows
    assert [(r.impl, r.seq_len, r.batch) for r in rows] == [
        ("sdpa_math", 16, 4),
        ("naive_hash", 16, 4),
        ("identity", 16, 4),
        ("sdpa_math", 32, 2),
        ("naive_hash", 32, 2),
        ("identity", 32, 2),
    ]
    assert {r.status for r in rows} == {"ok"}, [r.error for r in rows]
    for row in rows:
        assert (row.mode, row.model, row.compile) == ("step", "L1-D32-H2-M4-V64", False)
        assert (row.heads, row.head_dim, row.dtype, row.timer) == (2, 16, "fp32", "wall_clock")
        tokens_per_s = row.batch * row.seq_len / (row.ms_median / 1e3)
        assert row.tokens_per_s == pytest.approx(tokens_per_s, rel=1e-5)  # 6 digits in the CSV
        assert row.attention_share is None and row.peak_mem_mib is None  # CPU: no profile
        assert row.warmup_ms is None and row.density is None
    base = {r.seq_len: r for r in rows if r.impl == "sdpa_math"}
    for row in rows:
        assert row.speedup == pytest.approx(base[row.seq_len].ms_median / row.ms_median, 1e-5)
    meta = json.loads(meta_path_for(outcome.csv_path).read_text())
    assert meta["shape"] is None and meta["model"]["label"] == "L1-D32-H2-M4-V64"
    timing = {"warmup_steps": 1, "timed_steps": 2, "profile_steps": 1, "lead_steps": LEAD_STEPS}
    assert meta["timing"] == timing


def test_a_head_dim_an_attention_declares_it_cannot_take_is_refused_before_any_work() -> None:
    # d_model 48 over 2 heads: head dim 24, which the SCFA kernels do not take.
    with pytest.raises(InputError, match=r"model\.heads.*head dim 24 .*scfa_hash supports head"):
        suite_of(model_d_model=48, implementations=["sdpa_math", "scfa_hash"])


def test_settings_an_attention_cannot_take_give_error_rows_and_the_sweep_goes_on(
    tmp_path: Path,
) -> None:
    # A suite built in code skips the parser's check; the step's own check then gives error
    # rows for that attention and the other rows are measured.
    suite = suite_of(implementations=["sdpa_math", "scfa_hash"])
    config = dataclasses.replace(suite.model.config, d_model=48)
    suite = dataclasses.replace(suite, model=dataclasses.replace(suite.model, config=config))
    rows = run(tmp_path, suite).rows
    statuses = {(r.impl, r.seq_len): r.status for r in rows}
    assert statuses == {
        ("sdpa_math", 16): "ok",
        ("scfa_hash", 16): "error",
        ("sdpa_math", 32): "ok",
        ("scfa_hash", 32): "error",
    }
    error = next(r.error for r in rows if r.status == "error")
    assert "head dim 24" in error and "16, 32, 64, 128" in error


def test_bf16_on_the_cpu_is_an_error_row(tmp_path: Path) -> None:
    rows = run(tmp_path, suite_of(model_dtype="bf16", implementations=["identity"])).rows
    assert {r.status for r in rows} == {"error"}
    assert "the CPU step runs in fp32 only" in rows[0].error
    assert rows[0].dtype == "bf16"  # the row says what was asked for


def test_out_of_memory_is_an_oom_row(tmp_path: Path, monkeypatch) -> None:
    real_build = measurement.build_step

    def build(config):
        if config.attention == "naive_hash" and config.seq_len == 32:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")
        return real_build(config)

    monkeypatch.setattr(measurement, "build_step", build)
    rows = run(tmp_path, suite_of()).rows
    oom = [r for r in rows if r.status == "oom"]
    assert [(r.impl, r.seq_len) for r in oom] == [("naive_hash", 32)]
    assert "Tried to allocate 80.00 GiB" in oom[0].error
    assert sum(r.status == "ok" for r in rows) == 5


def test_resume_skips_model_rows_already_written(tmp_path: Path) -> None:
    suite = suite_of(model_compile=[False, True], implementations=["identity"])
    tasks = expand(suite)
    assert [(t.point.seq_len, t.point.compile) for t in tasks] == [
        (16, False),
        (32, False),
        (16, True),
        (32, True),
    ]
    outcome = run(tmp_path, suite_of(implementations=["identity"]))  # the eager rows only
    done = done_keys(read_results(outcome.csv_path))
    assert [(t.point.seq_len, t.point.compile) for t in pending_tasks(tasks, suite, done)] == [
        (16, True),
        (32, True),
    ]
