"""A decoder-only language model in plain PyTorch whose attention is pluggable.

GPT-2 shaped: token + learned position embeddings, pre-LayerNorm blocks (fused q/k/v
projection, attention, output projection; MLP with tanh-GELU), a final LayerNorm and an LM
head tied to the token embedding. Attention is whatever `AttentionFn` each layer is given:
it takes q, k, v of shape (B, T, H, D) and returns (B, T, H, D), causal by contract.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

AttentionFn = Callable[[Tensor, Tensor, Tensor], Tensor]
"""(q, k, v) -> out, all (B, T, H, D); must be causal."""

LayerAttention = Callable[[int], AttentionFn]
"""Layer index -> that layer's attention (layers may hold state, e.g. their LSH planes)."""


class ModelConfigError(ValueError):
    """A model setting that cannot build a model: 'model.<setting>: <detail>'."""

    def __init__(self, setting: str, detail: str) -> None:
        super().__init__(f"model.{setting}: {detail}")
        self.setting = setting
        self.detail = detail


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ModelConfigError(name, f"expected an integer >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the decoder. `max_seq_len` sizes the learned position table."""

    layers: int
    d_model: int
    heads: int
    mlp_ratio: float = 4.0
    vocab: int = 50304
    max_seq_len: int = 1024

    def __post_init__(self) -> None:
        for name in ("layers", "d_model", "heads", "vocab", "max_seq_len"):
            _check_int(name, getattr(self, name), 1)
        if self.d_model % self.heads:
            raise ModelConfigError(
                "heads",
                f"{self.heads} heads do not divide d_model {self.d_model}; pick heads so that "
                "d_model / heads (the head dim) is an integer",
            )
        ratio = self.mlp_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not ratio > 0:
            raise ModelConfigError("mlp_ratio", f"expected a number > 0, got {ratio!r}")
        hidden = ratio * self.d_model
        if not math.isfinite(hidden) or abs(hidden - round(hidden)) > 1e-9:
            raise ModelConfigError(
                "mlp_ratio",
                f"{ratio} x d_model {self.d_model} = {hidden} is not a whole number of MLP units",
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads

    @property
    def mlp_hidden(self) -> int:
        return round(self.mlp_ratio * self.d_model)

    def label(self) -> str:
        """'L12-D768-H12-M4-V50304': layers, d_model, heads, MLP ratio, vocabulary."""
        return f"L{self.layers}-D{self.d_model}-H{self.heads}-M{self.mlp_ratio:g}-V{self.vocab}"


# GPT-2 small (vocabulary padded to a multiple of 64, as is usual for speed).
GPT2_SMALL = ModelConfig(layers=12, d_model=768, heads=12, mlp_ratio=4, vocab=50304)


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, cfg: ModelConfig, attention: AttentionFn, shared_qk: bool) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.shared_qk = shared_qk
        self.ln1 = nn.LayerNorm(cfg.d_model)
        # Shared-QK (Hashformer) layers project only q and v: keys are the normalised queries.
        self.qkv = nn.Linear(cfg.d_model, (2 if shared_qk else 3) * cfg.d_model)
        self.attention = attention
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.fc = nn.Linear(cfg.d_model, cfg.mlp_hidden)
        self.proj = nn.Linear(cfg.mlp_hidden, cfg.d_model)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        h = self.heads
        projected = self.qkv(self.ln1(x))
        if self.shared_qk:
            q, v = projected.view(b, t, 2, h, d // h).unbind(dim=2)
            # normalize runs in float32 under autocast; the kernels want q's dtype.
            k = F.normalize(q, dim=-1).to(q.dtype)
        else:
            q, k, v = projected.view(b, t, 3, h, d // h).unbind(dim=2)
        x = x + self.out(self.attention(q, k, v).reshape(b, t, d))
        return x + self.proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class DecoderLM(nn.Module):
    """Decoder-only LM; `forward(idx, targets)` returns the mean next-token loss."""

    def __init__(
        self, cfg: ModelConfig, attention: LayerAttention, *, shared_qk: bool = False
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab, cfg.d_model)
        self.wpe = nn.Embedding(cfg.max_seq_len, cfg.d_model)
        self.blocks = nn.ModuleList(
            Block(cfg, attention(layer), shared_qk) for layer in range(cfg.layers)
        )
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self._init_weights()

    def _init_weights(self) -> None:
        # GPT-2's scheme: N(0, 0.02), zero biases, residual projections scaled by depth.
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            for residual in (block.out, block.proj):
                nn.init.normal_(residual.weight, std=0.02 / math.sqrt(2 * self.cfg.layers))

    def logits(self, idx: Tensor) -> Tensor:
        """(B, T) token ids -> (B, T, vocab) logits."""
        _, t = idx.shape
        if t > self.cfg.max_seq_len:
            raise ModelConfigError(
                "max_seq_len", f"{self.cfg.max_seq_len} is shorter than the {t} tokens given"
            )
        positions = torch.arange(t, device=idx.device)
        x = self.wte(idx) + self.wpe(positions)
        for block in self.blocks:
            x = block(x)
        return F.linear(self.ln_f(x), self.wte.weight)  # tied head

    def forward(self, idx: Tensor, targets: Tensor) -> Tensor:
        logits = self.logits(idx)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


__all__ = [
    "GPT2_SMALL",
    "AttentionFn",
    "DecoderLM",
    "LayerAttention",
    "ModelConfig",
    "ModelConfigError",
]
