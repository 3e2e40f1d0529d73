"""A task's call, ready to time: its inputs built, the implementation prepared on them, and the
call checked against the reference (once per task, before any mode is timed).

`build_and_check` raises what building or preparing raises; `measure.point` turns that into a
row status. A failed check is not an exception: it comes back as an `incorrect` failure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from scfa_bench.impls.base import AttentionInputs, Implementation
from scfa_bench.impls.registry import ImplSpec
from scfa_bench.measure.correctness import check_against_reference, sample_rows
from scfa_bench.measure.inputs import make_inputs
from scfa_bench.measure.metrics import density as pattern_density
from scfa_bench.suite.grid import Task
from scfa_bench.suite.schema import Suite

# (status, error, extra ModeMeasurement fields) of a task that failed before any timing.
Failure = tuple[str, str, dict[str, Any]]


@dataclass(frozen=True)
class PreparedCall:
    """A task's call, ready to time: the prepared forward, its inputs, what the check found."""

    forward: Callable[[], Tensor]
    inputs: AttentionInputs  # the inputs the call runs on (a limit's or approximation's own)
    density: float  # of the allowed pattern of the point
    check_rel_err: float | None
    approx_rel_err: float | None


def _should_check(suite: Suite, task: Task) -> bool:
    limit = suite.max_check_seq_len
    return suite.check and (limit is None or task.point.seq_len <= limit)


def build_and_check(
    suite: Suite, task: Task, spec: ImplSpec, impl: Implementation, device: str
) -> PreparedCall | Failure:
    """Inputs, the prepared call and its check against the reference (when the suite checks
    this point); an `incorrect` failure when the check fails."""
    needs_grad = spec.has_backward and any(m != "fwd" for m in task.modes)
    inputs = make_inputs(
        suite.shape,
        task.point,
        seed=suite.seed,
        device=device,
        buckets=suite.buckets,
        requires_grad=needs_grad,
    )
    allowed = pattern_density(
        q_hash=inputs.q_hash, k_hash=inputs.k_hash, q_keep=inputs.q_keep, k_keep=inputs.k_keep
    )
    # Limits and approximations compute attention over other inputs or another mask.
    effective = getattr(impl, "effective_inputs", lambda x: x)(inputs)
    forward = impl.prepare(effective)
    if hasattr(impl, "measured_density"):  # methods that choose their own keys
        allowed = float(impl.measured_density(effective))
    check_err = approx_err = None
    if _should_check(suite, task):
        check = lambda on, grads, rows: check_against_reference(
            forward,
            on,
            dtype=suite.shape.dtype,
            rows=sample_rows(rows, suite.check_rows, seed=suite.seed),
            with_grads=grads,
            seed=suite.seed,
        )
        result = check(effective, needs_grad, effective.q.shape[1])
        check_err = result.rel_err
        if not result.passed:
            return ("incorrect", result.detail, {"density": allowed, "check_rel_err": check_err})
        if spec.kind == "approximate":  # how far from the exact sparse attention
            approx_err = check(inputs, False, task.point.seq_len).rel_err
    return PreparedCall(forward, effective, allowed, check_err, approx_err)
