"""The kernels compile for a GPU (Triton IR -> cubin), checked without one.

The interpreter runs the CPU tests but does not type-check kernels as the compiler does;
`tools/compile_kernels.py` runs the compiler for sm_90 on every kernel and configuration.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "compile_kernels.py"


@pytest.mark.slow
def test_every_kernel_compiles_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # today's default; silences 3.9's notice
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--archs", "90"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "all kernels compile" in done.stdout
