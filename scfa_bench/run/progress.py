"""Progress of a run: the callbacks the run loop makes, silent or as a rich progress bar
(rows done of total, current task, elapsed, ETA)."""

from __future__ import annotations

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
    TimeRemainingColumn,
)


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
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._title = title
        self._task: TaskID | None = None

    def start(self, total_rows: int, done_rows: int) -> None:
        self._progress.start()
        self._task = self._progress.add_task(
            "", total=total_rows, completed=done_rows, title=self._title
        )

    def task(self, label: str) -> None:
        if self._task is not None:
            self._progress.update(self._task, description=label)

    def advance(self, rows: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, rows)

    def note(self, message: str) -> None:
        self._progress.console.print(message, highlight=False, soft_wrap=True)

    def stop(self) -> None:
        if self._task is not None:
            self._progress.update(self._task, description="done")
        self._progress.stop()
