"""One training step of the model, and its measurement.

A step is forward + next-token loss + backward (bf16 or fp16 autocast on CUDA, float32 on the
CPU), optionally the AdamW update, optionally through `torch.compile`. `measure_step` never
raises for a point: bad settings, an implementation that cannot run here, running out of
memory and any other failure come back as the status of a `StepMeasurement`.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from scfa_bench.e2e.attention import AttentionConfigError, AttentionUnavailable, build_attention
from scfa_bench.e2e.kernel_share import profile_kernels, split_kernel_times
from scfa_bench.e2e.model import DecoderLM, ModelConfig, ModelConfigError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
DEVICES = ("cuda", "cpu")
QUANTILES = (0.5, 0.2, 0.8)
MIB = 1024 * 1024
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
    device: str = "cuda"
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelConfig):
            raise StepConfigError(f"model: expected a ModelConfig, got {type(self.model)!r}")
        _positive_int("batch", self.batch)
        _positive_int("seq_len", self.seq_len)
        if self.dtype not in DTYPES:
            raise StepConfigError(f"dtype: expected one of {list(DTYPES)}, got {self.dtype!r}")
        if self.device not in DEVICES:
            raise StepConfigError(f"device: expected one of {list(DEVICES)}, got {self.device!r}")
        if self.device == "cpu" and self.dtype != "fp32":
            raise StepConfigError(
                f"dtype: the CPU step runs in fp32 only, got {self.dtype!r} (the kernels run "
                "through Triton's interpreter there, where bfloat16 products are wrong: "
                "triton-lang/triton#11584)"
            )
        for name in ("compile", "optimizer"):
            if not isinstance(getattr(self, name), bool):
                raise StepConfigError(
                    f"{name}: expected true or false, got {getattr(self, name)!r}"
                )

    @property
    def tokens(self) -> int:
        return self.batch * self.seq_len


@dataclass
class TrainStep:
    """A built step: `run()` does one step and returns its loss (a device scalar, no sync)."""

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
    compute_dtype = DTYPES[config.dtype]
    model_cfg = replace(config.model, max_seq_len=config.seq_len)
    attention = build_attention(
        config.attention,
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
        torch.optim.AdamW(model.parameters(), lr=ADAMW_LR, fused=device == "cuda")
        if config.optimizer
        else None
    )

    def autocast() -> contextlib.AbstractContextManager[object]:
        if device == "cuda" and compute_dtype != torch.float32:
            return torch.autocast("cuda", dtype=compute_dtype)
        return contextlib.nullcontext()

    def run() -> Tensor:
        model.zero_grad(set_to_none=True)
        with autocast():
            loss = forward(idx, targets)
        loss.backward()
        if optimizer is not None:
            optimizer.step()
        return loss.detach()

    n_params = sum(p.numel() for p in model.parameters())
    return TrainStep(config=config, model=model, run=run, n_params=n_params)


# ---------------------------------------------------------------- measurement


@dataclass(frozen=True)
class MeasureSettings:
    """Steps run before timing (compilation happens in the first), timed, and profiled."""

    warmup_steps: int = 3
    timed_steps: int = 10
    profile_steps: int = 3  # 0: no profile (attention share left empty)

    def __post_init__(self) -> None:
        for name, minimum in (("warmup_steps", 1), ("timed_steps", 1), ("profile_steps", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise StepConfigError(f"{name}: expected an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class StepMeasurement:
    """One point's result; fields that were not measured are None."""

    status: str  # ok | oom | error | unavailable
    error: str = ""
    ms_median: float | None = None
    ms_q20: float | None = None
    ms_q80: float | None = None
    tokens_per_s: float | None = None
    peak_mem_mib: float | None = None
    attention_ms: float | None = None  # GPU time of attention kernels per step
    attention_share: float | None = None  # attention_ms / GPU time of all kernels per step
    loss: float | None = None  # of the last timed step
    n_params: int | None = None
    timer: str = ""  # cuda_event | wall_clock


