"""The `training:` section: what it accepts, and bad input named by its key path (exit 2)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from scfa_bench.cli import app
from scfa_bench.errors import InputError
from scfa_bench.quality.config import AttentionSetting
from scfa_bench.suite.parse import load_suite, parse_suite

from .training_helpers import folder_corpus, training_data, write_suite

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def data(tmp_path: Path) -> dict[str, Any]:
    return training_data(folder_corpus(tmp_path / "corpus", files=4))


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(InputError) as caught:
        parse_suite(data, "s.yaml")
    return str(caught.value)


def _with(data: dict[str, Any], **training: Any) -> dict[str, Any]:
    changed = copy.deepcopy(data)
    changed["training"].update(training)
    return changed


def test_a_valid_section_and_its_defaults(data: dict[str, Any]) -> None:
    data["training"]["settings"].append({"impl": "scfa_hash", "n_buckets": [8, 16], "lsh": "fixed"})
    suite = parse_suite(data, "s.yaml")
    t = suite.training
    assert t is not None and suite.model is None and suite.shape is None
    labels = ["dense", "naive_hash nb=4", "naive_qk p=0.5"]
    assert [s.label() for s in t.settings] == [
        *labels,
        "scfa_hash nb=8 fixed",
        "scfa_hash nb=16 fixed",
    ]
    assert t.settings[1] == AttentionSetting("naive_hash", n_buckets=4, lsh="per_call")
    assert t.shared_qk and t.dtype == "bf16" and not t.compile
    assert t.optimizer.betas == (0.9, 0.95) and t.optimizer.min_lr_fraction == 0.1
    assert t.steps_for(32) == 4 and t.data_names() == ("corpus",)


def test_a_token_budget_sets_the_steps(data: dict[str, Any]) -> None:
    changed = _with(data, tokens=1000)
    del changed["training"]["steps"]
    t = parse_suite(changed, "s.yaml").training
    assert t is not None and t.steps_for(32) == 1000 // (2 * 32)


S0 = "training.settings[0]"
BAD_INPUT = [
    ({"corpus": {"kind": "folder", "path": "/no/such"}}, "training.corpus.path", "no such folder"),
    ({"corpus": {"kind": "stdlib", "max_bytes": 40}}, "training.seq_len[0]", "longer than"),
    ({"task": {"name": "mqar", "vocab": 32}}, "training.task.vocab", "too small"),
    ({"task": {"name": "mqar", "vocab": 200, "n_pairs": 30}}, "training.task", "n_pairs"),
    (
        {
            "model": {"layers": 1, "d_model": 40, "heads": 2},
            "settings": [{"impl": "scfa_qk", "drop_rate": 0.5}],
        },
        "training.model.heads",
        "head dim 20",
    ),
    ({"model": {"layers": 1, "d_model": 30, "heads": 4}}, "training.model.heads", "divide"),
    ({"settings": [{"impl": "nsa"}]}, f"{S0}.heads", "multiple of 16 heads, not 2"),
    ({"settings": [{"impl": "nsa", "heads": 8}]}, f"{S0}.heads", "multiple of 16 heads, not 8"),
    ({"settings": [{"impl": "sdpa_math", "heads": 3}]}, f"{S0}.heads", "do not divide"),
    ({"settings": [{"impl": "adasplash", "heads": 4}]}, f"{S0}.heads", "head dim 8"),
    ({"settings": [{"impl": "hashformer", "n_buckets": 4}]}, f"{S0}.impl", "shared_qk"),
    ({"settings": [{"impl": "sdpa_nope"}]}, f"{S0}.impl", "unknown attention"),
    ({"settings": [{"impl": "naive_hash", "n_buckets": [4, 5]}]}, f"{S0}.n_buckets[1]", "even"),
    ({"settings": [{"impl": "naive_hash"}]}, S0, "needs n_buckets"),
    ({"settings": [{"impl": "sdpa_math", "drop_rate": 0.5}]}, f"{S0}.drop_rate", "takes no"),
    ({"settings": [{"impl": "naive_qk", "drop_rate": 0.5, "lsh": "fixed"}]}, f"{S0}.lsh", "hash"),
    ({"settings": [{"impl": "sdpa_math"}, {"impl": "sdpa_math"}]}, "training.settings", "`name`"),
    ({"tokens": 100}, "training", "exactly one of `steps` and `tokens`"),
    ({"dtype": "fp16"}, "training.dtype", "bf16, fp32"),
    ({"bogus": 1}, "training.bogus", "unknown key"),
    ({"optimizer": {"betas": [0.9]}}, "training.optimizer.betas", "two numbers"),
    ({"seeds": [0, 0]}, "training.seeds[1]", "duplicate"),
]


@pytest.mark.parametrize(("change", "path", "words"), BAD_INPUT)
def test_bad_input_names_its_key_path(
    data: dict[str, Any], change: dict[str, Any], path: str, words: str
) -> None:
    changed = _with(data, **change)
    if "task" in change:
        del changed["training"]["corpus"]
    message = _error(changed)
    assert f"s.yaml: {path}" in message and words in message, message


def test_a_training_suite_has_only_its_own_top_level_keys(data: dict[str, Any]) -> None:
    assert "sweep: unknown key" in _error(data | {"sweep": {"seq_len": [32]}})
    assert "missing required key 'settings'" in _error(
        {**data, "training": {k: v for k, v in data["training"].items() if k != "settings"}}
    )


def test_a_corpus_too_short_for_seq_len_is_refused_before_any_row(
    data: dict[str, Any], tmp_path: Path
) -> None:
    suite_file = write_suite(tmp_path / "s.yaml", _with(data, seq_len=[32, 4096]))
    result = CliRunner().invoke(app, ["run", str(suite_file), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "training.seq_len[1]: 4096 is longer than the corpus allows" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()
    result = CliRunner().invoke(app, ["validate", str(suite_file)])
    assert result.exit_code == 2 and "training.seq_len[1]: 4096 is longer" in result.output


def test_bad_suite_and_unsupported_options_exit_2_without_traceback(
    data: dict[str, Any], tmp_path: Path
) -> None:
    bad = write_suite(tmp_path / "bad.yaml", _with(data, batch=0))
    result = CliRunner().invoke(app, ["run", str(bad)])
    assert result.exit_code == 2 and "training.batch" in result.output
    good = write_suite(tmp_path / "good.yaml", data)
    for option in (["--gpus", "2"], ["--shards", "2"], ["--profile-stages"]):
        result = CliRunner().invoke(app, ["run", str(good), *option])
        assert result.exit_code == 2, result.output
        assert "not supported for training suites" in result.output
        assert "Traceback" not in result.output


def test_shipped_training_suites_follow_the_paper() -> None:
    for name, seq_len in (("quality", 8192), ("quality_16k", 16384)):
        t = load_suite(ROOT / "suites" / f"{name}.yaml").training
        assert t is not None and t.seq_len == (seq_len,) and t.shared_qk
        assert (t.model.layers, t.model.d_model, t.model.heads) == (6, 512, 8)
        assert t.batch * seq_len == 65536 and t.seeds == (0, 1)
        labels = [s.label() for s in t.settings]
        assert labels[:7] == ["dense"] + [f"scfa_hash nb={n}" for n in (8, 16, 32)] + [
            f"scfa_qk p={p}" for p in (0.3, 0.5, 0.7)
        ]
        assert t.settings[0].impl == "sdpa_cudnn"
        assert labels[7:] == [*PEERS, "nsa_s4 heads=16", "dense heads=16"]
    recall = load_suite(ROOT / "suites" / "recall.yaml").training
    peers = load_suite(ROOT / "suites" / "recall_peers.yaml").training
    assert recall is not None and peers is not None
    assert recall.data_names() == peers.data_names() == ("mqar", "passkey")
    assert max(recall.seq_len) == 8192 and recall.seeds == peers.seeds == (0, 1)
    assert [s.label() for s in recall.settings] == ["dense", "scfa_hash nb=16", "scfa_qk p=0.5"]
    # The peers file differs from recall.yaml only in its settings: one budget, one model.
    same = ("seq_len", "batch", "steps", "eval_every", "model", "optimizer", "tasks", "shared_qk")
    assert all(getattr(recall, key) == getattr(peers, key) for key in same)
    assert [s.label() for s in peers.settings] == ["dense", *PEERS, "dense heads=16"]
    assert all(t & (t - 1) == 0 for t in peers.seq_len)  # AdaSplash needs powers of two


PEERS = ["moba", "moba_k2_b128", "adasplash", "nsa heads=16"]
