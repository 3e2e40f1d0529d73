"""Run a suite on a Slurm cluster through submitit: one array task per shard, merged at the end.

Each array task runs one shard into its own part CSV under `<stem>.parts/` (the same layout
as a local multi-GPU run, see `state.py`), resuming that file, so a task that is requeued
(preemption and timeouts: submitit's checkpoint mechanism), resubmitted after a failure (up to
`max_resubmits` per shard) or started again by `resume_slurm` redoes at most the point it was
measuring. The submitting process waits, shows progress from the part files' row counts and
merges when every shard is complete.

submitit is an optional dependency (`pip install -e '.[slurm]'`). `cluster="local"` runs the
array on this machine through submitit's local executor (what the tests use); `None` lets
submitit pick Slurm where `sbatch` exists.

Before resuming a cluster run, make sure none of its old jobs still runs (`squeue`,
`scancel`): two processes appending to one part file would duplicate rows (the merge reports
such duplicates, it does not hide them).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from scfa_bench.errors import InputError
from scfa_bench.run.sharded.state import (
    Shard,
    ShardedOutcome,
    ShardedRun,
    finish,
    interrupted_outcome,
    is_complete,
    record_crash,
)
from scfa_bench.run.sharded.worker import ShardCall


def _submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise InputError(
            "--executor slurm needs submitit: pip install -e '.[slurm]' (or pip install "
            "'submitit>=1.5')"
        ) from None
    return submitit


def check_cluster(options: SlurmOptions) -> None:
    """Refuse a Slurm run where submitit finds no Slurm: its local fallback would start every
    array task at once on this machine, each given GPU 0 (it assigns the first
    `gpus_per_node` cards to every job), so the shards would time each other. `--gpus` is the
    way to use this machine's cards; `cluster="local"` (tests) is asked for explicitly."""
    if options.cluster is not None:
        return
    found = _submitit().AutoExecutor.which()
    if found != "slurm":
        raise InputError(
            f"--executor slurm: submitit finds no Slurm here (no sbatch; it would use its "
            f"{found!r} executor and run every shard at once on GPU 0); on this machine use "
            "--gpus all"
        )


@dataclass
class SlurmOutcome(ShardedOutcome):
    """A run of Slurm array tasks; `running_jobs`: job ids still on the cluster when the
    supervisor stopped waiting (Ctrl-C), which the user may cancel or wait for."""

    running_jobs: list[str] = field(default_factory=list)


class ShardJob:
    """The callable each array task runs (picklable; checkpoint() lets submitit requeue it
    on preemption or timeout with the same arguments: the part file makes that a resume)."""

    def __call__(self, call: ShardCall, env: dict[str, str]) -> dict[str, Any]:
        os.environ.update(env)  # the run's shared compiler caches, before anything compiles
        from scfa_bench.measure.envinfo import use_interpreter_without_cuda

        use_interpreter_without_cuda()
        outcome = call.run(("submitit", f"shard {call.index}/{call.count}"))
        if outcome.interrupted:
            raise RuntimeError(f"shard {call.index}/{call.count} interrupted; its rows are kept")
        return {"part": call.part, "new_rows": outcome.new_rows, "rows": len(outcome.rows)}

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        submitit = _submitit()
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


@dataclass(frozen=True)
class SlurmOptions:
    """What each array task asks for. None leaves submitit's / the cluster's default."""

    partition: str | None = None
    time_min: int | None = 60
    gpus_per_task: int = 1
    cpus_per_task: int | None = None
    array_parallelism: int | None = None
    cluster: str | None = None  # None: Slurm where available; "local": this machine
    extra: dict[str, Any] = field(default_factory=dict)  # more update_parameters arguments

    def parameters(self, name: str) -> dict[str, Any]:
        params: dict[str, Any] = {"name": name, "tasks_per_node": 1, "nodes": 1}
        if self.cluster != "local":  # the local executor has no GPU scheduling of its own
            params["gpus_per_node"] = self.gpus_per_task
        if self.time_min is not None:
            params["timeout_min"] = self.time_min
        if self.cpus_per_task is not None:
            params["cpus_per_task"] = self.cpus_per_task
        if self.partition is not None:
            params["slurm_partition"] = self.partition
        if self.array_parallelism is not None:
            params["slurm_array_parallelism"] = self.array_parallelism
        params.update(self.extra)
        return params


