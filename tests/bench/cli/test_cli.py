"""The CLI end to end: smoke suite through the interpreter, exit codes, validate, list, env."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scfa_bench.cli import app
from scfa_bench.impls import registry
from scfa_bench.results.meta import meta_path_for
from scfa_bench.results.reader import read_results
from scfa_bench.results.row import COLUMNS, ResultRow


def read_rows(path: Path) -> list[ResultRow]:
    return list(read_results(path).rows)


ROOT = Path(__file__).resolve().parents[3]
runner = CliRunner()


@pytest.mark.slow
def test_smoke_suite_end_to_end(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(ROOT / "suites/smoke.yaml"), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    csvs = list(tmp_path.glob("smoke-*.csv"))
    assert len(csvs) == 1
    rows = read_rows(csvs[0])
    assert {r.status for r in rows} == {"ok"}, [(r.impl, r.error) for r in rows if r.error]
    assert {r.mode for r in rows} == {"fwd", "bwd", "fwd+bwd"}
    assert {"scfa_hash", "scfa_qk", "naive_hash", "naive_qk", "sdpa_math"} == {r.impl for r in rows}
    assert all(r.timer == "wall_clock" and r.check_rel_err is not None for r in rows)
    assert all(r.speedup is not None for r in rows)  # sdpa_math baseline at every seq_len
    meta = json.loads(meta_path_for(csvs[0]).read_text())
    assert meta["suite_name"] == "smoke" and meta["baseline"] == "sdpa_math"
    assert "speedup over sdpa_math" in result.output
    assert csvs[0].read_text().splitlines()[0] == ",".join(COLUMNS)


def test_dry_run_prints_grid_size(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["run", str(ROOT / "suites/hash.yaml"), "--dry-run", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    # 6 seq_len x (6 bucket counts x 2 hash-sparse (scfa_hash, limit_hash) + 5 dense), 3 modes
    assert "102 of 102 tasks" in result.output and "306 result rows" in result.output
    assert not list(tmp_path.iterdir())  # nothing written


def test_invalid_suite_exits_2_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "suites/smoke.yaml").read_text().replace("[32, 48]", "[32, -48]"))
    for command in (["run", str(bad)], ["validate", str(bad)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2
        assert "sweep.seq_len[1]" in result.output and "Traceback" not in result.output


def test_missing_suite_and_bad_option_exit_2(tmp_path: Path) -> None:
    assert runner.invoke(app, ["run", str(tmp_path / "nope.yaml")]).exit_code == 2
    smoke = str(ROOT / "suites/smoke.yaml")
    assert runner.invoke(app, ["run", smoke, "--device", "tpu"]).exit_code == 2
    assert runner.invoke(app, ["run", smoke, "--no-such-option"]).exit_code == 2


class _Wrong:
    def available(self, device: str) -> tuple[bool, str]:
        return True, ""

    def prepare(self, inputs):
        return lambda: inputs.q.float() * 0 + 1  # not attention


@pytest.fixture
def wrong_impl():
    registry.register(name="cli_wrong", pattern="dense", devices=("cpu",))(_Wrong)
    yield "cli_wrong"
    registry.unregister("cli_wrong")


def test_incorrect_rows_exit_1(tmp_path: Path, wrong_impl: str) -> None:
    suite = tmp_path / "wrong.yaml"
    suite.write_text(
        "name: wrong\nshape: {batch: 1, heads: 1, head_dim: 16, dtype: fp32}\n"
        f"sweep: {{seq_len: [16]}}\nimplementations: [{wrong_impl}]\nmodes: [fwd]\n"
        "timing: {warmup_ms: 0, rep_ms: 1}\n"
    )
    result = runner.invoke(app, ["run", str(suite), "--out", str(tmp_path), "--no-progress"])
    assert result.exit_code == 1, result.output
    assert "incorrect" in result.output


def test_validate_list_env() -> None:
    result = runner.invoke(app, ["validate", *map(str, sorted((ROOT / "suites").glob("*.yaml")))])
    assert result.exit_code == 0 and result.output.count("ok: ") >= 7
    result = runner.invoke(app, ["list", "--device", "cpu"])
    assert result.exit_code == 0
    for name in ("scfa_hash", "sdpa_cudnn", "flex_dense", "naive_qk"):
        assert name in result.output
    result = runner.invoke(app, ["env"])
    assert result.exit_code == 0 and "torch" in result.output and "nvml" in result.output


class _Interrupts:
    def available(self, device: str) -> tuple[bool, str]:
        return True, ""

    def prepare(self, inputs):
        raise KeyboardInterrupt


def test_ctrl_c_exits_130_and_keeps_the_csv(tmp_path: Path) -> None:
    registry.register(name="cli_interrupts", pattern="dense", devices=("cpu",))(_Interrupts)
    try:
        suite = tmp_path / "stop.yaml"
        suite.write_text(
            "name: stop\nshape: {batch: 1, heads: 1, head_dim: 16, dtype: fp32}\n"
            "sweep: {seq_len: [16]}\nimplementations: [sdpa_math, cli_interrupts]\n"
            "modes: [fwd]\ntiming: {warmup_ms: 0, rep_ms: 1}\n"
        )
        result = runner.invoke(app, ["run", str(suite), "--out", str(tmp_path), "--no-progress"])
    finally:
        registry.unregister("cli_interrupts")
    assert result.exit_code == 130, result.output
    rows = read_rows(next(tmp_path.glob("stop-*.csv")))
    assert [(r.impl, r.status) for r in rows] == [("sdpa_math", "ok")]  # the finished row


TINY = (
    "name: tiny\nshape: {batch: 1, heads: 1, head_dim: 16, dtype: fp32}\n"
    "sweep: {seq_len: [16]}\nimplementations: [sdpa_math]\nmodes: [fwd, bwd]\n"
    "timing: {warmup_ms: 0, rep_ms: 1}\ndevice: cpu\n"
)


def _failing_meta_writes(monkeypatch: pytest.MonkeyPatch, after: int) -> None:
    """Meta writes fail (full disk) from the `after`+1-th on; the CSV's writes still work."""
    from scfa_bench.results import meta as meta_module

    real, calls = meta_module.replace_file, []

    def replace_file(path: Path, data: bytes) -> None:
        calls.append(path)
        if len(calls) > after:
            raise OSError(28, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(meta_module, "replace_file", replace_file)


def test_a_meta_that_cannot_be_written_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The end of the run cannot be recorded: exit 2 and a message saying the meta still
    says `running`, though every row is in the CSV."""
    suite = tmp_path / "tiny.yaml"
    suite.write_text(TINY)
    _failing_meta_writes(monkeypatch, after=1)  # the start is recorded, the end is not
    result = runner.invoke(app, ["run", str(suite), "--out", str(tmp_path), "--no-progress"])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "meta was not written" in text and "No space left on device" in text
    assert "still says state `running`" in text and "Traceback" not in text
    assert len(read_rows(next(tmp_path.glob("tiny-*.csv")))) == 2


def test_a_failed_run_says_its_meta_was_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CSV write fails (full disk) and so does the meta's: the one error line names both."""
    from scfa_bench.results import writer

    suite = tmp_path / "tiny.yaml"
    suite.write_text(TINY)
    _failing_meta_writes(monkeypatch, after=1)

    def full(self, row) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer.ResultWriter, "write", full)
    result = runner.invoke(app, ["run", str(suite), "--out", str(tmp_path), "--no-progress"])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "cannot write" in text and "meta was not written" in text


