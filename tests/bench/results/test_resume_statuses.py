"""A single-process `--resume` (`run.loop.run_suite` with `resume=`, what `scfa-bench run
--resume` calls) keeps the `error` and `oom` rows of the CSV: a failed row is a result, and
measuring it again would only fail again (and, for an OOM, cost the time to run out again)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor

from scfa_bench.impls import registry
from scfa_bench.impls.base import AttentionInputs
from scfa_bench.results.reader import read_results
from scfa_bench.run.loop import RunOptions, run_suite
from scfa_bench.suite.parse import parse_suite
from scfa_kernels import reference

PREPARED: Counter[str] = Counter()  # implementation -> prepare() calls


class _Fake:
    """A hash-sparse fake whose calls are exact, raise an OOM, or raise another error."""

    def __init__(self, name: str, behaviour: str) -> None:
        self.name, self.behaviour = name, behaviour

    def available(self, device: str) -> tuple[bool, str]:
        return True, ""

    def prepare(self, inputs: AttentionInputs) -> Callable[[], Tensor]:
        PREPARED[self.name] += 1

        def forward() -> Tensor:
            if self.behaviour == "oom":
                raise torch.OutOfMemoryError("simulated: CUDA out of memory")
            if self.behaviour == "error":
                raise ValueError("simulated: boom")
            return reference.hash_sparse_attention(
                inputs.q, inputs.k, inputs.v, inputs.q_hash, inputs.k_hash
            )

        return forward


FAKES = {"resume_fake_ok": "ok", "resume_fake_oom": "oom", "resume_fake_error": "error"}


@pytest.fixture(autouse=True, scope="module")
def fakes() -> Iterator[None]:
    for name, behaviour in FAKES.items():
        factory = lambda n=name, b=behaviour: _Fake(n, b)
        registry.register(name=name, pattern="hash", devices=("cpu",))(factory)
    yield
    for name in FAKES:
        registry.unregister(name)


def test_resume_does_not_measure_error_and_oom_rows_again(tmp_path: Path) -> None:
    suite = parse_suite(
        {
            "name": "resume-statuses",
            "shape": {"batch": 1, "heads": 1, "head_dim": 16, "dtype": "fp32"},
            "sweep": {"seq_len": [16, 32], "n_buckets": [2]},
            "implementations": list(FAKES),
            "modes": ["fwd"],
            "timing": {"warmup_ms": 0, "rep_ms": 1e-6},
            "device": "cpu",
        },
        "resume-statuses.yaml",
    )
    PREPARED.clear()
    first = run_suite(suite, RunOptions(out_dir=tmp_path))
    before = [(r.impl, r.seq_len, r.status) for r in read_results(first.csv_path).rows]
    assert sorted({status for *_, status in before}) == ["error", "ok", "oom"]
    assert len(before) == 6 and set(PREPARED) == set(FAKES)

    PREPARED.clear()
    again = run_suite(suite, RunOptions(out_dir=tmp_path, resume=first.csv_path))
    assert again.new_rows == 0 and not again.interrupted
    assert not PREPARED, f"resume prepared {dict(PREPARED)} again"
    after = [(r.impl, r.seq_len, r.status) for r in read_results(first.csv_path).rows]
    assert after == before
