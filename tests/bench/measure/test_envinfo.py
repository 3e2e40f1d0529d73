"""Environment facts written next to every results file."""

from __future__ import annotations

import pytest

from scfa_bench.measure import envinfo


def test_git_revision_can_be_named_where_the_tree_has_no_git(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCFA_BENCH_GIT_REV", "d33f0b8")
    assert envinfo.git_revision() == "d33f0b8"


def test_git_revision_reads_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCFA_BENCH_GIT_REV", raising=False)
    rev = envinfo.git_revision()
    # A clone of the project has a HEAD: 40 hex digits, maybe marked dirty.
    assert rev == envinfo.NOT_AVAILABLE or len(rev.removesuffix("-dirty")) == 40
