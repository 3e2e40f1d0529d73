"""Run one shard of a suite into its own part CSV: the unit of work of every sharded mode.

`python -m scfa_bench.run.sharded.worker SUITE --shard I/N --part PART.csv [--cost-from CSV]
[--device D] [--force] [--allow-plugins]` runs the tasks of shard I of N that `PART.csv` does
not hold yet, appending one flushed row per mode (a new part file is started empty, so a first
run and a restart after a crash are the same call). `--give-up "LABEL::WHY"` (repeatable)
first records the point LABEL (as the progress file names it, e.g. `scfa_hash T=4096 nb=8`) as
`error` rows without measuring it: the supervisor does this for a point that killed its worker
twice. Beside the CSV it keeps `PART.progress.json` (pid, current point, every point this
process started) for the supervisor's display and for tests.

Exit codes as `scfa-bench run`: 0 done, 1 done with `incorrect`/`error` rows, 2 bad input,
130 interrupted (SIGINT: the finished rows stay, rerunning the same command continues).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scfa_bench.constants import FAILING_STATUSES
from scfa_bench.errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_INTERRUPTED, InputError

if TYPE_CHECKING:
    from scfa_bench.run.loop import RunOutcome
    from scfa_bench.suite.schema import Suite

# Part metas record these, so a run shows which compiler caches its workers shared.
_RECORDED_ENV = ("CUDA_VISIBLE_DEVICES", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR")


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
    """run.progress.Reporter that records this worker's state in a small JSON file."""

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

    def note(self, message: str) -> None:
        print(message, flush=True)

    def stop(self) -> None:
        self.state["current"] = None
        self._write()


@dataclass(frozen=True)
class ShardCall:
    """Everything a worker process (or a Slurm array task) needs to run its shard; the
    supervisor builds it, `argv()` / the Slurm job carry it to the other process."""

    suite_file: str
    index: int
    count: int
    part: str
    cost_from: str | None = None
    device: str | None = None
    force: bool = False  # resume the part even though the suite changed
    allow_plugins: bool = False  # the supervisor was allowed to import the suite's plugins
    give_up: dict[str, str] = field(default_factory=dict)  # point label -> reason

    def argv(self) -> list[str]:
        """This call as the worker's command-line arguments."""
        args = [self.suite_file, "--shard", f"{self.index}/{self.count}", "--part", self.part]
        if self.cost_from is not None:
            args += ["--cost-from", self.cost_from]
        if self.device is not None:
            args += ["--device", self.device]
        args += ["--force"] * self.force + ["--allow-plugins"] * self.allow_plugins
        return args + [
            a for label, why in self.give_up.items() for a in ("--give-up", f"{label}::{why}")
        ]

    def run(self, argv: tuple[str, ...], reporter: Any = None) -> RunOutcome:
        """Read the suite again (this is another process), register its plugins when allowed,
        run the shard."""
        from scfa_bench.suite.consent import register_suite_plugins
        from scfa_bench.suite.parse import load_suite

        suite = load_suite(Path(self.suite_file))
        register_suite_plugins(suite, allow=self.allow_plugins)
        return run_shard(
            suite,
            self.index,
            self.count,
            Path(self.part),
            cost_from=None if self.cost_from is None else Path(self.cost_from),
            device=self.device,
            argv=argv,
            give_up_on=self.give_up,
            reporter=reporter,
            force=self.force,
        )


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
    from scfa_bench.run.sharded.plan import suite_shard

    return suite_shard(suite, tasks, index, count, cost_from)


def run_shard(
    suite: Suite,
    index: int,
    count: int,
    part_csv: Path,
    *,
    cost_from: Path | None = None,
    device: str | None = None,
    argv: tuple[str, ...] = (),
    give_up_on: dict[str, str] | None = None,
    reporter: Any = None,
    force: bool = False,
) -> RunOutcome:
    """Run (or continue) shard `index` of `count` into `part_csv`; returns the RunOutcome.
    `give_up_on`: point label -> reason, recorded as `error` rows instead of measured.
    `reporter`: progress callbacks (default: the progress file beside the part)."""
    from scfa_bench.results.meta import meta_path_for, read_meta, write_meta
    from scfa_bench.results.writer import ResultWriter
    from scfa_bench.run.loop import RunOptions, run_suite
    from scfa_bench.suite.grid import expand

    part_csv.parent.mkdir(parents=True, exist_ok=True)
    repair_part(part_csv)
    fresh = not part_csv.exists() or part_csv.stat().st_size == 0
    if fresh:
        ResultWriter(part_csv).close()  # header only: the run below "resumes" an empty part
    select = functools.partial(_select, index=index, count=count, cost_from=cost_from, suite=suite)
    if give_up_on:
        give_up(suite, select(expand(suite)), part_csv, give_up_on, device)
    options = RunOptions(resume=part_csv, device=device, argv=argv, select=select, force=force)
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
    meta["worker_env"] = {k: os.environ[k] for k in _RECORDED_ENV if k in os.environ}
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


def _parse(argv: list[str] | None) -> tuple[ShardCall, int | None]:
    from scfa_bench.run.sharded.plan import parse_shard

    parser = argparse.ArgumentParser(prog="python -m scfa_bench.run.sharded.worker")
    parser.add_argument("suite")
    parser.add_argument("--shard", required=True, help="I/N, 0 <= I < N")
    parser.add_argument("--part", required=True, help="this shard's CSV")
    parser.add_argument("--cost-from", default=None, help="earlier results CSV")
    parser.add_argument("--device", default=None)
    parser.add_argument("--force", action="store_true", help="resume a changed suite")
    parser.add_argument("--allow-plugins", action="store_true", help="import suite plugins")
    parser.add_argument("--parent-pid", type=int, default=None, help="stop when it goes away")
    parser.add_argument("--give-up", action="append", default=[], metavar="LABEL::WHY")
    args = parser.parse_args(argv)
    index, count = parse_shard(args.shard)
    pairs = [item.split("::", 1) for item in args.give_up]
    if any(len(pair) != 2 for pair in pairs):
        raise InputError(f"--give-up: expected LABEL::WHY, got {args.give_up!r}")
    call = ShardCall(
        args.suite,
        index,
        count,
        args.part,
        cost_from=args.cost_from,
        device=args.device,
        force=args.force,
        allow_plugins=args.allow_plugins,
        give_up={label: why for label, why in pairs},
    )
    return call, args.parent_pid


def main(argv: list[str] | None = None) -> int:
    from scfa_bench.measure.envinfo import use_interpreter_without_cuda

    use_interpreter_without_cuda()  # before anything imports triton
    try:
        call, parent_pid = _parse(argv)
        if parent_pid is not None:
            # Import the heavy modules first: an interrupt that lands inside a library's import
            # can be swallowed there, and the worker would then measure unwatched.
            for module in ("torch", "triton", "scfa_bench.run.loop", "scfa_bench.measure.point"):
                importlib.import_module(module)
            stop_when_orphaned(parent_pid)
        outcome = call.run(tuple(sys.argv))
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
