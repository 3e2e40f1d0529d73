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
# Buckets are int32 inside the kernels, and ids outside [0, n_buckets) sort under the
# sentinels n_buckets and n_buckets + 1, which must fit too.
MAX_N_BUCKETS = 2**31 - 2
MAX_BUCKET_ID = MAX_N_BUCKETS - 1
# Set to 1 to check every call's bucket ids against n_buckets (a synchronising read).
CHECK_BUCKETS_ENV = "SCFA_CHECK_BUCKETS"


# Environment reads are constants to torch.compile: traced once, never a graph break.
@torch.compiler.assume_constant_result
def interpreter_enabled() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@torch.compiler.assume_constant_result
def bucket_checks_requested() -> bool:
    """Whether SCFA_CHECK_BUCKETS asks for the checking mode."""
    return os.environ.get(CHECK_BUCKETS_ENV, "0") not in ("", "0")


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


@torch.compiler.assume_constant_result
def _cuda_capability(device: torch.device) -> tuple[int, int]:
    return torch.cuda.get_device_capability(device)


def _check_device(q: torch.Tensor) -> None:
    if q.device.type == "cuda":
        major, minor = _cuda_capability(q.device)
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
) -> None:
    """Shapes, dtypes and devices of the bucket ids (host-side, no read of the ids)."""
    _check_index_tensor("q_hash", q_hash, B, T, H, device, "hash")
    _check_index_tensor("k_hash", k_hash, B, T, H, device, "hash")


def check_n_buckets(n_buckets: object) -> int:
    if isinstance(n_buckets, bool) or not isinstance(n_buckets, int):
        raise TypeError(f"n_buckets: expected an int or None, got {type(n_buckets)!r}")
    if not 1 <= n_buckets <= MAX_N_BUCKETS:
        raise ValueError(f"n_buckets: expected 1 <= n_buckets <= {MAX_N_BUCKETS}, got {n_buckets}")
    return n_buckets


def _id_bounds(q_hash: torch.Tensor, k_hash: torch.Tensor) -> dict[str, tuple[int, int]]:
    """{name: (smallest id, largest id)}, in one synchronising read for all four."""
    (q_lo, q_hi), (k_lo, k_hi) = torch.aminmax(q_hash), torch.aminmax(k_hash)
    bounds = torch.stack([q_lo.long(), q_hi.long(), k_lo.long(), k_hi.long()]).tolist()
    return {"q_hash": (bounds[0], bounds[1]), "k_hash": (bounds[2], bounds[3])}


def bucket_count_from_ids(q_hash: torch.Tensor, k_hash: torch.Tensor) -> int:
    """Largest id + 1, for callers that give no n_buckets: one synchronising read.

    Ids must then be in [0, MAX_BUCKET_ID]; a bad id is an error.
    """
    bounds = _id_bounds(q_hash, k_hash)
    for name, (lo, hi) in bounds.items():
        if lo < 0:
            raise ValueError(f"{name}: bucket ids must be >= 0, got a minimum of {lo}")
        if hi > MAX_BUCKET_ID:
            raise ValueError(
                f"{name}: bucket ids must be <= {MAX_BUCKET_ID}, got a maximum of {hi}"
            )
    return max(hi for _, hi in bounds.values()) + 1


def check_ids_in_range(q_hash: torch.Tensor, k_hash: torch.Tensor, n_buckets: int) -> None:
    """The checking mode: every id in [0, n_buckets), else ValueError (synchronising)."""
    for name, (lo, hi) in _id_bounds(q_hash, k_hash).items():
        if lo < 0 or hi >= n_buckets:
            raise ValueError(
                f"{name}: bucket ids must lie in [0, n_buckets) = [0, {n_buckets}), got ids "
                f"from {lo} to {hi} (checking mode: check_ids=True or {CHECK_BUCKETS_ENV}=1; "
                "without it such ids match nothing)"
            )


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
