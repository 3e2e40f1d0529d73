"""Out of memory is `oom` on every device: CUDA's OutOfMemoryError, Python's MemoryError and
the CPU allocator's RuntimeError (CPU OOM was once recorded as `unavailable` / `error`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from torch import Tensor

from scfa_bench.impls import registry
from scfa_bench.impls.base import AttentionInputs, is_out_of_memory
from scfa_bench.impls.sdpa import SdpaMath
from scfa_bench.measure.point import measure_task
from scfa_bench.suite.grid import expand
from scfa_bench.suite.parse import parse_suite

# The message torch's CPU allocator raises (c10/core/impl/alloc_cpu.cpp).
CPU_ALLOC = "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried to allocate 8000000000000 bytes. Error code 12 (Cannot allocate memory)"  # noqa: E501


class RaisesIn:
    def __init__(self, where: str, exc: BaseException) -> None:
        self.where, self.exc = where, exc

    def available(self, device: str) -> tuple[bool, str]:
        return True, ""

    def prepare(self, inputs: AttentionInputs) -> Callable[[], Tensor]:
        if self.where == "prepare":
            raise self.exc

        def forward() -> Tensor:
            raise self.exc

        return forward


CASES = {
    "oom_memoryerror_prepare": ("prepare", MemoryError()),
    "oom_alloc_prepare": ("prepare", RuntimeError(CPU_ALLOC)),
    "oom_alloc_forward": ("forward", RuntimeError(CPU_ALLOC)),
    "oom_memoryerror_forward": ("forward", MemoryError("simulated")),
    "plain_runtime_error": ("forward", RuntimeError("shape mismatch")),
}


@pytest.fixture(autouse=True, scope="module")
def fakes() -> Iterator[None]:
    for name, (where, exc) in CASES.items():
        factory = lambda w=where, e=exc: RaisesIn(w, e)
        registry.register(name=name, pattern="dense", devices=("cpu",))(factory)
    yield
    for name in CASES:
        registry.unregister(name)


def statuses(impl: str, check: bool) -> dict[str, tuple[str, str]]:
    suite = parse_suite(
        {
            "name": "oom",
            "shape": {"batch": 1, "heads": 1, "head_dim": 16, "dtype": "fp32"},
            "sweep": {"seq_len": [16]},
            "implementations": [impl],
            "timing": {"warmup_ms": 0, "rep_ms": 1e-6},
            "check": check,
            "device": "cpu",
        }
    )
    (task,) = expand(suite)
    return {m.mode: (m.status, m.error) for m in measure_task(suite, task, "cpu")}


@pytest.mark.parametrize("impl", [n for n in CASES if n.startswith("oom_")])
@pytest.mark.parametrize("check", [True, False])
def test_cpu_out_of_memory_is_oom(impl: str, check: bool) -> None:
    result = statuses(impl, check)
    assert {s for s, _ in result.values()} == {"oom"}, result
    assert len(result) == 3


def test_other_runtime_errors_stay_error() -> None:
    result = statuses("plain_runtime_error", check=False)
    assert {s for s, _ in result.values()} == {"error"}
    assert "shape mismatch" in result["fwd"][1]


def test_is_out_of_memory() -> None:
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError(CPU_ALLOC))
    assert not is_out_of_memory(RuntimeError("No available kernel. Aborting execution."))
    assert not is_out_of_memory(ValueError("can't allocate memory"))  # not the allocator


def test_sdpa_probe_passes_allocator_oom_through(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDPA probe turns "No available kernel" into `unavailable`, but not an OOM."""

    def no_memory(*args: object, **kwargs: object) -> Tensor:
        raise RuntimeError(CPU_ALLOC)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", no_memory)
    q = torch.zeros(1, 8, 1, 16)
    with pytest.raises(RuntimeError, match="can't allocate"):
        SdpaMath().prepare(AttentionInputs(q, q, q))
