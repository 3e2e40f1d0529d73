"""Peer methods (MoBA, AdaSplash, NSA) as training settings: MoBA's model attention against its
definition, the unavailable rows of CUDA-only peers, and a setting's own head split."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from scfa_bench.e2e.attention import AttentionUnavailable, build_attention
from scfa_bench.impls import moba
from scfa_bench.quality.config import AttentionSetting
from scfa_bench.quality.settings import DensityMeter
from scfa_bench.quality.unit_setup import TrainOptions, Unit, build_trainer, initial_state
from scfa_bench.suite.parse import parse_suite

from ..impls.test_peers import _moba_brute_force
from .training_helpers import csv_rows, folder_corpus, run, training_data, write_suite


class _SmallMoba(moba.Moba):
    """Blocks small enough for a CPU test to choose among several."""

    block, top_k = 16, 2


def _leaves(*shape: int, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(shape, generator=gen, dtype=torch.float64).requires_grad_() for _ in range(3)
    ]


def test_moba_model_attention_matches_its_definition_forward_and_grad() -> None:
    q, k, v = _leaves(2, 64, 2, 8, seed=1)
    attend = _SmallMoba().model_attention("cpu")
    got = attend(q, k, v)
    allowed = _moba_brute_force(q.detach(), k.detach(), 16, 2)  # (B, H, T, T)
    scores = torch.einsum("bthd,bshd->bhts", q, k) / 8**0.5
    probs = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    want = torch.einsum("bhts,bshd->bthd", probs, v)
    assert torch.allclose(got, want, atol=1e-10)
    grad_out = torch.randn_like(want)
    got_grads = torch.autograd.grad(got, (q, k, v), grad_out)
    want_grads = torch.autograd.grad(want, (q, k, v), grad_out)
    for g, w in zip(got_grads, want_grads, strict=True):
        assert torch.allclose(g, w, atol=1e-10)


def test_moba_flex_path_refills_its_choice_at_every_call() -> None:
    """The CUDA path (FlexAttention, eager here: forward only on the CPU) gives the reference's
    output for two different inputs through the same per-layer buffer."""
    from torch.nn.attention.flex_attention import flex_attention

    flex = moba.MobaFlex(128, 1, flex_attention)
    for seed in (2, 3):
        q, k, v = (x.detach().float() for x in _leaves(1, 384, 2, 16, seed=seed))
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", UserWarning)  # eager flex on the CPU is unfused
            got = flex(q, k, v)
        want = moba.moba_reference_attention(q, k, v, 128, 1)
        assert torch.allclose(got, want, atol=1e-5)


def test_peers_train_or_give_unavailable_rows(tmp_path: Path) -> None:
    data = training_data(folder_corpus(tmp_path / "corpus"), seq_len=[512])
    data["training"]["settings"] = [
        {"impl": "sdpa_math", "name": "dense"},
        {"impl": "moba_k2_b128"},
        {"impl": "adasplash"},
        {"impl": "nsa", "heads": 16},
    ]
    rows = csv_rows(run(write_suite(tmp_path / "s.yaml", data), tmp_path / "out").csv_path)
    by_setting = {r.setting: [x for x in rows if x.setting == r.setting] for r in rows}
    assert list(by_setting) == ["dense", "moba_k2_b128", "adasplash", "nsa heads=16"]
    trained = by_setting["moba_k2_b128"]
    assert [(r.step, r.status) for r in trained] == [(0, "ok"), (2, "ok"), (4, "ok")]
    assert trained[-1].val_loss < trained[0].val_loss
    # 4 blocks of 128, top-2: the last block's queries skip one earlier block of 128 keys.
    assert trained[0].density == pytest.approx(1 - 128 * 128 / (512 * 513 / 2))
    for name in ("adasplash", "nsa heads=16"):
        [row] = by_setting[name]
        assert row.status == "unavailable" and row.step == 0
        assert "CUDA only" in row.error, row.error


@pytest.mark.parametrize(("name", "package"), [("adasplash", "adasplash"), ("nsa", "fla")])
def test_a_missing_peer_package_names_its_install_command(
    monkeypatch: pytest.MonkeyPatch, name: str, package: str
) -> None:
    import importlib

    real = importlib.import_module

    def no_package(module: str, *args: object, **kwargs: object) -> object:
        if module.split(".")[0] == package:
            raise ImportError(f"No module named {package!r}")
        return real(module, *args, **kwargs)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(importlib, "import_module", no_package)
    with pytest.raises(AttentionUnavailable, match="pip install 'scfa-bench\\[peers\\]'"):
        build_attention(name, heads=16, head_dim=64, dtype=torch.bfloat16, device="cuda")


def test_a_setting_with_its_own_heads_starts_from_the_run_weights(tmp_path: Path) -> None:
    data = training_data(folder_corpus(tmp_path / "corpus", files=4))
    data["training"]["settings"] = [{"impl": "sdpa_math", "heads": 4}]
    training = parse_suite(data, "s.yaml").training
    assert training is not None and training.settings[0].label() == "sdpa_math heads=4"
    run_config = training.model.config(vocab=256, max_seq_len=32)  # 2 heads of 16
    unit = Unit(training.settings[0], "corpus", 32, 2, 0, run_config, 4)
    init = initial_state(run_config, training.shared_qk, seed=0)
    options = TrainOptions(training, "cpu", "fp32", tmp_path)
    trainer = build_trainer(unit, options, init, DensityMeter())
    assert all(block.heads == 4 for block in trainer.model.blocks)
    state = trainer.model.state_dict()
    assert state.keys() == init.keys() and all(torch.equal(state[n], init[n]) for n in init)


def test_peer_density_is_metered_only_in_evaluation() -> None:
    from scfa_bench.quality.settings import layer_attention

    meter = DensityMeter()
    attend = layer_attention(
        AttentionSetting("moba_k2_b128"),
        heads=2,
        head_dim=8,
        dtype=torch.float32,
        device="cpu",
        shared_qk=False,
        meter=meter,
    )(0)
    q, k, v = (x.detach().float() for x in _leaves(1, 512, 2, 8, seed=4))
    attend(q, k, v)
    assert meter.density is None
    meter.active = True
    attend(q, k, v)
    want = moba.moba_density(moba.moba_choice(q, k, 128, 2), 128)
    assert meter.density == pytest.approx(want) and want < 1


def test_a_peer_call_without_a_gradient_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(moba, "moba_reference_attention", lambda q, k, v, **kw: v.detach())
    attend = build_attention(
        "moba_k2_b128", heads=2, head_dim=8, dtype=torch.float32, device="cpu"
    ).for_layer(0)
    q, k, v = _leaves(1, 128, 2, 8, seed=5)
    with pytest.raises(AttentionUnavailable, match="no gradient"):
        attend(q, k, v)
    with torch.no_grad():
        attend(q, k, v)  # evaluation needs none
