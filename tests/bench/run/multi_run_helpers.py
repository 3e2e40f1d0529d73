"""Shared by the multi-process run tests: the one-process reference run and row comparison."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from scfa_bench.results.merge import TIMING_COLUMNS, non_timing_cells
from scfa_bench.results.reader import read_results
from scfa_bench.run.loop import RunOptions, run_suite
from scfa_bench.run.request import build_request
from scfa_bench.run.sharded.display import PlainDisplay
from scfa_bench.run.sharded.supervisor import run_sharded
from scfa_bench.suite.parse import load_suite

SUITE = Path(__file__).resolve().parent / "multi.yaml"  # 24 rows


def one_process_run(out: Path) -> Path:
    """The test suite in one process: the rows every multi-process run must reproduce."""
    return run_suite(load_suite(SUITE), RunOptions(out_dir=out)).csv_path


def assert_same_rows(merged_csv: Path, single_csv: Path) -> None:
    """Same keys in the same order, same values outside the timing columns, and a speedup
    exactly where the one-process run has one."""
    merged, single = read_results(merged_csv).rows, read_results(single_csv).rows
    assert [non_timing_cells(r) for r in merged] == [non_timing_cells(r) for r in single]
    assert [r.speedup is None for r in merged] == [r.speedup is None for r in single]
    assert "speedup" in TIMING_COLUMNS


def shard_logs(parts_dir: Path) -> dict[str, list[list[str]]]:
    """Per part log: the points each worker attempt started, attempt by attempt."""
    logs = {}
    for log in sorted(parts_dir.glob("*.csv.log")):
        attempts: list[list[str]] = []
        for line in log.read_text(encoding="utf-8").splitlines():
            if line.startswith("== worker"):
                attempts.append([])
            elif line.startswith("start "):
                attempts[-1].append(line[len("start ") :])
        logs[log.name] = attempts
    return logs


def sharded_run(
    out: Path | None = None,
    *,
    display: Any = None,
    poll_s: float = 0.1,
    slurm: Any = None,
    suite_file: Path = SUITE,
    **options: Any,
) -> Any:
    """A sharded run as `scfa-bench run` starts it (request checked, suite parsed once):
    `options` are `build_request`'s (gpus="0,1", shards=2, resume=PARTS, executor="slurm")."""
    request = build_request(suite_file, out=out or Path("results"), progress=False, **options)
    if slurm is not None:
        request = replace(request, slurm=slurm)
    return run_sharded(request, load_suite(suite_file), display or PlainDisplay(), poll_s=poll_s)
