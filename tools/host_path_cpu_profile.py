"""The Python host path of one eager fwd+bwd call, on the CPU, with every Triton launch stubbed
out (docs/performance-notes.md, "The host path").

    python tools/host_path_cpu_profile.py [--seq-len 1024] [--calls 200] [--pattern hash8]
        [--cprofile FILE]

What a GPU call costs the host besides its launches: the checks, the plan's and ranges' Python,
allocations, the autograd function. The kernels are not run (their `[grid](...)` launch is a
no-op) and the CUDA launch configuration (tile sizes, pieces) is used, so the call takes the
GPU's code path with the launches' own cost removed; that cost is measured on the GPU by
`tools/gpu_host_cost_probe.py` (30-72 us per launch on an H100 host). B=1, H=12, D=64,
float16 CPU tensors. Prints microseconds per call and, with --cprofile, writes the profile.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

os.environ.setdefault("TRITON_INTERPRET", "1")  # CPU tensors pass the kernels' device check

import torch

B, H, D = 1, 12, 64
PATTERNS = ("hash8", "hash32", "qk")


@contextmanager
def stubbed_launches() -> Iterator[list[str]]:
    """Every `kernel[grid](...)` of the package records the kernel's name and returns None;
    the CUDA small-bucket configuration is selected whatever the device."""
    from triton.runtime.interpreter import InterpretedFunction

    from scfa_kernels import config

    launched: list[str] = []
    original_getitem = InterpretedFunction.__getitem__
    original_select = config._select

    def getitem(self, grid):
        name = getattr(self.fn, "__name__", "?")
        return lambda *args, **kwargs: launched.append(name)

    InterpretedFunction.__getitem__ = getitem
    config._select = lambda device, dtype, head_dim, mean_rows: config.SM90_TILES.small_buckets
    try:
        yield launched
    finally:
        InterpretedFunction.__getitem__ = original_getitem
        config._select = original_select


def make_call(pattern: str, seq_len: int) -> Callable[[], None]:
    """One eager fwd+bwd of `pattern` on fresh random CPU inputs (grads cleared each call)."""
    from scfa_kernels import hash_sparse_attention, qk_sparse_attention

    g = torch.Generator().manual_seed(0)
    q, k, v, do = (
        torch.randn(B, seq_len, H, D, dtype=torch.float16, generator=g) for _ in range(4)
    )
    for x in (q, k, v):
        x.requires_grad_()
    if pattern.startswith("hash"):
        nb = int(pattern.removeprefix("hash"))
        ids = [torch.randint(0, nb, (B, seq_len, H), generator=g) for _ in "qk"]
        attend = lambda: hash_sparse_attention(q, k, v, ids[0], ids[1], n_buckets=nb)
    else:
        keep = [torch.rand(B, seq_len, H, generator=g) >= 0.8 for _ in "qk"]
        attend = lambda: qk_sparse_attention(q, k, v, keep[0], keep[1])

    def call() -> None:
        for x in (q, k, v):
            x.grad = None
        attend().backward(do)

    return call


def host_us_per_call(call: Callable[[], None], calls: int) -> float:
    """Median over 5 batches of `calls` back-to-back calls, microseconds per call."""
    call()
    batches = []
    for _ in range(5):
        begin = time.perf_counter()
        for _ in range(calls):
            call()
        batches.append((time.perf_counter() - begin) * 1e6 / calls)
    return sorted(batches)[2]


def profile_text(call: Callable[[], None], calls: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        call()
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(30)
    return text.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--pattern", action="append", choices=PATTERNS)
    parser.add_argument("--cprofile", default=None)
    args = parser.parse_args()
    with stubbed_launches() as launched:
        for pattern in args.pattern or PATTERNS:
            call = make_call(pattern, args.seq_len)
            launched.clear()
            call()
            n_launches = len(launched)
            us = host_us_per_call(call, args.calls)
            print(
                f"{pattern} T={args.seq_len}: {us:.0f} us host per fwd+bwd, {n_launches} launches"
            )
            if args.cprofile:
                path = f"{args.cprofile}.{pattern}.txt"
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(profile_text(call, args.calls))


if __name__ == "__main__":
    main()
