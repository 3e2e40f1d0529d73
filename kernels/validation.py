"""Input checks for the public kernels: every bad input is refused before any launch.

Each error names the argument, what was expected and what came, so a user never sees a
Triton compile error or a silently wrong answer.
"""

from __future__ import annotations

import math
import os

import torch

SUPPORTED_HEAD_DIMS = (16, 32, 64, 128)
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# Bucket ids are compared as int32 inside the kernels.
MAX_BUCKET_ID = 2**31 - 2


def interpreter_enabled() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def check_qkv(q: object, k: object, v: object) -> tuple[int, int, int, int]:
    """Check q, k, v and return (B, T, H, D)."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(
                f"{name}: expected a torch.Tensor of shape (B, T, H, D), got {type(t)!r}"
            )
        if t.dim() != 4:
            raise ValueError(f"{name}: expected 4 dimensions (B, T, H, D), got shape {_shape(t)}")
    assert isinstance(q, torch.Tensor) and isinstance(k, torch.Tensor)
    assert isinstance(v, torch.Tensor)
    for name, t in (("k", k), ("v", v)):
        if t.shape != q.shape:
            raise ValueError(
                f"{name}: expected the shape of q {_shape(q)} (B, T, H, D), got {_shape(t)}"
            )
    if q.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"q: dtype {q.dtype} is not supported; expected float16, bfloat16 or float32"
        )
    for name, t in (("k", k), ("v", v)):
        if t.dtype != q.dtype:
            raise TypeError(f"{name}: expected the dtype of q ({q.dtype}), got {t.dtype}")
    B, T, H, D = q.shape
    if D not in SUPPORTED_HEAD_DIMS:
        raise ValueError(f"q: head dim {D} is not supported; expected one of {SUPPORTED_HEAD_DIMS}")
    if B == 0 or T == 0 or H == 0:
        raise ValueError(f"q: expected non-empty B, T and H, got shape {_shape(q)}")
    for name, t in (("k", k), ("v", v)):
        if t.device != q.device:
            raise ValueError(f"{name}: expected the device of q ({q.device}), got {t.device}")
    _check_device(q)
    return B, T, H, D


def _check_device(q: torch.Tensor) -> None:
    if q.device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(q.device)
        if major < 8:
            raise ValueError(
                f"q: CUDA device {q.device} has compute capability {major}.{minor}; "
                "expected 8.0 or newer"
            )
        return
    if q.device.type == "cpu":
        if not interpreter_enabled():
            raise ValueError(
                "q: CPU tensors need Triton's interpreter; set TRITON_INTERPRET=1 before "
                "importing triton, or move the tensors to a CUDA device"
            )
        if q.dtype == torch.bfloat16:
            raise TypeError(
                "q: bfloat16 is not supported on the CPU: tl.dot on bfloat16 is wrong under "
                "Triton's interpreter (triton-lang/triton#11584); use float16 or float32 on the "
                "CPU, bfloat16 on a GPU"
            )
        return
    raise ValueError(f"q: expected a CUDA tensor or a CPU tensor, got device {q.device}")


def _check_index_tensor(
    name: str, t: object, B: int, T: int, H: int, device: torch.device, kind: str
) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(
            f"{name}: expected a torch.Tensor of shape ({B}, {T}, {H}), got {type(t)!r}"
        )
    if tuple(t.shape) != (B, T, H):
        raise ValueError(
            f"{name}: expected shape (B, T, H) = ({B}, {T}, {H}) to match q, got {_shape(t)}"
        )
    if kind == "hash":
        if t.dtype == torch.bool or t.dtype.is_floating_point or t.dtype.is_complex:
            raise TypeError(f"{name}: expected an integer dtype (bucket ids), got {t.dtype}")
    elif t.dtype != torch.bool:
        raise TypeError(f"{name}: expected dtype torch.bool (True = kept), got {t.dtype}")
    if t.device != device:
        raise ValueError(f"{name}: expected the device of q ({device}), got {t.device}")
    return t


def check_hashes(
    q_hash: object, k_hash: object, B: int, T: int, H: int, device: torch.device
) -> int:
    """Check the bucket ids and return the largest (the plan's counting sort needs it)."""
    qh = _check_index_tensor("q_hash", q_hash, B, T, H, device, "hash")
    kh = _check_index_tensor("k_hash", k_hash, B, T, H, device, "hash")
    # One synchronising read for all four bounds.
    (q_lo, q_hi), (k_lo, k_hi) = torch.aminmax(qh), torch.aminmax(kh)
    lo_q, lo_k, hi_q, hi_k = torch.stack(
        [q_lo.long(), k_lo.long(), q_hi.long(), k_hi.long()]
    ).tolist()
    for name, lo, hi in (("q_hash", lo_q, hi_q), ("k_hash", lo_k, hi_k)):
        if lo < 0:
            raise ValueError(f"{name}: bucket ids must be >= 0, got a minimum of {lo}")
        if hi > MAX_BUCKET_ID:
            raise ValueError(
                f"{name}: bucket ids must be <= {MAX_BUCKET_ID}, got a maximum of {hi}"
            )
    return max(hi_q, hi_k)


def check_keeps(
    q_keep: object, k_keep: object, B: int, T: int, H: int, device: torch.device
) -> None:
    _check_index_tensor("q_keep", q_keep, B, T, H, device, "keep")
    _check_index_tensor("k_keep", k_keep, B, T, H, device, "keep")


def resolve_scale(sm_scale: object, head_dim: int) -> float:
    if sm_scale is None:
        return 1.0 / math.sqrt(head_dim)
    if isinstance(sm_scale, bool) or not isinstance(sm_scale, (int, float)):
        raise TypeError(f"sm_scale: expected a float or None, got {type(sm_scale)!r}")
    scale = float(sm_scale)
    if not math.isfinite(scale) or scale <= 0.0:
        raise ValueError(f"sm_scale: expected a finite number > 0, got {sm_scale!r}")
    return scale
