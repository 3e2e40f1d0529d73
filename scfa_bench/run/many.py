"""The multi-process ways to run a suite, as the command line calls them: one shard in this
process (`--shard I/N`), every local GPU (`--gpus`), a Slurm array (`--executor slurm`), and
merging part files (`scfa-bench merge`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from scfa_bench.errors import InputError
from scfa_bench.results.merge import Merged, grid_keys, merge, write_merged
from scfa_bench.results.meta import meta_path_for, read_meta
from scfa_bench.results.row import RowKey
from scfa_bench.run.display import PlainDisplay, RichDisplay
from scfa_bench.run.gpus import resolve_gpus
from scfa_bench.run.parts import STATE_FILE, LocalOutcome, read_state
from scfa_bench.run.shard import parse_shard
from scfa_bench.run.workers import resume_local, run_local
from scfa_bench.suite.grid import expand
from scfa_bench.suite.parse import load_suite

EXECUTORS = ("local", "slurm")


def shard_csv_path(out_dir: Path, suite_name: str, index: int, count: int) -> Path:
    """<out>/<suite>-<stamp>-shard-I-of-N.csv, with a counter if that name is taken."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    stem = f"{suite_name}-{stamp}-shard-{index}-of-{count}"
    path, counter = out_dir / f"{stem}.csv", 1
    while path.exists():
        path, counter = out_dir / f"{stem}-{counter}.csv", counter + 1
    return path


def run_one_shard(
    suite_file: Path,
    shard_text: str,
    *,
    out_dir: Path,
    resume: Path | None,
    cost_from: Path | None,
    device: str | None,
    reporter: Any = None,
):
    """`scfa-bench run SUITE --shard I/N`: shard I's rows into their own CSV (or continue
    `resume`, which must be a CSV of the same shard)."""
    from scfa_bench.run.worker import run_shard

    index, count = parse_shard(shard_text)
    suite = load_suite(suite_file)
    if resume is not None:
        if not resume.is_file():
            raise InputError(f"--resume {resume}: no such file")
        meta_path = meta_path_for(resume)
        recorded = read_meta(meta_path).get("shard") if meta_path.is_file() else None
        if recorded and (recorded.get("index"), recorded.get("count")) != (index, count):
            raise InputError(
                f"--resume {resume}: it holds shard {recorded.get('index')}/"
                f"{recorded.get('count')}, not {index}/{count}"
            )
        part = resume
    else:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"--out {out_dir}: cannot create folder ({exc})") from None
        part = shard_csv_path(out_dir, suite.name, index, count)
    return run_shard(
        suite_file, index, count, part, cost_from=cost_from, device=device, reporter=reporter
    )


def run_many(
    suite_file: Path | None,
    *,
    gpus: str | None,
    executor: str,
    shards: int | None,
    out_dir: Path,
    resume: Path | None,
    cost_from: Path | None,
    device: str | None,
    max_restarts: int,
    progress: bool,
    slurm: Any = None,
) -> LocalOutcome:
    """`--gpus ...` or `--executor slurm`: start (or with `resume`, a `.parts` folder,
    continue) a sharded run and merge it."""
    if executor not in EXECUTORS:
        raise InputError(f"--executor: expected one of {', '.join(EXECUTORS)}; got {executor!r}")
    if shards is not None and shards < 1:
        raise InputError(f"--shards must be >= 1, got {shards}")
    if resume is not None and not (resume / STATE_FILE).is_file():
        raise InputError(
            f"--resume {resume}: with --gpus or --executor slurm, give the run's .parts folder "
            f"(it holds {STATE_FILE})"
        )
    if resume is not None and suite_file is not None:
        recorded = read_state(resume)
        if load_suite(suite_file).sha256 != recorded.get("suite_sha256"):
            raise InputError(
                f"--resume {resume}: that run is of {recorded.get('suite_file')}, not of "
                f"{suite_file} as it is now"
            )
    title = "run" if suite_file is None else suite_file.stem
    display = RichDisplay(title) if progress else PlainDisplay()
    if executor == "slurm":
        from scfa_bench.run.slurm import SlurmOptions, resume_slurm, run_slurm

        options = slurm or SlurmOptions()
        if resume is not None:
            return resume_slurm(resume, options, max_resubmits=max_restarts, display=display)
        assert suite_file is not None
        if shards is None:
            raise InputError("--executor slurm needs --shards N (one array task per shard)")
        return run_slurm(
            suite_file,
            shards=shards,
            options=options,
            out_dir=out_dir,
            cost_from=cost_from,
            device=device,
            max_resubmits=max_restarts,
            display=display,
        )
    if resume is not None:
        state = read_state(resume)
        if state.get("executor") == "slurm":
            raise InputError(f"--resume {resume}: a Slurm run; add --executor slurm")
        chosen = resolve_gpus(gpus) if gpus is not None else None
        return resume_local(resume, chosen, max_restarts=max_restarts, display=display)
    assert suite_file is not None
    return run_local(
        suite_file,
        resolve_gpus(gpus or "all"),
        out_dir=out_dir,
        shards=shards,
        cost_from=cost_from,
        device=device,
        max_restarts=max_restarts,
        display=display,
    )


def collect_parts(inputs: Sequence[Path]) -> list[Path]:
    """Part CSVs from the arguments: files as given, folders by their shard files."""
    parts: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found = sorted(
                item.glob("*shard-*-of-*.csv"),
                key=lambda p: (len(p.name), p.name),  # shard-10 after shard-9
            )
            if not found:
                raise InputError(f"{item}: a folder without part files (*shard-I-of-N.csv)")
            parts.extend(found)
        elif item.is_file():
            parts.append(item)
        else:
            raise InputError(f"{item}: no such file or folder")
    if not parts:
        raise InputError("merge: no part files given")
    return parts


def expected_keys(parts: Sequence[Path], suite_file: Path | None) -> list[RowKey] | None:
    """The grid's row keys in run order: from `suite_file`, else from the suite file the parts'
    meta names when it is still there unchanged; None when neither is known."""
    if suite_file is not None:
        suite = load_suite(suite_file)
        return grid_keys(suite, expand(suite))
    metas = [read_meta(m) for p in parts if (m := meta_path_for(p)).is_file()]
    named = {(m.get("suite_file"), m.get("suite_sha256")) for m in metas if m.get("suite_file")}
    if len(named) != 1:
        return None
    path_text, sha = named.pop()
    path = Path(path_text)
    if not path.is_file():
        return None
    try:
        suite = load_suite(path)
    except InputError:
        return None
    return grid_keys(suite, expand(suite)) if suite.sha256 == sha else None


def merge_command(
    inputs: Sequence[Path],
    out: Path,
    *,
    allow_mixed_devices: bool,
    suite_file: Path | None,
) -> Merged:
    """`scfa-bench merge PARTS... --out RUN.csv`: merge and write; returns what was merged."""
    parts = collect_parts(inputs)
    if out.resolve() in {p.resolve() for p in parts}:
        raise InputError(f"--out {out}: is one of the parts")
    merged = merge(
        parts,
        allow_mixed_devices=allow_mixed_devices,
        expected=expected_keys(parts, suite_file),
    )
    write_merged(merged, out)
    return merged
