"""Run a suite on a Slurm cluster through submitit: one array task per shard, merged at the end.

Each array task runs one shard into its own part CSV under `<stem>.parts/` (the same layout
as a local multi-GPU run, see `workers.py`), resuming that file, so a task that is requeued
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

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scfa_bench.errors import InputError


def _submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise InputError(
            "--executor slurm needs submitit: pip install -e '.[slurm]' (or pip install "
            "'submitit>=1.5')"
        ) from None
    return submitit


def _check_cluster(options: SlurmOptions) -> None:
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


class ShardJob:
    """The callable each array task runs (picklable; checkpoint() lets submitit requeue it
    on preemption or timeout with the same arguments: the part file makes that a resume)."""

    def __call__(
        self,
        suite_file: str,
        index: int,
        count: int,
        part: str,
        cost_from: str | None,
        device: str | None,
        give_up_on: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        from scfa_bench.measure.envinfo import use_interpreter_without_cuda

        use_interpreter_without_cuda()
        from scfa_bench.run.worker import run_shard

        outcome = run_shard(
            Path(suite_file),
            index,
            count,
            Path(part),
            cost_from=None if cost_from is None else Path(cost_from),
            device=device,
            argv=("submitit", f"shard {index}/{count}"),
            give_up_on=give_up_on,
        )
        if outcome.interrupted:
            raise RuntimeError(f"shard {index}/{count} interrupted; its finished rows are kept")
        return {"part": part, "new_rows": outcome.new_rows, "rows": len(outcome.rows)}

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


def run_slurm(
    suite_file: Path,
    *,
    shards: int,
    options: SlurmOptions,
    out_dir: Path = Path("results"),
    cost_from: Path | None = None,
    device: str | None = None,
    max_resubmits: int = 2,
    poll_s: float = 5.0,
    display: Any = None,
):
    """Submit one array task per shard, wait, resubmit failed shards, merge."""
    from scfa_bench.run.parts import new_run_paths, write_state
    from scfa_bench.suite.parse import load_suite

    if shards < 1:
        raise InputError(f"--shards must be >= 1, got {shards}")
    _check_cluster(options)
    suite = load_suite(suite_file)
    merged_csv, parts_dir = new_run_paths(out_dir, suite.name)
    parts_dir.mkdir(parents=True)
    state = {
        "executor": "slurm",
        "suite_file": str(Path(suite_file).resolve()),
        "suite_sha256": suite.sha256,
        "count": shards,
        "gpus": [],
        "cost_from": None if cost_from is None else str(Path(cost_from).resolve()),
        "device": device,
        "merged_csv": str(merged_csv.resolve()),
        "jobs": {},
    }
    write_state(parts_dir, state)
    return _supervise_slurm(suite, parts_dir, state, options, max_resubmits, poll_s, display)


def resume_slurm(
    parts_dir: Path,
    options: SlurmOptions,
    *,
    max_resubmits: int = 2,
    poll_s: float = 5.0,
    display: Any = None,
):
    """Submit again every shard of an earlier cluster run whose part file is incomplete."""
    from scfa_bench.run.parts import read_state
    from scfa_bench.suite.parse import load_suite

    _check_cluster(options)
    state = read_state(parts_dir)
    suite = load_suite(Path(state["suite_file"]))
    if suite.sha256 != state.get("suite_sha256"):
        raise InputError(f"--resume {parts_dir}: {state['suite_file']} changed since the run")
    return _supervise_slurm(suite, parts_dir, state, options, max_resubmits, poll_s, display)


def _supervise_slurm(
    suite: Any,
    parts_dir: Path,
    state: dict,
    options: SlurmOptions,
    max_resubmits: int,
    poll_s: float,
    display: Any,
):
    from scfa_bench.run.display import PlainDisplay
    from scfa_bench.run.parts import (
        LocalOutcome,
        finish,
        is_complete,
        plan_shards,
        record_crash,
        write_state,
    )

    submitit = _submitit()
    cost_from = Path(state["cost_from"]) if state.get("cost_from") else None
    shards = plan_shards(suite, state["count"], parts_dir, cost_from)
    display = display or PlainDisplay()
    executor = submitit.AutoExecutor(folder=parts_dir / "submitit", cluster=options.cluster)
    executor.update_parameters(**options.parameters(f"scfa-{suite.name}"))

    def arguments(index: int) -> tuple:
        shard = shards[index]
        return (
            state["suite_file"],
            index,
            len(shards),
            str(shard.part),
            None if cost_from is None else str(cost_from),
            state.get("device"),
            dict(shard.give_up),
        )

    todo = [s.index for s in shards if not is_complete(s)]
    for shard in shards:
        shard.state = "pending" if shard.index in todo else "done"
    jobs: dict[int, Any] = {}
    if todo:
        submitted = executor.map_array(ShardJob(), *zip(*(arguments(i) for i in todo), strict=True))
        jobs = dict(zip(todo, submitted, strict=True))
    _record_jobs(state, jobs)
    write_state(parts_dir, state)
    for index in todo:
        shards[index].state = "running"
        shards[index].gpu = f"job {jobs[index].job_id}"
        display.event(f"shard {index}: submitted as job {jobs[index].job_id}")

    try:
        while jobs:
            for index, job in list(jobs.items()):
                if not job.done():
                    continue
                shard = shards[index]
                del jobs[index]
                error = job.exception()
                if error is None and is_complete(shard):
                    shard.state = "done"
                    display.event(f"shard {index} done (job {job.job_id})")
                elif shard.restarts < max_resubmits:
                    shard.restarts += 1
                    why = "incomplete part file" if error is None else _first_line(error)
                    given_up = record_crash(shard, f"job {job.job_id}: {why}")
                    if given_up:
                        why += f"; {given_up} recorded as error (died on it twice)"
                    new_job = executor.submit(ShardJob(), *arguments(index))
                    jobs[index] = new_job
                    shard.gpu = f"job {new_job.job_id}"
                    display.event(
                        f"shard {index} (job {job.job_id}) failed: {why}; resubmitted as job "
                        f"{new_job.job_id} ({shard.restarts}/{max_resubmits})"
                    )
                    _record_jobs(state, {index: new_job})
                    write_state(parts_dir, state)
                else:
                    shard.state = "failed"
                    shard.note = (
                        f"failed {shard.restarts + 1} times; last: "
                        f"{_first_line(error) if error else 'incomplete part file'}; logs under "
                        f"{parts_dir / 'submitit'}"
                    )
                    display.event(f"shard {index} failed: {shard.note}")
            display.update(shards)
            if jobs:
                time.sleep(poll_s)
    except KeyboardInterrupt:
        display.close()
        ids = ", ".join(str(j.job_id) for j in jobs.values())
        display.event(
            f"stopped waiting; jobs {ids} keep running on the cluster (scancel them, or wait "
            f"and resume {parts_dir} to merge)"
        )
        return LocalOutcome(None, parts_dir, interrupted=True, exit_code=130)
    display.close()

    return finish(suite, shards, state, parts_dir)


def _record_jobs(state: dict, jobs: dict[int, Any]) -> None:
    for index, job in jobs.items():
        state.setdefault("jobs", {}).setdefault(str(index), []).append(str(job.job_id))


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[-1] if text else ''}"[:300]
