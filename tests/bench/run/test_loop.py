"""The runner with fake implementations: statuses, OOM/error handling, resume, CSV, speedups."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor

from scfa_bench.impls import registry
from scfa_bench.impls.base import AttentionInputs
from scfa_bench.results.meta import meta_path_for
from scfa_bench.results.reader import read_results
from scfa_bench.results.row import COLUMNS, ResultRow
from scfa_bench.run.loop import RunOptions, run_suite
from scfa_bench.suite.parse import parse_suite
from scfa_kernels import reference


def read_rows(path: Path) -> list[ResultRow]:
    return list(read_results(path).rows)


CALLS: dict[str, int] = {}
INTERRUPT_AT: dict[str, int] = {}  # fake name -> seq_len at which prepare raises Ctrl-C


def _hash_ref(inputs: AttentionInputs) -> Tensor:
    return reference.hash_sparse_attention(
        inputs.q, inputs.k, inputs.v, inputs.q_hash, inputs.k_hash
    )


def _dense_ref(inputs: AttentionInputs) -> Tensor:
    zeros = torch.zeros(inputs.q.shape[:2] + inputs.q.shape[2:3], dtype=torch.int32)
    return reference.hash_sparse_attention(inputs.q, inputs.k, inputs.v, zeros, zeros)


class _OomInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        return x.clone()

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        raise torch.OutOfMemoryError("simulated: CUDA out of memory in backward")


class _WrongGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        return x.clone()

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        return grad * 1.5


class Fake:
    """A fake implementation; `behaviour` says how it misbehaves."""

    def __init__(self, name: str, behaviour: str, dense: bool = False) -> None:
        self.name, self.behaviour, self.dense = name, behaviour, dense

    def available(self, device: str) -> tuple[bool, str]:
        if self.behaviour == "unavailable":
            return False, "simulated: backend missing"
        return True, ""

    def prepare(self, inputs: AttentionInputs) -> Callable[[], Tensor]:
        if INTERRUPT_AT.get(self.name) == inputs.q.shape[1]:
            raise KeyboardInterrupt
        ref = _dense_ref if self.dense else _hash_ref

        def forward() -> Tensor:
            CALLS[self.name] = CALLS.get(self.name, 0) + 1
            if self.behaviour == "oom":
                raise torch.OutOfMemoryError("simulated: CUDA out of memory")
            if self.behaviour == "error":
                raise ValueError("simulated: boom")
            out = ref(inputs)
            if self.behaviour == "wrong":
                return out * 1.1
            if self.behaviour == "wrong_grad":
                return _WrongGrad.apply(out)
            if self.behaviour == "oom_bwd":
                return _OomInBackward.apply(out)
            return out

        return forward


FAKES = {
    "fake_dense": ("ok", "dense"),
    "fake_ok": ("ok", "hash"),
    "fake_oom": ("oom", "hash"),
    "fake_oom_bwd": ("oom_bwd", "hash"),
    "fake_error": ("error", "hash"),
    "fake_wrong": ("wrong", "hash"),
    "fake_wrong_grad": ("wrong_grad", "hash"),
    "fake_unavailable": ("unavailable", "hash"),
}


@pytest.fixture(autouse=True, scope="module")
def fakes() -> Iterator[None]:
    for name, (behaviour, pattern) in FAKES.items():
        factory = lambda n=name, b=behaviour, p=pattern: Fake(n, b, dense=p == "dense")
        registry.register(name=name, pattern=pattern, devices=("cpu",))(factory)
    yield
    for name in FAKES:
        registry.unregister(name)


@pytest.fixture(autouse=True)
def reset_counters() -> None:
    CALLS.clear()
    INTERRUPT_AT.clear()


def make_suite(impls: list[str], **overrides: object):
    data = {
        "name": "fake",
        "shape": {"batch": 1, "heads": 2, "head_dim": 16, "dtype": "fp32"},
        "sweep": {"seq_len": [16, 32], "n_buckets": [2, 4]},
        "implementations": impls,
        "timing": {"warmup_ms": 0, "rep_ms": 1e-6},
        "device": "cpu",
        **overrides,
    }
    return parse_suite(data, "fake.yaml")


def run(suite, tmp_path: Path, **options: object):
    return run_suite(suite, RunOptions(out_dir=tmp_path, **options))


def statuses(rows: list[ResultRow], impl: str) -> set[str]:
    return {r.status for r in rows if r.impl == impl}


def test_csv_columns_rows_and_meta(tmp_path: Path) -> None:
    suite = make_suite(["fake_ok", "fake_dense"], baseline="fake_dense")
    started = time.perf_counter()
    outcome = run(suite, tmp_path)
    elapsed = time.perf_counter() - started
    assert outcome.csv_path.parent == tmp_path
    assert outcome.csv_path.name.startswith("fake-") and outcome.csv_path.suffix == ".csv"
    with outcome.csv_path.open() as file:
        reader = csv.reader(file)
        header = next(reader)
        body = list(reader)
    assert tuple(header) == COLUMNS
    # hash: 2 seq_len x 2 buckets, dense: once per seq_len; 3 modes each
    assert len(body) == (4 + 2) * 3 == outcome.new_rows
    rows = read_rows(outcome.csv_path)
    assert all(r.status == "ok" and r.timer == "wall_clock" for r in rows)
    for r in rows:
        assert r.ms_q20 <= r.ms_median <= r.ms_q80
        assert r.check_rel_err is not None and r.check_rel_err < 1e-5
        assert r.baseline == "fake_dense" and r.device == "cpu"
        assert r.peak_mem_mib is None and r.nvml_mem_mib is None  # CPU: not available
        # each row took at least its timed calls' worth of wall time to produce
        assert r.wall_s is not None and r.wall_s * 1000 >= r.ms_median
    assert sum(r.wall_s for r in rows) <= elapsed
    dense = [r for r in rows if r.impl == "fake_dense"]
    assert all(r.n_buckets is None and r.drop_rate is None and r.density == 1.0 for r in dense)
    sparse = [r for r in rows if r.impl == "fake_ok"]
    assert all(0 < r.density < 1 for r in sparse)
    assert all(
        r.tflops_effective == pytest.approx(r.tflops_dense_equiv * r.density, rel=1e-4)
        for r in sparse
    )
    # each sparse row is joined with the dense row of its seq_len and mode
    for r in sparse:
        base = next(b for b in dense if (b.seq_len, b.mode) == (r.seq_len, r.mode))
        assert r.speedup == pytest.approx(base.ms_median / r.ms_median, rel=1e-4)

    meta = json.loads(meta_path_for(outcome.csv_path).read_text())
    for key in (
        "suite_name",
        "suite_file",
        "suite_sha256",
        "device_name",
        "driver",
        "cuda",
        "torch",
        "triton",
        "python",
        "platform",
        "git_rev",
        "hostname",
        "timing",
        "shape",
        "baseline",
        "started",
        "finished",
        "argv",
        "scfa_bench_version",
    ):
        assert key in meta, key
    assert meta["suite_name"] == "fake" and meta["finished"] and meta["interrupted"] is False
    assert meta["shape"] == {"batch": 1, "heads": 2, "head_dim": 16, "dtype": "fp32"}


def test_failures_are_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    impls = ["fake_oom", "fake_error", "fake_wrong", "fake_unavailable", "fake_ok"]
    outcome = run(make_suite(impls), tmp_path)
    rows = outcome.rows
    assert statuses(rows, "fake_oom") == {"oom"}
    assert statuses(rows, "fake_error") == {"error"}
    assert statuses(rows, "fake_wrong") == {"incorrect"}
    assert statuses(rows, "fake_unavailable") == {"unavailable"}
    assert statuses(rows, "fake_ok") == {"ok"}  # measured after all the failures
    assert len(rows) == 5 * 4 * 3
    errors = {r.impl: r.error for r in rows if r.status != "ok"}
    assert "out of memory" in errors["fake_oom"]
    assert "ValueError: simulated: boom" in errors["fake_error"]
    assert "out rel err" in errors["fake_wrong"]
    assert errors["fake_unavailable"] == "simulated: backend missing"
    wrong = [r for r in rows if r.impl == "fake_wrong"]
    assert all(r.ms_median is None and r.check_rel_err > 0.05 for r in wrong)  # not timed


def test_oom_in_one_mode_keeps_the_other_modes(tmp_path: Path) -> None:
    outcome = run(make_suite(["fake_oom_bwd"], check=False), tmp_path)
    by_mode = {r.mode: r.status for r in outcome.rows}
    assert by_mode == {"fwd": "ok", "bwd": "oom", "fwd+bwd": "oom"}


def test_gradient_check_catches_wrong_backward(tmp_path: Path) -> None:
    outcome = run(make_suite(["fake_wrong_grad"], modes=["fwd", "bwd"]), tmp_path)
    assert statuses(outcome.rows, "fake_wrong_grad") == {"incorrect"}
    assert all("dq rel err" in r.error for r in outcome.rows)
    # forward-only suite: the forward is right, so the check passes
    outcome = run(make_suite(["fake_wrong_grad"], modes=["fwd"]), tmp_path)
    assert statuses(outcome.rows, "fake_wrong_grad") == {"ok"}


def test_interrupt_keeps_rows_and_resume_skips_them(tmp_path: Path) -> None:
    suite = make_suite(["fake_ok"], modes=["fwd"])
    INTERRUPT_AT["fake_ok"] = 32
    first = run(suite, tmp_path)
    assert first.interrupted
    done = read_rows(first.csv_path)
    assert [(r.seq_len, r.n_buckets) for r in done] == [(16, 2), (16, 4)]
    assert json.loads(meta_path_for(first.csv_path).read_text())["interrupted"] is True

    INTERRUPT_AT.clear()
    CALLS.clear()
    second = run(suite, tmp_path, resume=first.csv_path)
    assert not second.interrupted and second.csv_path == first.csv_path
    rows = read_rows(first.csv_path)
    keys = [(r.seq_len, r.n_buckets, r.mode) for r in rows]
    assert len(keys) == len(set(keys)) == 4  # nothing measured twice
    assert second.new_rows == 2
    assert len(json.loads(meta_path_for(first.csv_path).read_text())["resumed"]) == 1

    third = run(suite, tmp_path, resume=first.csv_path)
    assert third.new_rows == 0 and CALLS.get("fake_ok", 0) > 0


def test_resume_rejects_other_suite(tmp_path: Path) -> None:
    from scfa_bench.errors import InputError

    first = run(make_suite(["fake_ok"], modes=["fwd"]), tmp_path)
    other = make_suite(["fake_ok"], modes=["fwd"], name="other")
    with pytest.raises(InputError, match="cannot resume"):
        run(other, tmp_path, resume=first.csv_path)
