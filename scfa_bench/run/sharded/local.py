"""Run a suite's shards on the local GPUs: one worker process per card, restarted when it dies.

Each worker runs `python -m scfa_bench.run.sharded.worker ...` (its `ShardCall`) with
`CUDA_VISIBLE_DEVICES` set to its card and the run's shared compiler caches. A worker that dies
(segfault, killed, a CUDA error that poisons the process) loses only the point it was
measuring: the supervisor starts it again on the same part file, which skips every finished
row, up to `max_restarts` times per shard; a point in flight at two deaths in a row is recorded
as `error` rows. Ctrl-C (or SIGTERM) stops every worker (SIGINT, then SIGKILL after `grace_s`)
and keeps every finished row; `--resume PARTS_DIR` continues the same shards; a worker whose
supervisor is gone stops itself.
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

from scfa_bench.errors import EXIT_BAD_INPUT, InputError
from scfa_bench.run.sharded.display import Display
from scfa_bench.run.sharded.state import (
    LocalOutcome,
    Shard,
    ShardedOutcome,
    ShardedRun,
    finish,
    interrupted_outcome,
    record_crash,
)
from scfa_bench.run.sharded.worker import progress_path_for

_FINISHED = (0, 1)  # the worker ran every row of its shard (1: some rows incorrect/error)


class Supervisor:
    """Starts, watches, restarts and stops the worker processes of one local run."""

    def __init__(
        self, run: ShardedRun, gpus: list[str], *, grace_s: float, poll_s: float, display: Display
    ) -> None:
        self.sharded = run
        self.shards = run.shards
        self.free_gpus = list(gpus)
        self.max_restarts = run.max_restarts
        self.grace_s = grace_s
        self.poll_s = poll_s
        self.display = display

    def worker_env(self, gpu: str) -> dict[str, str]:
        """The worker's environment: its card, and the compiler caches every worker shares."""
        return dict(os.environ, CUDA_VISIBLE_DEVICES=gpu, **self.sharded.cache_env())

    def _command(self, shard: Shard) -> list[str]:
        call = self.sharded.call(shard)
        module = [sys.executable, "-m", "scfa_bench.run.sharded.worker"]
        return module + call.argv() + ["--parent-pid", str(os.getpid())]

    def _start(self, shard: Shard, gpu: str) -> None:
        env = self.worker_env(gpu)
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


def supervise_local(
    run: ShardedRun,
    gpus: list[str],
    display: Display,
    *,
    grace_s: float = 60.0,
    poll_s: float = 0.5,
) -> ShardedOutcome:
    """Run every pending shard of `run` on `gpus`, one worker each; merge when all are done."""
    if not gpus:
        raise InputError("--gpus: no GPU to run on")
    supervisor = Supervisor(run, gpus, grace_s=grace_s, poll_s=poll_s, display=display)
    try:
        finished = supervisor.run()
    finally:
        display.close()
    if not finished:
        return interrupted_outcome(LocalOutcome, run.parts_dir)
    return finish(run.suite, run.shards, run.state, run.parts_dir, LocalOutcome)
