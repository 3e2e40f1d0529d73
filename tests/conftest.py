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
