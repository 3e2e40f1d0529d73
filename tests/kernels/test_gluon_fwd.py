"""Which forwards take the Gluon Hopper kernel, and that it compiles for sm_90 (no GPU).

Its numerics are checked on a GPU by `tools/gpu_hopper_check.py` (against the float32
reference and the portable forward); the CPU can only check the selection and the compile.
"""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from scfa_kernels import _gluon_fwd

needs_gluon = pytest.mark.skipif(
    _gluon_fwd.GLUON_IMPORT_ERROR is not None, reason="Gluon does not import here"
)


def _cuda_like(dtype=torch.bfloat16, head_dim=64) -> SimpleNamespace:
    """What `use_hopper_forward` reads of q, on a CUDA device that this machine lacks."""
    return SimpleNamespace(device=torch.device("cuda", 0), dtype=dtype, shape=(2, 16, 3, head_dim))


@pytest.fixture
def fake_gpu(monkeypatch):
    """A CUDA device of compute capability (9, 0), the compiler rather than the interpreter,
    and no SCFA_FORCE_PORTABLE; tests change one of these at a time."""
    capability = {"value": (9, 0)}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *_: capability["value"])
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.delenv("SCFA_FORCE_PORTABLE", raising=False)
    monkeypatch.setenv("SCFA_HOPPER", "1")
    return capability


@needs_gluon
def test_hopper_bf16_d64_dense_takes_gluon(fake_gpu):
    assert _gluon_fwd.use_hopper_forward(_cuda_like(), None, dense=True)
    assert _gluon_fwd.use_hopper_forward(_cuda_like(torch.float16, 128), None, dense=True)


@needs_gluon
def test_the_hopper_path_is_opt_in(fake_gpu, monkeypatch):
    monkeypatch.delenv("SCFA_HOPPER")
    assert not _gluon_fwd.use_hopper_forward(_cuda_like(), None, dense=True)
    monkeypatch.setenv("SCFA_HOPPER", "1")
    assert _gluon_fwd.use_hopper_forward(_cuda_like(), None, dense=True)


def test_cpu_tensor_never_takes_gluon():
    q = torch.zeros(1, 16, 1, 64, dtype=torch.bfloat16)
    assert not _gluon_fwd.use_hopper_forward(q, None, dense=True)


def test_interpreter_never_takes_gluon(fake_gpu, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert not _gluon_fwd.use_hopper_forward(_cuda_like(), None, dense=True)


def test_force_portable_env(fake_gpu, monkeypatch):
    monkeypatch.setenv("SCFA_FORCE_PORTABLE", "1")
    assert not _gluon_fwd.use_hopper_forward(_cuda_like(), None, dense=True)


@pytest.mark.parametrize(
    ("dtype", "head_dim"), [(torch.float32, 64), (torch.bfloat16, 32), (torch.float16, 256)]
)
def test_unsupported_dtype_or_head_dim(fake_gpu, dtype, head_dim):
    assert not _gluon_fwd.use_hopper_forward(_cuda_like(dtype, head_dim), None, dense=True)


@pytest.mark.parametrize("capability", [(8, 0), (8, 9), (10, 0)])
def test_other_architectures(fake_gpu, capability):
    fake_gpu["value"] = capability
    assert not _gluon_fwd.use_hopper_forward(_cuda_like(), None, dense=True)


def test_sparse_plans_stay_portable(fake_gpu):
    """Several buckets or QK-sparse: rows are gathered, the portable kernel's case."""
    assert not _gluon_fwd.use_hopper_forward(_cuda_like(), None, dense=False)


def test_without_gluon(fake_gpu, monkeypatch):
    monkeypatch.setattr(_gluon_fwd, "GLUON_IMPORT_ERROR", "ImportError: no gluon")
    assert not _gluon_fwd.use_hopper_forward(_cuda_like(), None, dense=True)


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
    assert "gluon forward compiles" in done.stdout
