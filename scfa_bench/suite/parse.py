"""Load a YAML suite, validate every key against the schema and the registry, return a `Suite`.

Keys (unknown keys are rejected at every level; defaults in brackets):

- `name` (required): letters, digits, `_`, `-`, `.`; used in result file names.
- `description` [""]: free text.
- `seed` [0]: integer; inputs are seeded from it and the point.
- `shape` (required unless `model` is given): `{batch, heads, head_dim, dtype}`, all required;
  dtype is fp16, bf16 or fp32 (float16, bfloat16, float32 accepted as aliases).
- `training`: train a model per attention setting and measure its quality against time; its
  keys, and the few top-level keys such a suite has, are in `suite.training_section`.
- `model`: time a training step of a decoder-only LM instead of one attention call; its keys,
  and the keys a model suite may not have, are in `suite.model_section`.
- `sweep` (required): `seq_len` (required), `n_buckets`, `drop_rate`: non-empty lists without
  duplicates; the grid is their cartesian product, restricted per implementation to the axes it
  uses. `n_buckets` >= 1 (even with lsh buckets), `drop_rate` in [0, 1).
- `buckets` [random]: `random` (uniform bucket ids), `lsh` (angular LSH of q and k) or
  `lsh_shared` (angular LSH of q used for both queries and keys, as when keys are the
  normalised queries).
- `implementations` (required): registered implementation names (`scfa-bench list`).
- `baseline` [first dense implementation listed, else none]: speedups are relative to it.
- `modes` [[fwd, bwd, fwd+bwd]].
- `timing` [{warmup_ms: 25, rep_ms: 100, cuda_graph: false}]: warm-up and timed milliseconds
  per call, passed to `triton.testing.do_bench`; with `cuda_graph: true` each call is captured
  once in a CUDA graph and its replays are timed instead (GPU time alone, without the host's
  launch cost; CPU runs ignore it). `measure.timing` says when to use which.
- `check` [true]: compare with the reference before timing.
- `check_rows` [256]: query rows sampled for the check when seq_len > 1024 (all rows below).
- `max_check_seq_len` [null]: skip the check above this seq_len (null: always check).
- `device` [auto]: `auto` (cuda when available, else cpu), `cuda` or `cpu`.
- `split_groups` [true]: whether a sharded run (`--gpus`, `--shard`, Slurm) may split one
  seq_len's tasks over several shards to balance them; then rows whose baseline ran in another
  shard (another card) get their speedup at the merge. `false` keeps each seq_len's tasks,
  baseline included, on one shard: every speedup is taken on one card, at the cost of balance.

The YAML itself is read by `suite.yaml_load` (size limit, no duplicate keys, anchors or
aliases). An implementation asked for a head dim or dtype it declares it cannot take (or, with
an explicit `device`, a device or dtype it lacks there) is rejected here. Errors are
`InputError`s naming the file, the key path (`sweep.seq_len[2]`), its line and what was
expected.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from scfa_bench.constants import DEVICES, DTYPES, MODES
from scfa_bench.impls.plugins import register_suite_plugins
from scfa_bench.impls.registry import ImplSpec, all_specs
from scfa_bench.suite.model_section import (
    check_model_implementations,
    default_model_baseline,
    parse_model,
)
from scfa_bench.suite.schema import Shape, Suite, Sweep, TimingSettings
from scfa_bench.suite.training_section import training_suite
from scfa_bench.suite.validator import Validator
from scfa_bench.suite.yaml_load import load_yaml

# Accepted spellings of each dtype (the canonical names are constants.DTYPES).
DTYPE_ALIASES = {
    "fp16": "fp16",
    "float16": "fp16",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "fp32": "fp32",
    "float32": "fp32",
}
BUCKET_KINDS = ("random", "lsh", "lsh_shared")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file; raises InputError on any problem."""
    file = Path(path)
    loaded = load_yaml(file)
    suite = parse_suite(loaded.data, str(file), loaded.lines)
    return _with_source(suite, str(file), hashlib.sha256(loaded.raw).hexdigest())


