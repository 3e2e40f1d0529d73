"""Slurm runs through submitit's local executor (no Slurm needed): 2 array tasks of a small
suite merged, a killed task resubmitted, and a stopped run resumed."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from scfa_bench.results.reader import read_results
from scfa_bench.run.display import PlainDisplay
from scfa_bench.run.worker import progress_path_for

from .multi_run_helpers import SUITE, assert_same_rows, one_process_run

pytest.importorskip("submitit", reason="submitit is the optional 'slurm' extra")

from scfa_bench.run.slurm import SlurmOptions, resume_slurm, run_slurm

LOCAL = SlurmOptions(cluster="local", time_min=10)


@pytest.fixture(scope="module")
def single_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return one_process_run(tmp_path_factory.mktemp("single"))


class Recording(PlainDisplay):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    def event(self, text: str) -> None:
        self.events.append(text)


def kill_when_running(
    parts_glob: str, root: Path, killed: dict, min_rows: int = 1, sig: int = signal.SIGKILL
) -> None:
    """Signal (SIGKILL) the process measuring the part matching `parts_glob` after its first
    rows."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        for part in root.glob(parts_glob):
            progress = progress_path_for(part)
            rows = part.read_text(encoding="utf-8").count("\n") - 1 if part.exists() else 0
            if rows >= min_rows and progress.exists():
                state = json.loads(progress.read_text(encoding="utf-8"))
                if state.get("current"):
                    os.kill(state["pid"], sig)
                    killed.update(pid=state["pid"], rows=rows, part=part)
                    return
        time.sleep(0.05)


@pytest.mark.slow
def test_two_array_tasks_merged_and_a_killed_one_resubmitted(
    tmp_path: Path, single_run: Path
) -> None:
    killed: dict = {}
    killer = threading.Thread(
        target=kill_when_running, args=("*.parts/shard-0-of-2.csv", tmp_path, killed)
    )
    killer.start()
    display = Recording()
    outcome = run_slurm(
        SUITE, shards=2, options=LOCAL, out_dir=tmp_path, poll_s=0.2, display=display
    )
    killer.join()
    assert killed, "the array task of shard 0 was never seen running"
    assert any("shard 0" in e and "resubmitted as job" in e for e in display.events)
    assert outcome.csv_path is not None and outcome.exit_code in (0, 1)
    assert outcome.report is not None and outcome.report.missing == []
    assert outcome.report.duplicates == [] and outcome.report.conflicts == []
    assert_same_rows(outcome.csv_path, single_run)
    state = json.loads((outcome.parts_dir / "run.json").read_text(encoding="utf-8"))
    assert len(state["jobs"]["0"]) == 2 and len(state["jobs"]["1"]) == 1


@pytest.mark.slow
def test_resume_of_a_stopped_cluster_run(tmp_path: Path, single_run: Path) -> None:
    """The submitting process stops waiting (Ctrl-C) while the tasks run on; one shard's part
    is left incomplete (as a task that died would leave it). resume_slurm submits only that
    shard, keeps every finished row, and merges the one-process rows."""

    class StopAfterFirstRows(Recording):
        def update(self, shards) -> None:  # type: ignore[override]
            if any(s.part.exists() and len(read_results(s.part).rows) >= 1 for s in shards):
                raise KeyboardInterrupt

    stopped = run_slurm(
        SUITE, shards=2, options=LOCAL, out_dir=tmp_path, poll_s=0.2, display=StopAfterFirstRows()
    )
    assert stopped.interrupted and stopped.csv_path is None
    parts = [stopped.parts_dir / f"shard-{i}-of-2.csv" for i in (0, 1)]
    deadline = time.monotonic() + 300  # the cluster runs both tasks to their end without us
    while time.monotonic() < deadline:
        states = [
            json.loads(progress_path_for(p).read_text(encoding="utf-8"))
            if progress_path_for(p).exists()
            else {}
            for p in parts
        ]
        if all(
            s and s.get("current") is None and s["done_rows"] == s["total_rows"] for s in states
        ):
            break
        time.sleep(0.2)
    lines = parts[1].read_text(encoding="utf-8").splitlines(keepends=True)
    parts[1].write_text("".join(lines[:2]), encoding="utf-8")  # header and its first row
    rows_before = len(read_results(parts[0]).rows)

    display = Recording()
    resumed = resume_slurm(stopped.parts_dir, LOCAL, poll_s=0.2, display=display)
    assert resumed.csv_path is not None
    submitted = [e for e in display.events if "submitted as job" in e]
    assert len(submitted) == 1 and submitted[0].startswith("shard 1")
    assert len(read_results(parts[0]).rows) == rows_before  # nothing redone there
    assert_same_rows(resumed.csv_path, single_run)


@pytest.mark.slow
def test_preempted_task_is_requeued_and_resumes_its_part(tmp_path: Path, single_run: Path) -> None:
    """Preemption: the array task gets submitit's signal (USR2, as Slurm sends it before
    preempting), checkpoints and requeues itself: same job, same part file, rows kept."""
    preempted: dict = {}

    def preempt() -> None:
        kill_when_running(
            "*.parts/shard-0-of-2.csv", tmp_path, preempted, min_rows=1, sig=signal.SIGUSR2
        )

    thread = threading.Thread(target=preempt)
    thread.start()
    display = Recording()
    outcome = run_slurm(
        SUITE, shards=2, options=LOCAL, out_dir=tmp_path, poll_s=0.2, display=display
    )
    thread.join()
    assert preempted, "the task of shard 0 was never seen running"
    assert outcome.csv_path is not None
    assert not any("resubmitted" in e for e in display.events)  # requeued, not resubmitted
    assert outcome.report is not None and outcome.report.duplicates == []
    assert_same_rows(outcome.csv_path, single_run)
    state = json.loads((outcome.parts_dir / "run.json").read_text(encoding="utf-8"))
    assert len(state["jobs"]["0"]) == 1
    logs = "".join(
        p.read_text(encoding="utf-8", errors="replace")
        for p in (outcome.parts_dir / "submitit").rglob("*_log.*")
    )
    assert "preempted" in logs and "Requeued" in logs


@pytest.mark.parametrize("resume", [False, True])
def test_refused_where_submitit_finds_no_slurm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resume: bool
) -> None:
    """Without Slurm, submitit's fallback would run every shard at once on GPU 0: refused,
    pointing at --gpus, before any folder is made (resume: before anything is submitted)."""
    import submitit

    from scfa_bench.errors import InputError

    monkeypatch.setattr(submitit.AutoExecutor, "which", staticmethod(lambda: "local"))
    with pytest.raises(InputError, match=r"no Slurm here .*'local' executor.*--gpus all"):
        if resume:
            resume_slurm(tmp_path / "missing.parts", SlurmOptions())
        else:
            run_slurm(SUITE, shards=2, options=SlurmOptions(), out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
