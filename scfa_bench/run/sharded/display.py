"""What a sharded run shows while it runs: one line per event, or a rich progress bar per
shard (rows counted in its part file, current point, card) and one for the whole run."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Protocol

from scfa_bench.run.progress import eta_seconds, format_eta
from scfa_bench.run.sharded.state import Shard, count_rows, current_point


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
        )

        self._progress = Progress(
            TextColumn("{task.fields[name]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
        )
        self._title = title
        self._bars: dict[int, int] = {}
        self._total: int | None = None
        self._started = time.monotonic()
        self._done_at_start: int | None = None  # rows a resumed run already had
        self._progress.start()

    def update(self, shards: Sequence[Shard]) -> None:
        if self._total is None:
            total = sum(s.total_rows for s in shards)
            self._total = self._progress.add_task(
                "", total=total, name=f"[bold]{self._title}", eta=""
            )
            for s in shards:
                self._bars[s.index] = self._progress.add_task(
                    "", total=s.total_rows, name=f"shard {s.index}", eta=""
                )
        done_all = 0
        for s in shards:
            done = count_rows(s.part)
            done_all += done
            where = f"gpu {s.gpu}" if s.gpu is not None else ""
            current = current_point(s) if s.state == "running" else s.state
            restarts = f" (restarts {s.restarts})" if s.restarts else ""
            self._progress.update(
                self._bars[s.index],
                completed=done,
                description=f"{where} {current}{restarts} {s.note}".strip(),
            )
        if self._done_at_start is None:
            self._done_at_start = done_all
        total = sum(s.total_rows for s in shards)
        measured = done_all - self._done_at_start
        eta = eta_seconds(time.monotonic() - self._started, measured, total - done_all)
        self._progress.update(self._total, completed=done_all, eta=f"ETA {format_eta(eta)}")

    def event(self, text: str) -> None:
        self._progress.console.print(text, highlight=False)

    def close(self) -> None:
        self._progress.stop()
