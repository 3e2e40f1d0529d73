"""Names shared by every stage: modes, dtypes, devices, sparsity patterns, row statuses.

Each is defined here once; the suite schema, the registry, the results reader and the
analysis all take them from this module.
"""

from __future__ import annotations

from typing import Literal

# Measurement modes in run order.
MODES = ("fwd", "bwd", "fwd+bwd")
# Modes of model-suite rows: one training step (forward, loss, backward), without or with the
# AdamW update.
STEP_MODES = ("step", "step+adamw")
# Every mode a results row may carry.
ROW_MODES = (*MODES, *STEP_MODES)
# Canonical dtype names (suite files also accept the torch spellings, see suite.parse).
DTYPES = ("fp16", "bf16", "fp32")
# Where a suite may ask to run; "auto" means cuda when present, else cpu.
DEVICES = ("auto", "cuda", "cpu")

Pattern = Literal["hash", "qk", "dense"]
# The sweep axes beyond seq_len, and which of them each sparsity pattern uses.
SWEEP_AXES = ("n_buckets", "drop_rate")
PATTERN_AXES: dict[str, tuple[str, ...]] = {
    "hash": ("n_buckets",),
    "qk": ("drop_rate",),
    "dense": (),
}

# What an implementation computes: the point's attention exactly, an approximation of it (checked
# against its own reference), or a limit (the best dense kernel on the work the pattern allows).
IMPL_KINDS = ("exact", "approximate", "limit")

# Row statuses; `oom` and `unavailable` are facts about the machine, the failing ones fail a run.
STATUSES = ("ok", "incorrect", "oom", "error", "unavailable")
FAILING_STATUSES = ("incorrect", "error")

# Said wherever wall-clock (CPU, Triton interpreter) timings are shown: report, plots, summary.
WALL_CLOCK_WARNING = (
    "wall-clock times on the CPU through Triton's interpreter: not indicative of GPU speed"
)
# What a meta records as `hopper_kernels_hash` when the run did not ask for the Hopper path.
HOPPER_OFF = "off"
# Steps run untimed right before the first timed one, with no synchronisation in between, so
# the window starts as a training loop's steady state does: the host launching ahead of the
# GPU. After a synchronisation the queue is empty, and a step whose host time is close to its
# GPU time reads host-paced for the first steps of a short window (a user's loop never waits).
LEAD_STEPS = 2
