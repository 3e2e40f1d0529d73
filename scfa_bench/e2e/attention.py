"""Attention for the model step: each plug turns an implementation name into per-layer
`AttentionFn`s, with the pattern drawn inside the step as a training run would draw it.

* dense (`sdpa_*`): torch SDPA pinned to one backend, causal.
* hash (`scfa_hash`, `naive_hash`): angular-LSH bucket ids of q and of k, same planes for both
  within a layer (drawn once from a seeded generator), different planes per layer, fixed
  across steps; `scfa_hash` tells the kernel the bucket count, so no call reads the device.
* `hashformer`: the paper's variant where keys are the L2-normalised queries (the model then
  projects only q and v); LSH is invariant to positive scaling, so q is hashed once and its
  ids serve the keys too.
* qk (`scfa_qk`, `naive_qk`): keep masks Bernoulli(1 - drop_rate) for q and for k, drawn
  fresh on the device at every call (no host synchronisation).
* `identity`: out = v, the model without attention.
* peer (`moba`, `moba_k2_b128`, `adasplash`, `nsa`, `nsa_s4`): the registered implementation's
  own differentiable call on the layer's q, k, v (its `model_attention(device)`: one per layer),
  available where its `model_available(device)` says (MoBA also on the CPU, through its dense
  masked reference); `Attention.density` measures a call's density through the implementation's
  `measured_density`. A shape the method cannot take (AdaSplash: T not a power of two; NSA:
  T not a multiple of 64) raises AttentionUnavailable at the first call.

`naive_*` use the dense masked float32 reference (`scfa_kernels.reference`): slow, exact, for
tests. Names that are also registered implementations take their availability from the
registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

import scfa_bench.e2e.layer_attention as fns
from scfa_bench.e2e.model import AttentionFn

AttentionKind = str  # "dense" | "hash" | "qk" | "none" | "peer": what a model's layers compute
DensityFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], float]

PROBE_SEQ_LEN = 64


class AttentionConfigError(ValueError):
    """Settings an attention plug cannot take (unknown name, bad axis value, head dim)."""


class AttentionUnavailable(Exception):
    """The plug cannot run on this machine (no CUDA, no interpreter, backend refuses)."""


@dataclass(frozen=True)
class PlugInfo:
    """What the step needs to know about a plug before building it."""

    name: str
    pattern: AttentionKind
    shared_qk: bool
    # The registered implementation whose availability applies (None: always available).
    registered: str | None
    description: str

    @property
    def axes(self) -> tuple[str, ...]:
        return {"hash": ("n_buckets",), "qk": ("drop_rate",)}.get(self.pattern, ())


_SDPA_BACKENDS = {
    "sdpa_flash": "FLASH_ATTENTION",
    "sdpa_cudnn": "CUDNN_ATTENTION",
    "sdpa_efficient": "EFFICIENT_ATTENTION",
    "sdpa_math": "MATH",
}

PLUGS: dict[str, PlugInfo] = {
    **{
        name: PlugInfo(name, "dense", False, name, f"torch SDPA, {backend} backend, causal")
        for name, backend in _SDPA_BACKENDS.items()
    },
    "scfa_hash": PlugInfo(
        "scfa_hash", "hash", False, "scfa_hash", "SCFA hash-sparse kernel, LSH of q and of k"
    ),
    "naive_hash": PlugInfo(
        "naive_hash", "hash", False, "naive_hash", "dense masked reference, LSH of q and of k"
    ),
    "hashformer": PlugInfo(
        "hashformer", "hash", True, "scfa_hash", "SCFA hash-sparse kernel, keys = normalised q"
    ),
    "naive_hashformer": PlugInfo(
        "naive_hashformer", "hash", True, "naive_hash", "reference, keys = normalised q"
    ),
    "scfa_qk": PlugInfo(
        "scfa_qk", "qk", False, "scfa_qk", "SCFA QK-sparse kernel, random keep masks"
    ),
    "naive_qk": PlugInfo(
        "naive_qk", "qk", False, "naive_qk", "dense masked reference, random keep masks"
    ),
    "identity": PlugInfo("identity", "none", False, None, "no attention: out = v"),
    **{
        name: PlugInfo(name, "peer", False, name, f"{what}, the registered implementation's call")
        for name, what in (
            ("moba", "MoBA, top-3 of blocks of 512 by mean key (FlexAttention)"),
            ("moba_k2_b128", "MoBA, top-2 of blocks of 128 by mean key (FlexAttention)"),
            ("adasplash", "AdaSplash causal 1.5-entmax (T a power of two)"),
            ("nsa", "NSA (fla-core), 16 chosen blocks of 64; heads a multiple of 16"),
            ("nsa_s4", "NSA (fla-core), 4 chosen blocks of 64; heads a multiple of 16"),
        )
    },
}
_TORCH_DTYPES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}


@dataclass(frozen=True)
class Attention:
    """A built plug: `for_layer(i)` gives layer i's attention."""

    info: PlugInfo
    for_layer: Callable[[int], AttentionFn]
    # (q, k, v) of one call -> the fraction of causal pairs it attends (peers only).
    density: DensityFn | None = None

    @property
    def shared_qk(self) -> bool:
        return self.info.shared_qk


