"""`profile`: where the time of chosen points goes (stage tables, GPU idle time, traces)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from scfa_bench.cli.common import (
    console,
    load_suite_reporting,
    register_plugins,
    reports_input_errors,
)
from scfa_bench.cli.run_options import PluginsOpt
from scfa_bench.constants import MODES
from scfa_bench.errors import EXIT_FAILURE, InputError

_DEFAULT_REPORTS = Path("reports")


def _slug(impl: str, label: str, mode: str) -> str:
    text = f"{impl}_{label}_{mode}".replace(" ", "_").replace("=", "").replace("+", "-")
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in text)


@reports_input_errors
def profile(
    suite_file: Annotated[Path, typer.Argument(help="Suite YAML file, e.g. suites/hash.yaml.")],
    impl: Annotated[
        list[str] | None,
        typer.Option("--impl", help="Implementation to profile (repeat; default: all of them)."),
    ] = None,
    point: Annotated[
        list[str] | None,
        typer.Option(
            "--point", help="KEY=VALUE filter on seq_len, n_buckets, drop_rate (repeatable)."
        ),
    ] = None,
    mode: Annotated[str, typer.Option("--mode", help="fwd, bwd or fwd+bwd.")] = "fwd+bwd",
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder [default: reports/<suite>-<time>/profile/]."),
    ] = None,
    allow_plugins: PluginsOpt = False,
) -> None:
    """Profile chosen points of a suite: per-stage and per-kernel GPU time of one call, the
    GPU idle time inside it, the measured call time, and a Chrome/Perfetto trace (CUDA only)."""
    from scfa_bench.analysis.profile_report import export_trace, markdown, write_csv
    from scfa_bench.measure.envinfo import resolve_device
    from scfa_bench.run.profile import parse_point_filters, profile_points, select_tasks

    if mode not in MODES:
        raise InputError(f"--mode: expected one of {', '.join(MODES)}; got {mode!r}")
    suite = load_suite_reporting(suite_file)
    tasks = select_tasks(suite, impl or [], parse_point_filters(point or []), mode)
    register_plugins(suite, allow_plugins)
    device = resolve_device(suite.device)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = out or _DEFAULT_REPORTS / f"{suite.name}-{stamp}" / "profile"
    sections, failed = [f"# Profile of suite {suite.name}, {mode}", ""], 0
    for profiled in profile_points(suite, tasks, device):
        folder.mkdir(parents=True, exist_ok=True)
        task, measured = profiled.task, profiled.measured
        title = f"{task.impl} {task.point.label()} {mode}"
        if measured.status != "ok" or measured.stages is None:
            failed += measured.status in ("error", "incorrect")
            line = f"{title}: {measured.status}: {measured.error or 'no profile'}"
            console.print(line, markup=False, highlight=False, soft_wrap=True)
            sections += [f"### {title}", "", f"{measured.status}: {measured.error}", ""]
            continue
        ms = None if measured.timing is None else measured.timing.ms_median
        text = markdown(measured.stages, title=title, measured_ms=ms)
        stem = _slug(task.impl, task.point.label(), mode)
        write_csv(measured.stages, folder / f"{stem}.csv")
        (folder / f"{stem}.md").write_text(text, encoding="utf-8")
        trace = export_trace(measured.profiler, folder / f"{stem}.trace.json")
        sections += [text, f"Trace: [{trace.name}]({trace.name})", ""]
        console.print(text, markup=False, highlight=False, soft_wrap=True)
    index = folder / "README.md"
    index.write_text("\n".join(sections) + "\n", encoding="utf-8")
    console.print(f"profile written to {folder}", markup=False, highlight=False)
    if failed:
        raise typer.Exit(EXIT_FAILURE)


def register(app: typer.Typer) -> None:
    app.command()(profile)
