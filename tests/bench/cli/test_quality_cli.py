"""`plot` and `report` take a training suite's CSV too (the quality figures and report)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from scfa_bench.cli import app


def test_plot_and_report_dispatch_a_quality_csv(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "run"
    done = runner.invoke(
        app, ["run", "suites/quality_smoke.yaml", "--out", str(out), "--no-progress"]
    )
    assert done.exit_code == 0, done.output
    csv = next(out.glob("quality_smoke-*.csv"))
    plotted = runner.invoke(app, ["plot", str(csv), "--out", str(tmp_path / "rep")])
    assert plotted.exit_code == 0, plotted.output
    names = {p.name for p in (tmp_path / "rep").glob("*.png")}
    assert names == {"loss_vs_tokens.png", "loss_vs_seconds.png", "loss_by_position.png"}
    reported = runner.invoke(app, ["report", str(csv), "--out", str(tmp_path / "rep")])
    assert reported.exit_code == 0, reported.output
    text = (tmp_path / "rep" / "README.md").read_text()
    assert "time-to-quality speedup" in text and "| dense |" in text