def _with_source(suite: Suite, source: str, sha256: str) -> Suite:
    return replace(suite, source=source, sha256=sha256)


def parse_suite(data: Any, file: str = "<suite>", lines: Mapping[str, int] | None = None) -> Suite:
    """Validate already-parsed YAML data (a dict) into a Suite."""
    v = Validator(file, lines or {})
    if isinstance(data, dict) and "training" in data:
        return training_suite(v, data)
    top_keys = (
        "name",
        "description",
        "seed",
        "shape",
        "sweep",
        "buckets",
        "implementations",
        "baseline",
        "modes",
        "timing",
        "check",
        "check_rows",
        "max_check_seq_len",
        "device",
        "model",
        "split_groups",
    )
    v.mapping(data, "", top_keys, ("name", "sweep", "implementations"))

    name = v.string(data["name"], "name")
    if not _NAME_RE.match(name):
        raise v.fail("name", f"expected letters, digits, '_', '-' or '.' only, got {name!r}")
    description = v.string(data.get("description", ""), "description")
    seed = v.integer(data.get("seed", 0), "seed", minimum=0)

    sweep_data = v.mapping(
        data["sweep"], "sweep", ("seq_len", "n_buckets", "drop_rate"), ("seq_len",)
    )
    sweep = Sweep(
        seq_len=v.seq(sweep_data["seq_len"], "sweep.seq_len", v.integer, minimum=1),
        n_buckets=(
            v.seq(sweep_data["n_buckets"], "sweep.n_buckets", v.integer, minimum=1)
            if "n_buckets" in sweep_data
            else None
        ),
        drop_rate=(
            v.seq(
                sweep_data["drop_rate"],
                "sweep.drop_rate",
                v.number,
                low=0.0,
                high=1.0,
                high_open=True,
            )
            if "drop_rate" in sweep_data
            else None
        ),
    )

    split_groups = v.boolean(data.get("split_groups", True), "split_groups")
    if "model" in data:
        return _model_suite(
            v,
            data,
            name=name,
            description=description,
            seed=seed,
            sweep=sweep,
            split_groups=split_groups,
        )
    if "shape" not in data:
        raise v.fail("<top level>", "missing required key 'shape' (or a 'model' section)")
    shape = _shape(v, data["shape"])

    buckets = v.string(data.get("buckets", "random"), "buckets", BUCKET_KINDS)
    if buckets in ("lsh", "lsh_shared") and sweep.n_buckets:
        for i, nb in enumerate(sweep.n_buckets):
            if nb % 2:
                raise v.fail(f"sweep.n_buckets[{i}]", f"lsh buckets need an even count, got {nb}")

    impls = v.seq(data["implementations"], "implementations", v.string)
    register_suite_plugins(impls, file)  # entry points and module:function references
    specs = all_specs()
    for i, impl in enumerate(impls):
        if impl not in specs:
            raise v.fail(
                f"implementations[{i}]",
                f"unknown implementation {impl!r}; expected one of: {', '.join(sorted(specs))}",
            )
        for axis in specs[impl].axes:
            if sweep.values(axis) is None:
                raise v.fail(
                    "sweep",
                    f"implementation {impl!r} uses axis {axis!r}, so sweep.{axis} is required",
                )

    baseline = _named_baseline(v, data, impls) or next(
        (i for i in impls if specs[i].pattern == "dense"), None
    )

    modes = v.seq(data.get("modes", list(MODES)), "modes", v.string, choices=MODES)

    timing_data = v.mapping(
        data.get("timing", {}), "timing", ("warmup_ms", "rep_ms", "cuda_graph"), ()
    )
    timing = TimingSettings(
        warmup_ms=v.number(
            timing_data.get("warmup_ms", 25), "timing.warmup_ms", 0.0, math.inf, False
        ),
        rep_ms=v.number(timing_data.get("rep_ms", 100), "timing.rep_ms", 0.0, math.inf, False),
        cuda_graph=v.boolean(timing_data.get("cuda_graph", False), "timing.cuda_graph"),
    )
    if timing.rep_ms <= 0:
        raise v.fail("timing.rep_ms", f"expected a number > 0, got {timing.rep_ms}")

    max_check = data.get("max_check_seq_len")
    device = v.string(data.get("device", "auto"), "device", DEVICES)
    for i, impl in enumerate(impls):
        _check_supported(v, specs[impl], f"implementations[{i}]", shape, device)
    return Suite(
        name=name,
        description=description,
        seed=seed,
        shape=shape,
        sweep=sweep,
        buckets=buckets,
        implementations=impls,
        baseline=baseline,
        modes=modes,
        timing=timing,
        check=v.boolean(data.get("check", True), "check"),
        check_rows=v.integer(data.get("check_rows", 256), "check_rows", minimum=1),
        max_check_seq_len=(
            None if max_check is None else v.integer(max_check, "max_check_seq_len", minimum=1)
        ),
        device=device,
        split_groups=split_groups,
    )


