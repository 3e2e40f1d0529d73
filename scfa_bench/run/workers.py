"""Run a suite on every local GPU: one worker process per card, one part CSV per shard,
one combined progress display, one merged CSV at the end.

Layout of a run started with `out=results`:

    results/<suite>-<stamp>.csv            the merged CSV (written when every shard is done)
    results/<suite>-<stamp>.meta.json      its meta (parts, cards, merge report)
    results/<suite>-<stamp>.parts/         run.json (what to resume), and per shard:
        shard-I-of-N.csv, .meta.json       the worker's rows, flushed one by one
        shard-I-of-N.csv.log               the worker's stdout and stderr
        shard-I-of-N.csv.progress.json     its pid and current point

Each worker runs `python -m scfa_bench.run.worker SUITE --shard I/N --part PART` with
`CUDA_VISIBLE_DEVICES` set to its card. A worker that dies (segfault, killed, a CUDA error
that poisons the process) loses only the point it was measuring: the supervisor starts it
again on the same part file, which skips every finished row, up to `max_restarts` times per
shard. Ctrl-C stops every worker (SIGINT, then SIGKILL after `grace_s`), keeps every finished
row, and `resume_local(PARTS_DIR)` continues the same shards.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from scfa_bench.errors import InputError
from scfa_bench.grid import expand
from scfa_bench.results import done_keys, read_rows
from scfa_bench.run.merge import MergeReport, grid_keys, merge, write_merged
from scfa_bench.run.shard import measured_cost, plan
from scfa_bench.run.worker import EXIT_BAD_INPUT, progress_path_for, repair_part
from scfa_bench.suite import Suite, load_suite

STATE_FILE = "run.json"
_FINISHED = (0, 1)  # the worker ran every row of its shard (1: some rows incorrect/error)


def visible_gpus() -> list[str]:
    """Cards this process may use, as CUDA_VISIBLE_DEVICES entries."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def resolve_gpus(spec: str, visible: Sequence[str] | None = None) -> list[str]:
    """`all` | `N` | `0,2` -> the CUDA_VISIBLE_DEVICES value of each worker.

    Listed ids count within the cards visible to this process (as `cuda:I` does). Where no
    card is visible, listed ids are passed through unchecked: the workers then run on the CPU
    (tests use this to stand in for cards)."""
    visible = list(visible_gpus() if visible is None else visible)
    text = spec.strip()
    if text == "all":
        if not visible:
            raise InputError("--gpus all: no GPU is visible (CUDA_VISIBLE_DEVICES / torch)")
        return visible
    if text.isdigit():
        count = int(text)
        if count < 1 or count > len(visible):
            raise InputError(f"--gpus {text}: {len(visible)} GPU(s) visible, need 1..{count}")
        return visible[:count]
    ids = [t.strip() for t in text.split(",")]
    if not ids or not all(t.isdigit() for t in ids) or len(set(ids)) != len(ids):
        raise InputError(f"--gpus: expected all, a count or distinct ids like 0,2; got {spec!r}")
    if not visible:
        return ids
    bad = [t for t in ids if int(t) >= len(visible)]
    if bad:
        raise InputError(f"--gpus {spec}: {len(visible)} GPU(s) visible, no id {', '.join(bad)}")
    return [visible[int(t)] for t in ids]


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
    keys: set[tuple[str, ...]]
    gpu: str | None = None
    process: subprocess.Popen | None = None
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
    point = _in_flight(shard)
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


class Display(Protocol):
    def update(self, shards: Sequence[Shard]) -> None: ...
    def event(self, text: str) -> None: ...
    def close(self) -> None: ...


