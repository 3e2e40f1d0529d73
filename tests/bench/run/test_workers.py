"""Local multi-GPU runs on the CPU: two stand-in "cards" (CUDA_VISIBLE_DEVICES set, CPU
execution), a worker killed mid-run, Ctrl-C and resume; the merged CSV against one process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from scfa_bench.errors import InputError
from scfa_bench.results.merge import non_timing_cells
from scfa_bench.results.meta import read_meta
from scfa_bench.results.reader import read_results
from scfa_bench.run.request import build_request
from scfa_bench.run.sharded.display import PlainDisplay
from scfa_bench.run.sharded.gpus import resolve_gpus
from scfa_bench.run.sharded.local import Supervisor
from scfa_bench.run.sharded.state import RunState, ShardedRun
from scfa_bench.run.sharded.worker import progress_path_for

from .multi_run_helpers import SUITE, assert_same_rows, one_process_run, shard_logs, sharded_run


def _rows_on_disk(part: Path) -> int:
    if not part.exists():
        return 0
    return max(part.read_text(encoding="utf-8").count("\n") - 1, 0)


@pytest.fixture(scope="module")
def single_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return one_process_run(tmp_path_factory.mktemp("single"))


@pytest.fixture
def one_card(monkeypatch: pytest.MonkeyPatch) -> str:
    """`--gpus 1` on one visible stand-in card, 0 (a lone id reads as a count)."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    return "1"


def test_resolve_gpus() -> None:
    assert resolve_gpus("all", ["0", "1", "2"]) == ["0", "1", "2"]
    assert resolve_gpus("2", ["0", "1", "2"]) == ["0", "1"]
    assert resolve_gpus("0,2", ["4", "5", "6"]) == ["4", "6"]  # ids within the visible cards
    assert resolve_gpus("0,1", []) == ["0", "1"]  # no card: stand-ins for CPU workers
    for bad, visible in [("all", []), ("4", ["0"]), ("0,0", ["0", "1"]), ("x", ["0"]), ("3", [])]:
        with pytest.raises(InputError, match="--gpus"):
            resolve_gpus(bad, visible)
    with pytest.raises(InputError, match="no id 5"):
        resolve_gpus("0,5", ["0", "1"])


@pytest.mark.slow
def test_two_workers_killed_one_redoes_only_its_point(tmp_path: Path, single_run: Path) -> None:
    """Two workers on stand-in cards 0 and 1; shard 1's worker is SIGKILLed after its first
    rows. The supervisor restarts it on its part file: the point in flight is the only one
    measured twice, and the merged CSV holds exactly the one-process rows."""
    killed: dict[str, object] = {}

    def kill_shard_1_after_first_rows() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            parts = list(tmp_path.glob("*.parts/shard-1-of-2.csv"))
            if parts:
                rows = parts[0].read_text(encoding="utf-8").count("\n") - 1
                progress = progress_path_for(parts[0])
                if rows >= 1 and progress.exists():
                    state = json.loads(progress.read_text(encoding="utf-8"))
                    if state.get("current"):
                        os.kill(state["pid"], signal.SIGKILL)
                        killed.update(pid=state["pid"], rows=rows)
                        return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_shard_1_after_first_rows)
    killer.start()
    events: list[str] = []

    class Recording(PlainDisplay):
        def event(self, text: str) -> None:
            events.append(text)

    outcome = sharded_run(tmp_path, gpus="0,1", display=Recording())
    killer.join()
    assert killed, "the worker of shard 1 was never seen running"
    assert outcome.exit_code in (0, 1) and outcome.csv_path is not None
    assert outcome.report is not None
    assert outcome.report.missing == [] and outcome.report.conflicts == []
    assert outcome.report.duplicates == []
    assert any("shard 1" in e and "restarting (1/3)" in e for e in events)

    logs = shard_logs(outcome.parts_dir)
    first, second = logs["shard-1-of-2.csv.log"]
    redone = set(first) & set(second)
    assert redone == {first[-1]}  # only the point the killed worker was measuring
    assert len(logs["shard-0-of-2.csv.log"]) == 1  # the other worker went on untouched

    for index in (0, 1):  # each worker saw only its own stand-in card
        meta = read_meta(outcome.parts_dir / f"shard-{index}-of-2.meta.json")
        assert meta["cuda_visible_devices"] == str(index)
        assert meta["shard"] == {"index": index, "count": 2, "cost_from": None}
        # one compiler cache for the run, the same for both workers
        assert meta["worker_env"]["TRITON_CACHE_DIR"] == str(outcome.parts_dir / "cache/triton")
        assert meta["worker_env"]["TORCHINDUCTOR_CACHE_DIR"] == str(
            outcome.parts_dir / "cache/inductor"
        )
    assert_same_rows(outcome.csv_path, single_run)
    meta = read_meta(outcome.csv_path.with_name(outcome.csv_path.stem + ".meta.json"))
    assert len(meta["merged_from"]) == 2 and meta["device_name"] == "cpu"


