"""Synthetic results CSVs (+ meta) for the plot, report and gate tests.

Times follow a simple cost model (dense time ~ T^2, sparse time ~ density * dense plus an
overhead) so that speedups, densities and fractions of ideal are all consistent.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from scfa_bench.results.meta import meta_path_for
from scfa_bench.results.row import COLUMNS as RESULT_COLUMNS

H100 = "NVIDIA H100 80GB HBM3"
BASELINE = "sdpa_cudnn"
_MODE_COST = {"fwd": 1.0, "bwd": 2.5, "fwd+bwd": 3.5}


def make_row(**fields: Any) -> dict[str, Any]:
    """A full ok row of a hash-sparse point; override any column by keyword."""
    row: dict[str, Any] = {
        "suite": "test",
        "impl": "scfa_hash",
        "mode": "fwd+bwd",
        "batch": 4,
        "heads": 48,
        "head_dim": 64,
        "seq_len": 4096,
        "n_buckets": 8,
        "drop_rate": "",
        "dtype": "bf16",
        "model": "",
        "compile": "",
        "ms_median": 10.0,
        "ms_q20": 9.9,
        "ms_q80": 10.1,
        "tflops_dense_equiv": 100.0,
        "tflops_effective": 12.5,
        "density": 0.125,
        "speedup": "",
        "tokens_per_s": "",
        "peak_mem_mib": 512.0,
        "nvml_mem_mib": 1024.0,
        "attention_ms": "",
        "attention_share": "",
        "check_rel_err": 1e-3,
        "status": "ok",
        "error": "",
        "timer": "cuda_event",
        "baseline": BASELINE,
        "warmup_ms": 25,
        "rep_ms": 100,
        "device": H100,
    }
    unknown = set(fields) - set(RESULT_COLUMNS)
    if unknown:
        raise KeyError(f"unknown result columns {sorted(unknown)}")
    row.update(fields)
    return row


def _timed(ms: float, spread: float) -> dict[str, float]:
    return {"ms_median": ms, "ms_q20": ms * (1 - spread), "ms_q80": ms * (1 + spread)}


def suite_rows(
    seq_lens: Iterable[int] = (1024, 2048, 4096, 8192),
    n_buckets: Iterable[int] = (2, 8, 32),
    drop_rates: Iterable[float] = (0.2, 0.5, 0.8),
    modes: Iterable[str] = ("fwd", "bwd", "fwd+bwd"),
    spread: float = 0.01,
    device: str = H100,
    with_limits: bool = False,
) -> list[dict[str, Any]]:
    """A consistent grid: two dense baselines, a hash-sparse and a QK-sparse kernel; with
    `with_limits`, also the limits `limit_hash` / `limit_qk` (faster than the kernels)."""
    rows: list[dict[str, Any]] = []
    common = {"device": device}
    for mode in modes:
        for seq_len in seq_lens:
            dense_ms = 1e-6 * seq_len**2 * _MODE_COST[mode]
            for impl, factor in ((BASELINE, 1.0), ("sdpa_flash", 1.4)):
                ms = dense_ms * factor
                rows.append(
                    make_row(
                        impl=impl,
                        mode=mode,
                        seq_len=seq_len,
                        n_buckets="",
                        drop_rate="",
                        density=1.0,
                        speedup=dense_ms / ms,
                        **_timed(ms, spread),
                        **common,
                    )
                )
            for nb in n_buckets:
                density = 1.0 / nb
                ms = dense_ms * (density + 0.05)
                if with_limits:
                    limit_ms = dense_ms * density * 0.9
                    rows.append(
                        make_row(
                            impl="limit_hash",
                            impl_kind="limit",
                            mode=mode,
                            seq_len=seq_len,
                            n_buckets=nb,
                            density=density,
                            speedup=dense_ms / limit_ms,
                            **_timed(limit_ms, spread),
                            **common,
                        )
                    )
                rows.append(
                    make_row(
                        impl="scfa_hash",
                        mode=mode,
                        seq_len=seq_len,
                        n_buckets=nb,
                        density=density,
                        speedup=dense_ms / ms,
                        **_timed(ms, spread),
                        **common,
                    )
                )
            for p in drop_rates:
                density = (1 - p) ** 2
                ms = dense_ms * (density + 0.03)
                if with_limits:
                    limit_ms = dense_ms * density * 0.9
                    rows.append(
                        make_row(
                            impl="limit_qk",
                            impl_kind="limit",
                            mode=mode,
                            seq_len=seq_len,
                            n_buckets="",
                            drop_rate=p,
                            density=density,
                            speedup=dense_ms / limit_ms,
                            **_timed(limit_ms, spread),
                            **common,
                        )
                    )
                rows.append(
                    make_row(
                        impl="scfa_qk",
                        mode=mode,
                        seq_len=seq_len,
                        n_buckets="",
                        drop_rate=p,
                        density=density,
                        speedup=dense_ms / ms,
                        **_timed(ms, spread),
                        **common,
                    )
                )
    return rows


GPT2_SMALL_LABEL = "L12-D768-H12-M4-V50304"


def model_rows(
    seq_lens: Iterable[int] = (4096, 16384), spread: float = 0.01, tokens: int = 16384
) -> list[dict[str, Any]]:
    """A model suite's rows: GPT-2 small steps, eager and compiled, dense and hash-sparse."""
    rows: list[dict[str, Any]] = []
    for compiled in (False, True):
        for seq_len in seq_lens:
            batch = max(1, tokens // seq_len)
            attention_ms = 3e-7 * seq_len * batch * seq_len
            rest_ms = 30.0 if compiled else 50.0
            for impl, n_buckets, attn in ((BASELINE, "", 1.0), ("scfa_hash", 8, 0.3)):
                ms = rest_ms + attention_ms * attn
                rows.append(
                    make_row(
                        impl=impl,
                        mode="step",
                        batch=batch,
                        heads=12,
                        head_dim=64,
                        seq_len=seq_len,
                        n_buckets=n_buckets,
                        model=GPT2_SMALL_LABEL,
                        compile="true" if compiled else "false",
                        tflops_dense_equiv="",
                        tflops_effective="",
                        density="",
                        tokens_per_s=batch * seq_len / ms * 1e3,
                        attention_ms=attention_ms * attn,
                        attention_share=attention_ms * attn / ms,
                        gpu_ms=ms * 0.97,
                        check_rel_err="",
                        warmup_ms="",
                        rep_ms="",
                        **_timed(ms, spread),
                    )
                )
    return rows


def set_status(
    rows: list[dict[str, Any]], status: str, error: str, **match: Any
) -> list[dict[str, Any]]:
    """Mark the rows matching all `match` columns as failed (no timings, like the runner)."""
    hits = 0
    for row in rows:
        if all(row[k] == v for k, v in match.items()):
            row.update(status=status, error=error, ms_median="", ms_q20="", ms_q80="", speedup="")
            hits += 1
    if hits == 0:
        raise LookupError(f"no row matches {match}")
    return rows


def default_meta(**overrides: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "suite_name": "test",
        "suite_file": "suites/test.yaml",
        "suite_sha256": "0" * 64,
        "device_name": H100,
        "driver": "560.35.03",
        "cuda": "12.6",
        "torch": "2.13.0",
        "triton": "3.6.0",
        "python": "3.11.9",
        "platform": "Linux-x86_64",
        "git_rev": "abc1234",
        "kernels_hash": "f" * 64,
        "hostname": "gpu-node-1",
        "timing": {"warmup_ms": 25, "rep_ms": 100},
        "shape": {"batch": 4, "heads": 48, "head_dim": 64, "dtype": "bf16"},
        "baseline": BASELINE,
        "started": "2026-11-26T10:00:00",
        "finished": "2026-11-26T10:05:00",
        "argv": ["scfa-bench", "run", "suites/test.yaml"],
        "scfa_bench_version": "0.1.0",
        "state": "complete",
    }
    meta.update(overrides)
    return meta


def write_results(
    path: Path,
    rows: Iterable[dict[str, Any]],
    meta: dict[str, Any] | None = None,
    columns: Iterable[str] = RESULT_COLUMNS,
) -> Path:
    """Write rows as the runner does (header, one line per row) and the meta sidecar."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = list(columns)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=cols, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    meta_path_for(path).write_text(json.dumps(default_meta() if meta is None else meta, indent=2))
    return path
