"""Environment facts written next to every results file."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from scfa_bench.measure import envinfo

REPO_ROOT = Path(envinfo.__file__).resolve().parents[2]


def test_git_revision_can_be_named_where_the_tree_has_no_git(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCFA_BENCH_GIT_REV", "d33f0b8")
    assert envinfo.git_revision() == "d33f0b8"


def test_git_revision_reads_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    if not (REPO_ROOT / ".git").exists():  # a directory in a clone, a file in a worktree
        pytest.skip(f"{REPO_ROOT} is not a git checkout (no .git)")
    monkeypatch.delenv("SCFA_BENCH_GIT_REV", raising=False)
    rev = envinfo.git_revision()
    # A checkout has a HEAD: 40 hex digits, maybe marked dirty; never "n/a".
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", rev), rev


def test_kernels_hash_covers_the_installed_kernel_sources(tmp_path: Path) -> None:
    """The meta names the kernels a run measured, so a stale baseline shows."""
    import scfa_kernels

    installed = envinfo.kernels_hash()
    assert re.fullmatch(r"[0-9a-f]{64}", installed)
    assert envinfo.kernels_hash(Path(scfa_kernels.__file__).parent) == installed
    assert envinfo.environment("cpu")["kernels_hash"] == installed

    copy = tmp_path / "kernels"
    shutil.copytree(Path(scfa_kernels.__file__).parent, copy)
    assert envinfo.kernels_hash(copy) == installed
    (copy / "PERF.md").write_text("notes are not sources\n")
    assert envinfo.kernels_hash(copy) == installed


def _edited(folder: Path, name: str, old: str, new: str) -> None:
    source = folder / name
    text = source.read_text()
    assert old in text, f"{old!r} not in {name}"
    source.write_text(text.replace(old, new, 1))


def test_kernels_hash_covers_device_code_only(tmp_path: Path) -> None:
    """Docstrings, comments and host code leave the hash alone; device code and tile tables
    change it."""
    import scfa_kernels

    installed = envinfo.kernels_hash()
    copy = tmp_path / "kernels"
    shutil.copytree(Path(scfa_kernels.__file__).parent, copy)
    # A docstring and a comment of a jit function, a comment of the tile table, host code.
    _edited(copy, "_triton_fwd.py", '    """Online softmax', '    """Softmax, online,')
    _edited(
        copy, "_triton_fwd.py", "    for j in range(lo, hi):", "    for j in range(lo, hi):  # x"
    )
    _edited(copy, "config.py", "# Compute capability 9.x", "# cc 9.x")
    _edited(copy, "_launch.py", "    BH = B * H\n", "    BH = H * B\n")
    assert envinfo.kernels_hash(copy) == installed
    for name, old, new in (
        ("_triton_fwd.py", "acc = acc * alpha[:, None]", "acc = acc * alpha[:, None] * 1.0"),
        ("config.py", "_tiles((128, 128, 4, 2)", "_tiles((128, 128, 4, 3)"),
    ):
        changed = tmp_path / name
        shutil.copytree(copy, changed)
        _edited(changed, name, old, new)
        assert envinfo.kernels_hash(changed) != installed, name
    assert envinfo.kernels_hash(tmp_path / "empty") == "n/a"


def test_the_hopper_path_has_its_own_hash(tmp_path: Path) -> None:
    """An edit of a Gluon kernel (defined under `if GLUON_IMPORT_ERROR is None:`) changes the
    Hopper path's hash and leaves the portable kernels' hash alone, and the other way round."""
    import scfa_kernels

    portable, hopper = envinfo.kernels_hash(), envinfo.hopper_kernels_hash()
    assert re.fullmatch(r"[0-9a-f]{64}", hopper) and hopper != portable
    edits = {
        "gluon": (
            "_gluon_fwd.py",
            "p = gl.exp2(s - m_shift[:, None])",
            "p = gl.exp2(s - m_shift[:, None] + 0.0)",
        ),
        "triton": (
            "_triton_fwd.py",
            "acc = acc * alpha[:, None]",
            "acc = acc * alpha[:, None] * 1.0",
        ),
    }
    hashes = {}
    for label, (name, old, new) in edits.items():
        copy = tmp_path / label
        shutil.copytree(Path(scfa_kernels.__file__).parent, copy)
        _edited(copy, name, old, new)
        hashes[label] = (envinfo.kernels_hash(copy), envinfo.hopper_kernels_hash(copy))
    assert hashes["gluon"][0] == portable and hashes["gluon"][1] != hopper
    assert hashes["triton"][0] != portable and hashes["triton"][1] == hopper


def test_a_run_records_the_hopper_path_only_when_it_asks_for_it(monkeypatch) -> None:
    monkeypatch.delenv("SCFA_FORCE_PORTABLE", raising=False)
    monkeypatch.delenv("SCFA_HOPPER", raising=False)
    assert envinfo.environment("cpu")["hopper_kernels_hash"] == "off"
    monkeypatch.setenv("SCFA_HOPPER", "1")
    assert envinfo.environment("cpu")["hopper_kernels_hash"] == envinfo.hopper_kernels_hash()
    monkeypatch.setenv("SCFA_FORCE_PORTABLE", "1")
    assert envinfo.environment("cpu")["hopper_kernels_hash"] == "off"
