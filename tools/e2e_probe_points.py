"""What the model-step probes of `tools/` share (`gpu_e2e_noise_probe.py`,
`gpu_step_host_profile.py`): one warmed-up GPT-2-small step per point, released afterwards, and
the loop over points and compile modes that records each point's row (or its error) in a JSON
report as it goes."""

from __future__ import annotations

import argparse
import gc
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from scfa_bench.e2e.model import GPT2_SMALL
from scfa_bench.e2e.step import StepConfig, build_step

Point = tuple[str, dict[str, Any]]  # (implementation, sweep axes such as {"n_buckets": 8})
COMPILE_MODES = {"off": (False,), "on": (True,), "both": (False, True)}


@contextmanager
def warmed_step(impl: str, axes: dict, seq_len: int, compiled: bool, warmup: int = 3) -> Iterator:
    """The e2e suites' step at B=1 after `warmup` steps (compilation happens in the first);
    its memory and compiled graphs are released on exit."""
    step = build_step(
        StepConfig(
            model=GPT2_SMALL, batch=1, seq_len=seq_len, attention=impl, compile=compiled, **axes
        )
    )
    try:
        for _ in range(warmup):
            step.run()
        yield step
    finally:
        del step
        if compiled:
            torch._dynamo.reset()  # compiled graphs hold the point's tensors
        gc.collect()
        torch.cuda.empty_cache()


def run_points(
    points: Sequence[Point],
    compile_mode: str,
    path: Path,
    measure: Callable[[str, dict, bool], dict],
    describe: Callable[[dict], str],
) -> dict:
    """`measure(impl, axes, compiled)` for each point and mode; an exception becomes the
    point's `error` and the loop goes on. The report is rewritten after every point."""
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    report: dict = {"device": device, "points": {}}
    for compiled in COMPILE_MODES[compile_mode]:
        for impl, axes in points:
            label = f"{impl} {axes} compile={compiled}"
            try:
                row = measure(impl, axes, compiled)
            except Exception as exc:  # record and go on
                row = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
                print(f"{label}: {row['error']}", flush=True)
            else:
                print(f"{label}: {describe(row)}", flush=True)
            report["points"][label] = row
            path.write_text(json.dumps(report, indent=1))
    print(f"wrote {path}")
    return report


def probe_args(default_steps: int) -> argparse.Namespace:
    """--out DIR (created), --seq-len, --steps, --compile off|on|both."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--seq-len", type=int, default=16384)
    parser.add_argument("--steps", type=int, default=default_steps)
    parser.add_argument("--compile", choices=tuple(COMPILE_MODES), default="both")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    return args
