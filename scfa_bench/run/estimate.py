"""How long an attention suite would take on the CPU, where Triton's interpreter runs the
kernels, and the guard that asks before a run longer than the budget starts.

The interpreter runs every program of the grid in Python: B*H*(T/block) programs of T/block
steps each, so a row costs about B*H*T^2 times a constant, plus a fixed part (inputs, check,
timing loop). Calibrated on the CPU smoke suite (B=1, H=2, T 32-48, 42 rows: about 25 s on 2
cores); an estimate, within a factor of a few, enough to tell seconds from hours.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from scfa_bench.errors import InputError
from scfa_bench.suite.grid import Task
from scfa_bench.suite.schema import Suite

_ROW_FIXED_S = 0.25
_S_PER_BHT2 = 1.0e-4  # interpreter seconds per (batch * heads * seq_len^2) of one row


def row_cpu_seconds(batch: int, heads: int, seq_len: int) -> float:
    """Predicted seconds of one row (one mode of one point) on the CPU."""
    return _ROW_FIXED_S + _S_PER_BHT2 * batch * heads * seq_len**2


def cpu_seconds(suite: Suite, tasks: Sequence[Task]) -> float | None:
    """Predicted seconds of `tasks` on the CPU; None for a model suite (not estimated)."""
    if suite.shape is None:
        return None
    shape = suite.shape
    return sum(
        len(t.modes) * row_cpu_seconds(shape.batch, shape.heads, t.point.seq_len) for t in tasks
    )


def format_duration(seconds: float) -> str:
    """`40 s`, `12 min`, `3.5 hours`: the unit a reader takes in at a glance."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:,.1f} hours"


def check_cpu_budget(
    seconds: float | None,
    budget_minutes: float,
    *,
    yes: bool,
    confirm: Callable[[str], bool] | None,
) -> None:
    """Go on when the estimate fits the budget, `yes` was given, or `confirm` (a question to
    the user; None when nobody can answer) says so; InputError with the estimate otherwise."""
    if seconds is None or yes or seconds <= budget_minutes * 60:
        return
    text = (
        f"this run is predicted to take about {format_duration(seconds)} on the CPU (Triton's "
        f"interpreter), over the budget of {budget_minutes:g} min"
    )
    if confirm is not None and confirm(f"{text}. Run it anyway?"):
        return
    raise InputError(
        f"{text}; not started. Pass --yes (or a larger --max-cpu-minutes) to run it, "
        "or shrink the grid"
    )
