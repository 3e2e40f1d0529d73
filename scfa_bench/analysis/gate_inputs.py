"""What the gate checks about its two runs before comparing rows: wall-clock timings, the
same clock on both sides, and whether both measured the same kernels.

Wall-clock (CPU, Triton interpreter) times of one machine vary by large factors between runs
(two consecutive smoke runs on one machine differed up to 347x on one row), so the gate refuses them
unless asked, and then uses a wider threshold. A baseline recorded on other kernels
(`kernels_hash` in the meta differs, or `hopper_kernels_hash`: whether the run took the
opt-in Hopper path, and on which of its kernels) is stale: a warning, or bad input when
required.
"""

from __future__ import annotations

from scfa_bench.constants import HOPPER_OFF, WALL_CLOCK_WARNING
from scfa_bench.errors import InputError
from scfa_bench.results.reader import Results

DEFAULT_MAX_SLOWDOWN = 0.10
DEFAULT_WALL_CLOCK_MAX_SLOWDOWN = 0.5


def threshold_for(
    new: Results, base: Results, max_slowdown: float | None, allow_wall_clock: bool
) -> float:
    """The slowdown threshold to gate with; InputError for wall-clock runs unless allowed."""
    wall_clock = [r.path for r in (new, base) if r.wall_clock]
    if wall_clock and not allow_wall_clock:
        names = " and ".join(str(p) for p in wall_clock)
        raise InputError(
            f"{names}: {WALL_CLOCK_WARNING}; such times vary too much between runs to gate on "
            f"(pass --allow-wall-clock to gate anyway, threshold "
            f"{DEFAULT_WALL_CLOCK_MAX_SLOWDOWN} unless --max-slowdown is given)"
        )
    if max_slowdown is not None:
        return max_slowdown
    return DEFAULT_WALL_CLOCK_MAX_SLOWDOWN if wall_clock else DEFAULT_MAX_SLOWDOWN


def check_same_clock(new: Results, base: Results) -> None:
    """InputError when a row is ok in both runs but was timed with different clocks: a do_bench
    time includes the host's launch cost and a CUDA-graph replay does not, so on short calls
    they differ by more than any threshold. (A row keeps do_bench's clock in a graph-timed
    suite when its call cannot be captured: it must do so in both runs.)"""
    base_timers = {r.key: r.timer for r in base.ok_rows}
    differing = [
        f"{r.key.label()} ({base_timers[r.key]} in the baseline, {r.timer} now)"
        for r in new.ok_rows
        if r.key in base_timers and base_timers[r.key] != r.timer
    ]
    if differing:
        shown = "; ".join(differing[:3]) + (
            f"; and {len(differing) - 3} more" if len(differing) > 3 else ""
        )
        raise InputError(
            f"{new.path} and baseline {base.path} timed {len(differing)} rows with different "
            f"clocks, which are not comparable: {shown}. Does the suite's timing.cuda_graph "
            "differ? Re-record the baseline with the same suite"
        )


def _kernels_hash(results: Results) -> str | None:
    value = results.meta.get("kernels_hash")
    return value if isinstance(value, str) and value and value != "n/a" else None


def _hopper_kernels(results: Results) -> str:
    """The Hopper path a run took: its kernels' hash, or "off" (also for runs recorded
    before the meta said)."""
    value = results.meta.get("hopper_kernels_hash")
    return value if isinstance(value, str) and value else HOPPER_OFF


def kernels_warning(new: Results, base: Results, require_same: bool) -> str | None:
    """A warning when the baseline's kernels_hash differs from NEW's or is missing, or when
    the two took the Hopper path differently; with `require_same` an InputError instead."""
    base_hash, new_hash = _kernels_hash(base), _kernels_hash(new)
    base_hopper, new_hopper = _hopper_kernels(base), _hopper_kernels(new)
    if base_hash is not None and base_hash == new_hash and base_hopper == new_hopper:
        return None
    if base_hash is None:
        problem = f"baseline {base.path} records no kernels_hash (recorded before it existed?)"
    elif new_hash is None:
        problem = f"{new.path} records no kernels_hash"
    elif base_hash != new_hash:
        problem = (
            f"baseline {base.path} was measured on other kernels (kernels_hash "
            f"{base_hash[:12]}, now {new_hash[:12]})"
        )
    else:
        problem = (
            f"baseline {base.path} was measured on another Hopper path (hopper_kernels_hash "
            f"{base_hopper[:12]}, now {new_hopper[:12]}; SCFA_HOPPER=1 asks for it)"
        )
    advice = "re-record the baseline on the current kernels"
    if require_same:
        raise InputError(f"{problem}; {advice} (--require-same-kernels)")
    return f"warning: {problem}; {advice}"
