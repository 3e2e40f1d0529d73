"""torch's scaled_dot_product_attention pinned to one backend, dense causal.

Inputs are (B, T, H, D); SDPA wants (B, H, T, D), so q, k, v are transposed as views once, outside
the timed call, and the output is transposed back as a view.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from scfa_bench.impls.base import AttentionInputs, ImplUnavailable, is_out_of_memory
from scfa_bench.impls.registry import register


class PinnedSdpa:
    """SDPA restricted to one backend (an SDPBackend member name)."""

    backend_name = ""
    cuda_only = True

    def available(self, device: str) -> tuple[bool, str]:
        try:
            from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: F401
        except ImportError as exc:
            return False, f"torch.nn.attention.sdpa_kernel missing: {exc}"
        if not hasattr(SDPBackend, self.backend_name):
            return False, f"this torch has no SDPBackend.{self.backend_name}"
        if device == "cuda" and not torch.cuda.is_available():
            return False, "no CUDA device"
        if device == "cpu" and self.cuda_only:
            return False, f"SDPA {self.backend_name} runs on CUDA only"
        return True, ""

    def prepare(self, inputs: AttentionInputs) -> Callable[[], Tensor]:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        backend = getattr(SDPBackend, self.backend_name)
        qt, kt, vt = (x.transpose(1, 2) for x in inputs.leaves)

        def forward() -> Tensor:
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(qt, kt, vt, is_causal=True).transpose(1, 2)

        # Probe once: a backend that cannot take this shape/dtype raises "No available kernel".
        try:
            with torch.no_grad():
                forward()
        except RuntimeError as exc:
            if is_out_of_memory(exc):
                raise  # the caller records `oom`
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise ImplUnavailable(f"SDPA {self.backend_name}: {first_line}") from exc
        return forward


@register(
    name="sdpa_flash",
    pattern="dense",
    devices=("cuda",),
    dtypes=("fp16", "bf16"),
    max_head_dim=256,  # FlashAttention-2's limit in torch's SDPA
    head_dim_multiple=8,
    description="torch SDPA, FlashAttention-2 backend, dense causal",
)
class SdpaFlash(PinnedSdpa):
    backend_name = "FLASH_ATTENTION"


@register(
    name="sdpa_cudnn",
    pattern="dense",
    devices=("cuda",),
    dtypes=("fp16", "bf16"),
    max_head_dim=128,  # cuDNN takes more on some cards and versions; 128 holds on every one
    head_dim_multiple=8,
    description="torch SDPA, cuDNN backend, dense causal",
    # Its backward failed CUDA graph capture (torch 2.11, H100: "operation failed due to a
    # previous error during capture"); the forward captured. Graph-timed suites use do_bench.
    cuda_graph=False,
)
class SdpaCudnn(PinnedSdpa):
    backend_name = "CUDNN_ATTENTION"


@register(
    name="sdpa_efficient",
    pattern="dense",
    devices=("cuda",),
    head_dim_multiple=8,  # aligned loads; other head dims may be padded or refused by torch
    description="torch SDPA, memory-efficient backend, dense causal",
)
class SdpaEfficient(PinnedSdpa):
    backend_name = "EFFICIENT_ATTENTION"


@register(
    name="sdpa_math",
    pattern="dense",
    devices=("cuda", "cpu"),
    description="torch SDPA, math backend (runs on the CPU), dense causal",
)
class SdpaMath(PinnedSdpa):
    backend_name = "MATH"
    cuda_only = False
