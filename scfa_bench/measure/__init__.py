"""Measuring one point: inputs, timing, memory, correctness, telemetry."""
