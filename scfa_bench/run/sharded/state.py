"""The files of a sharded run and what its supervisor knows about each shard.

A run started with `out=results` keeps `results/<suite>-<stamp>.parts/`: `run.json` (the
`RunState`: suite file, its hash and parsed content, shard count, cards, cost source, the
merged CSV's path, the shared compiler caches, Slurm job ids), a `cache/` folder (Triton and
Inductor caches every worker shares, unless `--cache-dir` names another), and per shard
`shard-I-of-N.csv` with its `.meta.json`, `.log` (the worker's output) and `.progress.json`
(its pid and current point). The merged CSV is `results/<suite>-<stamp>.csv`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scfa_bench.constants import FAILING_STATUSES
from scfa_bench.errors import EXIT_INTERRUPTED, InputError
from scfa_bench.results.merge import MergeReport, grid_keys, merge, write_merged
from scfa_bench.results.reader import read_results
from scfa_bench.results.resume import done_keys
from scfa_bench.results.row import RowKey
from scfa_bench.results.writer import replace_file
from scfa_bench.run.sharded.plan import suite_shards
from scfa_bench.run.sharded.worker import ShardCall, progress_path_for, repair_part
from scfa_bench.suite.grid import expand
from scfa_bench.suite.schema import Suite

STATE_FILE = "run.json"
# Compilers read these: one folder per run, so every worker reuses what the first compiled.
CACHE_VARIABLES = {"TRITON_CACHE_DIR": "triton", "TORCHINDUCTOR_CACHE_DIR": "inductor"}


def cache_env(cache_dir: str | Path) -> dict[str, str]:
    """The environment that points a worker's Triton and Inductor caches into `cache_dir`."""
    return {name: str(Path(cache_dir) / sub) for name, sub in CACHE_VARIABLES.items()}


@dataclass
class RunState:
    """`run.json`: what a supervisor needs to continue the run (and nothing per invocation)."""

    suite_file: str
    suite_sha256: str
    count: int
    merged_csv: str
    executor: str = "local"
    gpus: list[str] = field(default_factory=list)
    cost_from: str | None = None
    device: str | None = None
    cache_dir: str | None = None
    suite: dict[str, Any] | None = None  # parsed content: what `--resume` names as changed
    jobs: dict[str, list[str]] = field(default_factory=dict)  # shard -> Slurm job ids

    @property
    def cost_path(self) -> Path | None:
        return None if self.cost_from is None else Path(self.cost_from)

    def write(self, parts_dir: Path) -> None:
        data = json.dumps(dataclasses.asdict(self), indent=2) + "\n"
        replace_file(parts_dir / STATE_FILE, data.encode("utf-8"))

    @classmethod
    def read(cls, parts_dir: Path) -> RunState:
        path = parts_dir / STATE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError:
            raise InputError(f"--resume {parts_dir}: no {STATE_FILE} (not a sharded run)") from None
        except ValueError as exc:
            raise InputError(f"{path}: not valid JSON ({exc})") from None
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise InputError(f"{path}: not a run state ({exc})") from None


def part_name(index: int, count: int) -> str:
    return f"shard-{index}-of-{count}.csv"


def count_rows(csv_path: Path) -> int:
    """Rows in a CSV written by ResultWriter (cheap: counts whole lines, minus the header)."""
    try:
        data = csv_path.read_bytes()
    except OSError:
        return 0
    return max(data.count(b"\n") - 1, 0)


@dataclass
class Shard:
    index: int
    part: Path
    total_rows: int
    keys: set[RowKey]
    gpu: str | None = None  # the card, or the Slurm job, running it
    process: Any = None  # the worker's subprocess.Popen (local runs)
    restarts: int = 0
    state: str = "pending"  # pending | running | done | failed
    note: str = ""
    crashes: list[tuple[str | None, str]] = field(default_factory=list)  # (point, how)
    give_up: dict[str, str] = field(default_factory=dict)  # point label -> reason


