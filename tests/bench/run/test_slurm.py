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

from scfa_bench.errors import InputError
from scfa_bench.results.meta import suite_content
from scfa_bench.results.reader import read_results
from scfa_bench.run.sharded import supervisor
from scfa_bench.run.sharded.display import PlainDisplay
from scfa_bench.run.sharded.slurm import SlurmOptions
from scfa_bench.run.sharded.state import RunState
from scfa_bench.run.sharded.worker import progress_path_for
from scfa_bench.suite.parse import load_suite

from .multi_run_helpers import SUITE, assert_same_rows, one_process_run, sharded_run

pytest.importorskip("submitit", reason="submitit is the optional 'slurm' extra")

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
    outcome = sharded_run(
        tmp_path, executor="slurm", shards=2, slurm=LOCAL, poll_s=0.2, display=display
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
    is left incomplete (as a task that died would leave it). Resuming submits only that
    shard, keeps every finished row, and merges the one-process rows."""

    class StopAfterFirstRows(Recording):
        def update(self, shards) -> None:  # type: ignore[override]
            if any(s.part.exists() and len(read_results(s.part).rows) >= 1 for s in shards):
                raise KeyboardInterrupt

    stopped = sharded_run(
        tmp_path, executor="slurm", shards=2, slurm=LOCAL, display=StopAfterFirstRows()
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
    resumed = sharded_run(
        resume=stopped.parts_dir, executor="slurm", slurm=LOCAL, poll_s=0.2, display=display
    )
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
    outcome = sharded_run(
        tmp_path, executor="slurm", shards=2, slurm=LOCAL, poll_s=0.2, display=display
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


def _slurm_parts(tmp_path: Path, suite_sha256: str) -> Path:
    """The parts folder of a Slurm run of SUITE that recorded `suite_sha256`."""
    parts = tmp_path / "old.parts"
    parts.mkdir()
    suite = load_suite(SUITE)
    state = RunState(str(SUITE), suite_sha256, 2, str(tmp_path / "old.csv"), executor="slurm")
    state.suite = {**suite_content(suite), "seed": 12345}  # what the run was started with
    state.write(parts)
    return parts


@pytest.mark.parametrize("resume", [False, True])
def test_refused_where_submitit_finds_no_slurm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resume: bool
) -> None:
    """Without Slurm, submitit's fallback would run every shard at once on GPU 0: refused,
    pointing at --gpus, before any folder is made (resume: before anything is submitted)."""
    import submitit

    monkeypatch.setattr(submitit.AutoExecutor, "which", staticmethod(lambda: "local"))
    parts = _slurm_parts(tmp_path, load_suite(SUITE).sha256) if resume else None
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(InputError, match=r"no Slurm here .*'local' executor.*--gpus all"):
        if resume:
            sharded_run(resume=parts, executor="slurm")
        else:
            sharded_run(tmp_path, executor="slurm", shards=2)
    assert sorted(tmp_path.rglob("*")) == before


def test_force_reaches_the_slurm_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Resuming a Slurm run whose suite changed: refused naming --force; with --force, every
    array task's call carries it (each task resumes a part whose meta names the old suite)."""
    parts = _slurm_parts(tmp_path, "an older sha256")
    seen: list = []
    monkeypatch.setattr(supervisor, "supervise_slurm", lambda run, *a, **k: seen.append(run))
    with pytest.raises(InputError, match=r"seed: 12345 -> 0.*--force"):
        sharded_run(resume=parts, executor="slurm", slurm=LOCAL)
    sharded_run(resume=parts, executor="slurm", slurm=LOCAL, force=True)
    (run,) = seen
    calls = [run.call(shard) for shard in run.shards]
    assert len(calls) == 2 and all(c.force and "--force" in c.argv() for c in calls)
    assert RunState.read(parts).suite_sha256 == load_suite(SUITE).sha256  # now recorded
