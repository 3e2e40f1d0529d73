"""CLI additions: `check` against runs at different clocks, `profile` (point selection, the
CUDA requirement, and its outputs with a simulated GPU), `list` kinds, plugins from a suite."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

import scfa_bench.cli.profile_commands  # noqa: F401  (the module the test patches through)
from scfa_bench.cli import app
from scfa_bench.errors import InputError
from scfa_bench.impls import registry
from scfa_bench.measure.point import ModeMeasurement
from scfa_bench.measure.profile_call import BACKWARD_RANGE, CALL_RANGE, FORWARD_RANGE, GpuEvent
from scfa_bench.measure.stages import profile_stages
from scfa_bench.measure.timing import TimingSummary
from scfa_bench.run import profile as profile_run
from scfa_bench.suite.parse import load_suite

from ..results_factory import suite_rows, write_results

ROOT = Path(__file__).resolve().parents[3]
runner = CliRunner()


def _with_clock(rows, mhz):
    for row in rows:
        row["sm_mhz_median"] = mhz
    return rows


def test_check_warns_on_different_clocks_and_refuses_when_asked(tmp_path):
    base = write_results(tmp_path / "base.csv", _with_clock(suite_rows(seq_lens=(1024,)), 1980))
    new = write_results(tmp_path / "new.csv", _with_clock(suite_rows(seq_lens=(1024,)), 1600))
    result = runner.invoke(app, ["check", str(new), "--baseline", str(base)])
    assert result.exit_code == 0, result.output
    assert "WARNING: median SM clock 1600 MHz vs baseline 1980 MHz (-19.2%)" in result.output
    refused = runner.invoke(
        app, ["check", str(new), "--baseline", str(base), "--require-same-clocks"]
    )
    assert refused.exit_code == 2 and "--require-same-clocks" in refused.output
    strict = ["check", str(new), "--baseline", str(base), "--require-same-clocks"]
    wide = runner.invoke(app, [*strict, "--max-clock-diff", "0.25", "--json"])
    assert wide.exit_code == 0, wide.output
    clocks = json.loads(wide.output)["clocks"]
    assert clocks["differs"] is False and clocks["new_mhz"] == 1600


def test_check_without_telemetry_says_so(tmp_path):
    csv = write_results(tmp_path / "run.csv", suite_rows(seq_lens=(1024,)))
    result = runner.invoke(app, ["check", str(csv), "--baseline", str(csv)])
    assert result.exit_code == 0 and "SM clocks not compared: no telemetry" in result.output


def test_point_filters_and_task_selection():
    suite = load_suite(ROOT / "suites/hash.yaml")
    filters = profile_run.parse_point_filters(["seq_len=16384", "n_buckets=8"])
    tasks = profile_run.select_tasks(suite, [], filters, "fwd+bwd")
    assert {(t.impl, t.point.n_buckets) for t in tasks} == {
        ("scfa_hash", 8),
        ("sdpa_cudnn", None),
        ("sdpa_flash", None),
        ("flex_dense", None),
        ("fa3", None),
        ("fa4", None),
        ("limit_hash", 8),
    }
    assert all(t.point.seq_len == 16384 and t.modes == ("fwd+bwd",) for t in tasks)
    only = profile_run.select_tasks(suite, ["scfa_hash"], filters, "fwd")
    assert [t.impl for t in only] == ["scfa_hash"]
    for bad, message in (
        (["n_bucket=8"], "KEY one of seq_len"),
        (["seq_len=big"], "not a number"),
    ):
        with pytest.raises(InputError, match=message):
            profile_run.parse_point_filters(bad)
    with pytest.raises(InputError, match="no point of suite 'hash' matches"):
        profile_run.select_tasks(suite, [], {"seq_len": {3.0}}, "fwd")
    with pytest.raises(InputError, match="--impl nope: not in suite"):
        profile_run.select_tasks(suite, ["nope"], {}, "fwd")


def test_profile_needs_cuda():
    result = runner.invoke(
        app, ["profile", str(ROOT / "suites/smoke.yaml"), "--point", "seq_len=32"]
    )
    assert result.exit_code == 2 and "profile needs a CUDA device" in result.output


def _synthetic_measurement(mode: str) -> ModeMeasurement:
    events = [
        GpuEvent(CALL_RANGE, 0, 1000, annotation=True),
        GpuEvent(FORWARD_RANGE, 0, 400, annotation=True),
        GpuEvent("bucket_sort_pair_kernel", 0, 50),
        GpuEvent("sparse_attention_fwd_kernel", 60, 400),
        GpuEvent(BACKWARD_RANGE, 420, 1000, annotation=True),
        GpuEvent("sparse_attention_bwd_dkdv_kernel", 420, 800),
        GpuEvent("sparse_attention_bwd_dq_kernel", 800, 1000),
    ]
    traces = []
    profiler = SimpleNamespace(
        export_chrome_trace=lambda path: (traces.append(path), Path(path).write_text("{}"))
    )
    return ModeMeasurement(
        mode,
        "ok",
        timing=TimingSummary(1.05, 1.0, 1.1, "cuda_event"),
        stages=profile_stages(events),
        profiler=profiler,
    )


def test_profile_writes_tables_and_traces_on_a_gpu(tmp_path, monkeypatch):
    def fake_points(suite, tasks, device):
        for task in tasks:
            yield profile_run.ProfiledPoint(task, _synthetic_measurement(task.modes[0]))

    import scfa_bench.measure.envinfo as envinfo

    monkeypatch.setattr(profile_run, "profile_points", fake_points)
    monkeypatch.setattr(envinfo, "resolve_device", lambda device: "cuda")
    out = tmp_path / "profile"
    command = ["profile", str(ROOT / "suites/hash.yaml"), "--impl", "scfa_hash"]
    points = ["--point", "seq_len=16384", "--point", "n_buckets=8"]
    result = runner.invoke(app, [*command, *points, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| forward kernel | 0.340 | 35.1% |" in result.output
    assert "idle between kernels 0.030 ms" in result.output
    assert "Measured call time 1.050 ms: kernels cover 92.4%" in result.output
    stem = "scfa_hash_T16384_nb8_fwd-bwd"
    for suffix in (".md", ".csv", ".trace.json"):
        assert (out / f"{stem}{suffix}").is_file()
    index = (out / "README.md").read_text()
    assert f"[{stem}.trace.json]" in index and "# Profile of suite hash, fwd+bwd" in index


def test_list_shows_kinds():
    result = runner.invoke(app, ["list", "--device", "cpu"])
    assert result.exit_code == 0
    line = next(line for line in result.output.splitlines() if "reformer_lsh " in line)
    assert "approximate" in line


def test_a_suite_names_a_plugin_file_beside_it(tmp_path):
    (tmp_path / "my_attention.py").write_text(
        textwrap.dedent(
            """
            from scfa_kernels import reference

            def dense(q, k, v):
                import torch
                zeros = torch.zeros(q.shape[:3], dtype=torch.int32)
                return reference.hash_sparse_attention(q, k, v, zeros, zeros).to(q.dtype)

            dense.devices = ("cpu",)
            """
        )
    )
    suite = tmp_path / "plugin.yaml"
    suite.write_text(
        textwrap.dedent(
            """
            name: plugin
            shape: {batch: 1, heads: 2, head_dim: 16, dtype: fp32}
            sweep: {seq_len: [32]}
            implementations: ["my_attention.py:dense", sdpa_math]
            baseline: sdpa_math
            modes: [fwd]
            timing: {warmup_ms: 0, rep_ms: 0.000001}
            device: cpu
            """
        )
    )
    try:
        args = ["run", str(suite), "--out", str(tmp_path / "out"), "--allow-plugins"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        (csv,) = (tmp_path / "out").glob("plugin-*.csv")
        text = csv.read_text()
        assert "my_attention.py:dense,fwd" in text and ",ok," in text
    finally:
        registry.unregister("my_attention.py:dense")
