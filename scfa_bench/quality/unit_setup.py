"""The pieces of one training unit: its identity (`Unit`), the run's options, the shared
initial weights, the learning-rate schedule, and the built model + optimizer + step."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from scfa_bench.e2e.model import DecoderLM, ModelConfig
from scfa_bench.quality.config import AttentionSetting, OptimizerSettings, TrainingSettings
from scfa_bench.quality.settings import DensityMeter, heads_config, layer_attention

ATTENTION_SEED_OFFSET = 1 << 20  # the attention's random draws, apart from the init's
AUTOCAST = {"bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass(frozen=True)
class Unit:
    setting: AttentionSetting
    task: str
    seq_len: int
    batch: int
    seed: int
    model: ModelConfig
    total_steps: int


@dataclass(frozen=True)
class TrainOptions:
    training: TrainingSettings
    device: str  # cpu | cuda
    dtype: str  # the dtype actually used: bf16 (CUDA autocast) or fp32
    checkpoint_dir: Path


def initial_state(config: ModelConfig, shared_qk: bool, seed: int) -> dict[str, Tensor]:
    """The weights every setting of this seed starts from (drawn on the CPU: the same on any
    device)."""
    torch.manual_seed(seed)
    model = DecoderLM(config, lambda layer: _no_attention, shared_qk=shared_qk)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _no_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    return v


def lr_at(step: int, total: int, opt: OptimizerSettings) -> float:
    """Linear warm-up over warmup_fraction of the steps, then cosine down to min_lr_fraction."""
    warmup = round(opt.warmup_fraction * total)
    if step < warmup:
        return opt.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return opt.lr * (opt.min_lr_fraction + (1 - opt.min_lr_fraction) * cosine)


@dataclass
class Trainer:
    """A unit's model, its (maybe compiled) forward, AdamW and the density meter its attention
    reports to; `step` runs one optimizer step at the schedule's learning rate."""

    unit: Unit
    options: TrainOptions
    model: DecoderLM
    forward: Callable[[Tensor, Tensor], Tensor]
    optimizer: torch.optim.Optimizer
    meter: DensityMeter
    # The last evaluation's step and training seconds (what a failure row reports).
    evaluated: tuple[int, float] = (0, 0.0)

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.options.device == "cuda" and self.options.dtype != "fp32":
            return torch.autocast("cuda", dtype=AUTOCAST[self.options.dtype])
        return contextlib.nullcontext()

    def step(self, step: int, idx: Tensor, targets: Tensor) -> Tensor:
        opt = self.options.training.optimizer
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(step, self.unit.total_steps, opt)
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            loss = self.forward(idx, targets)
        loss.backward()
        if opt.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), opt.grad_clip)
        self.optimizer.step()
        return loss.detach()


def build_trainer(
    unit: Unit, opts: TrainOptions, init: dict[str, Tensor], meter: DensityMeter
) -> Trainer:
    """Model (from `init`), optimizer and step of one unit; raises the attention's errors."""
    training = opts.training
    config = heads_config(unit.model, unit.setting)  # init's shapes do not depend on the heads
    for_layer = layer_attention(
        unit.setting,
        heads=config.heads,
        head_dim=config.head_dim,
        dtype=AUTOCAST[opts.dtype] if opts.device == "cuda" else torch.float32,
        device=opts.device,
        shared_qk=training.shared_qk,
        meter=meter,
        seed=unit.seed,
    )
    with torch.device(opts.device):
        model = DecoderLM(config, for_layer, shared_qk=training.shared_qk)
    model.load_state_dict(init)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    o = training.optimizer
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": o.weight_decay}, {"params": rest, "weight_decay": 0}],
        lr=o.lr,
        betas=o.betas,
        fused=opts.device == "cuda",
    )
    forward: Callable[[Tensor, Tensor], Tensor] = model
    if training.compile:
        torch._dynamo.reset()  # a fresh cache per unit: recompile limits would run it eagerly
        forward = torch.compile(model, dynamic=False)
    return Trainer(unit, opts, model, forward, optimizer, meter)


def probe(trainer: Trainer, idx: Tensor, targets: Tensor) -> None:
    """One forward + backward of a whole training batch, leaving weights, gradients and random
    state as they were: an attention that cannot run at this shape fails here (`unavailable`),
    not in the middle of training, and kernels compile and autotune outside `train_seconds`."""
    with torch.random.fork_rng(devices=rng_devices(trainer.options.device)):
        with trainer.autocast():
            trainer.forward(idx, targets).backward()
    trainer.model.zero_grad(set_to_none=True)
    if trainer.options.device == "cuda":
        torch.cuda.synchronize()


def to_device(tensor: Tensor, device: str) -> Tensor:
    """A CPU batch on `device`; through pinned memory on CUDA, so that the copy does not wait
    for the steps already queued."""
    if device != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def rng_devices(device: str) -> list[int]:
    """The CUDA devices whose generators `torch.random.fork_rng` must save."""
    return [torch.cuda.current_device()] if device == "cuda" else []


__all__ = [
    "ATTENTION_SEED_OFFSET",
    "AUTOCAST",
    "TrainOptions",
    "Trainer",
    "Unit",
    "build_trainer",
    "initial_state",
    "lr_at",
    "probe",
    "rng_devices",
    "to_device",
]