def _quantiles(samples: list[float]) -> tuple[float, float, float]:
    # Linear interpolation between sorted samples, as triton's do_bench reports quantiles.
    values = torch.tensor(samples, dtype=torch.float64)
    median, q20, q80 = torch.quantile(values, torch.tensor(QUANTILES, dtype=torch.float64))
    return float(median), float(q20), float(q80)


def _time_steps(run: Callable[[], Tensor], steps: int, device: str) -> tuple[list[float], Tensor]:
    """Milliseconds of each of `steps` back-to-back steps, and the last loss."""
    if device == "cuda":
        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            for _ in range(steps)
        ]
        torch.cuda.synchronize()
        for start, end in events:
            start.record()
            loss = run()
            end.record()
        torch.cuda.synchronize()
        return [start.elapsed_time(end) for start, end in events], loss
    samples = []
    for _ in range(steps):
        begin = time.perf_counter()
        loss = run()
        samples.append((time.perf_counter() - begin) * 1e3)
    return samples, loss


def _peak_mib(run: Callable[[], Tensor], device: str) -> float | None:
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    run()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / MIB


def is_out_of_memory(exc: BaseException) -> bool:
    """An OOM, also when wrapped (torch.compile re-raises errors inside its own)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, torch.OutOfMemoryError) or "out of memory" in str(current).lower():
            return True
        current = current.__cause__ or current.__context__
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else repr(exc)}"


def _measure(config: StepConfig, settings: MeasureSettings) -> StepMeasurement:
    step = build_step(config)
    device = config.device
    for _ in range(settings.warmup_steps):
        step.run()
    peak = _peak_mib(step.run, device)
    samples, last_loss = _time_steps(step.run, settings.timed_steps, device)
    median, q20, q80 = _quantiles(samples)
    attention_ms = share = None
    if device == "cuda" and settings.profile_steps:
        kernels = profile_kernels(step.run, settings.profile_steps)
        times = split_kernel_times(kernels, settings.profile_steps)
        attention_ms, share = times.attention_ms, times.attention_share
    loss = float(last_loss)
    if not torch.isfinite(torch.tensor(loss)):
        return StepMeasurement(status="error", error=f"the loss is not finite ({loss})")
    return StepMeasurement(
        status="ok",
        ms_median=median,
        ms_q20=q20,
        ms_q80=q80,
        tokens_per_s=config.tokens / (median / 1e3),
        peak_mem_mib=peak,
        attention_ms=attention_ms,
        attention_share=share,
        loss=loss,
        n_params=step.n_params,
        timer="cuda_event" if device == "cuda" else "wall_clock",
    )


def _release_memory(config: StepConfig) -> None:
    if config.compile:
        torch._dynamo.reset()  # compiled graphs may hold the point's tensors
    gc.collect()
    if config.device == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


def measure_step(config: StepConfig, settings: MeasureSettings | None = None) -> StepMeasurement:
    """Build and measure one step: warm-up, peak memory of one step, timed steps, profile.

    Never raises for the point itself (Ctrl-C still interrupts): status `error` for bad
    settings or a failure, `unavailable` for an attention that cannot run here, `oom`.
    """
    settings = settings or MeasureSettings()
    try:
        return _measure(config, settings)
    except SETTINGS_ERRORS as exc:
        return StepMeasurement(status="error", error=str(exc))
    except AttentionUnavailable as exc:
        return StepMeasurement(status="unavailable", error=str(exc))
    except Exception as exc:
        if is_out_of_memory(exc):
            return StepMeasurement(status="oom", error=_first_line(exc))
        return StepMeasurement(status="error", error=_first_line(exc))
    finally:
        _release_memory(config)


__all__ = [
    "DTYPES",
    "SETTINGS_ERRORS",
    "MeasureSettings",
    "StepConfig",
    "StepConfigError",
    "StepMeasurement",
    "TrainStep",
    "build_step",
    "is_out_of_memory",
    "measure_step",
]
