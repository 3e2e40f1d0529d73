"""What an implementation is given and what it must provide.

`AttentionInputs` holds the tensors of one point; an `Implementation` says whether it can run on
a device and, given those inputs, returns the forward call the harness checks and times.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

# What torch's CPU allocator says when malloc fails (it raises RuntimeError, not MemoryError).
_CPU_OOM_MESSAGES = ("can't allocate memory", "not enough memory", "out of memory")


@dataclass
class AttentionInputs:
    """Tensors of one point, all (B, T, H, ...); pattern fields the point does not use are None."""

    q: Tensor
    k: Tensor
    v: Tensor
    q_hash: Tensor | None = None
    k_hash: Tensor | None = None
    q_keep: Tensor | None = None
    k_keep: Tensor | None = None
    # The point's bucket count, known on the host: implementations that can use it avoid
    # reading the ids back (a host sync per call, as a training step would not pay).
    n_buckets: int | None = None
    # rows -> (B, H, R, T) bool: the mask of what an implementation computes when it is not
    # the point's pattern (approximate ones); the check's reference then uses it.
    reference_mask: Callable[[Tensor], Tensor] | None = None
    # (q rows (B, R, H, D), k, v, rows) -> float32 output of those rows, differentiable: the
    # reference of an implementation whose attention is not a masked softmax over (B, T, H, D)
    # keys (entmax, gated branches, grouped KV heads). Replaces the masked reference when set.
    reference_attention: Callable[[Tensor, Tensor, Tensor, Tensor], Tensor] | None = None

    @property
    def leaves(self) -> list[Tensor]:
        return [self.q, self.k, self.v]


class ImplUnavailable(Exception):
    """Raised by `Implementation.prepare` when the backend cannot run this point on this machine."""


class Implementation(Protocol):
    """Optional, read with getattr by the harness:

    * `kind`: "exact" (default), "approximate" or "limit" (`constants.IMPL_KINDS`);
    * `effective_inputs(inputs) -> AttentionInputs`: the tensors and pattern the implementation
      really computes attention over, when they are not the point's (limits: segment ids or
      compacted rows; approximate ones: the same tensors with `reference_mask`). `prepare`,
      the check and the timing then use them;
    * `measured_density(inputs) -> float`: the fraction of causal (query, key) pairs the method
      really attends, measured from its own selection or mask on the effective inputs (methods
      that choose their keys themselves); without it the row's density is the point's pattern's.
    """

    def available(self, device: str) -> tuple[bool, str]:
        """(True, "") when it can run on `device` ("cuda" or "cpu"), else (False, reason)."""
        ...

    def prepare(self, inputs: AttentionInputs) -> Callable[[], Tensor]:
        """Per-shape set-up outside the timed region; returns the forward call, whose output is
        (B, T, H, D) (a view is fine). May raise `ImplUnavailable`."""
        ...


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, Python's MemoryError, or the CPU allocator's RuntimeError."""
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(m in text for m in _CPU_OOM_MESSAGES)


def optional_cuda_package(module: str, method: str, install: str) -> tuple[bool, str]:
    """`available` of a method from an optional package that runs on CUDA only: (True, "") or
    (False, why), naming the install command when the package is missing."""
    if not torch.cuda.is_available():
        return False, f"{method} runs on CUDA only"
    try:
        importlib.import_module(module)
    except ImportError as exc:
        return False, f"{module.split('.')[0]} is not installed ({exc}): {install}"
    return True, ""
