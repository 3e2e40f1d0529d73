"""How long an attention suite would take on the CPU, where Triton's interpreter runs the
kernels, and the guard that asks before a run longer than the budget starts.

The interpreter runs every program of a Triton kernel's grid in Python: B*H*(T/block)
programs of T/block steps each, so a row of our kernels costs about B*H*T^2 times a constant;
the other implementations run natively in torch, some thousand times faster per pair. Every
row adds a fixed part (inputs, check) and its timing window. Calibrated on the CPU smoke suite
(B=1, H=2, T 32-48, 42 rows of which 18 interpreted: about 25 s on 2 cores); an estimate
within a factor of a few, enough to tell seconds from hours.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from scfa_bench.errors import InputError
from scfa_bench.impls.registry import all_specs
from scfa_bench.suite.grid import Task
from scfa_bench.suite.schema import Suite

_ROW_FIXED_S = 0.25
_S_PER_BHT2 = 2.5e-4  # interpreter seconds per (batch * heads * seq_len^2) of one row
_NATIVE_S_PER_BHT2 = 3e-8  # the same for an implementation torch runs natively
# Where our Triton kernels are registered: on the CPU they run through the interpreter.
_INTERPRETED_MODULE = "scfa_bench.impls.scfa"


def row_cpu_seconds(
    batch: int, heads: int, seq_len: int, *, interpreted: bool = True, window_s: float = 0.0
) -> float:
    """Predicted seconds of one row (one mode of one point) on the CPU; `window_s`: the
    suite's warmup and timing window."""
    per_pair = _S_PER_BHT2 if interpreted else _NATIVE_S_PER_BHT2
    return _ROW_FIXED_S + window_s + per_pair * batch * heads * seq_len**2


def is_interpreted(impl: str) -> bool:
    """Whether the implementation is one of our Triton kernels (plugins count as native)."""
    spec = all_specs().get(impl)
    return spec is not None and getattr(spec.factory, "__module__", "") == _INTERPRETED_MODULE


def cpu_seconds(suite: Suite, tasks: Sequence[Task]) -> float | None:
    """Predicted seconds of `tasks` on the CPU; None for a model suite (not estimated)."""
    if suite.shape is None:
        return None
    shape = suite.shape
    window_s = (suite.timing.warmup_ms + suite.timing.rep_ms) / 1000.0
    interpreted = {t.impl: is_interpreted(t.impl) for t in tasks}
    return sum(
        len(t.modes)
        * row_cpu_seconds(
            shape.batch,
            shape.heads,
            t.point.seq_len,
            interpreted=interpreted[t.impl],
            window_s=window_s,
        )
        for t in tasks
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