def plug_info(name: str) -> PlugInfo:
    if name not in PLUGS:
        raise AttentionConfigError(
            f"attention {name!r} has no model plug; known: {', '.join(sorted(PLUGS))}"
        )
    return PLUGS[name]


def _check_axes(info: PlugInfo, n_buckets: object, drop_rate: object) -> None:
    given = {"n_buckets": n_buckets, "drop_rate": drop_rate}
    for axis, value in given.items():
        if axis in info.axes and value is None:
            raise AttentionConfigError(f"attention {info.name!r} needs {axis}")
        if axis not in info.axes and value is not None:
            raise AttentionConfigError(f"attention {info.name!r} uses no {axis} (got {value!r})")
    if "n_buckets" in info.axes:
        if isinstance(n_buckets, bool) or not isinstance(n_buckets, int):
            raise AttentionConfigError(f"n_buckets: expected an integer, got {n_buckets!r}")
        if n_buckets < 2 or n_buckets % 2:
            raise AttentionConfigError(
                f"n_buckets: LSH buckets need an even number >= 2, got {n_buckets}"
            )
    if "drop_rate" in info.axes:
        if isinstance(drop_rate, bool) or not isinstance(drop_rate, (int, float)):
            raise AttentionConfigError(f"drop_rate: expected a number in [0, 1), got {drop_rate!r}")
        if not 0 <= drop_rate < 1:
            raise AttentionConfigError(f"drop_rate: expected a number in [0, 1), got {drop_rate}")


def _check_available(info: PlugInfo, device: str) -> None:
    if info.registered is None:
        return
    from scfa_bench.impls.registry import get_spec

    spec = get_spec(info.registered)
    if info.pattern == "peer":
        ok, reason = spec.create().model_available(device)  # type: ignore[attr-defined]
        if not ok:
            raise AttentionUnavailable(f"{info.name}: {reason}")
        return
    if device not in spec.devices:
        raise AttentionUnavailable(f"{info.name}: runs on {', '.join(spec.devices)}, not {device}")
    ok, reason = spec.create().available(device)
    if not ok:
        raise AttentionUnavailable(f"{info.name}: {reason}")


def _check_head_dim(info: PlugInfo, head_dim: int) -> None:
    if info.registered in ("scfa_hash", "scfa_qk"):
        from scfa_kernels.validation import SUPPORTED_HEAD_DIMS

        if head_dim not in SUPPORTED_HEAD_DIMS:
            raise AttentionConfigError(
                f"attention {info.name!r}: head dim {head_dim} (d_model / heads) is not "
                f"supported; the SCFA kernels take {', '.join(map(str, SUPPORTED_HEAD_DIMS))}"
            )


def _check_peer_shape(
    info: PlugInfo, heads: int, head_dim: int, dtype: torch.dtype, device: str
) -> None:
    """What the peer declares: head dims, heads (NSA: a multiple of 16), dtypes on its devices."""
    from scfa_bench.impls.registry import get_spec

    spec = get_spec(info.name)
    problem = spec.head_dim_problem(head_dim) or spec.heads_problem(heads)
    if problem:
        raise AttentionConfigError(f"attention {info.name!r}: {problem} (heads {heads})")
    if device in spec.devices and dtype in _TORCH_DTYPES:
        problem = spec.dtype_problem(_TORCH_DTYPES[dtype], device)
        if problem:
            raise AttentionConfigError(f"attention {info.name!r}: {problem}")


