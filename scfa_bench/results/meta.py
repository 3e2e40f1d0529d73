"""The `.meta.json` beside every results CSV: where it lives, what it holds, reading and writing.

`state` says how the run ended: `running` (written at the start, with the process id and
host), then `complete`, `interrupted` (Ctrl-C) or `failed` (an error stopped it, `error` says
which). A run killed outright (SIGKILL, power loss) never writes its end, so a reader that
finds `running` on this host with no such process reports `incomplete` (`run_state`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from dataclasses import asdict
from pathlib import Path
from typing import Any

from scfa_bench import __version__
from scfa_bench.constants import LEAD_STEPS
from scfa_bench.errors import InputError
from scfa_bench.results.writer import replace_file
from scfa_bench.suite.schema import Suite

RUN_STATES = ("running", "complete", "interrupted", "failed", "incomplete")


def meta_path_for(csv_path: Path) -> Path:
    """`x.csv` -> `x.meta.json` (a name without `.csv` keeps its whole name: `x.txt.meta.json`)."""
    name = csv_path.name.removesuffix(".csv")
    return csv_path.with_name(name + ".meta.json")


def suite_content(suite: Suite) -> dict[str, Any]:
    """The suite's parsed values as JSON data (what `--resume` compares), without its path."""
    content = dataclasses.asdict(suite)
    del content["source"], content["sha256"]
    return json.loads(json.dumps(content))  # tuples -> lists, as they read back


def new_meta(suite: Suite, env: dict[str, Any], argv: list[str], started: str) -> dict[str, Any]:
    """The meta of a run that starts now: machine, suite, settings; `finished` comes later."""
    return {
        "state": "running",
        "pid": os.getpid(),
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
        "kernels_hash": env.get("kernels_hash", ""),
        "hopper_kernels_hash": env.get("hopper_kernels_hash", ""),
        "hostname": env["hostname"],
        "timing": _timing(suite),
        "shape": None if suite.shape is None else asdict(suite.shape),
        "model": _model(suite),
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
        "suite": suite_content(suite),
    }


def _timing(suite: Suite) -> dict[str, Any]:
    if suite.model is not None:
        steps = suite.model.steps
        return {
            "warmup_steps": steps.warmup,
            "timed_steps": steps.timed,
            "profile_steps": steps.profile,
            "lead_steps": LEAD_STEPS,
        }
    return {
        "warmup_ms": suite.timing.warmup_ms,
        "rep_ms": suite.timing.rep_ms,
        "cuda_graph": suite.timing.cuda_graph,
    }


def _model(suite: Suite) -> dict[str, Any] | None:
    """A model suite's model and step settings (None for attention suites)."""
    m = suite.model
    if m is None:
        return None
    return {
        "label": m.config.label(),
        **{k: v for k, v in asdict(m.config).items() if k != "max_seq_len"},
        "batch": m.batch,
        "tokens_per_step": m.tokens_per_step,
        "dtype": m.dtype,
        "compile": list(m.compile),
        "optimizer": m.optimizer,
        "cuda_graph": m.cuda_graph,
    }


def write_meta(path: Path, meta: dict[str, Any]) -> None:
    """Replace the meta file atomically (a reader never sees half of it); OutputError when
    it cannot be written."""
    replace_file(path, (json.dumps(meta, indent=2, sort_keys=False) + "\n").encode("utf-8"))


def _process_gone(pid: Any) -> bool:
    """True when no live process has this id (a zombie counts as gone)."""
    if not isinstance(pid, int) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def run_state(meta: dict[str, Any]) -> str:
    """How the run ended, as far as the meta can tell: one of RUN_STATES, or "unknown".

    `running` whose process is gone (same host) is `incomplete`; on another host a `running`
    run cannot be checked and stays `running`. Metas written before `state` existed: a set
    `interrupted` -> interrupted, a `finished` time -> complete, neither -> incomplete.
    """
    state = meta.get("state")
    if state == "running":
        same_host = meta.get("hostname") == socket.gethostname()
        return "incomplete" if same_host and _process_gone(meta.get("pid")) else "running"
    if state in RUN_STATES:
        return state
    if state is None and "started" in meta:
        if meta.get("interrupted"):
            return "interrupted"
        return "complete" if meta.get("finished") else "incomplete"
    return "unknown"


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
