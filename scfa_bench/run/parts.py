"""The files of a sharded run and what the supervisors know about each shard.

A run started with `out=results` keeps `results/<suite>-<stamp>.parts/`: `run.json` (what to
resume: suite file and its hash, shard count, cards, cost source, the merged CSV's path; Slurm
job ids), and per shard `shard-I-of-N.csv` with its `.meta.json`, `.log` (the worker's output)
and `.progress.json` (its pid and current point). The merged CSV is `results/<suite>-<stamp>.csv`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from scfa_bench.constants import FAILING_STATUSES
from scfa_bench.errors import InputError
from scfa_bench.results.merge import MergeReport, grid_keys, merge, write_merged
from scfa_bench.results.reader import read_results
from scfa_bench.results.resume import done_keys
from scfa_bench.results.row import RowKey
from scfa_bench.run.shard import suite_shards
from scfa_bench.run.worker import progress_path_for, repair_part
from scfa_bench.suite.grid import expand
from scfa_bench.suite.schema import Suite

STATE_FILE = "run.json"


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


def give_up_arguments(shard: Shard) -> list[str]:
    return [arg for label, why in shard.give_up.items() for arg in ("--give-up", f"{label}::{why}")]


@dataclass
class LocalOutcome:
    csv_path: Path | None  # None when not every shard finished
    parts_dir: Path
    interrupted: bool
    failed: list[str] = field(default_factory=list)  # "shard I: why"
    report: MergeReport | None = None
    exit_code: int = 0  # 0, 1 (rows incorrect/error or a shard failed), 130 (interrupted)


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
    tasks = expand(suite)
    shards = []
    for index, positions in enumerate(suite_shards(suite, tasks, count, cost_from)):
        mine = [tasks[i] for i in positions]
        keys = set(grid_keys(suite, mine))
        shards.append(Shard(index, parts_dir / part_name(index, count), len(keys), keys))
    return shards


def is_complete(shard: Shard) -> bool:
    if not shard.part.exists():
        return False
    repair_part(shard.part)
    return shard.keys <= done_keys(read_results(shard.part, with_meta=False))


def new_run_paths(out_dir: Path, suite_name: str) -> tuple[Path, Path]:
    """(merged CSV, parts folder) under `out_dir`, named like a one-process run."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    stem, counter = f"{suite_name}-{stamp}", 1
    while (out_dir / f"{stem}.csv").exists() or (out_dir / f"{stem}.parts").exists():
        stem, counter = f"{suite_name}-{stamp}-{counter}", counter + 1
    return out_dir / f"{stem}.csv", out_dir / f"{stem}.parts"


def write_state(parts_dir: Path, state: dict) -> None:
    path = parts_dir / STATE_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_state(parts_dir: Path) -> dict:
    path = parts_dir / STATE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise InputError(f"--resume {parts_dir}: no {STATE_FILE} (not a multi-GPU run)") from None
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None


def finish(suite: Suite, shards: list[Shard], state: dict, parts_dir: Path) -> LocalOutcome:
    """After every shard ended: merge the parts into the run's CSV, or say which shards failed."""
    failed = [f"shard {s.index}: {s.note}" for s in shards if s.state == "failed"]
    if failed:
        return LocalOutcome(None, parts_dir, interrupted=False, failed=failed, exit_code=1)
    merged = merge([s.part for s in shards], expected=grid_keys(suite, expand(suite)))
    merged_csv = Path(state["merged_csv"])
    write_merged(merged, merged_csv)
    bad = any(r.status in FAILING_STATUSES for r in merged.rows)
    problems = merged.report.missing or merged.report.conflicts
    return LocalOutcome(
        merged_csv,
        parts_dir,
        interrupted=False,
        report=merged.report,
        exit_code=1 if bad or problems else 0,
    )
