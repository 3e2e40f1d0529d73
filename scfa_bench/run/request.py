"""Every option of `scfa-bench run`, checked once: `build_request` turns the command line's
values into a frozen `RunRequest` or raises one InputError naming the options that do not go
together. Every way of running (one process, `--shard I/N`, `--gpus`, Slurm) reads it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from scfa_bench.constants import DEVICES
from scfa_bench.errors import InputError
from scfa_bench.run.sharded.plan import parse_shard
from scfa_bench.run.sharded.slurm import SlurmOptions

EXECUTORS = ("local", "slurm")
# How a request runs: here in one process, one shard here, workers on local cards, Slurm.
WAYS = ("single", "shard", "local", "slurm")
DEFAULT_CPU_MINUTES = 10.0


@dataclass(frozen=True)
class RunRequest:
    """A run as asked for; `way` says which of WAYS carries it out."""

    suite_file: Path
    way: str = "single"
    out: Path = Path("results")
    resume: Path | None = None  # a CSV (single, shard) or a `.parts` folder (local, slurm)
    dry_run: bool = False
    device: str | None = None  # overrides the suite's
    progress: bool = True
    shard: tuple[int, int] | None = None  # (index, count) of `--shard I/N`
    gpus: str | None = None  # `--gpus` as given: all, a count or ids
    shards: int | None = None
    cost_from: Path | None = None
    max_restarts: int = 3
    slurm: SlurmOptions = field(default_factory=SlurmOptions)
    force: bool = False  # resume even though the suite changed
    profile_stages: bool = False
    allow_plugins: bool = False  # import the suite's module and file plugins
    cache_dir: Path | None = None  # compiler caches of a sharded run's workers
    max_cpu_minutes: float = DEFAULT_CPU_MINUTES  # predicted CPU time that needs confirming
    yes: bool = False  # go on without asking, whatever the CPU estimate
    argv: tuple[str, ...] = ()

    @property
    def sharded(self) -> bool:
        """Worker processes or array tasks run the shards, and a supervisor merges them."""
        return self.way in ("local", "slurm")


def _way(shard: str | None, gpus: str | None, executor: str, shards: int | None, resume) -> str:
    if shard is not None:
        return "shard"
    if executor == "slurm":
        return "slurm"
    if gpus is not None or shards is not None or (resume is not None and Path(resume).is_dir()):
        return "local"
    return "single"


def _check_values(executor: str, device: str | None, max_restarts: int, shards: int | None):
    if executor not in EXECUTORS:
        raise InputError(f"--executor: expected one of {', '.join(EXECUTORS)}; got {executor!r}")
    if device is not None and device not in DEVICES:
        raise InputError(f"--device: expected one of {', '.join(DEVICES)}; got {device!r}")
    if max_restarts < 0:
        raise InputError(f"--max-restarts must be >= 0, got {max_restarts}")
    if shards is not None and shards < 1:
        raise InputError(f"--shards must be >= 1, got {shards}")


def _check_combination(way: str, given: dict[str, bool], executor: str) -> None:
    """The one place saying which options go together (`given`: option -> passed)."""
    slurm_only = [o for o in ("--partition", "--array-parallelism") if given[o]]
    if slurm_only and way != "slurm":
        raise InputError(f"{', '.join(slurm_only)}: only with --executor slurm")
    if way == "shard" and (given["--gpus"] or executor != "local" or given["--shards"]):
        raise InputError("--shard runs one shard here; it does not go with --gpus/--executor")
    if way == "slurm" and given["--gpus"]:
        raise InputError("--gpus is for local runs; on Slurm use --gpus-per-task")
    if given["--profile-stages"] and way != "single":
        raise InputError("--profile-stages runs here only; not with --shard/--gpus/--executor")
    if given["--cache-dir"] and way in ("single", "shard"):
        raise InputError("--cache-dir: for --gpus/--executor slurm runs, whose workers share it")


def _check_resume(way: str, resume: Path | None, shards: int | None, dry_run: bool) -> None:
    if resume is None:
        if way == "slurm" and shards is None and not dry_run:
            raise InputError("--executor slurm needs --shards N (one array task per shard)")
        return
    if way == "shard" and not resume.is_file():
        raise InputError(f"--resume {resume}: no such file")
    if way in ("local", "slurm") and not (resume / "run.json").is_file():
        raise InputError(
            f"--resume {resume}: with --gpus or --executor slurm, give the run's .parts folder "
            "(it holds run.json)"
        )


def build_request(
    suite_file: Path,
    *,
    shard: str | None = None,
    gpus: str | None = None,
    executor: str = "local",
    shards: int | None = None,
    resume: Path | None = None,
    partition: str | None = None,
    time_min: int = 60,
    gpus_per_task: int = 1,
    array_parallelism: int | None = None,
    max_restarts: int = 3,
    max_cpu_minutes: float = DEFAULT_CPU_MINUTES,
    dry_run: bool = False,
    device: str | None = None,
    **rest,
) -> RunRequest:
    """The checked request; `rest`: the other RunRequest fields (out, progress, force, ...)."""
    _check_values(executor, device, max_restarts, shards)
    way = _way(shard, gpus, executor, shards, resume)
    given = {
        "--partition": partition is not None,
        "--array-parallelism": array_parallelism is not None,
        "--gpus": gpus is not None,
        "--shards": shards is not None,
        "--profile-stages": bool(rest.get("profile_stages")),
        "--cache-dir": rest.get("cache_dir") is not None,
    }
    _check_combination(way, given, executor)
    _check_resume(way, resume, shards, dry_run)
    if max_cpu_minutes <= 0:
        raise InputError(f"--max-cpu-minutes must be > 0, got {max_cpu_minutes:g}")
    slurm = SlurmOptions(
        partition=partition,
        time_min=time_min,
        gpus_per_task=gpus_per_task,
        array_parallelism=array_parallelism,
    )
    return RunRequest(
        suite_file=suite_file,
        way=way,
        resume=resume,
        dry_run=dry_run,
        device=device,
        shard=None if shard is None else parse_shard(shard),
        gpus=gpus,
        shards=shards,
        max_restarts=max_restarts,
        slurm=slurm,
        max_cpu_minutes=max_cpu_minutes,
        **rest,
    )
