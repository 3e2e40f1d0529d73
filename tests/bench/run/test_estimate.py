"""The CPU-time estimate that guards interpreter runs, and the ETA of the progress bar."""

from __future__ import annotations

import pytest

from scfa_bench.errors import InputError
from scfa_bench.run.estimate import check_cpu_budget, format_duration, row_cpu_seconds
from scfa_bench.run.progress import eta_seconds, format_eta


def test_smoke_sized_rows_cost_under_a_second_and_long_ones_hours() -> None:
    assert 0.2 < row_cpu_seconds(1, 2, 32) < 1.5  # the smoke suite's kernel rows: ~1 s
    assert row_cpu_seconds(1, 2, 16384) > 3600  # one interpreted row of T=16384: hours
    assert row_cpu_seconds(1, 2, 16384, interpreted=False) < 60  # torch runs it natively
    assert row_cpu_seconds(1, 2, 32, window_s=0.1) == pytest.approx(row_cpu_seconds(1, 2, 32) + 0.1)
    # interpreter cost grows with T^2 per (B*H): 4x the rows' variable part at 2x T
    fixed = row_cpu_seconds(1, 1, 0)
    assert row_cpu_seconds(2, 3, 2048) - fixed == pytest.approx(
        4 * (row_cpu_seconds(2, 3, 1024) - fixed)
    )


def test_smoke_suite_estimate_is_near_its_measured_time() -> None:
    """About 25 s measured on 2 cores; the estimate must say the same order."""
    from pathlib import Path

    from scfa_bench.run.estimate import cpu_seconds, is_interpreted
    from scfa_bench.suite.grid import expand
    from scfa_bench.suite.parse import load_suite

    smoke = load_suite(Path(__file__).resolve().parents[3] / "suites/smoke.yaml")
    assert 10 < cpu_seconds(smoke, expand(smoke)) < 60  # type: ignore[operator]
    assert is_interpreted("scfa_hash") and not is_interpreted("sdpa_math")


def test_format_duration() -> None:
    assert format_duration(40) == "40 s"
    assert format_duration(600) == "10 min"
    assert format_duration(5 * 3600) == "5.0 hours"


def test_budget_check() -> None:
    check_cpu_budget(59.0, 1.0, yes=False, confirm=None)  # fits
    check_cpu_budget(None, 1.0, yes=False, confirm=None)  # not estimated (model suite)
    check_cpu_budget(7200.0, 1.0, yes=True, confirm=None)
    asked: list[str] = []
    check_cpu_budget(7200.0, 1.0, yes=False, confirm=lambda q: asked.append(q) or True)
    assert "2.0 hours" in asked[0]
    with pytest.raises(InputError, match=r"about 2\.0 hours .*budget of 1 min.*--yes"):
        check_cpu_budget(7200.0, 1.0, yes=False, confirm=None)
    with pytest.raises(InputError, match="not started"):
        check_cpu_budget(7200.0, 1.0, yes=False, confirm=lambda q: False)


def test_eta_from_the_rows_measured_in_this_run() -> None:
    assert eta_seconds(5.0, 0, 10) is None  # nothing measured yet: unknown
    assert eta_seconds(10.0, 2, 6) == pytest.approx(30.0)  # 5 s a row, 6 rows left
    assert eta_seconds(10.0, 2, 0) == 0.0
    assert format_eta(None) == "-:--:--"
    assert format_eta(3725.4) == "1:02:05"


def test_progress_bar_eta_ignores_resumed_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """2 of 10 rows resumed from the file, then 2 measured in 10 s: 6 left at 5 s each."""
    import io

    from rich.console import Console

    from scfa_bench.run import progress

    clock = iter([100.0, 110.0])

    class Clock:  # this module's clock only (rich keeps its own)
        @staticmethod
        def monotonic() -> float:
            return next(clock)

    monkeypatch.setattr(progress, "time", Clock)
    reporter = progress.RichReporter(Console(file=io.StringIO()), "t")
    reporter.start(10, 2)
    reporter.advance(2)
    reporter.stop()
    assert reporter._progress.tasks[0].fields["eta"] == "0:00:30"
