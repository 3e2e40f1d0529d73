"""The `.meta.json` beside every results CSV: where it lives, what it holds, reading and writing."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from scfa_bench import __version__
from scfa_bench.errors import InputError
from scfa_bench.suite.schema import Suite


def meta_path_for(csv_path: Path) -> Path:
    """`x.csv` -> `x.meta.json` (a name without `.csv` keeps its whole name: `x.txt.meta.json`)."""
    name = csv_path.name.removesuffix(".csv")
    return csv_path.with_name(name + ".meta.json")


def new_meta(suite: Suite, env: dict[str, Any], argv: list[str], started: str) -> dict[str, Any]:
    """The meta of a run that starts now: machine, suite, settings; `finished` comes later."""
    return {
        "suite_name": suite.name,
        "suite_file": suite.source,
        "suite_sha256": suite.sha256,
        "device_name": env["device_name"],
        "driver": env["driver"],
        "cuda": env["cuda"],
        "torch": env["torch"],
        "triton": env["triton"],
        "python": env["python"],
        "platform": env["platform"],
        "git_rev": env["git_rev"],
        "hostname": env["hostname"],
        "timing": {"warmup_ms": suite.timing.warmup_ms, "rep_ms": suite.timing.rep_ms},
        "shape": {
            "batch": suite.shape.batch,
            "heads": suite.shape.heads,
            "head_dim": suite.shape.head_dim,
            "dtype": suite.shape.dtype,
        },
        "baseline": suite.baseline or "",
        "started": started,
        "finished": None,
        "argv": argv,
        "scfa_bench_version": __version__,
        "device": env["device"],
        "nvml": env["nvml"],
        "clocks": env["clocks"],
        "buckets": suite.buckets,
        "seed": suite.seed,
        "check": {
            "enabled": suite.check,
            "check_rows": suite.check_rows,
            "max_check_seq_len": suite.max_check_seq_len,
        },
        "interrupted": False,
        "resumed": [],
    }


def write_meta(path: Path, meta: dict[str, Any]) -> None:
    """Replace the meta file atomically (a reader never sees half of it)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_meta(path: Path) -> dict[str, Any]:
    """The meta object; InputError when it cannot be read or is not a JSON object."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    return meta
