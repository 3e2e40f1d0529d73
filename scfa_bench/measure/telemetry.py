"""What the card was doing while a row was timed: NVML sampled from a background thread.

`TelemetrySampler` reads SM and memory clocks, power draw, temperature and the clock event
("throttle") reasons every `period_s` (10 ms) on a daemon thread, started before a row's
timing and stopped after it; the timed path itself never calls NVML. The thread holds the
GIL only between NVML calls (ctypes releases it during them), a few microseconds per period.

`summarize` turns the samples into one row's summary (min and median SM clock, median memory
clock, max temperature and power, the reasons seen, by name) and `is_throttled` decides
whether the row ran slowed down: a slowdown reason (power cap, thermal, hardware slowdown,
power brake) in any sample, or the minimum SM clock below a fraction of the card's maximum.
Without NVML (no GPU, no driver, no pynvml) the sampler collects nothing, the summary is
empty and carries one note; nothing raises.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

DEFAULT_PERIOD_S = 0.010
# A row is "throttled" when its slowest sample ran below this share of the card's max clock.
DEFAULT_MIN_CLOCK_FRACTION = 0.85

# NVML clock event reason bits (nvml.h, `nvmlClocksEventReason*`; older name: ThrottleReason).
REASON_BITS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
# Reasons that mean the clocks were held down by power or heat, not chosen by a user/idle.
SLOWDOWN_REASONS = frozenset(
    {
        "sw_power_cap",
        "hw_slowdown",
        "sw_thermal_slowdown",
        "hw_thermal_slowdown",
        "hw_power_brake_slowdown",
    }
)


def reason_names(mask: int) -> tuple[str, ...]:
    """Names of the reason bits set in `mask` (unknown bits as hex)."""
    names = [name for bit, name in REASON_BITS.items() if mask & bit]
    unknown = mask & ~sum(REASON_BITS)
    if unknown:
        names.append(f"0x{unknown:x}")
    return tuple(names)


@dataclass(frozen=True)
class Sample:
    time_s: float
    sm_mhz: float | None
    mem_mhz: float | None
    power_w: float | None
    temp_c: float | None
    reasons: int  # bit mask, 0 when unknown


@dataclass(frozen=True)
class TelemetrySummary:
    """One row's telemetry; every value None (and `note` set) when nothing was sampled."""

    samples: int = 0
    sm_mhz_min: float | None = None
    sm_mhz_median: float | None = None
    sm_mhz_max_card: float | None = None  # the card's maximum SM clock
    mem_mhz_median: float | None = None
    temp_c_max: float | None = None
    power_w_max: float | None = None
    power_limit_w: float | None = None
    reasons: tuple[str, ...] = ()
    note: str = ""
    throttled: bool | None = None

    def columns(self) -> dict[str, Any]:
        """CSV cells: numbers, reasons joined by `|`, `throttled` as a bool (None: unknown)."""
        return {
            "telemetry_samples": self.samples,
            "sm_mhz_min": self.sm_mhz_min,
            "sm_mhz_median": self.sm_mhz_median,
            "mem_mhz_median": self.mem_mhz_median,
            "temp_c_max": self.temp_c_max,
            "power_w_max": self.power_w_max,
            "power_limit_w": self.power_limit_w,
            "throttle_reasons": "|".join(self.reasons),
            "throttled": self.throttled,
        }


def is_throttled(
    reasons: tuple[str, ...],
    sm_mhz_min: float | None,
    sm_mhz_max_card: float | None,
    *,
    min_clock_fraction: float = DEFAULT_MIN_CLOCK_FRACTION,
    slowdown_reasons: frozenset[str] = SLOWDOWN_REASONS,
) -> bool:
    """A slowdown reason was seen, or the SM clock fell below the fraction of its maximum."""
    if any(r in slowdown_reasons for r in reasons):
        return True
    if sm_mhz_min is not None and sm_mhz_max_card:
        return sm_mhz_min < min_clock_fraction * sm_mhz_max_card
    return False


def _values(samples: list[Sample], name: str) -> list[float]:
    return [v for v in (getattr(s, name) for s in samples) if v is not None]


def summarize(
    samples: list[Sample],
    *,
    sm_mhz_max_card: float | None = None,
    power_limit_w: float | None = None,
    note: str = "",
    min_clock_fraction: float = DEFAULT_MIN_CLOCK_FRACTION,
) -> TelemetrySummary:
    """The per-row summary of `samples` (pure: no NVML)."""
    if not samples:
        return TelemetrySummary(note=note or "no telemetry samples")
    sm, mem = _values(samples, "sm_mhz"), _values(samples, "mem_mhz")
    power, temp = _values(samples, "power_w"), _values(samples, "temp_c")
    mask = 0
    for s in samples:
        mask |= s.reasons
    # gpu_idle between kernels is normal during a measurement; keep it out of the summary.
    reasons = tuple(r for r in reason_names(mask) if r != "gpu_idle")
    sm_min = min(sm) if sm else None
    return TelemetrySummary(
        samples=len(samples),
        sm_mhz_min=sm_min,
        sm_mhz_median=statistics.median(sm) if sm else None,
        sm_mhz_max_card=sm_mhz_max_card,
        mem_mhz_median=statistics.median(mem) if mem else None,
        temp_c_max=max(temp) if temp else None,
        power_w_max=max(power) if power else None,
        power_limit_w=power_limit_w,
        reasons=reasons,
        note=note,
        throttled=is_throttled(
            reasons, sm_min, sm_mhz_max_card, min_clock_fraction=min_clock_fraction
        ),
    )


