"""Test set-up: Triton runs through its interpreter on machines without CUDA.

TRITON_INTERPRET must be set before triton is first imported, so it is set here,
at collection time, before any test module imports the kernels.
"""

from __future__ import annotations

import os

import pytest

try:
    import torch

    _HAS_CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover - torch is a hard dependency
    _HAS_CUDA = False

if not _HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

# The device kernels under test run on: CUDA when there is a GPU, else the CPU interpreter.
DEVICE = "cuda" if _HAS_CUDA else "cpu"


@pytest.fixture
def device() -> str:
    return DEVICE


def _numpy_breaks_the_interpreter() -> bool:
    """Triton's interpreter fails on numpy >= 2.4 (triton-lang/triton#9171): CI pins numpy < 2.4;
    a GPU image may not."""
    try:
        import numpy
    except ImportError:  # pragma: no cover - torch brings numpy
        return False
    major, minor = (int(part) for part in numpy.__version__.split(".")[:2])
    return (major, minor) >= (2, 4)


@pytest.fixture
def interpreter_subprocess() -> None:
    """For tests that run Triton's CPU interpreter in a child process even on a GPU machine:
    skipped where the installed numpy breaks the interpreter."""
    if _numpy_breaks_the_interpreter():
        import numpy

        pytest.skip(
            f"numpy {numpy.__version__} breaks Triton's interpreter (triton-lang/triton#9171); "
            "install numpy<2.4 to run this test"
        )
