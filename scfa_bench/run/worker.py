"""Run one shard of a suite into its own part CSV: the unit of work of every multi-process mode.

`python -m scfa_bench.run.worker SUITE --shard I/N --part PART.csv [--cost-from CSV]
[--device D]` runs the tasks of shard I of N that `PART.csv` does not hold yet, appending one
flushed row per mode (a new part file is started empty, so a first run and a restart after a
crash are the same call). `--give-up "LABEL::WHY"` (repeatable) first records the point LABEL
(as the progress file names it, e.g. `scfa_hash T=4096 nb=8`) as `error` rows without
measuring it: the supervisor does this for a point that killed its worker twice. Beside the
CSV it keeps `PART.progress.json` (pid, current point, every point this process started) for
the supervisor's display and for tests.

Exit codes as `scfa-bench run`: 0 done, 1 done with `incorrect`/`error` rows, 2 bad input,
130 interrupted (SIGINT: the finished rows stay, rerunning the same command continues).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from scfa_bench.constants import FAILING_STATUSES
from scfa_bench.errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_INTERRUPTED, InputError

if TYPE_CHECKING:
    from scfa_bench.suite.schema import Suite


def progress_path_for(part_csv: Path) -> Path:
    return part_csv.with_name(part_csv.name + ".progress.json")


def repair_part(part_csv: Path) -> None:
    """Cut a last line that a killed writer left unfinished (rows are written whole and
    fsynced, so only the line in flight can be partial)."""
    if not part_csv.exists():
        return
    data = part_csv.read_bytes()
    if data and not data.endswith(b"\n"):
        part_csv.write_bytes(data[: data.rfind(b"\n") + 1])


class ProgressFile:
    """runner.Reporter that records this worker's state in a small JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state: dict = {"pid": os.getpid(), "current": None, "started": []}

    def _write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.state), encoding="utf-8")
        os.replace(tmp, self.path)

    def start(self, total_rows: int, done_rows: int) -> None:
        self.state.update(total_rows=total_rows, done_rows=done_rows)
        self._write()

    def task(self, label: str) -> None:
        self.state["current"] = label
        self.state["started"].append(label)
        self._write()
        print(f"start {label}", flush=True)

    def advance(self, rows: int) -> None:
        self.state["done_rows"] = self.state.get("done_rows", 0) + rows

    def stop(self) -> None:
        self.state["current"] = None
        self._write()


def give_up(suite, tasks: list, part_csv: Path, reasons: dict[str, str], device: str | None) -> int:
    """Write `error` rows for the pending modes of the tasks named in `reasons`; returns how
    many rows were written."""
    from scfa_bench.measure.envinfo import device_name, resolve_device
    from scfa_bench.results.resume import done_keys, pending_tasks, read_for_resume
    from scfa_bench.results.row import base_row
    from scfa_bench.results.writer import ResultWriter

    card = device_name(resolve_device(device or suite.device))
    todo = pending_tasks(tasks, suite, done_keys(read_for_resume(part_csv, suite)))
    written = 0
    with ResultWriter(part_csv) as writer:
        for task in todo:
            reason = reasons.get(f"{task.impl} {task.point.label()}")
            if reason is None:
                continue
            for mode in task.modes:
                row = base_row(suite, task, mode, card)
                writer.write(replace(row, status="error", error=reason))
                written += 1
    return written


def _select(tasks: list, *, index: int, count: int, cost_from: Path | None, suite: Suite):
    from scfa_bench.run.shard import suite_shard

    return suite_shard(suite, tasks, index, count, cost_from)


def run_shard(
    suite_file: Path,
    index: int,
    count: int,
    part_csv: Path,
    *,
    cost_from: Path | None = None,
    device: str | None = None,
    argv: tuple[str, ...] = (),
    give_up_on: dict[str, str] | None = None,
    reporter=None,
):
    """Run (or continue) shard `index` of `count` into `part_csv`; returns the RunOutcome.
    `give_up_on`: point label -> reason, recorded as `error` rows instead of measured.
    `reporter`: progress callbacks (default: the progress file beside the part)."""
    from scfa_bench.results.meta import meta_path_for, read_meta, write_meta
    from scfa_bench.results.writer import ResultWriter
    from scfa_bench.run.loop import RunOptions, run_suite
    from scfa_bench.suite.grid import expand
    from scfa_bench.suite.parse import load_suite

    suite = load_suite(suite_file)
    part_csv.parent.mkdir(parents=True, exist_ok=True)
    repair_part(part_csv)
    fresh = not part_csv.exists() or part_csv.stat().st_size == 0
    if fresh:
        ResultWriter(part_csv).close()  # header only: the run below "resumes" an empty part
    select = functools.partial(_select, index=index, count=count, cost_from=cost_from, suite=suite)
    if give_up_on:
        give_up(suite, select(expand(suite)), part_csv, give_up_on, device)
    options = RunOptions(resume=part_csv, device=device, argv=argv, select=select)
    reporter = reporter or ProgressFile(progress_path_for(part_csv))
    outcome = run_suite(suite, options, reporter)

    meta_path = meta_path_for(part_csv)
    meta = read_meta(meta_path)
    if fresh and meta.get("resumed"):
        meta["resumed"] = meta["resumed"][1:]  # the first start is not a resume
    meta["shard"] = {
        "index": index,
        "count": count,
        "cost_from": None if cost_from is None else str(cost_from),
    }
    meta["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    write_meta(meta_path, meta)
    return outcome


def stop_when_orphaned(parent_pid: int, interval_s: float = 1.0) -> None:
    """Interrupt this process (as Ctrl-C would: finished rows kept) once `parent_pid` is no
    longer its parent, so a worker whose supervisor was killed does not run on unwatched."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval_s)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    from scfa_bench.measure.envinfo import use_interpreter_without_cuda

    use_interpreter_without_cuda()  # before anything imports triton
    from scfa_bench.run.shard import parse_shard

    parser = argparse.ArgumentParser(prog="python -m scfa_bench.run.worker", description=__doc__)
    parser.add_argument("suite", type=Path)
    parser.add_argument("--shard", required=True, help="I/N, 0 <= I < N")
    parser.add_argument("--part", required=True, type=Path, help="this shard's CSV")
    parser.add_argument("--cost-from", type=Path, default=None, help="earlier results CSV")
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--parent-pid", type=int, default=None, help="stop (as on Ctrl-C) when it goes away"
    )
    parser.add_argument(
        "--give-up", action="append", default=[], metavar="LABEL::WHY", help="skip a point"
    )
    args = parser.parse_args(argv)
    try:
        if args.parent_pid is not None:
            stop_when_orphaned(args.parent_pid)
        index, count = parse_shard(args.shard)
        pairs = [item.split("::", 1) for item in args.give_up]
        if any(len(pair) != 2 for pair in pairs):
            raise InputError(f"--give-up: expected LABEL::WHY, got {args.give_up!r}")
        reasons = {label: why for label, why in pairs}
        outcome = run_shard(
            args.suite,
            index,
            count,
            args.part,
            cost_from=args.cost_from,
            device=args.device,
            argv=tuple(sys.argv),
            give_up_on=reasons,
        )
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:  # before or after the run loop, which handles its own
        return EXIT_INTERRUPTED
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    if any(r.status in FAILING_STATUSES for r in outcome.rows):
        return EXIT_FAILURE
    return 0


if __name__ == "__main__":
    sys.exit(main())
