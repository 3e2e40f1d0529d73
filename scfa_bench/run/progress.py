"""Progress of a run: the callbacks the run loop makes, silent or as a rich progress bar
(rows done of total, current task, elapsed, ETA from the rows this run measured)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


def eta_seconds(elapsed_s: float, measured_rows: int, remaining_rows: int) -> float | None:
    """Seconds left at the mean pace of the rows measured so far in this run (rows resumed
    from a file took no time here); None before the first row is measured."""
    if measured_rows <= 0 or elapsed_s < 0:
        return None
    return elapsed_s / measured_rows * max(remaining_rows, 0)


def format_eta(seconds: float | None) -> str:
    """`h:mm:ss`, or `-:--:--` while nothing is known yet."""
    if seconds is None:
        return "-:--:--"
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class Reporter(Protocol):
    """Progress callbacks of the run loop."""

    def start(self, total_rows: int, done_rows: int) -> None: ...
    def task(self, label: str) -> None: ...
    def advance(self, rows: int) -> None: ...
    def stop(self) -> None: ...
    def note(self, message: str) -> None: ...


class SilentReporter:
    """No progress bar; notes go to `echo` when given (the CLI's --no-progress) and are kept."""

    def __init__(self, echo: Callable[[str], None] | None = None) -> None:
        self.echo = echo
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)
        if self.echo is not None:
            self.echo(message)

    def start(self, total_rows: int, done_rows: int) -> None:
        pass

    def task(self, label: str) -> None:
        pass

    def advance(self, rows: int) -> None:
        pass

    def stop(self) -> None:
        pass


class RichReporter:
    """A Reporter drawing a rich.progress bar."""

    def __init__(self, console: Console, title: str) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.fields[title]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            TextColumn("ETA {task.fields[eta]}"),
            console=console,
            transient=False,
        )
        self._title = title
        self._task: TaskID | None = None
        self._started = 0.0
        self._measured = 0
        self._left = 0

    def start(self, total_rows: int, done_rows: int) -> None:
        self._started = time.monotonic()
        self._measured, self._left = 0, total_rows - done_rows
        self._progress.start()
        self._task = self._progress.add_task(
            "", total=total_rows, completed=done_rows, title=self._title, eta=format_eta(None)
        )

    def task(self, label: str) -> None:
        if self._task is not None:
            self._progress.update(self._task, description=label)

    def advance(self, rows: int) -> None:
        self._measured += rows
        self._left -= rows
        eta = eta_seconds(time.monotonic() - self._started, self._measured, self._left)
        if self._task is not None:
            self._progress.update(self._task, advance=rows, eta=format_eta(eta))

    def note(self, message: str) -> None:
        self._progress.console.print(message, highlight=False, soft_wrap=True)

    def stop(self) -> None:
        if self._task is not None:
            self._progress.update(self._task, description="done")
        self._progress.stop()