class _SlurmSupervisor:
    """Submits the array, waits, resubmits failed shards (up to `max_restarts` each)."""

    def __init__(self, run: ShardedRun, options: SlurmOptions, display: Any, poll_s: float):
        self.sharded, self.display, self.poll_s = run, display, poll_s
        self.executor = _submitit().AutoExecutor(
            folder=run.parts_dir / "submitit", cluster=options.cluster
        )
        self.executor.update_parameters(**options.parameters(f"scfa-{run.suite.name}"))
        self.jobs: dict[int, Any] = {}

    def _arguments(self, shard: Shard) -> tuple[ShardCall, dict[str, str]]:
        return self.sharded.call(shard), self.sharded.cache_env()

    def _submitted(self, shards: list[Shard], jobs: list[Any]) -> None:
        for shard, job in zip(shards, jobs, strict=True):
            self.jobs[shard.index] = job
            shard.state, shard.gpu = "running", f"job {job.job_id}"
            self.sharded.state.jobs.setdefault(str(shard.index), []).append(str(job.job_id))
        self.sharded.state.write(self.sharded.parts_dir)

    def submit_pending(self) -> None:
        todo = [s for s in self.sharded.shards if s.state != "done"]
        if todo:
            args = [self._arguments(s) for s in todo]
            self._submitted(todo, self.executor.map_array(ShardJob(), *zip(*args, strict=True)))
        for shard in todo:
            self.display.event(f"shard {shard.index}: submitted as job {shard.gpu}")

    def _ended(self, shard: Shard, job: Any) -> None:
        """A job ended: the shard is done, resubmitted, or failed for good."""
        error = job.exception()
        if error is None and is_complete(shard):
            shard.state = "done"
            self.display.event(f"shard {shard.index} done (job {job.job_id})")
            return
        why = "incomplete part file" if error is None else _first_line(error)
        if shard.restarts >= self.sharded.max_restarts:
            shard.state = "failed"
            shard.note = (
                f"failed {shard.restarts + 1} times; last: {why}; logs under "
                f"{self.sharded.parts_dir / 'submitit'}"
            )
            self.display.event(f"shard {shard.index} failed: {shard.note}")
            return
        shard.restarts += 1
        given_up = record_crash(shard, f"job {job.job_id}: {why}")
        if given_up:
            why += f"; {given_up} recorded as error (died on it twice)"
        self._submitted([shard], [self.executor.submit(ShardJob(), *self._arguments(shard))])
        self.display.event(
            f"shard {shard.index} (job {job.job_id}) failed: {why}; resubmitted as "
            f"{shard.gpu} ({shard.restarts}/{self.sharded.max_restarts})"
        )

    def wait(self) -> None:
        while self.jobs:
            for index, job in list(self.jobs.items()):
                if job.done():
                    del self.jobs[index]
                    self._ended(self.sharded.shards[index], job)
            self.display.update(self.sharded.shards)
            if self.jobs:
                time.sleep(self.poll_s)


def supervise_slurm(
    run: ShardedRun, options: SlurmOptions, display: Any, *, poll_s: float = 5.0
) -> ShardedOutcome:
    """Submit one array task per incomplete shard, wait, resubmit failed ones, merge (the
    caller checked the cluster with `check_cluster` before creating the run's files)."""
    supervisor = _SlurmSupervisor(run, options, display, poll_s)
    supervisor.submit_pending()
    try:
        supervisor.wait()
    except KeyboardInterrupt:
        display.close()
        running = [str(j.job_id) for j in supervisor.jobs.values()]
        display.event(
            f"stopped waiting; jobs {', '.join(running)} keep running on the cluster (scancel "
            f"them, or wait and resume {run.parts_dir} to merge)"
        )
        return interrupted_outcome(SlurmOutcome, run.parts_dir, running_jobs=running)
    display.close()
    return finish(run.suite, run.shards, run.state, run.parts_dir, SlurmOutcome)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[-1] if text else ''}"[:300]
