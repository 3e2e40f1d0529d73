"""`tools/host_path_cpu_profile.py`: launches are stubbed (and restored), the CUDA launch
configuration is used, and a call's host time is measured."""

from __future__ import annotations

from triton.runtime.interpreter import InterpretedFunction

from scfa_kernels import config

from .tool_loader import load_tool


def test_a_stubbed_call_takes_the_gpu_path_and_is_timed() -> None:
    tool = load_tool("host_path_cpu_profile")
    before = (InterpretedFunction.__getitem__, config._select)
    with tool.stubbed_launches() as launched:
        call = tool.make_call("hash8", 256)
        call()
        # plan (histogram, scatter, ranges), forward, delta, dK/dV and dQ with their ranges
        assert "sparse_attention_fwd_kernel" in launched
        assert "sparse_attention_bwd_dq_kernel" in launched
        assert config._select(None, None, 64, 1.0) is config.SM90_TILES.small_buckets
        assert tool.host_us_per_call(call, 2) > 0
        text = tool.profile_text(call, 2)
    assert "function calls" in text
    assert (InterpretedFunction.__getitem__, config._select) == before