def record_crash(shard: Shard, how: str) -> str | None:
    """Note that shard's process died (`how`: exit code, job error) while measuring the point
    its progress file names. A point that was in flight at two deaths in a row is given up:
    the next start records it as `error` rows instead of dying on it again. Returns the point
    given up, if any."""
    point = in_flight(shard)
    shard.crashes.append((point, how))
    last_two = shard.crashes[-2:]
    if point is None or len(last_two) < 2 or last_two[0][0] != point or point in shard.give_up:
        return None
    shard.give_up[point] = (
        f"the worker process died twice while measuring this point ({last_two[0][1]}; "
        f"{last_two[1][1]}); not measured"
    )
    return point


@dataclass
class ShardedOutcome:
    """How a sharded run ended (`LocalOutcome` and `SlurmOutcome` say where it ran)."""

    csv_path: Path | None  # None when not every shard finished
    parts_dir: Path
    interrupted: bool
    failed: list[str] = field(default_factory=list)  # "shard I: why"
    report: MergeReport | None = None
    exit_code: int = 0  # 0, 1 (rows incorrect/error or a shard failed), 130 (interrupted)


@dataclass
class LocalOutcome(ShardedOutcome):
    """A run of worker processes on this machine's cards."""


def in_flight(s: Shard) -> str | None:
    """The point the shard's process is (or was, when it died) measuring."""
    try:
        state = json.loads(progress_path_for(s.part).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state.get("current")


def current_point(s: Shard) -> str:
    return in_flight(s) or "starting"


def plan_shards(suite: Suite, count: int, parts_dir: Path, cost_from: Path | None) -> list[Shard]:
    """The shards of the run, each marked done when its part file already holds every row."""
    tasks = expand(suite)
    shards = []
    for index, positions in enumerate(suite_shards(suite, tasks, count, cost_from)):
        mine = [tasks[i] for i in positions]
        keys = set(grid_keys(suite, mine))
        shard = Shard(index, parts_dir / part_name(index, count), len(keys), keys)
        shard.state = "done" if is_complete(shard) else "pending"
        shards.append(shard)
    return shards


def is_complete(shard: Shard) -> bool:
    if not shard.part.exists():
        return False
    repair_part(shard.part)
    return shard.keys <= done_keys(read_results(shard.part, with_meta=False))


def interrupted_outcome(
    kind: type[ShardedOutcome], parts_dir: Path, **extra: Any
) -> ShardedOutcome:
    """A run stopped by Ctrl-C (or SIGTERM): nothing merged, every finished row kept."""
    return kind(None, parts_dir, interrupted=True, exit_code=EXIT_INTERRUPTED, **extra)


def finish(
    suite: Suite, shards: list[Shard], state: RunState, parts_dir: Path, kind: type[ShardedOutcome]
) -> ShardedOutcome:
    """After every shard ended: merge the parts into the run's CSV, or say which shards failed."""
    failed = [f"shard {s.index}: {s.note}" for s in shards if s.state == "failed"]
    if failed:
        return kind(None, parts_dir, interrupted=False, failed=failed, exit_code=1)
    merged = merge([s.part for s in shards], expected=grid_keys(suite, expand(suite)))
    merged_csv = Path(state.merged_csv)
    write_merged(merged, merged_csv)
    bad = any(r.status in FAILING_STATUSES for r in merged.rows)
    problems = merged.report.missing or merged.report.conflicts
    return kind(
        merged_csv,
        parts_dir,
        interrupted=False,
        report=merged.report,
        exit_code=1 if bad or problems else 0,
    )


@dataclass
class ShardedRun:
    """A sharded run ready to supervise: the suite (parsed once, here), its recorded state,
    its shards, and what this invocation adds (force, plugins, restarts)."""

    suite: Suite
    state: RunState
    parts_dir: Path
    shards: list[Shard]
    force: bool = False
    allow_plugins: bool = False
    max_restarts: int = 3

    def call(self, shard: Shard) -> ShardCall:
        """What shard's worker runs (a local process or a Slurm array task)."""
        return ShardCall(
            self.state.suite_file,
            shard.index,
            self.state.count,
            str(shard.part),
            cost_from=self.state.cost_from,
            device=self.state.device,
            force=self.force,
            allow_plugins=self.allow_plugins,
            give_up=dict(shard.give_up),
        )

    def cache_env(self) -> dict[str, str]:
        """Every worker's compiler caches: the run's folder (`--cache-dir`, else `cache/`)."""
        return cache_env(self.state.cache_dir or self.parts_dir / "cache")
