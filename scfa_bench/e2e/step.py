"""One training step of the model: its settings and the function that runs it.

A step is forward + next-token loss + backward (bf16 or fp16 autocast on CUDA, float32 on the
CPU), optionally the AdamW update, optionally through `torch.compile`, optionally captured in
a CUDA graph and replayed (`e2e.graphed`). `e2e.measurement` measures it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from scfa_bench.constants import DEVICES, DTYPES
from scfa_bench.e2e.attention import AttentionConfigError, AttentionUnavailable, build_attention
from scfa_bench.e2e.graphed import capture_step
from scfa_bench.e2e.model import DecoderLM, ModelConfig, ModelConfigError

# The suite's dtype names (constants.DTYPES) as the autocast dtype of the step.
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
STEP_DEVICES = tuple(d for d in DEVICES if d != "auto")
ADAMW_LR = 1e-4


class StepConfigError(ValueError):
    """A step setting that cannot be run (batch, seq_len, dtype, device)."""


SETTINGS_ERRORS = (StepConfigError, ModelConfigError, AttentionConfigError)


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StepConfigError(f"{name}: expected an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class StepConfig:
    """Everything one measured step depends on. The position table is sized to seq_len."""

    model: ModelConfig
    batch: int
    seq_len: int
    attention: str
    n_buckets: int | None = None
    drop_rate: float | None = None
    dtype: str = "bf16"
    compile: bool = False
    optimizer: bool = False
    cuda_graph: bool = False  # capture the step once, time its replays (CUDA only)
    device: str = "cuda"
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelConfig):
            raise StepConfigError(f"model: expected a ModelConfig, got {type(self.model)!r}")
        _positive_int("batch", self.batch)
        _positive_int("seq_len", self.seq_len)
        if self.dtype not in DTYPES:
            raise StepConfigError(f"dtype: expected one of {list(DTYPES)}, got {self.dtype!r}")
        if self.device not in STEP_DEVICES:
            raise StepConfigError(
                f"device: expected one of {list(STEP_DEVICES)}, got {self.device!r}"
            )
        if self.device == "cpu" and self.dtype != "fp32":
            raise StepConfigError(
                f"dtype: the CPU step runs in fp32 only, got {self.dtype!r} (the kernels run "
                "through Triton's interpreter there, where bfloat16 products are wrong: "
                "triton-lang/triton#11584)"
            )
        for name in ("compile", "optimizer", "cuda_graph"):
            if not isinstance(getattr(self, name), bool):
                raise StepConfigError(
                    f"{name}: expected true or false, got {getattr(self, name)!r}"
                )
        if self.cuda_graph and self.device != "cuda":
            raise StepConfigError(
                f"cuda_graph: a CUDA graph needs device 'cuda', got {self.device!r}"
            )

    @property
    def tokens(self) -> int:
        return self.batch * self.seq_len


@dataclass
class TrainStep:
    """A built step: `run()` does one step and returns its loss (a device scalar, no sync).
    With `cuda_graph`, `run()` replays the captured step and returns the loss it writes."""

    config: StepConfig
    model: DecoderLM
    run: Callable[[], Tensor]
    n_params: int


def build_step(config: StepConfig) -> TrainStep:
    """Model, inputs, optimizer and the step function. Raises the SETTINGS_ERRORS on bad
    settings, AttentionUnavailable when the attention cannot run here."""
    device = config.device
    if device == "cuda" and not torch.cuda.is_available():
        raise AttentionUnavailable("no CUDA device")
    compute_dtype = AUTOCAST_DTYPES[config.dtype]
    model_cfg = replace(config.model, max_seq_len=config.seq_len)
    attention = build_attention(
        config.attention,
        heads=model_cfg.heads,
        head_dim=model_cfg.head_dim,
        dtype=compute_dtype,
        device=device,
        n_buckets=config.n_buckets,
        drop_rate=config.drop_rate,
        seed=config.seed,
    )
    torch.manual_seed(config.seed)
    with torch.device(device):
        model = DecoderLM(model_cfg, attention.for_layer, shared_qk=attention.shared_qk)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    tokens = torch.randint(
        0, model_cfg.vocab, (config.batch, config.seq_len + 1), generator=generator, device=device
    )
    idx, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    forward: Callable[[Tensor, Tensor], Tensor] = model
    if config.compile:
        # A fresh cache per point: compiled models of earlier points would otherwise use up
        # dynamo's recompile limit, past which it silently runs the model eagerly.
        torch._dynamo.reset()
        forward = torch.compile(model, dynamic=False)
    optimizer = (
        torch.optim.AdamW(
            model.parameters(),
            lr=ADAMW_LR,
            fused=device == "cuda",
            capturable=config.cuda_graph,  # its step count stays on the device
        )
        if config.optimizer
        else None
    )

    def autocast() -> contextlib.AbstractContextManager[object]:
        if device == "cuda" and compute_dtype != torch.float32:
            return torch.autocast("cuda", dtype=compute_dtype)
        return contextlib.nullcontext()

    # Gradients dropped as an optimizer's zero_grad does, over a list made once:
    # `Module.zero_grad` walks the module tree every step (157 against 31 us of host time
    # per step for GPT-2 small, measured on a CPU).
    parameters = list(model.parameters())

    def run() -> Tensor:
        for parameter in parameters:
            parameter.grad = None
        with autocast():
            loss = forward(idx, targets)
        loss.backward()
        if optimizer is not None:
            optimizer.step()
        return loss.detach()

    n_params = sum(p.numel() for p in model.parameters())
    if config.cuda_graph:
        # Compilation and warm-up happen in the eager steps before the capture.
        run = capture_step(run)
    return TrainStep(config=config, model=model, run=run, n_params=n_params)


__all__ = [
    "AUTOCAST_DTYPES",
    "SETTINGS_ERRORS",
    "StepConfig",
    "StepConfigError",
    "TrainStep",
    "build_step",
]
