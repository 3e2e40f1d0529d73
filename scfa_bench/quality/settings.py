"""An attention setting of a training suite -> each layer's `AttentionFn`, through the e2e plugs.

Differences from the timed model step (`e2e.attention`), both as in Pagliardini et al. 2023:

* hash settings draw fresh LSH rotations at every call by default (`lsh: per_call`), from
  torch's global generator, so a checkpoint's RNG state replays them; `lsh: fixed` keeps one
  plane set per layer as the e2e plug does.
* `shared_qk` belongs to the run, not to a setting (every model has the same parameters, so
  each setting starts from the same weights): with it, keys are the normalised queries and a
  hash setting hashes q once for both.

`DensityMeter` measures, while switched on (evaluation only), the fraction of causal
query-key pairs each attention lets through: 1 for dense, about 1/nb for hash, about
(1 - p)^2 for QK-dropping; for a peer method (MoBA, AdaSplash, NSA) what its implementation's
`measured_density` says of the layer's q, k, v.

A setting's `heads` (NSA needs 16 query heads per KV head) changes only how the model splits
d_model into heads: every projection keeps its shape, so that setting starts from the same
weights too (`heads_config`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import cast

import torch
from torch import Tensor

import scfa_bench.e2e.layer_attention as fns
from scfa_bench.e2e.attention import (
    AttentionConfigError,
    AttentionUnavailable,
    DensityFn,
    build_attention,
    plug_info,
)
from scfa_bench.e2e.model import AttentionFn, ModelConfig
from scfa_bench.quality.config import AttentionSetting

# Hash-pattern implementations a training setting can name, beyond the e2e plugs.
REFORMER = "reformer_lsh"


@dataclass
class DensityMeter:
    """Kept / possible causal pairs, summed over the calls made while `active`."""

    active: bool = False
    kept: float = 0.0
    possible: float = 0.0

    def reset(self) -> None:
        self.kept = self.possible = 0.0

    def add(self, kept: Tensor, b: int, t: int, h: int) -> None:
        self.kept += float(kept)
        self.possible += b * h * t * (t + 1) / 2

    @property
    def density(self) -> float | None:
        return self.kept / self.possible if self.possible else None


def hash_kept_pairs(q_hash: Tensor, k_hash: Tensor, n_buckets: int) -> Tensor:
    """Causal pairs (key j <= query i) whose buckets match, summed over batch and heads."""
    keys_so_far = torch.nn.functional.one_hot(k_hash.long(), n_buckets).cumsum(dim=1)
    return keys_so_far.gather(-1, q_hash.long().unsqueeze(-1)).sum()


def qk_kept_pairs(q_keep: Tensor, k_keep: Tensor) -> Tensor:
    """Causal pairs whose query and key are both kept."""
    return (q_keep.long() * k_keep.long().cumsum(dim=1)).sum()


class PerCallLsh:
    """Bucket ids from rotations drawn anew at every call (the paper's fresh rotation)."""

    def __init__(self, n_buckets: int, heads: int, head_dim: int) -> None:
        self.n_buckets = n_buckets
        self.heads = heads
        self.head_dim = head_dim

    def _rotations(self, x: Tensor) -> Tensor:
        from scfa_kernels import lsh_rotations

        return lsh_rotations(self.heads, self.head_dim, self.n_buckets, device=x.device)

    def __call__(self, x: Tensor) -> Tensor:
        from scfa_kernels import lsh_buckets_from_rotations

        return lsh_buckets_from_rotations(x, self._rotations(x))

    def pair(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        from scfa_kernels import lsh_buckets_pair_from_rotations

        return lsh_buckets_pair_from_rotations(q, k, self._rotations(q))


def _hash_attention(
    kernel: fns.HashKernel, lsh: PerCallLsh | fns.LayerLsh, shared: bool, meter: DensityMeter
) -> AttentionFn:
    def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        if shared:
            q_hash = k_hash = lsh(q)
        else:
            q_hash, k_hash = lsh.pair(q, k)
        if meter.active:
            b, t, h, _ = q.shape
            meter.add(hash_kept_pairs(q_hash, k_hash, lsh.n_buckets), b, t, h)
        return kernel(q, k, v, q_hash, k_hash)

    return attend


def _qk_attention(kernel: fns.KeepKernel, drop_rate: float, meter: DensityMeter) -> AttentionFn:
    def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        b, t, h, _ = q.shape
        q_keep = torch.rand((b, t, h), device=q.device) >= drop_rate
        k_keep = torch.rand((b, t, h), device=q.device) >= drop_rate
        if meter.active:
            meter.add(qk_kept_pairs(q_keep, k_keep), b, t, h)
        return kernel(q, k, v, q_keep, k_keep)

    return attend


def _dense_metered(attend: AttentionFn, meter: DensityMeter) -> AttentionFn:
    def metered(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        if meter.active:
            b, t, h, _ = q.shape
            meter.add(torch.tensor(b * h * t * (t + 1) / 2), b, t, h)
        return attend(q, k, v)

    return metered


def _peer_metered(attend: AttentionFn, density: DensityFn, meter: DensityMeter) -> AttentionFn:
    def metered(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        if meter.active:
            b, t, h, _ = q.shape
            kept = density(q, k, v) * b * h * t * (t + 1) / 2
            meter.add(torch.tensor(kept), b, t, h)
        return attend(q, k, v)

    return metered


def heads_config(model: ModelConfig, setting: AttentionSetting) -> ModelConfig:
    """The run's model, with the setting's head split when it gives one."""
    return model if setting.heads is None else replace(model, heads=setting.heads)


def _reformer_kernel(q: Tensor, k: Tensor, v: Tensor, q_hash: Tensor, k_hash: Tensor) -> Tensor:
    from scfa_bench.impls.reformer import reformer_lsh_attention

    return reformer_lsh_attention(q, k, v, [q_hash], [k_hash])


def _hash_kernel(impl: str, n_buckets: int) -> fns.HashKernel:
    if impl == REFORMER:
        return _reformer_kernel
    if impl.startswith("naive_"):
        return fns.reference_hash
    return fns.scfa_hash_kernel(n_buckets)


def setting_pattern(impl: str) -> str:
    """dense | hash | qk | none | peer; AttentionConfigError for a name no setting can take."""
    return "hash" if impl == REFORMER else plug_info(impl).pattern


def _check(setting: AttentionSetting, heads: int, head_dim: int, dtype: torch.dtype, device: str):
    """The e2e plug's own checks (axes, head dim, availability here, an SDPA probe)."""
    if setting.impl == REFORMER:
        if setting.n_buckets is None or setting.n_buckets < 2 or setting.n_buckets % 2:
            raise AttentionConfigError(f"{REFORMER} needs an even n_buckets >= 2")
        return None
    return build_attention(
        setting.impl,
        heads=heads,
        head_dim=head_dim,
        dtype=dtype,
        device=device,
        n_buckets=setting.n_buckets,
        drop_rate=setting.drop_rate,
    )


def layer_attention(
    setting: AttentionSetting,
    *,
    heads: int,
    head_dim: int,
    dtype: torch.dtype,
    device: str,
    shared_qk: bool,
    meter: DensityMeter,
    seed: int = 0,
) -> Callable[[int], AttentionFn]:
    """Layer index -> attention. Raises AttentionConfigError for settings the attention cannot
    take, AttentionUnavailable when it cannot run here."""
    if device == "cuda" and not torch.cuda.is_available():
        raise AttentionUnavailable("no CUDA device")
    built = _check(setting, heads, head_dim, dtype, device)
    pattern = setting_pattern(setting.impl)
    if pattern == "qk":
        assert setting.drop_rate is not None
        keep: fns.KeepKernel = fns.reference_qk
        if setting.impl != "naive_qk":
            from scfa_kernels import qk_sparse_attention

            keep = qk_sparse_attention
        return lambda layer: _qk_attention(keep, float(cast(float, setting.drop_rate)), meter)
    if pattern == "peer":
        assert built is not None and built.density is not None
        density = built.density
        return lambda layer: _peer_metered(built.for_layer(layer), density, meter)
    if pattern != "hash":
        assert built is not None
        if pattern == "none":
            return built.for_layer
        return lambda layer: _dense_metered(built.for_layer(layer), meter)
    n_buckets = cast(int, setting.n_buckets)
    kernel = _hash_kernel(setting.impl, n_buckets)

    def for_layer(layer: int) -> AttentionFn:
        lsh: PerCallLsh | fns.LayerLsh
        if setting.lsh == "fixed":
            lsh = fns.LayerLsh(
                n_buckets, seed * 65536 + layer, heads=heads, head_dim=head_dim, device=device
            )
        else:
            lsh = PerCallLsh(n_buckets, heads, head_dim)
        return _hash_attention(kernel, lsh, shared_qk, meter)

    return for_layer


__all__ = [
    "REFORMER",
    "DensityMeter",
    "PerCallLsh",
    "hash_kept_pairs",
    "heads_config",
    "layer_attention",
    "qk_kept_pairs",
    "setting_pattern",
]
