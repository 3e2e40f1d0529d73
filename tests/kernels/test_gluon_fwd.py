"""The Gluon Hopper forward compiles for sm_90 with TMA and wgmma (no GPU needed).

Its numerics are checked on a GPU by `tools/gpu_hopper_check.py` (against the float32
reference and the portable forward); which calls take it: tests/kernels/test_hopper.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from scfa_kernels import _gluon_fwd

needs_gluon = pytest.mark.skipif(
    _gluon_fwd.GLUON_IMPORT_ERROR is not None, reason="Gluon does not import here"
)


@pytest.mark.slow
@needs_gluon
def test_gluon_forward_compiles_for_sm90_with_tma_and_wgmma():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    done = subprocess.run(
        [sys.executable, "-m", "scfa_kernels._gluon_compile"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "gluon kernels compile" in done.stdout