def _shape(v: Validator, value: Any) -> Shape:
    keys = ("batch", "heads", "head_dim", "dtype")
    shape_data = v.mapping(value, "shape", keys, keys)
    dtype_name = v.string(shape_data["dtype"], "shape.dtype")
    if dtype_name not in DTYPE_ALIASES:
        raise v.fail("shape.dtype", f"expected one of {', '.join(DTYPES)}; got {dtype_name!r}")
    return Shape(
        batch=v.integer(shape_data["batch"], "shape.batch", minimum=1),
        heads=v.integer(shape_data["heads"], "shape.heads", minimum=1),
        head_dim=v.integer(shape_data["head_dim"], "shape.head_dim", minimum=1),
        dtype=DTYPE_ALIASES[dtype_name],
    )


def _named_baseline(v: Validator, data: dict[str, Any], impls: tuple[str, ...]) -> str | None:
    """The `baseline` key, one of the implementations; None when absent or null."""
    if data.get("baseline") is None:
        return None
    baseline = v.string(data["baseline"], "baseline")
    if baseline not in impls:
        raise v.fail(
            "baseline",
            f"expected one of the implementations ({', '.join(impls)}); got {baseline!r}",
        )
    return baseline


def _model_suite(
    v: Validator,
    data: dict[str, Any],
    *,
    name: str,
    description: str,
    seed: int,
    sweep: Sweep,
    split_groups: bool,
) -> Suite:
    """A suite with a `model` section (`suite.model_section`)."""
    model = parse_model(v, data, DTYPE_ALIASES)
    impls = v.seq(data["implementations"], "implementations", v.string)
    check_model_implementations(v, impls, sweep, model)
    device = v.string(data.get("device", "auto"), "device", DEVICES)
    if model.cuda_graph and device == "cpu":
        raise v.fail("model.cuda_graph", "a CUDA graph needs device cuda (or auto), not cpu")
    return Suite(
        name=name,
        description=description,
        seed=seed,
        shape=None,
        sweep=sweep,
        implementations=impls,
        baseline=_named_baseline(v, data, impls) or default_model_baseline(impls),
        modes=(model.mode,),
        check=False,
        device=device,
        model=model,
        split_groups=split_groups,
    )


def _check_supported(v: Validator, spec: ImplSpec, where: str, shape: Shape, device: str) -> None:
    """Reject what the implementation declares it cannot do (on the suite's device if named);
    what only another machine lacks is marked `unavailable` at run time instead."""
    problem = spec.head_dim_problem(shape.head_dim)
    if problem:
        raise v.fail("shape.head_dim", f"{problem}, got {shape.head_dim} ({where})")
    if device != "auto" and device not in spec.devices:
        problem = f"{spec.name} runs on {', '.join(spec.devices)}, not on {device}"
        raise v.fail("device", f"{problem} ({where})")
    problem = spec.dtype_problem(shape.dtype, None if device == "auto" else device)
    if problem:
        raise v.fail("shape.dtype", f"{problem} ({where})")
