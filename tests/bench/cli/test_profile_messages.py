"""`profile` prints a failed point's message as plain text: brackets in it (tensor shapes,
paths) are not rich markup tags."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import scfa_bench.measure.envinfo as envinfo
from scfa_bench.cli import app
from scfa_bench.measure.point import ModeMeasurement
from scfa_bench.run import profile as profile_run

ROOT = Path(__file__).resolve().parents[3]
ERROR = "RuntimeError: shapes [4, 48] and [/tmp] differ"


def test_profile_prints_error_messages_verbatim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_points(suite, tasks, device):
        for task in tasks:
            yield profile_run.ProfiledPoint(task, ModeMeasurement(task.modes[0], "error", ERROR))

    monkeypatch.setattr(profile_run, "profile_points", failing_points)
    monkeypatch.setattr(envinfo, "resolve_device", lambda device: "cuda")
    command = ["profile", str(ROOT / "suites/hash.yaml"), "--impl", "scfa_hash"]
    points = ["--point", "seq_len=16384", "--point", "n_buckets=8"]
    result = CliRunner().invoke(app, [*command, *points, "--out", str(tmp_path / "p")])
    assert result.exit_code == 1, result.output
    assert ERROR in " ".join(result.output.split())
