"""Angular LSH bucket ids (Andoni et al. 2015, as in Reformer), fused into one Triton pass.

``id = argmax(concat(x @ R, -x @ R))`` with one random unit-column ``R: (D, n_buckets / 2)``
per head. The rotations are drawn on the host side of the call (``lsh_rotations``, from a
generator); the projection and the argmax run in one kernel (``_triton_lsh``) registered as
the custom ops ``scfa::lsh_buckets`` and ``scfa::lsh_buckets_pair``, so ``torch.compile``
sees no graph break and nothing reads device memory on the host. Eager calls of the public
functions launch the kernel directly: the operators' Python dispatch costs more host time than
the launch itself (kernels/PERF.md, v11).
"""

from __future__ import annotations

import torch

from . import validation
from ._triton_lsh import lsh_buckets_kernel
from .config import ceil_div, next_power_of_2

__all__ = [
    "lsh_buckets",
    "lsh_buckets_from_rotations",
    "lsh_buckets_pair",
    "lsh_buckets_pair_from_rotations",
    "lsh_rotations",
]

# dtypes the kernel loads directly; other floating dtypes take the torch path.
_KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


# ---------------------------------------------------------------- input checks


def _check_x(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape (B, T, H, D), got {type(x)!r}")
    if x.dim() != 4:
        raise ValueError(f"{name}: expected a 4-D tensor (B, T, H, D), got shape {_shape(x)}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name}: expected a floating-point dtype, got {x.dtype}")
    if x.shape[3] == 0:
        raise ValueError(f"{name}: expected a head dim D >= 1, got shape {_shape(x)}")
    return x


def _check_n_buckets(n_buckets: object) -> int:
    if isinstance(n_buckets, bool) or not isinstance(n_buckets, int):
        raise TypeError(f"n_buckets: expected an int, got {type(n_buckets)!r}")
    if n_buckets < 2 or n_buckets % 2:
        raise ValueError(f"n_buckets: expected an even number >= 2, got {n_buckets}")
    return n_buckets


def _check_pair(q: torch.Tensor, k: torch.Tensor) -> None:
    if k.shape != q.shape:
        raise ValueError(f"k: expected the shape of q {_shape(q)}, got {_shape(k)}")
    if k.device != q.device:
        raise ValueError(f"k: expected the device of q ({q.device}), got {k.device}")


def _check_rotations(rotations: object, x: torch.Tensor) -> None:
    """rotations must be float32 (H, D, n_rot) on x's device, H and D those of x."""
    if not isinstance(rotations, torch.Tensor):
        raise TypeError(f"rotations: expected a torch.Tensor, got {type(rotations)!r}")
    _, _, H, D = x.shape
    if rotations.dim() != 3 or rotations.shape[:2] != (H, D) or rotations.shape[2] < 1:
        raise ValueError(
            f"rotations: expected shape (H, D, n_buckets / 2) = ({H}, {D}, n) with n >= 1 "
            f"to match x, got {_shape(rotations)}"
        )
    if rotations.dtype != torch.float32:
        raise TypeError(f"rotations: expected float32, got {rotations.dtype}")
    if rotations.device != x.device:
        raise ValueError(
            f"rotations: expected the device of x ({x.device}), got {rotations.device}"
        )


# ---------------------------------------------------------------- rotations


def lsh_rotations(
    heads: int,
    head_dim: int,
    n_buckets: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """float32 (heads, head_dim, n_buckets / 2): unit columns, one random set per head.

    Drawn with ``torch.randn`` on the generator's device (else on ``device``), normalised
    there, then moved to ``device``: the same draw whatever the device of the input hashed.
    """
    _check_n_buckets(n_buckets)
    draw_device = generator.device if generator is not None else device
    rotations = torch.randn(
        (heads, head_dim, n_buckets // 2),
        generator=generator,
        device=draw_device,
        dtype=torch.float32,
    )
    rotations = rotations / rotations.norm(dim=1, keepdim=True)
    return rotations if device is None else rotations.to(device)


# ---------------------------------------------------------------- computation


def _lsh_buckets_torch(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """The unfused definition: float32 einsum into (B, T, H, n_rot), then argmax."""
    with torch.autocast(x.device.type, enabled=False):  # float32 whatever the caller's autocast
        projected = torch.einsum("bthd,hdr->bthr", x.float(), rotations)
    return torch.cat([projected, -projected], dim=-1).argmax(dim=-1).to(torch.int32)


def _uses_kernel(x: torch.Tensor) -> bool:
    if x.dtype not in _KERNEL_DTYPES:
        return False
    if x.device.type == "cuda":
        return True
    return x.device.type == "cpu" and validation.interpreter_enabled()


def _launch(xs: tuple[torch.Tensor, ...], rotations: torch.Tensor) -> list[torch.Tensor]:
    """One launch hashing every tensor of xs (one or two, same shape) with rotations."""
    B, T, H, D = xs[0].shape
    outs = [torch.empty((B, T, H), dtype=torch.int32, device=x.device) for x in xs]
    if B * T * H == 0:
        return outs
    n_rot = rotations.shape[2]
    block_d = min(max(16, next_power_of_2(D)), 128)
    block_r = min(max(16, next_power_of_2(n_rot)), 64)
    if xs[0].device.type == "cpu":
        block_t = 64  # the interpreter: fewer, larger programs
    else:
        # Keep the x tile and the projections within about 64 float32 registers a thread.
        block_t = max(16, min(128, 8192 // block_d, 8192 // block_r))
    n_tiles = ceil_div(T, block_t)
    x0, x1 = xs[0], xs[-1]
    lsh_buckets_kernel[(B * H * n_tiles, len(xs))](
        *(x0, x1, rotations.contiguous(), outs[0], outs[-1]),
        *x0.stride(),
        *x1.stride(),
        *(T, H, n_tiles),
        HEAD_DIM=D,
        N_ROT=n_rot,
        BLOCK_T=block_t,
        BLOCK_D=block_d,
        BLOCK_R=block_r,
        num_warps=4,
        # x is read once: software pipelining buys nothing and, at D=160 with 256 buckets in
        # float32, its buffers overflowed shared memory on an H100 (262144 > 232448 bytes).
        num_stages=1,
    )
    return outs


def _compute(xs: tuple[torch.Tensor, ...], rotations: torch.Tensor) -> list[torch.Tensor]:
    if all(_uses_kernel(x) for x in xs):
        return _launch(xs, rotations)
    return [_lsh_buckets_torch(x, rotations) for x in xs]


# ---------------------------------------------------------------- custom ops


@torch.library.custom_op("scfa::lsh_buckets", mutates_args=())
def _lsh_buckets_op(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    _check_x("x", x)
    _check_rotations(rotations, x)
    return _compute((x,), rotations)[0]


@_lsh_buckets_op.register_fake
def _lsh_buckets_fake(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    _check_x("x", x)
    _check_rotations(rotations, x)
    return x.new_empty(x.shape[:3], dtype=torch.int32)


def _check_pair_inputs(q: torch.Tensor, k: torch.Tensor, rotations: torch.Tensor) -> None:
    _check_x("q", q)
    _check_x("k", k)
    _check_pair(q, k)
    _check_rotations(rotations, q)


@torch.library.custom_op("scfa::lsh_buckets_pair", mutates_args=())
def _lsh_buckets_pair_op(
    q: torch.Tensor, k: torch.Tensor, rotations: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    _check_pair_inputs(q, k, rotations)
    q_ids, k_ids = _compute((q, k), rotations)
    return q_ids, k_ids


@_lsh_buckets_pair_op.register_fake
def _lsh_buckets_pair_fake(
    q: torch.Tensor, k: torch.Tensor, rotations: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    _check_pair_inputs(q, k, rotations)
    return (
        q.new_empty(q.shape[:3], dtype=torch.int32),
        k.new_empty(k.shape[:3], dtype=torch.int32),
    )


# ---------------------------------------------------------------- public entry points


def lsh_buckets(
    x: torch.Tensor, n_buckets: int, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Bucket ids ``argmax(concat(x @ R, -x @ R))`` with one random unit-column R per head.

    x: (B, T, H, D), any strides, floating. n_buckets: even, >= 2. R: (D, n_buckets // 2) per
    head, drawn from `generator` as ``lsh_rotations`` does. Returns int32 (B, T, H). Ties go
    to the first maximal index, as ``torch.argmax``. Hashing q and k with generators seeded
    alike gives both the same R; ``lsh_buckets_pair`` does both in one launch.
    """
    _check_x("x", x)
    _check_n_buckets(n_buckets)
    _, _, H, D = x.shape
    rotations = lsh_rotations(H, D, n_buckets, generator=generator, device=x.device)
    return lsh_buckets_from_rotations(x, rotations)


def lsh_buckets_pair(
    q: torch.Tensor,
    k: torch.Tensor,
    n_buckets: int,
    *,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lsh_buckets(q), lsh_buckets(k))`` with one draw of R shared by both, one launch.

    q and k: same shape (B, T, H, D) and device; strides and floating dtypes may differ.
    """
    _check_x("q", q)
    _check_x("k", k)
    _check_pair(q, k)
    _check_n_buckets(n_buckets)
    _, _, H, D = q.shape
    rotations = lsh_rotations(H, D, n_buckets, generator=generator, device=q.device)
    return lsh_buckets_pair_from_rotations(q, k, rotations)


def lsh_buckets_from_rotations(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """``lsh_buckets`` with the rotations given: float32 (H, D, n_buckets / 2) on x's device,
    as ``lsh_rotations`` draws them (a model keeps its planes and hashes with them each step).

    Calls traced by ``torch.compile`` go through the ``scfa::lsh_buckets`` operator; eager
    calls launch the kernel directly (same kernel, same ids, less host time).
    """
    x = _check_x("x", x).detach()
    _check_rotations(rotations, x)
    if torch.compiler.is_compiling():
        return torch.ops.scfa.lsh_buckets(x, rotations)
    return _compute((x,), rotations)[0]


def lsh_buckets_pair_from_rotations(
    q: torch.Tensor, k: torch.Tensor, rotations: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``lsh_buckets_pair`` with the rotations given (see ``lsh_buckets_from_rotations``)."""
    q = _check_x("q", q).detach()
    k = _check_x("k", k).detach()
    _check_pair(q, k)
    _check_rotations(rotations, q)
    if torch.compiler.is_compiling():
        return torch.ops.scfa.lsh_buckets_pair(q, k, rotations)
    q_ids, k_ids = _compute((q, k), rotations)
    return q_ids, k_ids