@pytest.mark.slow
def test_ctrl_c_leaves_a_resumable_run(tmp_path: Path, single_run: Path) -> None:
    """Ctrl-C (KeyboardInterrupt in the supervisor) stops both workers with SIGINT; the parts
    keep their rows; resume_local finishes the same shards and merges the one-process rows."""

    class InterruptAfterRows(PlainDisplay):
        def update(self, shards) -> None:  # type: ignore[override]
            # a whole row on disk (the header alone can be longer than any fixed size)
            if any(_rows_on_disk(s.part) >= 1 for s in shards):
                raise KeyboardInterrupt

    outcome = sharded_run(tmp_path, gpus="0,1", display=InterruptAfterRows())
    assert outcome.interrupted and outcome.exit_code == 130 and outcome.csv_path is None
    before = {p.name: len(read_results(p).rows) for p in outcome.parts_dir.glob("shard-*.csv")}
    assert sum(before.values()) >= 1
    logs = shard_logs(outcome.parts_dir)
    assert all(len(attempts) == 1 for attempts in logs.values())

    resumed = sharded_run(resume=outcome.parts_dir)
    assert resumed.exit_code in (0, 1) and resumed.csv_path is not None
    for name, rows in before.items():  # finished rows were kept, not measured again
        kept = read_results(outcome.parts_dir / name).rows[:rows]
        assert len(kept) == rows
    assert_same_rows(resumed.csv_path, single_run)


@pytest.mark.slow
def test_resume_of_a_finished_run_starts_no_worker(
    tmp_path: Path, single_run: Path, one_card: str
) -> None:
    outcome = sharded_run(tmp_path, gpus=one_card, shards=2)
    assert outcome.csv_path is not None  # two shards one after the other on one card
    assert_same_rows(outcome.csv_path, single_run)
    logs_before = shard_logs(outcome.parts_dir)
    again = sharded_run(resume=outcome.parts_dir)
    assert shard_logs(outcome.parts_dir) == logs_before
    assert_same_rows(again.csv_path, single_run)  # type: ignore[arg-type]


def test_resume_rejects_a_folder_without_state(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"run\.json"):
        build_request(SUITE, resume=tmp_path)


@pytest.mark.slow
def test_point_that_kills_its_worker_twice_is_recorded_as_error(
    tmp_path: Path, single_run: Path, one_card: str
) -> None:
    """The worker is SIGKILLed twice while measuring the same point: the third start records
    that point as `error` rows (naming why) and measures everything else."""
    victims: list[str] = []

    def kill_twice_at_one_point() -> None:
        deadline, pids = time.monotonic() + 180, set()
        while time.monotonic() < deadline and len(victims) < 2:
            for part in tmp_path.glob("*.parts/shard-0-of-1.csv"):
                progress = progress_path_for(part)
                rows = part.read_text(encoding="utf-8").count("\n") - 1
                if rows < 1 or not progress.exists():
                    continue
                try:
                    state = json.loads(progress.read_text(encoding="utf-8"))
                except ValueError:
                    continue
                current, pid = state.get("current"), state["pid"]
                if current and pid not in pids and (not victims or current == victims[0]):
                    os.kill(pid, signal.SIGKILL)
                    pids.add(pid)
                    victims.append(current)
            time.sleep(0.02)

    killer = threading.Thread(target=kill_twice_at_one_point)
    killer.start()
    events: list[str] = []

    class Recording(PlainDisplay):
        def event(self, text: str) -> None:
            events.append(text)

    outcome = sharded_run(tmp_path, gpus=one_card, poll_s=0.05, display=Recording())
    killer.join()
    assert len(victims) == 2 and victims[0] == victims[1]
    point = victims[0]
    assert any(f"{point} recorded as error" in e for e in events)
    assert outcome.csv_path is not None and outcome.exit_code == 1  # error rows fail the run
    merged, single = read_results(outcome.csv_path).rows, read_results(single_run).rows
    assert len(merged) == len(single)
    given_up = 0
    for got, want in zip(merged, single, strict=True):
        label = f"{got.impl} T={got.seq_len}" + "".join(
            f" {k}={v:g}" for k, v in (("nb", got.n_buckets), ("p", got.drop_rate)) if v is not None
        )
        if label == point and got.status == "error" and got.error.startswith("the worker"):
            # modes finished before the first death keep their rows; the rest are given up
            assert "died twice while measuring this point" in got.error
            assert got.ms_median is None
            given_up += 1
        else:
            assert non_timing_cells(got) == non_timing_cells(want)
    assert given_up >= 1


