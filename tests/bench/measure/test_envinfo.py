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
