"""Which calls take the Hopper kernels (Gluon: TMA, asynchronous wgmma): one rule for the
forward and the backward, host-side only.

Opt-in with SCFA_HOPPER=1 until a GPU run shows the path exact and faster than the portable
Triton kernels; SCFA_FORCE_PORTABLE=1 wins over it. Everywhere else (other cards, the CPU
interpreter, other dtypes and head dims, sparse plans) the portable kernels run.
"""

from __future__ import annotations

import os

import torch

from . import _gluon_fwd

SUPPORTED_DTYPES = (torch.bfloat16, torch.float16)
SUPPORTED_HEAD_DIMS = (64, 128)


def hopper_requested() -> bool:
    """Whether this process asks for the Hopper path (it then runs where `use_hopper` says)."""
    if os.environ.get("SCFA_FORCE_PORTABLE", "0") == "1":
        return False
    return os.environ.get("SCFA_HOPPER", "0") == "1"


def use_hopper(q: torch.Tensor, dense: bool) -> bool:
    """Whether the attention of `q` (forward and backward) takes the Hopper kernels.

    True only when requested, and then only for: a CUDA tensor on compute capability 9.x, not
    under TRITON_INTERPRET, bf16/fp16, head dim 64 or 128, Gluon importable, and the dense
    case (`dense`: one bucket of hash-sparse, whose plan keeps rows in order; other plans
    would run the Gluon kernels' slow gathered paths).
    """
    if not hopper_requested():
        return False
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        return False
    if not dense or _gluon_fwd.GLUON_IMPORT_ERROR is not None:
        return False
    if q.device.type != "cuda" or not torch.cuda.is_available():
        return False
    if q.dtype not in SUPPORTED_DTYPES or q.shape[-1] not in SUPPORTED_HEAD_DIMS:
        return False
    major, _minor = torch.cuda.get_device_capability(q.device)
    return major == 9