@pytest.mark.slow
def test_worker_stops_when_its_supervisor_is_gone(tmp_path: Path) -> None:
    """A worker told that another process is its parent acts as an orphan: it interrupts
    itself as on Ctrl-C (exit 130) instead of measuring unwatched."""
    part = tmp_path / "shard-0-of-1.csv"
    not_my_parent = os.getpid() + 10**6
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "scfa_bench.run.sharded.worker",
            str(SUITE),
            "--shard",
            "0/1",
            "--part",
            str(part),
            "--parent-pid",
            str(not_my_parent),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 130, done.stdout + done.stderr
    # stopped long before the end of the grid (or before its first row)
    assert not part.exists() or len(read_results(part).rows) < 24


@pytest.mark.slow
def test_sigterm_stops_every_worker(tmp_path: Path) -> None:
    """SIGTERM to `scfa-bench run --gpus` (a scheduler ending the job) stops the workers as
    Ctrl-C does: exit 130, no worker left running, a resumable parts folder."""
    command = [
        sys.executable,
        "-c",
        "from scfa_bench.cli import app; app()",
        "run",
        str(SUITE),
        "--gpus",
        "0,1",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    supervisor = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 180
    pids: set[int] = set()
    while time.monotonic() < deadline and not pids:
        for progress in tmp_path.glob("*.parts/*.progress.json"):
            try:
                pids.add(json.loads(progress.read_text(encoding="utf-8"))["pid"])
            except (ValueError, KeyError, OSError):
                pass
        time.sleep(0.05)
    assert pids, "no worker started"
    supervisor.send_signal(signal.SIGTERM)
    output, _ = supervisor.communicate(timeout=180)
    assert supervisor.returncode == 130, output
    assert "--resume" in output
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def _supervisor(parts_dir: Path, cache_dir: str | None = None) -> Supervisor:
    state = RunState("suite.yaml", "sha", 2, str(parts_dir / "run.csv"), cache_dir=cache_dir)
    run = ShardedRun(None, state, parts_dir, [])  # type: ignore[arg-type]
    return Supervisor(run, ["0", "1"], grace_s=1.0, poll_s=1.0, display=PlainDisplay())


def test_workers_share_one_compiler_cache(tmp_path: Path) -> None:
    """Every worker of a run gets the same Triton and Inductor cache folders (the run's own,
    or --cache-dir), so what one compiled the others reuse; each keeps its own card."""
    supervisor = _supervisor(tmp_path / "x.parts")
    first, second = supervisor.worker_env("0"), supervisor.worker_env("1")
    assert (first["CUDA_VISIBLE_DEVICES"], second["CUDA_VISIBLE_DEVICES"]) == ("0", "1")
    for name, sub in (("TRITON_CACHE_DIR", "triton"), ("TORCHINDUCTOR_CACHE_DIR", "inductor")):
        assert first[name] == second[name] == str(tmp_path / "x.parts" / "cache" / sub)
    given = _supervisor(tmp_path / "y.parts", cache_dir=str(tmp_path / "shared"))
    assert given.worker_env("1")["TRITON_CACHE_DIR"] == str(tmp_path / "shared" / "triton")
