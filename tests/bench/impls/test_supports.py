"""What implementations declare they support: validate rejects impossible suites, run marks
rows a device cannot run `unavailable` without doing any work."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scfa_bench.cli import app
from scfa_bench.errors import InputError
from scfa_bench.impls import registry
from scfa_bench.impls.registry import get_spec
from scfa_bench.results.reader import read_results
from scfa_bench.run.loop import RunOptions, run_suite
from scfa_bench.suite.parse import load_suite, parse_suite

ROOT = Path(__file__).resolve().parents[3]
runner = CliRunner()


SHAPE = {"batch": 1, "heads": 2, "head_dim": 16, "dtype": "fp16"}


def suite_data(**overrides: object) -> dict:
    data = {
        "name": "s",
        "shape": SHAPE,
        "sweep": {"seq_len": [16], "n_buckets": [2]},
        "implementations": ["scfa_hash"],
    }
    data.update(overrides)
    return data


def test_builtin_declarations() -> None:
    scfa = get_spec("scfa_hash")
    assert scfa.unsupported("cpu", "bf16", 64) == "scfa_hash on cpu supports fp16, fp32, not bf16"
    assert scfa.unsupported("cuda", "bf16", 64) is None
    assert "16, 32, 64, 128" in (scfa.head_dim_problem(24) or "")
    flash = get_spec("sdpa_flash")
    assert flash.unsupported("cpu", "fp16", 64) == "sdpa_flash runs on cuda, not cpu"
    assert flash.dtype_problem("fp32") == "sdpa_flash supports no device in fp32"
    assert flash.head_dim_problem(512) and flash.head_dim_problem(20)
    assert flash.head_dim_problem(256) is None
    assert get_spec("sdpa_cudnn").head_dim_problem(256)  # conservative: <= 128
    assert get_spec("sdpa_math").unsupported("cpu", "bf16", 24) is None
    assert get_spec("naive_hash").unsupported("cpu", "bf16", 24) is None


def test_old_style_registration_supports_everything() -> None:
    registry.register(name="plain_fake", pattern="dense", devices=("cpu",))(object)
    try:
        spec = get_spec("plain_fake")
        assert all(spec.unsupported("cpu", d, 24) is None for d in ("fp16", "bf16", "fp32"))
        assert spec.unsupported("cuda", "fp16", 16) == "plain_fake runs on cpu, not cuda"
    finally:
        registry.unregister("plain_fake")


def test_register_rejects_dtypes_for_undeclared_device() -> None:
    with pytest.raises(ValueError, match="dtypes"):
        registry.register(name="x", pattern="dense", devices=("cpu",), dtypes={"cuda": ("fp16",)})


def test_validate_rejects_head_dim_24_naming_impl_and_key(tmp_path: Path) -> None:
    path = tmp_path / "d24.yaml"
    path.write_text(
        "name: d24\nshape: {batch: 1, heads: 2, head_dim: 24, dtype: fp16}\n"
        "sweep: {seq_len: [64], n_buckets: [2]}\nimplementations: [sdpa_math, scfa_hash]\n"
    )
    with pytest.raises(InputError) as info:
        load_suite(path)
    message = str(info.value)
    assert "shape.head_dim (line 2)" in message and "scfa_hash" in message
    assert "16, 32, 64, 128" in message and "implementations[1]" in message
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "scfa_hash" in result.output


@pytest.mark.parametrize(
    ("overrides", "key", "text"),
    [
        (
            {"implementations": ["sdpa_flash"], "shape": {**SHAPE, "dtype": "fp32"}},
            "shape.dtype",
            "sdpa_flash supports no device in fp32",
        ),
        ({"device": "cpu", "implementations": ["sdpa_cudnn"]}, "device", "cuda, not on cpu"),
        (
            {"device": "cpu", "shape": {**SHAPE, "dtype": "bf16"}},
            "shape.dtype",
            "scfa_hash on cpu supports fp16, fp32, not bf16",
        ),
    ],
)
def test_validate_rejects_impossible_dtype_or_device(overrides: dict, key: str, text: str) -> None:
    with pytest.raises(InputError) as info:
        parse_suite(suite_data(**overrides), "s.yaml")
    assert f"s.yaml: {key}" in str(info.value) and text in str(info.value)


def test_hash_suite_on_cpu_is_unavailable_in_seconds(tmp_path: Path) -> None:
    """Before: 1 min 49 s of bf16 `error` rows before; now every row is `unavailable` at once."""
    suite = load_suite(ROOT / "suites/hash.yaml")
    started = time.monotonic()
    outcome = run_suite(suite, RunOptions(out_dir=tmp_path, device="cpu"))
    elapsed = time.monotonic() - started
    rows = read_results(outcome.csv_path).rows
    # scfa_hash and limit_hash: 6 seq_len x 6 n_buckets; five dense ones: 6 seq_len; 3 modes.
    assert len(rows) == 2 * 6 * 6 * 3 + 5 * 6 * 3
    assert {r.status for r in rows} == {"unavailable"}
    reasons = {r.impl: r.error for r in rows}
    assert reasons["scfa_hash"] == "scfa_hash on cpu supports fp16, fp32, not bf16"
    assert reasons["sdpa_cudnn"] == "sdpa_cudnn runs on cuda, not cpu"
    assert elapsed < 20, elapsed
