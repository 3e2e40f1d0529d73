"""NVML telemetry with a fake NVML: sampling on a thread, the summary, the throttled flag."""

from __future__ import annotations

import time

import pytest

from scfa_bench.measure import telemetry as tm


class FakeNvml:
    """Answers like pynvml from a script of states; the last state repeats."""

    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, states, *, max_sm=1980, limit_mw=700_000, event_api=True):
        self.states = list(states)
        self.calls = 0
        self.max_sm = max_sm
        self.limit_mw = limit_mw
        if event_api:
            self.nvmlDeviceGetCurrentClocksEventReasons = self._reasons
        else:
            self.nvmlDeviceGetCurrentClocksThrottleReasons = self._reasons

    def _state(self):
        return self.states[min(self.calls, len(self.states) - 1)]

    def nvmlDeviceGetClockInfo(self, handle, kind):
        assert handle == "gpu0"
        return self._state()["sm"] if kind == self.NVML_CLOCK_SM else 2619

    def nvmlDeviceGetPowerUsage(self, handle):
        return self._state()["mw"]

    def nvmlDeviceGetTemperature(self, handle, sensor):
        return self._state()["temp"]

    def _reasons(self, handle):
        state = self._state()
        self.calls += 1  # the last query of a sample: the next sample reads the next state
        return state["reasons"]

    def nvmlDeviceGetMaxClockInfo(self, handle, kind):
        return self.max_sm

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        if self.limit_mw is None:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        return self.limit_mw


COOL = {"sm": 1980, "mw": 450_000, "temp": 50, "reasons": 0x1}
HOT = {"sm": 1410, "mw": 699_000, "temp": 87, "reasons": 0x20 | 0x4}


def test_reason_names_decode_bits_and_keep_unknown_ones():
    assert tm.reason_names(0) == ()
    assert tm.reason_names(0x24) == ("sw_power_cap", "sw_thermal_slowdown")
    assert tm.reason_names(0x1000 | 0x8) == ("hw_slowdown", "0x1000")


def test_summary_of_a_cool_row_is_not_throttled():
    sampler = tm.TelemetrySampler(nvml=FakeNvml([COOL]), handle="gpu0")
    samples = [sampler.sample() for _ in range(3)]
    summary = tm.summarize(samples, sm_mhz_max_card=1980, power_limit_w=700)
    assert summary.samples == 3
    assert summary.sm_mhz_min == summary.sm_mhz_median == 1980
    assert summary.mem_mhz_median == 2619 and summary.temp_c_max == 50
    assert summary.power_w_max == 450 and summary.power_limit_w == 700
    assert summary.reasons == ()  # gpu_idle is left out
    assert summary.throttled is False


def test_a_throttled_sample_flags_the_row():
    fake = FakeNvml([COOL, COOL, HOT, COOL], event_api=False)  # the older API name
    sampler = tm.TelemetrySampler(nvml=fake, handle="gpu0")
    samples = [sampler.sample() for _ in range(4)]
    assert [s.sm_mhz for s in samples] == [1980, 1980, 1410, 1980]
    summary = tm.summarize(samples, sm_mhz_max_card=1980)
    assert summary.sm_mhz_min == 1410 and summary.sm_mhz_median == 1980
    assert summary.temp_c_max == 87 and summary.power_w_max == 699
    assert summary.reasons == ("sw_power_cap", "sw_thermal_slowdown")
    assert summary.throttled is True
    cells = summary.columns()
    assert cells["throttle_reasons"] == "sw_power_cap|sw_thermal_slowdown"
    assert cells["throttled"] is True and cells["sm_mhz_min"] == 1410


def test_low_clock_alone_counts_as_throttled():
    assert tm.is_throttled((), 1500, 1980)  # 76% of max
    assert not tm.is_throttled((), 1800, 1980)
    assert not tm.is_throttled(("applications_clocks_setting",), 1800, 1980)
    assert tm.is_throttled(("hw_slowdown",), 1980, 1980)
    assert not tm.is_throttled((), 1500, None)  # no maximum known: no clock verdict


def test_background_sampler_collects_while_running():
    fake = FakeNvml([COOL] * 3 + [HOT])
    with tm.TelemetrySampler(nvml=fake, handle="gpu0", period_s=0.002) as sampler:
        deadline = time.monotonic() + 5
        while fake.calls < 6 and time.monotonic() < deadline:
            time.sleep(0.005)
    summary = sampler.summary()
    assert summary.samples >= 6
    assert summary.throttled is True and summary.sm_mhz_max_card == 1980
    assert summary.power_limit_w == 700
    # Restarting clears the previous row's samples.
    sampler.start()
    assert sampler.stop().samples >= 1


def test_unsupported_queries_leave_holes_not_errors():
    fake = FakeNvml([COOL], limit_mw=None)
    fake.nvmlDeviceGetTemperature = lambda handle, sensor: (_ for _ in ()).throw(RuntimeError())
    sampler = tm.TelemetrySampler(nvml=fake, handle="gpu0").start()
    summary = sampler.stop()
    assert summary.temp_c_max is None and summary.power_limit_w is None
    assert summary.sm_mhz_median == 1980


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_without_nvml_the_summary_is_empty_with_one_note(device, monkeypatch):
    import scfa_bench.measure.memory as memory

    monkeypatch.setattr(memory, "nvml_status", lambda: (False, "NVMLError: driver not loaded"))
    sampler = tm.TelemetrySampler.for_current_device(device)
    assert not sampler.active
    with sampler:
        pass
    summary = sampler.summary()
    assert summary.samples == 0 and summary.throttled is None
    assert summary.note and ("cpu" in summary.note or "driver not loaded" in summary.note)
    cells = summary.columns()
    assert cells["sm_mhz_median"] is None and cells["throttle_reasons"] == ""
