"""The `model:` section of a suite: time a training step of a decoder-only LM (`scfa_bench.e2e`)
instead of one attention call.

Keys (defaults in brackets):

- `layers`, `d_model`, `heads` (required): integers >= 1; heads must divide d_model.
- `mlp_ratio` [4]: MLP width / d_model (a whole number of units); `vocab` [50304].
- `batch` or `tokens_per_step` (exactly one): a fixed batch, or B = tokens_per_step // seq_len
  (at least 1, so a seq_len above tokens_per_step runs with B = 1).
- `dtype` [bf16]: the autocast dtype on CUDA; CPU steps run in fp32.
- `compile` [false]: true, false, or a list of both: a sweep axis (`torch.compile` of the model).
- `optimizer` [false]: true adds the AdamW update to the step (mode `step+adamw`, else `step`).
- `cuda_graph` [false]: true captures the step once in a CUDA graph (after eager warm-up steps)
  and times its replays: the step paced by its GPU work, without the host's launch costs
  (`scfa_bench.e2e.graphed`). Rows say `cuda_graph` in `timer`.
- `steps` [{warmup: 3, timed: 10, profile: 3}]: steps before timing, timed, and profiled for the
  attention share (0: no profile).

A model suite has no `shape`, `buckets`, `modes`, `timing` or `check*` keys: the model gives
the shape, hash-sparse attention uses LSH buckets of q and k, and steps are not checked
against a reference (the tests compare the model with the reference attention). Its
implementations are the names `scfa_bench.e2e.attention.PLUGS` knows.
"""

from __future__ import annotations

import math
from typing import Any

from scfa_bench.constants import DTYPES
from scfa_bench.e2e.attention import PLUGS
from scfa_bench.e2e.model import ModelConfig, ModelConfigError
from scfa_bench.impls.registry import get_spec
from scfa_bench.suite.schema import ModelSettings, StepCounts, Sweep
from scfa_bench.suite.validator import Validator

MODEL_KEYS = (
    "layers",
    "d_model",
    "heads",
    "mlp_ratio",
    "vocab",
    "batch",
    "tokens_per_step",
    "dtype",
    "compile",
    "optimizer",
    "cuda_graph",
    "steps",
)
NOT_IN_MODEL_SUITES = (
    "shape",
    "buckets",
    "modes",
    "timing",
    "check",
    "check_rows",
    "max_check_seq_len",
)


def parse_model(v: Validator, data: dict[str, Any], dtype_aliases: dict[str, str]) -> ModelSettings:
    """Validate the `model` mapping of suite `data` (whose other keys must suit a model suite)."""
    for key in NOT_IN_MODEL_SUITES:
        if key in data:
            raise v.fail(key, "not used by model suites (the `model` section sets the step)")
    section = v.mapping(data["model"], "model", MODEL_KEYS, ("layers", "d_model", "heads"))
    sizes = {
        key: v.integer(section[key], f"model.{key}", minimum=1)
        for key in ("layers", "d_model", "heads", "vocab")
        if key in section
    }
    ratio = section.get("mlp_ratio", 4)
    ratio = v.number(ratio, "model.mlp_ratio", 0.0, math.inf, high_open=False)
    try:
        config = ModelConfig(mlp_ratio=int(ratio) if ratio.is_integer() else ratio, **sizes)
    except ModelConfigError as exc:
        raise v.fail(f"model.{exc.setting}", exc.detail) from None

    if ("batch" in section) == ("tokens_per_step" in section):
        raise v.fail("model", "expected exactly one of `batch` and `tokens_per_step`")
    batch = tokens = None
    if "batch" in section:
        batch = v.integer(section["batch"], "model.batch", minimum=1)
    else:
        tokens = v.integer(section["tokens_per_step"], "model.tokens_per_step", minimum=1)

    dtype_name = v.string(section.get("dtype", "bf16"), "model.dtype")
    if dtype_name not in dtype_aliases:
        raise v.fail("model.dtype", f"expected one of {', '.join(DTYPES)}; got {dtype_name!r}")

    compile_value = section.get("compile", False)
    if isinstance(compile_value, list):
        compiles = v.seq(compile_value, "model.compile", v.boolean)
    else:
        compiles = (v.boolean(compile_value, "model.compile"),)

    steps = v.mapping(section.get("steps", {}), "model.steps", ("warmup", "timed", "profile"), ())
    defaults = StepCounts()
    counts = StepCounts(
        warmup=v.integer(steps.get("warmup", defaults.warmup), "model.steps.warmup", minimum=1),
        timed=v.integer(steps.get("timed", defaults.timed), "model.steps.timed", minimum=1),
        profile=v.integer(steps.get("profile", defaults.profile), "model.steps.profile", 0),
    )
    return ModelSettings(
        config=config,
        dtype=dtype_aliases[dtype_name],
        batch=batch,
        tokens_per_step=tokens,
        compile=compiles,
        optimizer=v.boolean(section.get("optimizer", False), "model.optimizer"),
        cuda_graph=v.boolean(section.get("cuda_graph", False), "model.cuda_graph"),
        steps=counts,
    )


def check_model_implementations(
    v: Validator, impls: tuple[str, ...], sweep: Sweep, model: ModelSettings
) -> None:
    """Every implementation has a model plug that takes the model's head dim, and the sweep has
    the axes the plugs use."""
    head_dim = model.config.head_dim
    for i, impl in enumerate(impls):
        if impl not in PLUGS:
            raise v.fail(
                f"implementations[{i}]",
                f"{impl!r} cannot be the attention of a model suite; expected one of: "
                f"{', '.join(sorted(PLUGS))}",
            )
        registered = PLUGS[impl].registered
        problem = get_spec(registered).head_dim_problem(head_dim) if registered else None
        if problem:
            raise v.fail(
                "model.heads",
                f"head dim {head_dim} (d_model {model.config.d_model} / heads "
                f"{model.config.heads}): {problem} (implementations[{i}] {impl!r})",
            )
        problem = get_spec(registered).heads_problem(model.config.heads) if registered else None
        if problem:  # grouped-query methods (NSA: 16 query heads per KV head)
            raise v.fail("model.heads", f"{problem} (implementations[{i}] {impl!r})")
        for axis in PLUGS[impl].axes:
            if sweep.values(axis) is None:
                needs = f"implementation {impl!r} uses axis {axis!r}, so sweep.{axis} is required"
                raise v.fail("sweep", needs)
    if any(PLUGS[i].pattern == "hash" for i in impls):
        for i, nb in enumerate(sweep.n_buckets or ()):
            if nb % 2:
                raise v.fail(f"sweep.n_buckets[{i}]", f"LSH buckets need an even count, got {nb}")


def default_model_baseline(impls: tuple[str, ...]) -> str | None:
    """The first dense attention listed (not `identity`, which has no attention at all)."""
    return next((i for i in impls if PLUGS[i].pattern == "dense"), None)
