"""Deeper software pipelines for the gathered loads (docs/performance-notes.md): a developer tool.

    python tools/gpu_stages_probe.py --out FILE.jsonl [--round v12|v14] [--points v12|v14]
                                     [--today-only] [--tag NAME]

Our kernels load K/V (or Q/dO) rows through the sort permutation: the row index is itself a
load. Below 5 stages Triton 3.6 issues each tile's index and rows as cp.async groups and
then waits for all of them (`async_wait {num = 0}`) at the top of every iteration, so a tile's
load latency is not hidden; from 5 stages on it keeps several tiles in flight. This times
each pass with today's launch configuration and with deeper-pipelined ones, one kernel
changed at a time, on the same plan and inputs (B=4, bf16; do_bench medians), and checks
each variant's outputs against today's. `--round v14` tries the candidates worth trying once
the row index no longer sits in the pipeline (`load_index`, v14); `--today-only` times today's
configuration alone (run it with another kernels tree first on PYTHONPATH to compare two trees
in one session).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import torch
import triton
from triton.testing import do_bench

from scfa_bench.measure.inputs import make_inputs, output_grad
from scfa_bench.suite.grid import Point
from scfa_bench.suite.schema import Shape
from scfa_kernels import _launch
from scfa_kernels import config as kcfg
from scfa_kernels.config import LaunchConfig
from scfa_kernels.plan import hash_plan, qk_plan

L = LaunchConfig
# Candidates per pass, by today's tiles of that pass (v12: 5 stages for the gathered loads).
FWD_V12 = {
    (64, 32, 4, 3): [L(64, 32, 4, 5), L(64, 64, 4, 5), L(128, 64, 4, 5)],
    (128, 64, 4, 3): [L(128, 64, 4, 5), L(64, 64, 4, 5), L(64, 32, 4, 5)],
    (128, 128, 4, 2): [L(128, 64, 4, 5), L(64, 64, 4, 5), L(128, 128, 4, 3)],
    (64, 64, 4, 2): [L(64, 64, 4, 5), L(64, 32, 4, 5)],
}
DKDV_V12 = {
    (32, 64, 4, 1): [L(32, 64, 4, 5), L(64, 64, 4, 5), L(32, 128, 4, 5)],
    (32, 128, 4, 3): [L(32, 128, 4, 5), L(32, 64, 4, 5), L(64, 64, 4, 5)],
    (64, 64, 4, 2): [L(32, 64, 4, 5), L(64, 64, 4, 5)],
}
DQ_V12 = {
    (64, 32, 4, 3): [L(64, 32, 4, 5), L(128, 32, 4, 5), L(64, 64, 4, 5)],
    (128, 32, 4, 5): [L(64, 32, 4, 5), L(64, 64, 4, 5)],
    (64, 64, 4, 2): [L(64, 64, 4, 5), L(64, 32, 4, 5)],
}
# v14: the row index loaded where the pipeliner cannot see it (`load_index`): shallower
# pipelines and larger tiles become worth trying again.
FWD_V14 = {
    (64, 32, 4, 5): [L(64, 32, 4, 3), L(64, 32, 4, 4), L(128, 64, 4, 3)],
    (128, 64, 4, 5): [L(128, 64, 4, 3), L(128, 64, 4, 4), L(128, 128, 4, 3)],
    (128, 128, 4, 2): [L(128, 128, 4, 3), L(128, 64, 4, 3), L(128, 64, 4, 4)],
}
DKDV_V14 = {
    (32, 64, 4, 1): [L(32, 64, 4, 3), L(32, 64, 4, 2), L(32, 128, 4, 3)],
    (32, 128, 4, 3): [L(32, 64, 4, 3), L(64, 64, 4, 3), L(64, 128, 4, 3)],
    (32, 64, 4, 5): [L(32, 64, 4, 3), L(64, 64, 4, 3)],
}
DQ_V14 = {
    (64, 32, 4, 3): [L(64, 32, 4, 4), L(128, 32, 4, 3), L(64, 64, 4, 3)],
    (128, 32, 4, 5): [L(128, 32, 4, 3), L(64, 32, 4, 3), L(128, 64, 4, 3)],
    (64, 32, 4, 5): [L(64, 32, 4, 3), L(64, 64, 4, 3)],
}
ROUNDS = {"v12": (FWD_V12, DKDV_V12, DQ_V12), "v14": (FWD_V14, DKDV_V14, DQ_V14)}
HASH = (("hash", 2), ("hash", 8), ("hash", 32))
POINTS = [
    *[(16384, 48, 64, kind, p) for kind, p in (("hash", 1), *HASH)],
    *[(16384, 48, 64, "qk", p) for p in (0.2, 0.5, 0.8)],
    *[(4096, 48, 64, kind, p) for kind, p in (*HASH, ("qk", 0.8))],
    *[(32768, 48, 64, kind, p) for kind, p in (*HASH[1:], ("qk", 0.8))],
    *[(16384, 24, 128, kind, p) for kind, p in (*HASH, ("qk", 0.8))],
]
POINTS_V14 = [
    *[(16384, 48, 64, kind, p) for kind, p in (*HASH, ("qk", 0.5), ("qk", 0.8))],
    *[(4096, 48, 64, kind, p) for kind, p in (HASH[1], HASH[2], ("qk", 0.8))],
    (32768, 48, 64, "hash", 32),
    *[(16384, 24, 128, kind, p) for kind, p in (HASH[1], HASH[2], ("qk", 0.8))],
]


def _key(launch: LaunchConfig) -> tuple[int, int, int, int]:
    return (launch.block_m, launch.block_n, launch.num_warps, launch.num_stages)


def _median(fn) -> float:
    return float(do_bench(fn, warmup=10, rep=60))


def _point(T, H, D, kind, param, log, tables):
    fwd_table, dkdv_table, dq_table = tables
    point = Point(T, n_buckets=int(param)) if kind == "hash" else Point(T, drop_rate=param)
    inputs = make_inputs(Shape(4, H, D, "bf16"), point, seed=0, device="cuda")
    q, k, v = inputs.leaves
    if kind == "hash":
        plan, mean_rows = hash_plan(inputs.q_hash, inputs.k_hash, point.n_buckets), T / param
    else:
        plan, mean_rows = qk_plan(inputs.q_keep, inputs.k_keep), T
    scale = 1.0 / math.sqrt(D)
    today = kcfg.select(q.device, q.dtype, D, mean_rows)
    out, lse = _launch.forward(q, k, v, plan, scale, today)
    do = output_grad(out, seed=0)
    grads = _launch.backward(do, q, k, v, out, lse, plan, scale, today)
    base = {"T": T, "H": H, "D": D, "kind": kind, "param": param}

    def fwd(cfg):
        return _launch.forward(q, k, v, plan, scale, cfg)

    def bwd(cfg):
        return _launch.backward(do, q, k, v, out, lse, plan, scale, cfg)

    def diff(got, want):
        pairs = zip(got, want, strict=True)
        return max(float((x.float() - y.float()).abs().max()) for x, y in pairs)

    fwd_today, bwd_today = _median(lambda: fwd(today)), _median(lambda: bwd(today))
    log({**base, "pass": "fwd", "tiles": _key(today.fwd), "today": True, "ms": fwd_today})
    log({**base, "pass": "bwd", "dkdv": _key(today.dkdv), "dq": _key(today.dq), "today": True,
         "ms": bwd_today})  # fmt: skip
    for launch in fwd_table.get(_key(today.fwd), []):
        cfg = dataclasses.replace(today, fwd=launch)
        row = {**base, "pass": "fwd", "tiles": _key(launch)}
        try:
            got = fwd(cfg)
            row["out_diff"] = float((got[0].float() - out.float()).abs().max())
            row["ms"] = _median(lambda cfg=cfg: fwd(cfg))
            row["today_over"] = fwd_today / row["ms"]
        except Exception as exc:  # recorded, the sweep goes on
            row["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        log(row)
    for field, table in (("dkdv", dkdv_table), ("dq", dq_table)):
        for launch in table.get(_key(getattr(today, field)), []):
            cfg = dataclasses.replace(today, **{field: launch})
            row = {**base, "pass": "bwd", field: _key(launch)}
            try:
                row["grad_diff"] = diff(bwd(cfg), grads)
                row["ms"] = _median(lambda cfg=cfg: bwd(cfg))
                row["today_over"] = bwd_today / row["ms"]
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
            log(row)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--round", choices=sorted(ROUNDS), default="v14")
    parser.add_argument("--today-only", action="store_true", help="no candidates")
    parser.add_argument("--points", choices=["v12", "v14"], default="v12")
    parser.add_argument("--tag", default="", help="written in every row")
    args = parser.parse_args(argv)
    tables = ({}, {}, {}) if args.today_only else ROUNDS[args.round]
    points = POINTS if args.points == "v12" else POINTS_V14
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def log(row: dict) -> None:
        row["elapsed_s"] = round(time.perf_counter() - started, 1)
        row["tag"] = args.tag
        line = json.dumps(row)
        print(line, flush=True)
        with args.out.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    log({"what": "env", "device": torch.cuda.get_device_name(), "torch": torch.__version__,
         "triton": triton.__version__, "kernels": _launch.__file__})  # fmt: skip
    for point in points:
        _point(*point, log, tables)
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
