"""Which calls take the Hopper (Gluon) kernels: only where asked for (SCFA_HOPPER=1), on
compute capability 9.x, for the dtypes, head dims and dense plans they support; never on the
CPU or under the interpreter. The selection is host code, checked here with a faked CUDA
device; the kernels' numerics are checked on a GPU by `tools/gpu_hopper_check.py`."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from scfa_kernels import _gluon_fwd, hopper_requested
from scfa_kernels.hopper import use_hopper

needs_gluon = pytest.mark.skipif(
    _gluon_fwd.GLUON_IMPORT_ERROR is not None, reason="Gluon does not import here"
)


def _cuda_like(dtype=torch.bfloat16, head_dim=64) -> SimpleNamespace:
    """What `use_hopper` reads of q, on a CUDA device that this machine lacks."""
    return SimpleNamespace(device=torch.device("cuda", 0), dtype=dtype, shape=(2, 16, 3, head_dim))


@pytest.fixture
def fake_gpu(monkeypatch):
    """A CUDA device of compute capability (9, 0), the compiler rather than the interpreter,
    SCFA_HOPPER=1 and no SCFA_FORCE_PORTABLE; tests change one of these at a time."""
    capability = {"value": (9, 0)}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *_: capability["value"])
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.delenv("SCFA_FORCE_PORTABLE", raising=False)
    monkeypatch.setenv("SCFA_HOPPER", "1")
    return capability


@needs_gluon
def test_hopper_bf16_d64_dense_takes_gluon(fake_gpu):
    assert use_hopper(_cuda_like(), dense=True)
    assert use_hopper(_cuda_like(torch.float16, 128), dense=True)


@needs_gluon
def test_the_hopper_path_is_opt_in(fake_gpu, monkeypatch):
    monkeypatch.delenv("SCFA_HOPPER")
    assert not use_hopper(_cuda_like(), dense=True)
    monkeypatch.setenv("SCFA_HOPPER", "1")
    assert use_hopper(_cuda_like(), dense=True)


def test_cpu_tensor_never_takes_gluon():
    q = torch.zeros(1, 16, 1, 64, dtype=torch.bfloat16)
    assert not use_hopper(q, dense=True)


def test_interpreter_never_takes_gluon(fake_gpu, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert not use_hopper(_cuda_like(), dense=True)


def test_force_portable_env(fake_gpu, monkeypatch):
    monkeypatch.setenv("SCFA_FORCE_PORTABLE", "1")
    assert not use_hopper(_cuda_like(), dense=True)


@pytest.mark.parametrize(
    ("dtype", "head_dim"), [(torch.float32, 64), (torch.bfloat16, 32), (torch.float16, 256)]
)
def test_unsupported_dtype_or_head_dim(fake_gpu, dtype, head_dim):
    assert not use_hopper(_cuda_like(dtype, head_dim), dense=True)


@pytest.mark.parametrize("capability", [(8, 0), (8, 9), (10, 0)])
def test_other_architectures(fake_gpu, capability):
    fake_gpu["value"] = capability
    assert not use_hopper(_cuda_like(), dense=True)


def test_sparse_plans_stay_portable(fake_gpu):
    """Several buckets or QK-sparse: rows are gathered, the portable kernel's case."""
    assert not use_hopper(_cuda_like(), dense=False)


def test_without_gluon(fake_gpu, monkeypatch):
    monkeypatch.setattr(_gluon_fwd, "GLUON_IMPORT_ERROR", "ImportError: no gluon")
    assert not use_hopper(_cuda_like(), dense=True)


def test_requested_only_by_scfa_hopper_and_never_against_force_portable(monkeypatch):
    monkeypatch.delenv("SCFA_FORCE_PORTABLE", raising=False)
    monkeypatch.delenv("SCFA_HOPPER", raising=False)
    assert not hopper_requested()
    monkeypatch.setenv("SCFA_HOPPER", "1")
    assert hopper_requested()
    monkeypatch.setenv("SCFA_FORCE_PORTABLE", "1")
    assert not hopper_requested()
