"""What the gate checks about its two runs before comparing rows: wall-clock timings, the
same clock on both sides, and whether both measured the same kernels.

Wall-clock (CPU, Triton interpreter) times of one machine vary by large factors between runs
(two consecutive smoke runs differed up to 347x on one row, issue 12), so the gate refuses them
unless asked, and then uses a wider threshold. A baseline recorded on other kernels
(`kernels_hash` in the meta differs) is stale: a warning, or bad input when required.
"""

from __future__ import annotations

from scfa_bench.constants import WALL_CLOCK_WARNING
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
    """InputError when the two runs timed their rows with different clocks: a do_bench time
    includes the host's launch cost and a CUDA-graph replay does not, so they differ by more
    than any threshold on short calls."""
    new_timers = sorted({r.timer for r in new.ok_rows})
    base_timers = sorted({r.timer for r in base.ok_rows})
    if new_timers and base_timers and new_timers != base_timers:
        raise InputError(
            f"{new.path} was timed with {'/'.join(new_timers)} and baseline {base.path} with "
            f"{'/'.join(base_timers)}; times of different clocks are not comparable (the suite's "
            "timing.cuda_graph differs?): re-record the baseline with the same suite"
        )


def _kernels_hash(results: Results) -> str | None:
    value = results.meta.get("kernels_hash")
    return value if isinstance(value, str) and value and value != "n/a" else None


def kernels_warning(new: Results, base: Results, require_same: bool) -> str | None:
    """A warning when the baseline's kernels_hash differs from NEW's or is missing; with
    `require_same` an InputError instead."""
    base_hash, new_hash = _kernels_hash(base), _kernels_hash(new)
    if base_hash is not None and base_hash == new_hash:
        return None
    if base_hash is None:
        problem = f"baseline {base.path} records no kernels_hash (recorded before it existed?)"
    elif new_hash is None:
        problem = f"{new.path} records no kernels_hash"
    else:
        problem = (
            f"baseline {base.path} was measured on other kernels (kernels_hash "
            f"{base_hash[:12]}, now {new_hash[:12]})"
        )
    advice = "re-record the baseline on the current kernels"
    if require_same:
        raise InputError(f"{problem}; {advice} (--require-same-kernels)")
    return f"warning: {problem}; {advice}"