def test_list_fits_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    long = [line for line in result.output.splitlines() if len(line) > 80]
    assert not long, "\n".join(long)
    # one line per implementation: name, pattern, kind and devices, nothing folded
    line = next(x for x in result.output.splitlines() if "scfa_hash " in x)
    assert all(cell in line for cell in ("hash", "exact", "cuda, cpu"))
    assert len(result.output.splitlines()) < 2 * len(registry.all_specs()) + 30
    details = runner.invoke(app, ["list", "--details", "--device", "cpu"])
    assert details.exit_code == 0 and "availability on cpu" in details.output


def test_a_long_cpu_run_is_refused_with_its_estimate(tmp_path: Path) -> None:
    """On the CPU, without a terminal to ask, a run predicted past the budget exits 2 at once
    with the estimate (the smoke suite at T=16384: days of interpreter time); a dry run
    measures nothing and is never refused."""
    smoke = (ROOT / "suites/smoke.yaml").read_text()
    suite = tmp_path / "long.yaml"
    suite.write_text(smoke.replace("seq_len: [32, 48]", "seq_len: [16384]"))
    args = ["run", str(suite), "--out", str(tmp_path / "r"), "--no-progress", "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "hours on the CPU" in text and "--yes" in text and "not started" in text
    assert not (tmp_path / "r").exists()  # nothing written
    assert runner.invoke(app, [*args, "--dry-run"]).exit_code == 0
    small = tmp_path / "small.yaml"
    small.write_text(smoke)  # about 25 s predicted: past a budget of 6 s
    args[1] = str(small)
    result = runner.invoke(app, [*args, "--max-cpu-minutes", "0.1"])
    assert result.exit_code == 2 and "budget of 0.1 min" in " ".join(result.output.split())


PLUGIN = """
import torch

def dense(q, k, v):  # (batch, seq, heads, dim), as the kernels take them
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    return out.transpose(1, 2)

dense.devices = ("cpu",)
"""


@pytest.fixture
def plugin_suite(tmp_path: Path):
    """A suite naming a file plugin beside it; the registry is restored afterwards."""
    (tmp_path / "mine.py").write_text(PLUGIN)
    suite = tmp_path / "plug.yaml"
    suite.write_text(TINY.replace("[sdpa_math]", "[sdpa_math, 'mine.py:dense']"))
    before = set(registry.all_specs())
    yield suite
    for name in set(registry.all_specs()) - before:
        registry.unregister(name)


def test_plugins_run_only_with_allow_plugins(plugin_suite: Path, tmp_path: Path) -> None:
    args = ["run", str(plugin_suite), "--out", str(tmp_path / "r"), "--no-progress"]
    dry = runner.invoke(app, [*args, "--dry-run"])  # parsing and the grid import nothing
    assert dry.exit_code == 0 and "mine.py:dense" in dry.output, dry.output
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "--allow-plugins" in refused.output
    assert "mine.py:dense" in refused.output and not (tmp_path / "r").exists()
    result = runner.invoke(app, [*args, "--allow-plugins"])
    assert result.exit_code == 0, result.output
    rows = read_rows(next((tmp_path / "r").glob("tiny-*.csv")))
    assert {(r.impl, r.status) for r in rows} == {("sdpa_math", "ok"), ("mine.py:dense", "ok")}


def test_unused_sweep_axis_is_a_warning_once(tmp_path: Path) -> None:
    suite = tmp_path / "w.yaml"
    suite.write_text(
        TINY.replace("sweep: {seq_len: [16]}", "sweep: {seq_len: [16], n_buckets: [2]}")
    )
    for command in (["validate", str(suite)], ["run", str(suite), "--dry-run"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 0, result.output
        text = " ".join(result.output.split())
        assert text.count("sweep.n_buckets") == 1 and "warning: no listed implementation" in text