class PlainDisplay:
    """One line per event (for logs and --no-progress)."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout

    def update(self, shards: Sequence[Shard]) -> None:
        pass

    def event(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        pass


class RichDisplay:
    """A bar per shard (rows in its part CSV, current point, card) and one for the whole run."""

    def __init__(self, title: str) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("{task.fields[name]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        self._title = title
        self._bars: dict[int, int] = {}
        self._total: int | None = None
        self._progress.start()

    def update(self, shards: Sequence[Shard]) -> None:
        if self._total is None:
            total = sum(s.total_rows for s in shards)
            self._total = self._progress.add_task("", total=total, name=f"[bold]{self._title}")
            for s in shards:
                self._bars[s.index] = self._progress.add_task(
                    "", total=s.total_rows, name=f"shard {s.index}"
                )
        done_all = 0
        for s in shards:
            done = count_rows(s.part)
            done_all += done
            where = f"gpu {s.gpu}" if s.gpu is not None else ""
            current = _current_point(s) if s.state == "running" else s.state
            restarts = f" (restarts {s.restarts})" if s.restarts else ""
            self._progress.update(
                self._bars[s.index],
                completed=done,
                description=f"{where} {current}{restarts} {s.note}".strip(),
            )
        self._progress.update(self._total, completed=done_all)

    def event(self, text: str) -> None:
        self._progress.console.print(text, highlight=False)

    def close(self) -> None:
        self._progress.stop()


def _in_flight(s: Shard) -> str | None:
    """The point the shard's process is (or was, when it died) measuring."""
    try:
        state = json.loads(progress_path_for(s.part).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state.get("current")


def _current_point(s: Shard) -> str:
    return _in_flight(s) or "starting"


def _shards(suite: Suite, count: int, parts_dir: Path, cost_from: Path | None) -> list[Shard]:
    tasks = expand(suite)
    cost = measured_cost(read_rows(cost_from)) if cost_from is not None else None
    shards = []
    for index, positions in enumerate(plan(tasks, count, cost, suite.baseline)):
        mine = [tasks[i] for i in positions]
        keys = set(grid_keys(suite, mine))
        shards.append(Shard(index, parts_dir / part_name(index, count), len(keys), keys))
    return shards


def _is_complete(shard: Shard) -> bool:
    if not shard.part.exists():
        return False
    repair_part(shard.part)
    return shard.keys <= done_keys(read_rows(shard.part))


def new_run_paths(out_dir: Path, suite_name: str) -> tuple[Path, Path]:
    """(merged CSV, parts folder) under `out_dir`, named like a one-process run."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    stem, counter = f"{suite_name}-{stamp}", 1
    while (out_dir / f"{stem}.csv").exists() or (out_dir / f"{stem}.parts").exists():
        stem, counter = f"{suite_name}-{stamp}-{counter}", counter + 1
    return out_dir / f"{stem}.csv", out_dir / f"{stem}.parts"


class Supervisor:
    """Starts, watches, restarts and stops the worker processes of one local run."""

    def __init__(
        self,
        suite_file: Path,
        shards: list[Shard],
        gpus: list[str],
        *,
        cost_from: Path | None,
        device: str | None,
        max_restarts: int,
        grace_s: float,
        poll_s: float,
        display: Display,
    ) -> None:
        self.suite_file = suite_file
        self.shards = shards
        self.free_gpus = list(gpus)
        self.cost_from = cost_from
        self.device = device
        self.max_restarts = max_restarts
        self.grace_s = grace_s
        self.poll_s = poll_s
        self.display = display

    def _command(self, shard: Shard) -> list[str]:
        command = [
            sys.executable,
            "-m",
            "scfa_bench.run.worker",
            str(self.suite_file),
            "--shard",
            f"{shard.index}/{len(self.shards)}",
            "--part",
            str(shard.part),
            "--parent-pid",
            str(os.getpid()),
        ]
        if self.cost_from is not None:
            command += ["--cost-from", str(self.cost_from)]
        if self.device is not None:
            command += ["--device", self.device]
        return command + give_up_arguments(shard)

    def _start(self, shard: Shard, gpu: str) -> None:
        env = dict(os.environ, CUDA_VISIBLE_DEVICES=gpu)
        # A stale progress file would name the previous process's point if this one died early.
        progress_path_for(shard.part).unlink(missing_ok=True)
        log = (shard.part.parent / (shard.part.name + ".log")).open("a", encoding="utf-8")
        with log:
            log.write(
                f"== worker for shard {shard.index}, gpu {gpu}, attempt {shard.restarts + 1}\n"
            )
            log.flush()
            # Own session: a terminal's Ctrl-C reaches only the supervisor, which then stops
            # each worker once and in order.
            shard.process = subprocess.Popen(
                self._command(shard),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        shard.gpu, shard.state = gpu, "running"

    def _reap(self, shard: Shard) -> None:
        """Handle a worker that exited: finished, failed for good, or to be restarted."""
        assert shard.process is not None
        rc = shard.process.returncode
        shard.process = None
        gpu = shard.gpu
        if rc in _FINISHED:
            shard.state = "done"
            self.display.event(f"shard {shard.index} done on gpu {gpu} (exit {rc})")
        elif rc == EXIT_BAD_INPUT:
            shard.state = "failed"
            shard.note = f"bad input (exit 2), see {shard.part}.log"
        elif shard.restarts < self.max_restarts:
            shard.restarts += 1
            given_up = record_crash(shard, f"exit {rc}")
            self.display.event(
                f"shard {shard.index} worker on gpu {gpu} died (exit {rc}); restarting "
                f"({shard.restarts}/{self.max_restarts}), finished rows kept"
                + (f"; {given_up} recorded as error (died on it twice)" if given_up else "")
            )
            self._start(shard, gpu)  # type: ignore[arg-type]
            return
        else:
            shard.state = "failed"
            shard.note = f"died {shard.restarts + 1} times (last exit {rc}), see {shard.part}.log"
        if shard.state == "failed":
            self.display.event(f"shard {shard.index} failed: {shard.note}")
        self.free_gpus.append(gpu)  # type: ignore[arg-type]

    def run(self) -> bool:
        """Run every pending shard; False when interrupted by Ctrl-C (or SIGTERM)."""
        with _sigterm_as_interrupt():
            return self._run()

    def _run(self) -> bool:
        try:
            while True:
                for shard in self.shards:
                    if shard.process is not None and shard.process.poll() is not None:
                        self._reap(shard)
                for shard in self.shards:
                    if shard.state == "pending" and self.free_gpus:
                        self._start(shard, self.free_gpus.pop(0))
                self.display.update(self.shards)
                if all(s.state in ("done", "failed") for s in self.shards):
                    return True
                time.sleep(self.poll_s)
        except KeyboardInterrupt:
            self.stop()
            return False

    def stop(self) -> None:
        """SIGINT to every worker (they finish writing and exit 130), SIGKILL after grace_s."""
        running = [s for s in self.shards if s.process is not None]
        for shard in running:
            try:
                shard.process.send_signal(signal.SIGINT)  # type: ignore[union-attr]
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.grace_s
        for shard in running:
            process = shard.process
            assert process is not None
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except (subprocess.TimeoutExpired, KeyboardInterrupt):
                process.kill()
                process.wait()
            shard.process, shard.state = None, "pending"


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler ending the job, `kill`) stops the workers as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _write_state(parts_dir: Path, state: dict) -> None:
    path = parts_dir / STATE_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_state(parts_dir: Path) -> dict:
    path = parts_dir / STATE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise InputError(f"--resume {parts_dir}: no {STATE_FILE} (not a multi-GPU run)") from None
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None


def run_local(
    suite_file: Path,
    gpus: list[str],
    *,
    out_dir: Path = Path("results"),
    shards: int | None = None,
    cost_from: Path | None = None,
    device: str | None = None,
    max_restarts: int = 3,
    grace_s: float = 60.0,
    poll_s: float = 0.5,
    display: Display | None = None,
) -> LocalOutcome:
    """Run `suite_file` in `shards` shards (default: one per GPU) on `gpus`; merge at the end."""
    suite = load_suite(suite_file)
    if not gpus:
        raise InputError("--gpus: no GPU to run on")
    count = shards or len(gpus)
    merged_csv, parts_dir = new_run_paths(out_dir, suite.name)
    parts_dir.mkdir(parents=True)
    state = {
        "suite_file": str(Path(suite_file).resolve()),
        "suite_sha256": suite.sha256,
        "count": count,
        "gpus": gpus,
        "cost_from": None if cost_from is None else str(Path(cost_from).resolve()),
        "device": device,
        "merged_csv": str(merged_csv.resolve()),
    }
    _write_state(parts_dir, state)
    return _supervise(suite, parts_dir, state, gpus, max_restarts, grace_s, poll_s, display)


def resume_local(
    parts_dir: Path,
    gpus: list[str] | None = None,
    *,
    max_restarts: int = 3,
    grace_s: float = 60.0,
    poll_s: float = 0.5,
    display: Display | None = None,
) -> LocalOutcome:
    """Continue an interrupted or partly failed local run from its parts folder."""
    state = _read_state(parts_dir)
    suite_file = Path(state["suite_file"])
    suite = load_suite(suite_file)
    if suite.sha256 != state.get("suite_sha256"):
        raise InputError(
            f"--resume {parts_dir}: {suite_file} changed since the run started; its rows "
            "would not form one grid"
        )
    gpus = gpus or state["gpus"]
    return _supervise(suite, parts_dir, state, gpus, max_restarts, grace_s, poll_s, display)


def _supervise(
    suite: Suite,
    parts_dir: Path,
    state: dict,
    gpus: list[str],
    max_restarts: int,
    grace_s: float,
    poll_s: float,
    display: Display | None,
) -> LocalOutcome:
    cost_from = Path(state["cost_from"]) if state.get("cost_from") else None
    shards = _shards(suite, state["count"], parts_dir, cost_from)
    for shard in shards:
        if _is_complete(shard):
            shard.state = "done"
    display = display or PlainDisplay()
    supervisor = Supervisor(
        Path(state["suite_file"]),
        shards,
        gpus,
        cost_from=cost_from,
        device=state.get("device"),
        max_restarts=max_restarts,
        grace_s=grace_s,
        poll_s=poll_s,
        display=display,
    )
    try:
        finished = supervisor.run()
    finally:
        display.close()

    if not finished:
        return LocalOutcome(None, parts_dir, interrupted=True, exit_code=130)
    failed = [f"shard {s.index}: {s.note}" for s in shards if s.state == "failed"]
    if failed:
        return LocalOutcome(None, parts_dir, interrupted=False, failed=failed, exit_code=1)

    merged = merge(
        [s.part for s in shards],
        expected=grid_keys(suite, expand(suite)),
    )
    merged_csv = Path(state["merged_csv"])
    write_merged(merged, merged_csv)
    bad = any(r.status in ("incorrect", "error") for r in merged.rows)
    problems = merged.report.missing or merged.report.conflicts
    return LocalOutcome(
        merged_csv,
        parts_dir,
        interrupted=False,
        report=merged.report,
        exit_code=1 if bad or problems else 0,
    )
