"""The sharded ways to run a suite, as the command line calls them: one shard in this process
(`--shard I/N`), worker processes on the local cards (`--gpus`), Slurm array tasks
(`--executor slurm`), each started fresh or resumed. The suite comes parsed (once, by the
caller); the workers of other processes read it again from its file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scfa_bench.errors import InputError
from scfa_bench.results.meta import meta_path_for, read_meta, suite_content
from scfa_bench.results.resume import check_suite_unchanged
from scfa_bench.run.loop import RunOutcome
from scfa_bench.run.paths import new_csv_path, stamped_stem
from scfa_bench.run.request import RunRequest
from scfa_bench.run.sharded.display import Display
from scfa_bench.run.sharded.gpus import resolve_gpus
from scfa_bench.run.sharded.local import supervise_local
from scfa_bench.run.sharded.slurm import check_cluster, supervise_slurm
from scfa_bench.run.sharded.state import RunState, ShardedOutcome, ShardedRun, plan_shards
from scfa_bench.run.sharded.worker import run_shard
from scfa_bench.suite.schema import Suite


def shard_count(request: RunRequest) -> int:
    """How many shards a new sharded run of `request` has: --shards, else one per card."""
    if request.shards is not None:
        return request.shards
    return len(resolve_gpus(request.gpus)) if request.gpus is not None else 1


def run_one_shard(request: RunRequest, suite: Suite, reporter: Any = None) -> RunOutcome:
    """`run SUITE --shard I/N`: shard I's rows into their own CSV (or continue `--resume`,
    which must be a CSV of the same shard)."""
    assert request.shard is not None
    index, count = request.shard
    if request.resume is not None:
        meta_path = meta_path_for(request.resume)
        recorded = read_meta(meta_path).get("shard") if meta_path.is_file() else None
        if recorded and (recorded.get("index"), recorded.get("count")) != (index, count):
            raise InputError(
                f"--resume {request.resume}: it holds shard {recorded.get('index')}/"
                f"{recorded.get('count')}, not {index}/{count}"
            )
        part = request.resume
    else:
        _make_out_dir(request.out)
        part = new_csv_path(request.out, suite.name, f"-shard-{index}-of-{count}")
    return run_shard(
        suite,
        index,
        count,
        part,
        cost_from=request.cost_from,
        device=request.device,
        argv=request.argv,
        reporter=reporter,
        force=request.force,
    )


def _make_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out {out}: cannot create folder ({exc})") from None


def _start(request: RunRequest, suite: Suite, gpus: list[str]) -> tuple[RunState, Path]:
    """A new run's parts folder and state."""
    _make_out_dir(request.out)
    stem = stamped_stem(request.out, suite.name, (".csv", ".parts"))
    parts_dir = stem.with_name(stem.name + ".parts")
    parts_dir.mkdir(parents=True)
    state = RunState(
        suite_file=str(Path(suite.source).resolve()),
        suite_sha256=suite.sha256,
        count=request.shards or len(gpus) or 1,
        merged_csv=str(stem.with_name(stem.name + ".csv").resolve()),
        executor=request.way,
        gpus=gpus,
        cost_from=None if request.cost_from is None else str(request.cost_from.resolve()),
        device=request.device,
        cache_dir=None if request.cache_dir is None else str(request.cache_dir.resolve()),
        suite=suite_content(suite),
    )
    return state, parts_dir


def _resumed(request: RunRequest, suite: Suite, display: Display) -> RunState:
    """The state of the run in `--resume`, checked against the suite as it is now."""
    assert request.resume is not None
    state = RunState.read(request.resume)
    if state.executor == "slurm" and request.way != "slurm":
        raise InputError(f"--resume {request.resume}: a Slurm run; add --executor slurm")
    recorded = {"suite_sha256": state.suite_sha256, "suite": state.suite}
    note = check_suite_unchanged(recorded, suite, request.resume, request.force)
    if note:
        display.event(note)
    # Workers read the suite from this file; the state now describes it.
    state.suite_file = str(Path(suite.source).resolve())
    state.suite_sha256, state.suite = suite.sha256, suite_content(suite)
    if request.gpus is not None:
        state.gpus = resolve_gpus(request.gpus)
    return state


def run_sharded(
    request: RunRequest, suite: Suite, display: Display, **pace: float
) -> ShardedOutcome:
    """`--gpus` / `--executor slurm`: start (or with `--resume`, continue) a sharded run and
    merge it. `pace`: `poll_s` (and `grace_s`, local) for tests."""
    if request.way == "slurm":
        check_cluster(request.slurm)  # before any file is created
    if request.resume is not None:
        state, parts_dir = _resumed(request, suite, display), request.resume
    else:
        gpus = resolve_gpus(request.gpus or "all") if request.way == "local" else []
        state, parts_dir = _start(request, suite, gpus)
    state.write(parts_dir)
    run = ShardedRun(
        suite,
        state,
        parts_dir,
        plan_shards(suite, state.count, parts_dir, state.cost_path),
        force=request.force,
        allow_plugins=request.allow_plugins,
        max_restarts=request.max_restarts,
    )
    if request.way == "slurm":
        return supervise_slurm(run, request.slurm, display, **pace)
    return supervise_local(run, state.gpus, display, **pace)
