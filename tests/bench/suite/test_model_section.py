"""Model suites: the `model:` section, its errors, and the grid it expands to."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scfa_bench.results.row import RowKey
from scfa_bench.suite.grid import expand
from scfa_bench.suite.parse import load_suite

from .test_parse import SUITES_DIR, error_of, write

TINY = """\
name: tiny
model:
  layers: 1
  d_model: 32
  heads: 2
  vocab: 64
  batch: 1
  dtype: fp32
sweep:
  seq_len: [32, 64]
  n_buckets: [2]
implementations: [sdpa_math, scfa_hash, identity]
"""


def test_the_e2e_suite_is_gpt2_small_at_16k_tokens_eager_and_compiled() -> None:
    suite = load_suite(SUITES_DIR / "e2e.yaml")
    model = suite.model
    assert model is not None and suite.shape is None
    assert model.config.label() == "L12-D768-H12-M4-V50304"
    assert model.config.head_dim == 64 and model.dtype == "bf16"
    assert model.compile == (False, True) and not model.optimizer
    assert suite.sweep.seq_len == (2048, 4096, 8192, 16384, 32768)
    assert [model.batch_for(t) for t in suite.sweep.seq_len] == [8, 4, 2, 1, 1]
    assert suite.modes == ("step",) and suite.baseline == "sdpa_cudnn"
    assert set(suite.implementations) == {
        "sdpa_cudnn",
        "scfa_hash",
        "scfa_qk",
        "hashformer",
        "identity",
    }


def test_model_grid_runs_each_compile_value_with_the_baseline_first() -> None:
    suite = load_suite(SUITES_DIR / "e2e.yaml")
    tasks = expand(suite)
    # Per compile value and seq_len: cuDNN, 2 bucket counts x 2 hash kinds, 2 drop rates, identity.
    assert len(tasks) == 2 * 5 * (1 + 2 + 2 + 2 + 1)
    assert [t.point.compile for t in tasks[:40]] == [False] * 40
    assert [t.point.compile for t in tasks[40:]] == [True] * 40
    first = tasks[:8]
    assert first[0].impl == "sdpa_cudnn" and first[0].point.seq_len == 2048
    assert [(t.impl, t.point.n_buckets, t.point.drop_rate) for t in first[1:]] == [
        ("scfa_hash", 8, None),
        ("scfa_hash", 32, None),
        ("scfa_qk", None, 0.5),
        ("scfa_qk", None, 0.8),
        ("hashformer", 8, None),
        ("hashformer", 32, None),
        ("identity", None, None),
    ]
    key = RowKey.for_task(suite, tasks[43], "step")
    assert (key.batch, key.heads, key.head_dim, key.dtype) == (8, 12, 64, "bf16")
    assert (key.model, key.compile) == ("L12-D768-H12-M4-V50304", True)
    assert key.point_label() == "p=0.5 T=2048 compiled"


def test_tiny_model_suite_gets_defaults(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, TINY))
    model = suite.model
    assert model is not None
    assert model.config.mlp_ratio == 4 and model.compile == (False,)
    assert not model.cuda_graph
    assert (model.steps.warmup, model.steps.timed, model.steps.profile) == (3, 10, 3)
    assert model.batch_for(64) == 1 and suite.modes == ("step",)
    assert suite.baseline == "sdpa_math"  # identity has no attention: never the default
    assert not suite.check


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            (
                "name: tiny\n",
                "name: tiny\nshape: {batch: 1, heads: 2, head_dim: 16, dtype: fp32}\n",
            ),
            r"shape \(line 2\): not used by model suites",
        ),
        (
            ("name: tiny\n", "name: tiny\nmodes: [fwd]\n"),
            re.escape("modes (line 2): not used by model"),
        ),
        (("heads: 2", "heads: 5"), r"model.heads \(line 5\): 5 heads do not divide d_model 32"),
        (("heads: 2", "heads: 0"), r"model.heads \(line 5\): expected an integer >= 1, got 0"),
        (
            ("d_model: 32", "d_model: 40"),
            re.escape(
                "model.heads (line 5): head dim 20 (d_model 40 / heads 2): scfa_hash supports "
                "head dims 16, 32, 64, 128 (implementations[1] 'scfa_hash')"
            ),
        ),
        (
            ("[sdpa_math, scfa_hash, identity]", "[sdpa_math, nsa]"),
            re.escape("model.heads (line 5): nsa needs a multiple of 16 heads, not 2"),
        ),
        (
            ("  batch: 1\n", "  batch: 1\n  tokens_per_step: 64\n"),
            r"model \(line 2\): expected exactly one of `batch` and `tokens_per_step`",
        ),
        (
            ("  batch: 1\n", ""),
            r"model \(line 2\): expected exactly one of `batch` and `tokens_per_step`",
        ),
        (
            ("  dtype: fp32", "  dtype: int8"),
            re.escape("model.dtype (line 8): expected one of fp16, bf16"),
        ),
        (
            ("  dtype: fp32", "  dtype: fp32\n  mlp_ratio: 1.01"),
            re.escape("model.mlp_ratio (line 9): 1.01 x d_model 32 = 32.32 is not a whole number"),
        ),
        (
            ("  dtype: fp32", "  dtype: fp32\n  compile: yes please"),
            r"model.compile \(line 9\): expected true or false",
        ),
        (
            ("  dtype: fp32", "  dtype: fp32\n  compile: [true, true]"),
            r"model.compile\[1\] \(line 9\): duplicate value True",
        ),
        (
            ("  dtype: fp32", "  dtype: fp32\n  cuda_graph: sometimes"),
            r"model.cuda_graph \(line 9\): expected true or false",
        ),
        (
            ("  dtype: fp32", "  dtype: fp32\n  cuda_graph: true\ndevice: cpu"),
            r"model.cuda_graph \(line 9\): a CUDA graph needs device cuda \(or auto\), not cpu",
        ),
        (
            ("  dtype: fp32", "  dtype: fp32\n  steps: {timed: 0}"),
            re.escape("model.steps.timed (line 9): expected an integer >= 1, got 0"),
        ),
        (
            ("  dtype: fp32", "  dtype: fp32\n  depth: 3"),
            re.escape("model.depth (line 9): unknown key"),
        ),
        (
            ("sdpa_math, scfa_hash", "sdpa_math, flex_dense, scfa_hash"),
            r"implementations\[1\] \(line 12\): 'flex_dense' cannot be the attention of a model",
        ),
        (
            ("n_buckets: [2]", "n_buckets: [3]"),
            r"sweep.n_buckets\[0\] \(line 11\): LSH buckets need an even count, got 3",
        ),
        (("  n_buckets: [2]\n", ""), "implementation 'scfa_hash' uses axis 'n_buckets'"),
        (("identity]", "identity, scfa_qk]"), "implementation 'scfa_qk' uses axis 'drop_rate'"),
    ],
)
def test_bad_model_suites_name_the_key_and_line(
    tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    old, new = edit
    assert old in TINY
    text = error_of(tmp_path, TINY.replace(old, new, 1))
    assert re.search(message, text), text


def test_cuda_graph_is_read_and_written_to_the_meta(tmp_path: Path) -> None:
    from scfa_bench.measure.envinfo import environment
    from scfa_bench.results.meta import new_meta

    text = TINY.replace("  dtype: fp32", "  dtype: fp32\n  cuda_graph: true")
    suite = load_suite(write(tmp_path, text))
    assert suite.model is not None and suite.model.cuda_graph
    assert new_meta(suite, environment("cpu"), [], "now")["model"]["cuda_graph"] is True


def test_an_attention_suite_still_needs_a_shape(tmp_path: Path) -> None:
    text = error_of(tmp_path, "name: x\nsweep: {seq_len: [64]}\nimplementations: [sdpa_math]\n")
    assert "missing required key 'shape' (or a 'model' section)" in text
