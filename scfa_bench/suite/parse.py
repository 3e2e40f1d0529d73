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
- `implementations` (required): registered implementation names (`scfa-bench list`), or
  plugin references `package.module:function` / `file.py:function` (`impls.plugins`; a file
  is relative to the suite file's folder and must lie in it or below).
- `baseline` [first dense implementation listed, else none]: speedups are relative to it. A
  plugin counts as dense here only when its source says so plainly (`suite.plugin_refs`).
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
expected. A sweep axis no listed implementation uses is only a warning, passed to `warn`.

Parsing never runs a suite's plugin code: a plugin reference is only checked to resolve
(`suite.plugin_refs`); its declared devices, dtypes and head dims are checked when it is
registered (`suite.consent.register_suite_plugins`, which runs it and needs the caller's
consent). Installed entry-point plugins are loaded here, as installed packages are trusted.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from scfa_bench.constants import DEVICES, DTYPES, MODES, PATTERN_AXES, SWEEP_AXES
from scfa_bench.e2e.attention import PLUGS
from scfa_bench.impls.plugins import is_reference, register_entry_points
from scfa_bench.impls.registry import all_specs
from scfa_bench.suite.impl_checks import check_axes, check_supported
from scfa_bench.suite.model_section import (
    check_model_implementations,
    default_model_baseline,
    parse_model,
)
from scfa_bench.suite.plugin_refs import (
    UnresolvedReference,
    resolve_reference,
    static_pattern,
    suite_folder,
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
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")  # matched against the whole name (fullmatch)
TOP_KEYS = (
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

Warn = Callable[[str], None]


@dataclass(frozen=True)
class _Common:
    """The keys every suite has, attention or model."""

    name: str
    description: str
    seed: int
    sweep: Sweep
    split_groups: bool


def load_suite(path: str | Path, *, allow_outside: bool = False, warn: Warn | None = None) -> Suite:
    """Read and validate a suite file; raises InputError on any problem. Runs none of the
    suite's plugin code (see the module doc); `allow_outside` accepts plugin files outside the
    suite's folder; `warn` receives each warning (one line each)."""
    file = Path(path)
    loaded = load_yaml(file)
    suite = parse_suite(
        loaded.data, str(file), loaded.lines, allow_outside=allow_outside, warn=warn
    )
    return _with_source(suite, str(file), hashlib.sha256(loaded.raw).hexdigest())


def _with_source(suite: Suite, source: str, sha256: str) -> Suite:
    return replace(suite, source=source, sha256=sha256)


def parse_suite(
    data: Any,
    file: str = "<suite>",
    lines: Mapping[str, int] | None = None,
    *,
    allow_outside: bool = False,
    warn: Warn | None = None,
) -> Suite:
    """Validate already-parsed YAML data (a dict) into a Suite. Plugin files are relative to
    `file`'s folder (the working directory for `<...>` names)."""
    v = Validator(file, lines or {})
    if isinstance(data, dict) and "training" in data:
        return training_suite(v, data)
    v.mapping(data, "", TOP_KEYS, ("name", "sweep", "implementations"))
    common = _Common(
        name=_name(v, data["name"]),
        description=v.string(data.get("description", ""), "description"),
        seed=v.integer(data.get("seed", 0), "seed", minimum=0),
        sweep=_sweep(v, data["sweep"]),
        split_groups=v.boolean(data.get("split_groups", True), "split_groups"),
    )
    if "model" in data:
        suite = _model_suite(v, data, common)
        axes = {impl: PLUGS[impl].axes for impl in suite.implementations}
    else:
        suite, axes = _attention_suite(v, data, common, allow_outside)
    for message in unused_axis_warnings(v, suite.sweep, axes):
        if warn is not None:
            warn(message)
    return suite


def _name(v: Validator, value: Any) -> str:
    name = v.string(value, "name")
    if not NAME_PATTERN.fullmatch(name):
        raise v.fail("name", f"expected letters, digits, '_', '-' or '.' only, got {name!r}")
    return name


def _sweep(v: Validator, value: Any) -> Sweep:
    sweep_data = v.mapping(value, "sweep", ("seq_len", *SWEEP_AXES), ("seq_len",))
    n_buckets = drop_rate = None
    if "n_buckets" in sweep_data:
        n_buckets = v.seq(sweep_data["n_buckets"], "sweep.n_buckets", v.integer, minimum=1)
    if "drop_rate" in sweep_data:
        drop_rate = v.seq(
            sweep_data["drop_rate"], "sweep.drop_rate", v.number, low=0.0, high=1.0, high_open=True
        )
    return Sweep(
        seq_len=v.seq(sweep_data["seq_len"], "sweep.seq_len", v.integer, minimum=1),
        n_buckets=n_buckets,
        drop_rate=drop_rate,
    )


def _attention_suite(
    v: Validator, data: dict[str, Any], common: _Common, allow_outside: bool
) -> tuple[Suite, dict[str, tuple[str, ...] | None]]:
    """A suite timing attention calls, and the sweep axes of each implementation (None: a
    plugin's, not known until it is registered)."""
    if "shape" not in data:
        raise v.fail("<top level>", "missing required key 'shape' (or a 'model' section)")
    shape = _shape(v, data["shape"])
    buckets = _buckets(v, data, common.sweep)
    impls = v.seq(data["implementations"], "implementations", v.string)
    axes = _implementation_axes(v, impls, suite_folder(v.file), allow_outside)
    for impl in impls:
        check_axes(v, impl, axes[impl] or (), common.sweep)
    dense = (i for i in impls if axes[i] is not None and _is_dense(i, axes[i]))
    baseline = _named_baseline(v, data, impls) or next(dense, None)
    modes = v.seq(data.get("modes", list(MODES)), "modes", v.string, choices=MODES)
    device = v.string(data.get("device", "auto"), "device", DEVICES)
    specs = all_specs()
    for i, impl in enumerate(impls):
        if not is_reference(impl):
            check_supported(v, specs[impl], f"implementations[{i}]", shape, device)
    max_check = data.get("max_check_seq_len")
    suite = Suite(
        name=common.name,
        description=common.description,
        seed=common.seed,
        shape=shape,
        sweep=common.sweep,
        buckets=buckets,
        implementations=impls,
        baseline=baseline,
        modes=modes,
        timing=_timing(v, data.get("timing", {})),
        check=v.boolean(data.get("check", True), "check"),
        check_rows=v.integer(data.get("check_rows", 256), "check_rows", minimum=1),
        max_check_seq_len=(
            None if max_check is None else v.integer(max_check, "max_check_seq_len", minimum=1)
        ),
        device=device,
        split_groups=common.split_groups,
    )
    return suite, axes


def _implementation_axes(
    v: Validator, impls: tuple[str, ...], folder: Path, allow_outside: bool
) -> dict[str, tuple[str, ...] | None]:
    """Each implementation's sweep axes: a registered one's (entry points registered first),
    a plugin reference's as far as its source says without running it (None if unclear). A
    name that is neither registered nor a reference that resolves is an error."""
    register_entry_points()
    specs = all_specs()
    axes: dict[str, tuple[str, ...] | None] = {}
    for i, impl in enumerate(impls):
        if is_reference(impl):
            try:
                ref = resolve_reference(impl, folder, allow_outside=allow_outside)
            except UnresolvedReference as exc:
                raise v.fail(f"implementations[{i}]", f"plugin {impl!r}: {exc}") from None
            pattern = static_pattern(ref)
            axes[impl] = None if pattern is None else PATTERN_AXES[pattern]
        elif impl in specs:
            axes[impl] = specs[impl].axes
        else:
            raise v.fail(
                f"implementations[{i}]",
                f"unknown implementation {impl!r}; expected one of: {', '.join(sorted(specs))}, "
                "or a plugin reference 'module:function' / 'file.py:function'",
            )
    return axes


def _is_dense(impl: str, axes: tuple[str, ...]) -> bool:
    """Dense: a registered implementation of the dense pattern, or a plugin without axes."""
    if is_reference(impl):
        return not axes
    return all_specs()[impl].pattern == "dense"


def unused_axis_warnings(
    v: Validator, sweep: Sweep, axes: Mapping[str, tuple[str, ...] | None]
) -> list[str]:
    """One warning per sweep axis that no implementation uses (it only repeats the same rows'
    work under another label, or adds nothing). Silent while some plugin's axes are unknown."""
    if any(a is None for a in axes.values()):
        return []
    used = {axis for impl_axes in axes.values() for axis in impl_axes or ()}
    return [
        str(v.fail(f"sweep.{axis}", "warning: no listed implementation uses this axis"))
        for axis in SWEEP_AXES
        if sweep.values(axis) is not None and axis not in used
    ]


def _buckets(v: Validator, data: dict[str, Any], sweep: Sweep) -> str:
    buckets = v.string(data.get("buckets", "random"), "buckets", BUCKET_KINDS)
    if buckets in ("lsh", "lsh_shared") and sweep.n_buckets:
        for i, nb in enumerate(sweep.n_buckets):
            if nb % 2:
                raise v.fail(f"sweep.n_buckets[{i}]", f"lsh buckets need an even count, got {nb}")
    return buckets


def _timing(v: Validator, value: Any) -> TimingSettings:
    timing_data = v.mapping(value, "timing", ("warmup_ms", "rep_ms", "cuda_graph"), ())
    timing = TimingSettings(
        warmup_ms=v.number(
            timing_data.get("warmup_ms", 25), "timing.warmup_ms", 0.0, math.inf, False
        ),
        rep_ms=v.number(timing_data.get("rep_ms", 100), "timing.rep_ms", 0.0, math.inf, False),
        cuda_graph=v.boolean(timing_data.get("cuda_graph", False), "timing.cuda_graph"),
    )
    if timing.rep_ms <= 0:
        raise v.fail("timing.rep_ms", f"expected a number > 0, got {timing.rep_ms}")
    return timing


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


def _model_suite(v: Validator, data: dict[str, Any], common: _Common) -> Suite:
    """A suite with a `model` section (`suite.model_section`)."""
    model = parse_model(v, data, DTYPE_ALIASES)
    impls = v.seq(data["implementations"], "implementations", v.string)
    check_model_implementations(v, impls, common.sweep, model)
    device = v.string(data.get("device", "auto"), "device", DEVICES)
    if model.cuda_graph and device == "cpu":
        raise v.fail("model.cuda_graph", "a CUDA graph needs device cuda (or auto), not cpu")
    return Suite(
        name=common.name,
        description=common.description,
        seed=common.seed,
        shape=None,
        sweep=common.sweep,
        implementations=impls,
        baseline=_named_baseline(v, data, impls) or default_model_baseline(impls),
        modes=(model.mode,),
        check=False,
        device=device,
        model=model,
        split_groups=common.split_groups,
    )
