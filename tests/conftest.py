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


# --- the nightly tier ----------------------------------------------------------------------
# Tests that run only nightly (`-m nightly`; the default run deselects them through addopts in
# pyproject.toml). Each entry is a test file, a test function ("file::name", every
# parametrization) or one node id. Only long interpreter runs whose property a faster test of
# the default tier also checks belong here; tests/bench/test_architecture.py checks that every
# entry names a real test.
NIGHTLY: tuple[str, ...] = (
    # Hypothesis over random shapes (about 50 CPU-seconds): the default tier's parametrized
    # forward and backward tests cover the same shapes' classes (T not a multiple of a tile,
    # head dims 16-128, both dtypes, stranded queries) at fixed draws.
    "tests/kernels/test_properties.py",
    # Range splitting: 9 (pattern, split) pairs of about 9 CPU-seconds. The default tier keeps
    # three that cover every pattern and every split once (one bucket / 8 pieces, 2 buckets /
    # 2 pieces, QK / 4 pieces of >= 3 tiles); the split arithmetic is pattern-independent.
    "tests/kernels/test_split.py::test_split_ranges_match_reference[one bucket-2 pieces]",
    "tests/kernels/test_split.py::test_split_ranges_match_reference"
    "[one bucket-4 pieces of >= 3 tiles]",
    "tests/kernels/test_split.py::test_split_ranges_match_reference[2 buckets-8 pieces]",
    "tests/kernels/test_split.py::test_split_ranges_match_reference"
    "[2 buckets-4 pieces of >= 3 tiles]",
    "tests/kernels/test_split.py::test_split_ranges_match_reference[qk drop 0.3-2 pieces]",
    "tests/kernels/test_split.py::test_split_ranges_match_reference[qk drop 0.3-8 pieces]",
    # The counting sort past one chunk group (T=1100, 5.5 CPU-seconds each): the default tier
    # keeps 1100 with 7 buckets, and T up to 300 with 1, 2 and 64 buckets.
    "tests/kernels/test_plan.py::test_counting_sort_matches_stable_torch_sort[1100-1-False]",
    "tests/kernels/test_plan.py::test_counting_sort_matches_stable_torch_sort[1100-2-False]",
    "tests/kernels/test_plan.py::test_counting_sort_matches_stable_torch_sort[1100-64-False]",
    # The operators' registration does not depend on the dtype: fp16 stays in the default tier.
    "tests/kernels/test_ops.py::test_opcheck_hash[fp32]",
    "tests/kernels/test_ops.py::test_opcheck_qk[fp32]",
    # Out-of-range ids in float32 too: the default tier runs all three cases in float16, and
    # both dtypes through the forward and backward tests.
    "tests/kernels/test_ops.py::test_out_of_range_ids_match_nothing[1-50-fp32]",
    "tests/kernels/test_ops.py::test_out_of_range_ids_match_nothing[3-70-fp32]",
    "tests/kernels/test_ops.py::test_out_of_range_ids_match_nothing[8-97-fp32]",
    # Dynamo's `eager` backend traces what `aot_eager` (default tier) traces, and less.
    "tests/kernels/test_ops.py::test_compiled_fullgraph_matches_eager_fwd_and_bwd[eager]",
)


def nightly_entry_matches(entry: str, nodeid: str) -> bool:
    """`entry` is the node id, its function without the parametrization, or its file."""
    return nodeid == entry or nodeid.startswith((entry + "[", entry + "::"))


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: the marker must be on by then
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if any(nightly_entry_matches(entry, item.nodeid) for entry in NIGHTLY):
            item.add_marker(pytest.mark.nightly)
