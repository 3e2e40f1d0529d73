"""The one tolerance table: every bound under 1%, each with its reason, used by the checks."""

from __future__ import annotations

import pytest
import torch

from scfa_kernels.testing import assert_matches
from scfa_kernels.tolerances import TOLERANCES, max_rel_err

DTYPES = [torch.float16, torch.bfloat16, torch.float32]


def _want(dtype: torch.dtype) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(2, 64, 2, 16, generator=gen).to(dtype).float()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("which", ["out", "grad"])
def test_one_percent_off_fails_and_within_tolerance_passes(dtype: torch.dtype, which: str):
    bound = getattr(TOLERANCES[dtype], which)
    want = _want(dtype)
    # Results as a kernel returns them: rounded to the dtype, compared in float32.
    within = (want * (1 + bound / 2)).to(dtype).float()
    assert max_rel_err(within, want) <= bound
    assert_matches(within, want, bound, which)
    off = (want * 1.01).to(dtype).float()
    with pytest.raises(AssertionError, match="norm-relative error"):
        assert_matches(off, want, bound, which)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_bound_gives_its_reason(dtype: torch.dtype):
    tolerance = TOLERANCES[dtype]
    for bound in (tolerance.forward, tolerance.gradient):
        assert 0 < bound.rel < 1e-2 and len(bound.reason) > 20
