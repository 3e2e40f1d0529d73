"""The options of `run` (and `--allow-plugins` of `profile`) as Typer annotations, so the
command's signature reads as one line per option."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Opt = typer.Option
SuiteArg = Annotated[Path, typer.Argument(help="Suite YAML file, e.g. suites/smoke.yaml.")]
OutOpt = Annotated[Path, Opt("--out", help="Folder for the CSV and meta file.")]
ResumeOpt = Annotated[
    Path | None, Opt("--resume", help="Continue this CSV (or sharded run's .parts folder).")
]
DryRunOpt = Annotated[bool, Opt("--dry-run", help="Print the grid and its size only.")]
DeviceOpt = Annotated[
    str | None, Opt("--device", help="auto, cuda or cpu (overrides the suite's).")
]
ProgressOpt = Annotated[bool, Opt("--progress/--no-progress", help="Show a progress bar.")]
ShardOpt = Annotated[
    str | None, Opt("--shard", help="Run only shard I of N (I/N, 0 <= I < N) into its own CSV.")
]
GpusOpt = Annotated[
    str | None, Opt("--gpus", help="all, a count or ids (0,2): one worker process per GPU.")
]
ExecutorOpt = Annotated[str, Opt("--executor", help="local, or slurm (through submitit).")]
ShardsOpt = Annotated[
    int | None, Opt("--shards", help="Shards of a --gpus or Slurm run (default: one per GPU).")
]
CostFromOpt = Annotated[
    Path | None, Opt("--cost-from", help="Balance shards by the times of this earlier CSV.")
]
RestartsOpt = Annotated[int, Opt("--max-restarts", help="Restarts (resubmissions) per shard.")]
PartitionOpt = Annotated[str | None, Opt("--partition", help="Slurm partition.")]
TimeOpt = Annotated[int, Opt("--time", help="Slurm time limit per array task, minutes.")]
GpusPerTaskOpt = Annotated[int, Opt("--gpus-per-task", help="GPUs per Slurm array task.")]
ParallelismOpt = Annotated[
    int | None, Opt("--array-parallelism", help="Slurm array tasks running at once.")
]
ForceOpt = Annotated[
    bool, Opt("--force", help="With --resume: resume even if the suite file changed.")
]
StagesOpt = Annotated[
    bool, Opt("--profile-stages", help="Also profile every row (CUDA): stage_ms, gpu_idle_ms.")
]
PluginsOpt = Annotated[
    bool,
    Opt("--allow-plugins", help="Import the suite's plugins (module:function, .py files)."),
]
CacheDirOpt = Annotated[
    Path | None,
    Opt("--cache-dir", help="Triton/Inductor caches the workers share (default: .parts/cache)."),
]
YesOpt = Annotated[bool, Opt("--yes", "-y", help="Run even past the CPU time budget.")]
CpuMinutesOpt = Annotated[
    float, Opt("--max-cpu-minutes", help="CPU (interpreter) runs predicted longer are asked.")
]
