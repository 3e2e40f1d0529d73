"""One way to build the e2e tests' step configurations: each test file names its defaults once."""

from __future__ import annotations

from collections.abc import Callable

from scfa_bench.e2e.step import StepConfig


def step_config_factory(**defaults: object) -> Callable[..., StepConfig]:
    """A `config(**overrides)` that builds a StepConfig from `defaults` with `overrides` on top."""

    def config(**overrides: object) -> StepConfig:
        return StepConfig(**(defaults | overrides))

    return config
