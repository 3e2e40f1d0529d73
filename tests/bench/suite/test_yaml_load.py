"""Suite YAML hardening: duplicate keys, anchors/aliases and oversized files are rejected."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from scfa_bench.errors import InputError
from scfa_bench.suite.parse import load_suite
from scfa_bench.suite.yaml_load import MAX_SUITE_BYTES

GOOD = """\
name: demo
shape: {batch: 1, heads: 2, head_dim: 16, dtype: fp16}
sweep:
  seq_len: [64]
  n_buckets: [2]
implementations: [scfa_hash, sdpa_math]
"""


def error_of(tmp_path: Path, text: str | bytes) -> str:
    path = tmp_path / "suite.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(InputError) as info:
        load_suite(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_duplicate_top_level_key_names_key_and_both_lines(tmp_path: Path) -> None:
    text = GOOD + "shape: {batch: 4, heads: 2, head_dim: 16, dtype: fp16}\n"
    message = error_of(tmp_path, text)
    assert "duplicate key 'shape'" in message
    assert "(line 7)" in message and "first given on line 2" in message


def test_duplicate_nested_key_names_its_path(tmp_path: Path) -> None:
    text = GOOD.replace("  n_buckets: [2]\n", "  n_buckets: [2]\n  seq_len: [128]\n")
    message = error_of(tmp_path, text)
    assert "sweep.seq_len (line 6)" in message and "first given on line 4" in message


def test_alias_bomb_is_rejected_at_once(tmp_path: Path) -> None:
    # Nine levels of nine aliases: 387 million strings if expanded.
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in "bcdefghi":
        prev = chr(ord(level) - 1)
        lines.append(f"{level}: &{level} [" + ",".join([f"*{prev}"] * 9) + "]")
    started = time.monotonic()
    message = error_of(tmp_path, GOOD + "\n".join(lines) + "\n")
    assert time.monotonic() - started < 5
    assert "anchor &a is not allowed" in message and "line 7" in message


def test_alias_and_merge_key_rejected(tmp_path: Path) -> None:
    text = GOOD.replace("shape: {", "shape: &s {") + "timing: *s\n"
    assert "anchor &s" in error_of(tmp_path, text)
    text = "base: &b {warmup_ms: 1}\n" + GOOD
    assert "not allowed in suite files" in error_of(tmp_path, text)


def test_oversized_file_rejected_without_parsing(tmp_path: Path) -> None:
    padding = b"# " + b"x" * MAX_SUITE_BYTES + b"\n"
    message = error_of(tmp_path, GOOD.encode() + padding)
    assert "larger than 1024 KiB" in message


def test_file_just_under_the_limit_loads(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    body = GOOD.encode()
    path.write_bytes(body + b"#" * (MAX_SUITE_BYTES - len(body) - 1) + b"\n")
    assert load_suite(path).name == "demo"
