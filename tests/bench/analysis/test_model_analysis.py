"""Model-suite rows through the analysis: the gate, the report's model section, the plots."""

from __future__ import annotations

from pathlib import Path

import pytest

from scfa_bench.analysis import gate, plot_plan, report
from scfa_bench.analysis.frame import prepare
from scfa_bench.analysis.gate import Verdict
from scfa_bench.results.reader import read_results

from ..results_factory import GPT2_SMALL_LABEL, default_meta, model_rows, write_results

COMPILED_HASH = {"impl": "scfa_hash", "seq_len": 16384, "compile": "true"}


def _slower(rows: list[dict], factor: float, **match: str | int) -> list[dict]:
    (row,) = [r for r in rows if all(r[k] == v for k, v in match.items())]
    for column in ("ms_median", "ms_q20", "ms_q80"):
        row[column] *= factor
    return rows


def test_a_slower_model_step_fails_the_gate(tmp_path: Path) -> None:
    base = write_results(tmp_path / "base.csv", model_rows())
    new = write_results(tmp_path / "new.csv", _slower(model_rows(), 1.25, **COMPILED_HASH))
    result = gate.compare(new, base)
    assert result.exit_code == 1
    (regression,) = result.regressions
    assert regression.key.label() == (
        f"scfa_hash nb=8 T=16384 compiled step {GPT2_SMALL_LABEL} B=1 H=12 D=64 bf16"
    )
    assert {r.verdict for r in result.rows} == {Verdict.REGRESSION, Verdict.NOISE}


def test_identical_model_runs_pass_the_gate(tmp_path: Path) -> None:
    base = write_results(tmp_path / "base.csv", model_rows())
    new = write_results(tmp_path / "new.csv", model_rows())
    result = gate.compare(new, base)
    assert result.passed and len(result.rows) == len(model_rows())


def test_a_model_row_that_ran_out_of_memory_fails_the_gate(tmp_path: Path) -> None:
    rows = model_rows()
    (row,) = [r for r in rows if all(r[k] == v for k, v in COMPILED_HASH.items())]
    row.update(status="oom", error="CUDA out of memory", ms_median="", ms_q20="", ms_q80="")
    base = write_results(tmp_path / "base.csv", model_rows())
    result = gate.compare(write_results(tmp_path / "new.csv", rows), base)
    assert [r.verdict for r in result.rows if r.verdict != Verdict.NOISE] == [Verdict.LOST]


@pytest.fixture(scope="module")
def model_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("model_report")
    meta = default_meta(shape=None, model={"label": GPT2_SMALL_LABEL, "layers": 12})
    csv = write_results(tmp / "run.csv", model_rows(), meta=meta)
    path = report.write_report(prepare(read_results(csv)), tmp / "out")
    return csv, path.read_text(encoding="utf-8")


def test_model_rows_are_grouped_by_model_and_compile_not_by_batch(model_report) -> None:
    csv, _ = model_report
    groups = plot_plan.shape_groups(prepare(read_results(csv)).frame)
    assert [g.label() for g in groups] == [
        f"{GPT2_SMALL_LABEL} bf16, eager",
        f"{GPT2_SMALL_LABEL} bf16, compiled",
    ]
    stems = {spec.stem for spec in plot_plan.plan_figures(prepare(read_results(csv)))}
    assert f"runtime_step_{GPT2_SMALL_LABEL}-bf16-compiled" in stems
    assert f"speedup_step_{GPT2_SMALL_LABEL}-bf16-eager" in stems


def test_report_has_a_model_steps_table(model_report) -> None:
    _, text = model_report
    assert "## Model steps" in text
    assert f"### {GPT2_SMALL_LABEL} bf16, compiled, step" in text
    header = "| impl | point | T | B | ms median [q20, q80] | GPU ms | tokens/s | peak MiB |"
    assert header in text
    rows = {(r["impl"], r["seq_len"], r["compile"]): r for r in model_rows()}
    eager_hash = rows[("scfa_hash", 16384, "false")]
    eager_base = rows[("sdpa_cudnn", 16384, "false")]
    # The eager table comes first; its line for the hash row carries share and speedup.
    prefix = "| scfa_hash | nb=8 | 16384 | 1 |"
    line = next(ln for ln in text.splitlines() if ln.startswith(prefix))
    assert f"| {eager_hash['gpu_ms']:.4g} |" in line
    assert line.endswith(
        f"| {eager_hash['attention_share']:.0%} "
        f"| {eager_base['ms_median'] / eager_hash['ms_median']:.2f}x |"
    )
    assert "| model | label=" in text  # the meta's model in the environment table


def test_attention_only_reports_have_no_model_section(tmp_path: Path) -> None:
    from ..results_factory import suite_rows

    csv = write_results(tmp_path / "run.csv", suite_rows(seq_lens=(1024,), modes=("fwd",)))
    text = report.render_report(prepare(read_results(csv)), [], tmp_path)
    assert "## Model steps" not in text
