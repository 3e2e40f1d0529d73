"""Measuring one point: inputs, the check, timings, memory, FLOP rates, the machine, NVML
telemetry, profiler runs."""
