"""Host (Python) cost of one hash-sparse attention call, kernel launches left out.

    TRITON_INTERPRET=1 python tools/host_overhead.py [--calls 500]

Runs on any machine: the plan and the launch functions are replaced by stand-ins that only
allocate their outputs, so what remains is the public function's checks, the custom
operators' dispatch and the autograd plumbing. Printed per call, in microseconds, against a
trivial autograd op on the same tensors. A developer tool for docs/performance-notes.md: at small
batch x heads the GPU work of a call is short enough for host time to show in its timing.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from scfa_kernels import _launch, ops
from scfa_kernels import plan as plan_module
from scfa_kernels.attention import hash_sparse_attention

B, T, H, D, NB = 1, 64, 2, 16, 4


def _per_call_us(fn: Callable[[], None], calls: int) -> float:
    for _ in range(min(calls, 50)):
        fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args(argv)

    q, k, v = (torch.randn(B, T, H, D, requires_grad=True) for _ in range(3))
    do = torch.randn(B, T, H, D)
    q_hash = torch.randint(0, NB, (B, T, H), dtype=torch.int32)
    k_hash = q_hash.clone()
    fixed_plan = plan_module.hash_plan(q_hash, k_hash, NB)

    # Stand-ins: the work of the kernels is left out, their outputs still allocated.
    ops.hash_plan = lambda *_args: fixed_plan
    _launch.forward = lambda q, *_rest: (
        torch.empty_like(q),
        torch.empty((q.shape[0] * q.shape[2], q.shape[1])),
    )
    _launch.backward = lambda _do, q, k, v, *_rest: (
        torch.empty_like(q),
        torch.empty_like(k),
        torch.empty_like(v),
    )

    def clear() -> None:
        for x in (q, k, v):
            x.grad = None

    def ours_fwd_bwd() -> None:
        clear()
        hash_sparse_attention(q, k, v, q_hash, k_hash, n_buckets=NB).backward(do)

    def ours_fwd() -> None:
        with torch.no_grad():
            hash_sparse_attention(q, k, v, q_hash, k_hash, n_buckets=NB)

    def trivial_fwd_bwd() -> None:
        clear()
        (q * 1).backward(do)

    for name, fn in (
        ("hash_sparse_attention fwd+bwd", ours_fwd_bwd),
        ("hash_sparse_attention fwd (no_grad)", ours_fwd),
        ("trivial autograd op fwd+bwd", trivial_fwd_bwd),
    ):
        print(f"{name:40s} {_per_call_us(fn, args.calls):8.1f} us per call")


if __name__ == "__main__":
    main()
