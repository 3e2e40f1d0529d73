"""FlashAttention-3 and -4 as dense causal baselines, where their packages are installed.

* `fa3`: the Hopper build of FlashAttention-3 (`flash_attn_interface.flash_attn_func`, from
  the flash-attention repository's `hopper/` folder). Compute capability 9.x.
* `fa4`: FlashAttention-4 in CuTe DSL (`flash_attn.cute.flash_attn_func`, the `flash-attn-4`
  package, also shipped inside recent `flash-attn` wheels). Compute capability 9.x and 10.x.

Both take (B, T, H, D) q, k, v, our layout, so nothing is transposed; fp16/bf16 only.
Depending on the version `flash_attn_func` returns the output or (output, lse); the first
element is used. Elsewhere (no package, no GPU, another card) they are `unavailable` with the
reason.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
from torch import Tensor

from scfa_bench.impls.base import AttentionInputs, ImplUnavailable
from scfa_bench.impls.registry import register


class _FlashPackage:
    module = ""
    package_hint = ""
    capabilities: tuple[int, ...] = ()  # supported major compute capabilities

    def _function(self) -> Callable[..., object]:
        module = importlib.import_module(self.module)
        return module.flash_attn_func

    def available(self, device: str) -> tuple[bool, str]:
        if device != "cuda":
            return False, f"{self.module} runs on CUDA only"
        if not torch.cuda.is_available():
            return False, "no CUDA device"
        try:
            self._function()
        except Exception as exc:
            return False, f"cannot import {self.module} ({self.package_hint}): {exc}"
        major, minor = torch.cuda.get_device_capability()
        if major not in self.capabilities:
            return False, (
                f"{self.module} supports compute capability "
                f"{'/'.join(f'{c}.x' for c in self.capabilities)}, this card is {major}.{minor}"
            )
        return True, ""

    def prepare(self, inputs: AttentionInputs) -> Callable[[], Tensor]:
        if inputs.q.dtype not in (torch.float16, torch.bfloat16):
            raise ImplUnavailable(f"{self.module} takes fp16/bf16, not {inputs.q.dtype}")
        flash_attn_func = self._function()
        q, k, v = inputs.leaves

        def forward() -> Tensor:
            result = flash_attn_func(q, k, v, causal=True)
            return result[0] if isinstance(result, tuple) else result

        # Probe once: an unsupported head dim or shape fails here, not in the timed loop.
        try:
            with torch.no_grad():
                out = forward()
        except torch.OutOfMemoryError:
            raise
        except (RuntimeError, AssertionError, ValueError, NotImplementedError) as exc:
            first_line = (str(exc).strip().splitlines() or [repr(exc)])[0]
            raise ImplUnavailable(f"{self.module}: {first_line}") from exc
        if tuple(out.shape) != tuple(q.shape):
            raise ImplUnavailable(
                f"{self.module}: output shape {tuple(out.shape)}, expected {tuple(q.shape)}"
            )
        return forward


@register(
    name="fa3",
    pattern="dense",
    devices=("cuda",),
    dtypes=("fp16", "bf16"),
    description="FlashAttention-3 (flash_attn_interface, Hopper), dense causal",
)
class FlashAttention3(_FlashPackage):
    module = "flash_attn_interface"
    package_hint = "FlashAttention-3: build flash-attention's hopper/ folder"
    capabilities = (9,)


@register(
    name="fa4",
    pattern="dense",
    devices=("cuda",),
    dtypes=("fp16", "bf16"),
    description="FlashAttention-4 (flash_attn.cute, CuTe DSL), dense causal",
)
class FlashAttention4(_FlashPackage):
    module = "flash_attn.cute"
    package_hint = "FlashAttention-4: pip install flash-attn-4"
    capabilities = (9, 10)
