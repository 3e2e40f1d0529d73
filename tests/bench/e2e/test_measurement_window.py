"""The timed window of a model step on a GPU starts as a training loop's steady state does:
LEAD_STEPS untimed steps follow the synchronisation, so the host is ahead of the GPU when the
first timed step begins. Checked with CUDA's events and synchronisation replaced by a log."""

from __future__ import annotations

import pytest
import torch

from scfa_bench.constants import LEAD_STEPS
from scfa_bench.e2e import measurement


class _Event:
    def __init__(self, log: list[str], **_: object) -> None:
        self.log = log

    def record(self) -> None:
        self.log.append("record")

    def elapsed_time(self, _other: object) -> float:
        return 1.0


@pytest.fixture
def cuda_log(monkeypatch) -> list[str]:
    log: list[str] = []
    monkeypatch.setattr(torch.cuda, "Event", lambda **kw: _Event(log, **kw))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *_: log.append("sync"))
    return log


def test_lead_steps_run_between_the_sync_and_the_first_timed_step(cuda_log) -> None:
    def run() -> torch.Tensor:
        cuda_log.append("step")
        return torch.zeros(())

    samples, _loss = measurement._time_steps(run, 3, "cuda")
    assert LEAD_STEPS >= 1 and samples == [1.0] * 3
    timed = ["record", "step", "record"] * 3
    assert cuda_log == ["sync"] + ["step"] * LEAD_STEPS + timed + ["sync"]


def test_the_cpu_runs_the_lead_steps_too_and_times_the_rest_by_the_wall_clock() -> None:
    calls = []
    samples, _loss = measurement._time_steps(lambda: calls.append(1) or torch.zeros(()), 4, "cpu")
    assert len(samples) == 4 and len(calls) == 4 + LEAD_STEPS
