"""`tools/host_overhead.py` runs on the CPU and prints its three per-call host times."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "host_overhead.py"


def test_host_overhead_tool_prints_three_positive_times(interpreter_subprocess):
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--calls", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    times = [float(t) for t in re.findall(r"([0-9.]+) us per call", done.stdout)]
    assert len(times) == 3 and all(t > 0 for t in times), done.stdout