def _trainable(name: str, attend: AttentionFn) -> AttentionFn:
    """`attend`, its ImplUnavailable (a shape it cannot take) raised as AttentionUnavailable, as
    is an output without a gradient (a model would train without its attention's gradient)."""
    from scfa_bench.impls.base import ImplUnavailable

    def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        try:
            out = attend(q, k, v)
        except ImplUnavailable as exc:
            raise AttentionUnavailable(f"{name}: {exc}") from exc
        if torch.is_grad_enabled() and q.requires_grad and not out.requires_grad:
            raise AttentionUnavailable(f"{name}: its output has no gradient (no backward)")
        return out

    return attention


def _peer(info: PlugInfo, device: str) -> Attention:
    """One implementation object per model: each layer gets its own attention from it."""
    from scfa_bench.impls.base import AttentionInputs
    from scfa_bench.impls.registry import get_spec

    impl: Any = get_spec(info.name).create()

    def for_layer(layer: int) -> AttentionFn:
        return _trainable(info.name, impl.model_attention(device))

    def density(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> float:
        with torch.no_grad():
            return float(impl.measured_density(AttentionInputs(q, k, v)))

    return Attention(info, for_layer, density)


def _probe(attend: AttentionFn, name: str, head_dim: int, dtype: torch.dtype, device: str) -> None:
    """One tiny forward + backward: an SDPA backend that cannot take this head dim / dtype says
    so here ("No available kernel"), not in the middle of a sweep."""
    q, k, v = (
        torch.randn(1, PROBE_SEQ_LEN, 1, head_dim, device=device, dtype=dtype, requires_grad=True)
        for _ in range(3)
    )
    try:
        attend(q, k, v).sum().backward()
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as exc:
        text = str(exc).strip()
        first_line = text.splitlines()[0] if text else repr(exc)
        raise AttentionUnavailable(
            f"{name} cannot take head dim {head_dim} in {dtype}: {first_line}"
        ) from exc


def build_attention(
    name: str,
    *,
    heads: int,
    head_dim: int,
    dtype: torch.dtype,
    device: str,
    n_buckets: int | None = None,
    drop_rate: float | None = None,
    seed: int = 0,
) -> Attention:
    """The plug `name` for a model with these heads whose attention sees `dtype` on `device`.

    Raises AttentionConfigError for settings the plug cannot take, AttentionUnavailable when
    it cannot run here.
    """
    info = plug_info(name)
    _check_axes(info, n_buckets, drop_rate)
    _check_head_dim(info, head_dim)
    if info.pattern == "peer":
        _check_peer_shape(info, heads, head_dim, dtype, device)
    _check_available(info, device)

    if info.pattern == "peer":
        return _peer(info, device)

    if info.pattern == "dense":
        attend = fns.sdpa_attention(_SDPA_BACKENDS[name])
        _probe(attend, name, head_dim, dtype, device)
        return Attention(info, lambda layer: attend)
    if info.pattern == "none":
        return Attention(info, lambda layer: fns.identity_attention)
    if info.pattern == "qk":
        assert drop_rate is not None
        keep_kernel: fns.KeepKernel
        if name == "naive_qk":
            keep_kernel = fns.reference_qk
        else:
            from scfa_kernels import qk_sparse_attention

            keep_kernel = qk_sparse_attention
        return Attention(info, lambda layer: fns.qk_attention(keep_kernel, float(drop_rate)))

    assert n_buckets is not None
    hash_kernel = (
        fns.reference_hash if name.startswith("naive_") else fns.scfa_hash_kernel(n_buckets)
    )

    def for_layer(layer: int) -> AttentionFn:
        # One plane set per layer; the seed keeps layers apart and runs reproducible.
        lsh = fns.LayerLsh(
            n_buckets, seed * 65536 + layer, heads=heads, head_dim=head_dim, device=device
        )
        return fns.hash_attention(hash_kernel, lsh, shared_buckets=info.shared_qk)

    return Attention(info, for_layer)


__all__ = [
    "PLUGS",
    "Attention",
    "AttentionConfigError",
    "AttentionUnavailable",
    "PlugInfo",
    "build_attention",
    "plug_info",
]