def run_sm_clock(rows: Any) -> float | None:
    """A run's SM clock: the median over its `ok` rows of their median SM clock (None without
    telemetry). `check` compares it between two runs."""
    clocks = [
        r.sm_mhz_median
        for r in rows
        if getattr(r, "status", "ok") == "ok" and getattr(r, "sm_mhz_median", None) is not None
    ]
    return statistics.median(clocks) if clocks else None


def run_telemetry(rows: Any, device: str) -> dict[str, Any]:
    """The run's telemetry for its meta (`rows_telemetry`); a note when nothing was sampled."""
    summary = rows_telemetry(rows)
    note = TelemetrySampler.for_current_device(device).note if summary is None else None
    return summary or {"sampled": False, "note": note or "no telemetry samples"}


def rows_telemetry(rows: Any) -> dict[str, Any] | None:
    """Sampling, SM clock and throttled rows from the rows' cells alone (None: no clock)."""
    rows = list(rows)
    if (clock := run_sm_clock(rows)) is None:
        return None
    return {
        "sampled": True,
        "period_s": DEFAULT_PERIOD_S,
        "sm_mhz_median": clock,
        "sm_mhz_min": min((r.sm_mhz_min for r in rows if r.sm_mhz_min is not None), default=None),
        "temp_c_max": max((r.temp_c_max for r in rows if r.temp_c_max is not None), default=None),
        "throttled_rows": sum(1 for r in rows if r.throttled == "yes"),
        "throttle_rule": (
            f"a slowdown reason ({', '.join(sorted(SLOWDOWN_REASONS))}) or the SM clock below "
            f"{DEFAULT_MIN_CLOCK_FRACTION:.0%} of its maximum"
        ),
    }


def _call(fn: Any, *args: Any) -> Any:
    """One NVML query; None when this card or driver does not answer it."""
    try:
        return fn(*args)
    except Exception:
        return None


@dataclass
class TelemetrySampler:
    """Background NVML sampler: `with TelemetrySampler.for_current_device() as s: ...` then
    `s.summary()`. `nvml` is the pynvml module (or a fake in tests), `handle` its device."""

    nvml: Any = None
    handle: Any = None
    period_s: float = DEFAULT_PERIOD_S
    note: str = ""
    _samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _reasons_fn: Any = None

    @classmethod
    def for_current_device(cls, device: str = "cuda", period_s: float = DEFAULT_PERIOD_S):
        """A sampler of the current CUDA device, or an empty one (with the reason) without NVML."""
        if device != "cuda":
            return cls(note=f"no NVML telemetry on {device}")
        try:
            import pynvml

            from scfa_bench.measure.memory import nvml_handle, nvml_status
        except Exception as exc:
            return cls(note=f"NVML unavailable: {type(exc).__name__}: {exc}")
        ok, reason = nvml_status()
        if not ok:
            return cls(note=f"NVML unavailable: {reason}")
        handle = nvml_handle()
        if handle is None:
            return cls(note="NVML unavailable: no handle for the current CUDA device")
        return cls(nvml=pynvml, handle=handle, period_s=period_s)

    @property
    def active(self) -> bool:
        return self.nvml is not None and self.handle is not None

    def sample(self) -> Sample:
        nvml, handle = self.nvml, self.handle
        if self._reasons_fn is None:
            self._reasons_fn = getattr(
                nvml, "nvmlDeviceGetCurrentClocksEventReasons", None
            ) or getattr(nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
        now = time.perf_counter()
        sm_mhz = _call(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM)
        mem_mhz = _call(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_MEM)
        milliwatts = _call(nvml.nvmlDeviceGetPowerUsage, handle)
        temp_c = _call(nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU)
        reasons = _call(self._reasons_fn, handle) if self._reasons_fn else None
        return Sample(
            time_s=now,
            sm_mhz=sm_mhz,
            mem_mhz=mem_mhz,
            power_w=None if milliwatts is None else milliwatts / 1000.0,
            temp_c=temp_c,
            reasons=int(reasons or 0),
        )

    def _run(self) -> None:
        while True:
            self._samples.append(self.sample())
            if self._stop.wait(self.period_s):
                return

    def start(self) -> TelemetrySampler:
        self._samples = []
        self._stop.clear()
        if self.active:
            self._thread = threading.Thread(target=self._run, name="nvml-telemetry", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> TelemetrySummary:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._samples.append(self.sample())  # the state at the end of the row
        return self.summary()

    def summary(self, min_clock_fraction: float = DEFAULT_MIN_CLOCK_FRACTION) -> TelemetrySummary:
        if not self.active:
            return summarize([], note=self.note or "NVML unavailable")
        max_sm = _call(self.nvml.nvmlDeviceGetMaxClockInfo, self.handle, self.nvml.NVML_CLOCK_SM)
        limit_mw = _call(self.nvml.nvmlDeviceGetEnforcedPowerLimit, self.handle)
        return summarize(
            list(self._samples),
            sm_mhz_max_card=max_sm,
            power_limit_w=None if limit_mw is None else limit_mw / 1000.0,
            note=self.note,
            min_clock_fraction=min_clock_fraction,
        )

    def __enter__(self) -> TelemetrySampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
