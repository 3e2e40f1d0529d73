"""Checks of a suite's implementations against what each declares (registry specs): the sweep
axes it uses, its head dims, devices and dtypes. Built-ins and entry points are checked when
the suite is parsed; a suite's own plugins only once registered (`impls.plugins`), since their
declarations are known only by running their code."""

from __future__ import annotations

from collections.abc import Iterable

from scfa_bench.impls.registry import ImplSpec, get_spec
from scfa_bench.suite.schema import Shape, Suite, Sweep
from scfa_bench.suite.validator import Validator


def check_axes(v: Validator, impl: str, axes: Iterable[str], sweep: Sweep) -> None:
    """The sweep has every axis `impl` uses."""
    for axis in axes:
        if sweep.values(axis) is None:
            raise v.fail(
                "sweep", f"implementation {impl!r} uses axis {axis!r}, so sweep.{axis} is required"
            )


def check_supported(v: Validator, spec: ImplSpec, where: str, shape: Shape, device: str) -> None:
    """Reject what the implementation declares it cannot do (on the suite's device if named);
    what only another machine lacks is marked `unavailable` at run time instead."""
    problem = spec.head_dim_problem(shape.head_dim)
    if problem:
        raise v.fail("shape.head_dim", f"{problem}, got {shape.head_dim} ({where})")
    if device != "auto" and device not in spec.devices:
        problem = f"{spec.name} runs on {', '.join(spec.devices)}, not on {device}"
        raise v.fail("device", f"{problem} ({where})")
    problem = spec.dtype_problem(shape.dtype, None if device == "auto" else device)
    if problem:
        raise v.fail("shape.dtype", f"{problem} ({where})")


def check_registered(suite: Suite, names: Iterable[str]) -> None:
    """The parse-time checks for implementations registered after parsing (a suite's plugins):
    InputError naming the suite file and the implementation's key path."""
    v = Validator(suite.source or "<suite>", {})
    wanted = set(names)
    for i, impl in enumerate(suite.implementations):
        if impl not in wanted:
            continue
        spec = get_spec(impl)
        check_axes(v, impl, spec.axes, suite.sweep)
        if suite.shape is not None:
            check_supported(v, spec, f"implementations[{i}]", suite.shape, suite.device)
