"""Load a YAML suite, validate every key against the schema and the registry, return a `Suite`.

Keys (unknown keys are rejected at every level; defaults in brackets):

- `name` (required): letters, digits, `_`, `-`, `.`; used in result file names.
- `description` [""]: free text.
- `seed` [0]: integer; inputs are seeded from it and the point.
- `shape` (required): `{batch, heads, head_dim, dtype}`, all required; dtype is fp16, bf16 or
  fp32 (float16, bfloat16, float32 accepted as aliases).
- `sweep` (required): `seq_len` (required), `n_buckets`, `drop_rate`: non-empty lists without
  duplicates; the grid is their cartesian product, restricted per implementation to the axes it
  uses. `n_buckets` >= 1 (even with lsh buckets), `drop_rate` in [0, 1).
- `buckets` [random]: `random` (uniform bucket ids), `lsh` (angular LSH of q and k) or
  `lsh_shared` (angular LSH of q used for both queries and keys, as when keys are the
  normalised queries).
- `implementations` (required): registered implementation names (`scfa-bench list`).
- `baseline` [first dense implementation listed, else none]: speedups are relative to it.
- `modes` [[fwd, bwd, fwd+bwd]].
- `timing` [{warmup_ms: 25, rep_ms: 100}]: passed to `triton.testing.do_bench`.
- `check` [true]: compare with the reference before timing.
- `check_rows` [256]: query rows sampled for the check when seq_len > 1024 (all rows below).
- `max_check_seq_len` [null]: skip the check above this seq_len (null: always check).
- `device` [auto]: `auto` (cuda when available, else cpu), `cuda` or `cpu`.

Errors are `InputError`s naming the file, the key path (`sweep.seq_len[2]`), its line and
what was expected.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from scfa_bench.constants import DEVICES, DTYPES, MODES
from scfa_bench.errors import InputError
from scfa_bench.impls.plugins import register_suite_plugins
from scfa_bench.impls.registry import all_specs
from scfa_bench.suite.schema import Shape, Suite, Sweep, TimingSettings

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


class _Validator:
    """Walks the parsed YAML; every error names the file, key path and line."""

    def __init__(self, file: str, lines: Mapping[str, int]) -> None:
        self.file = file
        self.lines = lines

    def fail(self, path: str, message: str) -> InputError:
        line = self.lines.get(path)
        where = f"{self.file}: {path}" + (f" (line {line})" if line else "")
        return InputError(f"{where}: {message}")

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...], required: tuple[str, ...]):
        if not isinstance(value, dict):
            raise self.fail(path or "<top level>", f"expected a mapping, got {_show(value)}")
        for key in value:
            if key not in allowed:
                sub = f"{path}.{key}" if path else str(key)
                raise self.fail(sub, f"unknown key; expected one of: {', '.join(allowed)}")
        for key in required:
            if key not in value:
                raise self.fail(path or "<top level>", f"missing required key {key!r}")
        return value

    def integer(self, value: Any, path: str, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"expected an integer, got {_show(value)}")
        if minimum is not None and value < minimum:
            raise self.fail(path, f"expected an integer >= {minimum}, got {value}")
        return value

    def number(self, value: Any, path: str, low: float, high: float, high_open: bool) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise self.fail(path, f"expected a number, got {_show(value)}")
        if value < low or value > high or (high_open and value == high):
            interval = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
            raise self.fail(path, f"expected a number in {interval}, got {value}")
        return float(value)

    def string(self, value: Any, path: str, choices: tuple[str, ...] | None = None) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"expected a string, got {_show(value)}")
        if choices is not None and value not in choices:
            raise self.fail(path, f"expected one of {', '.join(choices)}; got {value!r}")
        return value

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {_show(value)}")
        return value

    def seq(self, value: Any, path: str, item, **kwargs) -> tuple:
        if not isinstance(value, list) or not value:
            raise self.fail(path, f"expected a non-empty list, got {_show(value)}")
        items = tuple(item(v, f"{path}[{i}]", **kwargs) for i, v in enumerate(value))
        for i, v in enumerate(items):
            if v in items[:i]:
                raise self.fail(f"{path}[{i}]", f"duplicate value {v!r}")
        return items


def _show(value: Any) -> str:
    text = "nothing (null)" if value is None else f"{type(value).__name__} {value!r}"
    return text if len(text) < 80 else text[:77] + "..."


def _key_lines(node: yaml.Node | None, path: str = "") -> dict[str, int]:
    """1-based line of every key path in a composed YAML tree (for error messages)."""
    lines: dict[str, int] = {}
    if node is None:
        return lines
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            sub = f"{path}.{key_node.value}" if path else str(key_node.value)
            lines[sub] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, sub))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = f"{path}[{i}]"
            lines[sub] = item.start_mark.line + 1
            lines.update(_key_lines(item, sub))
    return lines


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file; raises InputError on any problem."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise InputError(f"{file}: cannot read suite file ({exc.strerror or exc})") from None
    text = raw.decode("utf-8", errors="replace")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
        problem = exc.problem or exc.context or "invalid YAML"
        raise InputError(f"{file}: YAML syntax error at {where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{file}: YAML syntax error: {exc}") from None
    suite = parse_suite(data, str(file), _key_lines(node))
    return _with_source(suite, str(file), hashlib.sha256(raw).hexdigest())


def _with_source(suite: Suite, source: str, sha256: str) -> Suite:
    return replace(suite, source=source, sha256=sha256)


def parse_suite(data: Any, file: str = "<suite>", lines: Mapping[str, int] | None = None) -> Suite:
    """Validate already-parsed YAML data (a dict) into a Suite."""
    v = _Validator(file, lines or {})
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
    )
    v.mapping(data, "", top_keys, ("name", "shape", "sweep", "implementations"))

    name = v.string(data["name"], "name")
    if not _NAME_RE.match(name):
        raise v.fail("name", f"expected letters, digits, '_', '-' or '.' only, got {name!r}")
    description = v.string(data.get("description", ""), "description")
    seed = v.integer(data.get("seed", 0), "seed", minimum=0)

    shape_data = v.mapping(
        data["shape"],
        "shape",
        ("batch", "heads", "head_dim", "dtype"),
        ("batch", "heads", "head_dim", "dtype"),
    )
    dtype_name = v.string(shape_data["dtype"], "shape.dtype")
    if dtype_name not in DTYPE_ALIASES:
        raise v.fail("shape.dtype", f"expected one of {', '.join(DTYPES)}; got {dtype_name!r}")
    shape = Shape(
        batch=v.integer(shape_data["batch"], "shape.batch", minimum=1),
        heads=v.integer(shape_data["heads"], "shape.heads", minimum=1),
        head_dim=v.integer(shape_data["head_dim"], "shape.head_dim", minimum=1),
        dtype=DTYPE_ALIASES[dtype_name],
    )

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

    if "baseline" in data and data["baseline"] is not None:
        baseline: str | None = v.string(data["baseline"], "baseline")
        if baseline not in impls:
            raise v.fail(
                "baseline",
                f"expected one of the implementations ({', '.join(impls)}); got {baseline!r}",
            )
    else:
        baseline = next((i for i in impls if specs[i].pattern == "dense"), None)

    modes = v.seq(data.get("modes", list(MODES)), "modes", v.string, choices=MODES)

    timing_data = v.mapping(data.get("timing", {}), "timing", ("warmup_ms", "rep_ms"), ())
    timing = TimingSettings(
        warmup_ms=v.number(
            timing_data.get("warmup_ms", 25), "timing.warmup_ms", 0.0, math.inf, False
        ),
        rep_ms=v.number(timing_data.get("rep_ms", 100), "timing.rep_ms", 0.0, math.inf, False),
    )
    if timing.rep_ms <= 0:
        raise v.fail("timing.rep_ms", f"expected a number > 0, got {timing.rep_ms}")

    max_check = data.get("max_check_seq_len")
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
        device=v.string(data.get("device", "auto"), "device", DEVICES),
    )
