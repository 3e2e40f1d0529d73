"""Run a suite on every local GPU: one worker process per card, one part CSV per shard,
one combined progress display, one merged CSV at the end (file layout: `parts.py`).

Each worker runs `python -m scfa_bench.run.worker SUITE --shard I/N --part PART` with
`CUDA_VISIBLE_DEVICES` set to its card. A worker that dies (segfault, killed, a CUDA error
that poisons the process) loses only the point it was measuring: the supervisor starts it
again on the same part file, which skips every finished row, up to `max_restarts` times per
shard; a point in flight at two deaths in a row is recorded as `error` rows. Ctrl-C (or
SIGTERM) stops every worker (SIGINT, then SIGKILL after `grace_s`), keeps every finished row,
and `resume_local(PARTS_DIR)` continues the same shards; a worker whose supervisor is gone
stops itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from scfa_bench.errors import EXIT_BAD_INPUT, InputError
from scfa_bench.run.display import Display, PlainDisplay
from scfa_bench.run.parts import (
    LocalOutcome,
    Shard,
    finish,
    give_up_arguments,
    is_complete,
    new_run_paths,
    plan_shards,
    read_state,
    record_crash,
    write_state,
)
from scfa_bench.run.worker import progress_path_for
from scfa_bench.suite.parse import load_suite
from scfa_bench.suite.schema import Suite

_FINISHED = (0, 1)  # the worker ran every row of its shard (1: some rows incorrect/error)


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
    write_state(parts_dir, state)
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
    state = read_state(parts_dir)
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
    shards = plan_shards(suite, state["count"], parts_dir, cost_from)
    for shard in shards:
        if is_complete(shard):
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
    return finish(suite, shards, state, parts_dir)
