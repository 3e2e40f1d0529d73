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

`naive_*` use the dense masked float32 reference (`scfa_kernels.reference`): slow, exact, for
tests. Names that are also registered implementations take their availability from the
registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

import scfa_bench.e2e.layer_attention as fns
from scfa_bench.e2e.model import AttentionFn

AttentionKind = str  # "dense" | "hash" | "qk" | "none": what a model's attention layers compute

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
}


@dataclass(frozen=True)
class Attention:
    """A built plug: `for_layer(i)` gives layer i's attention."""

    info: PlugInfo
    for_layer: Callable[[int], AttentionFn]

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
    _check_available(info, device)

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
