"""`tools/gpu_host_cost_probe.py`: its launch recorder, on stand-in kernels (the probe itself
needs a GPU), and the package's kernels it finds."""

from __future__ import annotations

from .tool_loader import load_tool


class StandIn:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def run(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return len(self.calls)

    def __getitem__(self, grid):  # as Triton's kernel[grid](...) does
        return lambda *args, **kwargs: self.run(*args, grid=grid, warmup=False, **kwargs)


def test_launches_are_recorded_passed_through_and_unwrapped_afterwards() -> None:
    a, b = StandIn(), StandIn()
    recorder = load_tool("gpu_host_cost_probe").LaunchRecorder({"a_kernel": a, "b_kernel": b})
    with recorder.recording():
        assert a[(4,)](1, 2, BLOCK=16) == 1
        b[(8,)](3)
        a[(4,)](5)
    assert recorder.counts() == {"a_kernel": 2, "b_kernel": 1}
    name, args, kwargs = recorder.launches[0]
    assert (name, args) == ("a_kernel", (1, 2))
    assert kwargs == {"grid": (4,), "warmup": False, "BLOCK": 16}
    assert len(a.calls) == 2 and len(b.calls) == 1  # the real launches still happened
    assert "run" not in vars(a) and "run" not in vars(b)  # the wrappers are gone
    a[(1,)](0)
    assert len(recorder.launches) == 3


def test_every_kernel_of_the_package_is_found() -> None:
    found = load_tool("gpu_host_cost_probe").our_kernels()
    for name in (
        "sparse_attention_fwd_kernel",
        "sparse_attention_fwd_combine_kernel",
        "attention_bwd_delta_kernel",
        "sparse_attention_bwd_dkdv_kernel",
        "sparse_attention_bwd_dq_kernel",
        "sparse_attention_bwd_store_rows_kernel",
        "query_tile_ranges_kernel",
        "key_tile_ranges_kernel",
        "bucket_histogram_kernel",
        "bucket_scatter_kernel",
    ):
        assert name in found, name


class Event:
    def __init__(self, name: str, us: float, device: str = "DeviceType.CPU") -> None:
        self.name, self.cpu_time_total, self.device_type = name, us, device


def test_api_census_counts_runtime_and_driver_calls_per_call() -> None:
    events = [
        Event("cuLaunchKernelEx", 10.0),
        Event("cuLaunchKernelEx", 14.0),
        Event("cudaMemsetAsync", 4.0),
        Event("cudaStreamSynchronize", 30.0),
        Event("aten::empty", 3.0),  # an operator, not an API call
        Event("sparse_attention_fwd_kernel", 50.0, "DeviceType.CUDA"),  # a GPU kernel
    ]
    tool = load_tool("gpu_host_cost_probe")
    census = tool.api_census(events, calls=2)
    assert list(census) == ["cudaStreamSynchronize", "cuLaunchKernelEx", "cudaMemsetAsync"]
    assert census["cuLaunchKernelEx"] == {"per_call": 1.0, "host_us_per_call": 12.0}
    assert census["cudaStreamSynchronize"]["per_call"] == 0.5
    syncs = [n for n in census if any(s in n for s in tool.SYNC_APIS)]
    assert syncs == ["cudaStreamSynchronize"]
