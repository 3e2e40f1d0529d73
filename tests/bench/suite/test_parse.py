"""Suite schema: good suites parse with defaults; bad ones name the file, key path and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from scfa_bench.cli import app
from scfa_bench.constants import MODES
from scfa_bench.errors import EXIT_BAD_INPUT, InputError
from scfa_bench.suite.parse import load_suite, parse_suite

SUITES_DIR = Path(__file__).resolve().parents[3] / "suites"

GOOD = """\
name: demo
seed: 3
shape: {batch: 2, heads: 4, head_dim: 32, dtype: float16}
sweep:
  seq_len: [64, 128, 256]
  n_buckets: [2, 4]
  drop_rate: [0.5]
implementations: [scfa_hash, scfa_qk, sdpa_math]
"""


def write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as info:
        load_suite(path)
    message = str(info.value)
    assert str(path) in message  # every error names the file
    return message


def test_good_suite_gets_defaults_and_canonical_dtype(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, GOOD))
    assert suite.name == "demo"
    assert suite.seed == 3
    assert suite.shape.dtype == "fp16"  # alias normalised
    assert suite.sweep.seq_len == (64, 128, 256)
    assert suite.sweep.drop_rate == (0.5,)
    assert suite.modes == MODES
    assert suite.baseline == "sdpa_math"  # first dense implementation
    assert suite.timing.warmup_ms == 25 and suite.timing.rep_ms == 100
    assert suite.timing.cuda_graph is False
    assert suite.check is True and suite.buckets == "random" and suite.device == "auto"
    assert suite.split_groups is True
    assert len(suite.sha256) == 64


@pytest.mark.parametrize("path", sorted(SUITES_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_suites_are_valid(path: Path) -> None:
    suite = load_suite(path)
    assert suite.name == path.stem
    # Model and training suites are not checked per row.
    assert suite.check is (suite.model is None and suite.training is None)


def test_paper_suites_have_the_figure_shape() -> None:
    for name, axis, values in (
        ("hash", "n_buckets", (2, 4, 8, 16, 32, 64)),
        ("qk", "drop_rate", (0.2, 0.5, 0.8)),
    ):
        suite = load_suite(SUITES_DIR / f"{name}.yaml")
        assert (suite.shape.batch, suite.shape.heads, suite.shape.head_dim) == (4, 48, 64)
        assert suite.shape.dtype == "bf16"
        assert suite.sweep.seq_len == (1024, 2048, 4096, 8192, 16384, 32768)
        assert suite.sweep.values(axis) == values
        assert suite.baseline == "sdpa_cudnn"


@pytest.mark.parametrize(
    ("bad_line", "good_line", "expected"),
    [
        (
            "  seq_len: [64, 128, 256]",
            "  seq_len: [64, 128, -1]",
            ["sweep.seq_len[2]", "line 5", ">= 1"],
        ),
        ("  seq_len: [64, 128, 256]", "  seq_len: [64, 64]", ["sweep.seq_len[1]", "duplicate"]),
        ("  drop_rate: [0.5]", "  drop_rate: [1.0]", ["sweep.drop_rate[0]", "[0.0, 1.0)"]),
        ("  drop_rate: [0.5]", "  drop_rate: [0.5, fast]", ["sweep.drop_rate[1]", "number"]),
        ("seed: 3", "seed: 3\ncolour: red", ["colour", "line 3", "unknown key"]),
        (
            "  n_buckets: [2, 4]",
            "  n_buckets: [2, 4]\n  n_heads: [1]",
            ["sweep.n_heads", "unknown key"],
        ),
        ("dtype: float16", "dtype: int8", ["shape.dtype", "fp16, bf16, fp32"]),
        ("head_dim: 32,", "head_dim: 32.5,", ["shape.head_dim", "integer"]),
        (
            "[scfa_hash, scfa_qk, sdpa_math]",
            "[scfa_hash, warp_drive]",
            ["implementations[1]", "warp_drive"],
        ),
        ("name: demo", "name: my suite", ["name", "letters"]),
        ("name: demo", 'name: "demo\\n"', ["name (line 1)", "letters", "'demo\\n'"]),
    ],
)
def test_bad_values_name_key_path(
    tmp_path: Path, bad_line: str, good_line: str, expected: list[str]
) -> None:
    assert bad_line in GOOD
    message = error_of(tmp_path, GOOD.replace(bad_line, good_line))
    for fragment in expected:
        assert fragment in message, message


def test_missing_required_key(tmp_path: Path) -> None:
    message = error_of(tmp_path, GOOD.replace("name: demo\n", ""))
    assert "missing required key 'name'" in message


def test_implementation_needs_its_axis(tmp_path: Path) -> None:
    message = error_of(tmp_path, GOOD.replace("  n_buckets: [2, 4]\n", ""))
    assert "scfa_hash" in message and "sweep.n_buckets is required" in message


def test_baseline_must_be_listed(tmp_path: Path) -> None:
    message = error_of(tmp_path, GOOD + "baseline: sdpa_cudnn\n")
    assert "baseline" in message and "sdpa_cudnn" in message


def test_lsh_needs_even_buckets(tmp_path: Path) -> None:
    text = GOOD.replace("n_buckets: [2, 4]", "n_buckets: [2, 3]") + "buckets: lsh\n"
    message = error_of(tmp_path, text)
    assert "sweep.n_buckets[1]" in message and "even" in message


def test_bad_mode_and_timing(tmp_path: Path) -> None:
    assert "modes[1]" in error_of(tmp_path, GOOD + "modes: [fwd, backward]\n")
    assert "timing.rep_ms" in error_of(tmp_path, GOOD + "timing: {warmup_ms: 1, rep_ms: 0}\n")
    assert "timing.speed" in error_of(tmp_path, GOOD + "timing: {speed: 1}\n")
    assert "timing.cuda_graph" in error_of(tmp_path, GOOD + "timing: {cuda_graph: 1}\n")


def test_cuda_graph_timing_is_read(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, GOOD + "timing: {rep_ms: 50, cuda_graph: true}\n"))
    assert suite.timing.cuda_graph is True and suite.timing.rep_ms == 50


def test_yaml_syntax_error_reports_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, GOOD.replace("  drop_rate: [0.5]", "  drop_rate: [0.5"))
    assert "YAML syntax error" in message and "line" in message


def test_yaml_syntax_error_line_number(tmp_path: Path) -> None:
    text = "name: x\nshape: {batch: 1\nsweep: {}\n"
    message = error_of(tmp_path, text)
    assert "line 3" in message


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read suite file"):
        load_suite(tmp_path / "missing.yaml")


def test_not_a_mapping() -> None:
    with pytest.raises(InputError, match="expected a mapping"):
        parse_suite([1, 2], "x.yaml")


def test_split_groups_is_read_for_call_and_model_suites(tmp_path: Path) -> None:
    assert load_suite(write(tmp_path, GOOD + "split_groups: false\n")).split_groups is False
    model = (SUITES_DIR / "e2e_smoke.yaml").read_text() + "split_groups: false\n"
    assert load_suite(write(tmp_path, model, "model.yaml")).split_groups is False
    assert "split_groups" in error_of(tmp_path, GOOD + "split_groups: 0\n")


def test_validate_refuses_a_name_with_a_trailing_newline(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("name: demo", 'name: "demo\\n"'))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "name (line 1)" in result.output and "Traceback" not in result.output
