"""The `training:` section: a suite that trains one model per attention setting and measures
its validation quality against training time (`scfa_bench.quality`), instead of timing calls.
A training suite has `name`, `description`, `device` and `training` only. Keys of `training`
(the reference, with defaults, is docs/quality.md "Suite keys"): data (`corpus`, `task` or
both), `model`, `batch`, `seq_len`, `steps` or `tokens`, `max_seconds`, `eval_every`,
`eval_batches`, `optimizer`, `dtype`, `compile`, `seeds`, `shared_qk` and `settings` (a list of
`{impl, n_buckets, drop_rate, lsh, heads, name}`; a list of n_buckets or drop_rate gives one
setting per value). Every error names the key path.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from scfa_bench.constants import DEVICES
from scfa_bench.e2e.attention import PLUGS
from scfa_bench.e2e.model import ModelConfigError
from scfa_bench.impls.registry import get_spec
from scfa_bench.quality.config import (
    CORPUS_KINDS,
    LSH_MODES,
    RECALL_TASKS,
    TRAIN_DTYPES,
    AttentionSetting,
    CorpusSettings,
    ModelShape,
    OptimizerSettings,
    TaskSettings,
    TrainingSettings,
)
from scfa_bench.quality.corpus import CorpusSpec
from scfa_bench.quality.settings import REFORMER
from scfa_bench.suite.schema import Suite, Sweep
from scfa_bench.suite.validator import Validator

TOP_KEYS = ("name", "description", "device", "training")
TRAINING_KEYS = (
    "corpus", "task", "model", "batch", "seq_len", "steps", "tokens", "max_seconds",
    "eval_every", "eval_batches", "optimizer", "dtype", "compile", "seeds", "shared_qk",
    "settings",
)  # fmt: skip
SHARED_QK_PLUGS = ("hashformer", "naive_hashformer")


def parse_training(v: Validator, data: dict[str, Any]) -> TrainingSettings:
    """Validate the `training` mapping of suite `data` (whose other keys must suit it)."""
    v.mapping(data, "", TOP_KEYS, ("name", "training"))
    t = v.mapping(
        data["training"], "training", TRAINING_KEYS, ("model", "batch", "seq_len", "settings")
    )
    if "corpus" not in t and "task" not in t:
        raise v.fail("training", "expected `corpus`, `task` or both: the data to train on")
    if ("steps" in t) == ("tokens" in t):
        raise v.fail("training", "expected exactly one of `steps` and `tokens`")
    seq_lens = v.seq(t["seq_len"], "training.seq_len", v.integer, minimum=2)
    batch = v.integer(t["batch"], "training.batch", minimum=1)
    model = _model(v, t["model"])
    settings = _settings(v, t["settings"], model)
    max_seconds = t.get("max_seconds")
    training = TrainingSettings(
        model=model,
        batch=batch,
        seq_len=seq_lens,
        settings=settings,
        corpus=_corpus(v, t["corpus"], seq_lens, batch) if "corpus" in t else None,
        tasks=_tasks(v, t["task"], seq_lens) if "task" in t else (),
        steps=v.integer(t["steps"], "training.steps", minimum=1) if "steps" in t else None,
        tokens=v.integer(t["tokens"], "training.tokens", minimum=1) if "tokens" in t else None,
        max_seconds=(
            None
            if max_seconds is None
            else v.number(max_seconds, "training.max_seconds", 0.0, math.inf, False)
        ),
        eval_every=v.integer(t.get("eval_every", 50), "training.eval_every", minimum=1),
        eval_batches=v.integer(t.get("eval_batches", 4), "training.eval_batches", minimum=1),
        optimizer=_optimizer(v, t.get("optimizer", {})),
        dtype=v.string(t.get("dtype", "bf16"), "training.dtype", TRAIN_DTYPES),
        compile=v.boolean(t.get("compile", False), "training.compile"),
        seeds=v.seq(t.get("seeds", [0]), "training.seeds", v.integer, minimum=0),
        shared_qk=v.boolean(t.get("shared_qk", True), "training.shared_qk"),
    )
    return training


def _model(v: Validator, value: Any) -> ModelShape:
    keys = ("layers", "d_model", "heads", "mlp_ratio")
    m = v.mapping(value, "training.model", keys, ("layers", "d_model", "heads"))
    sizes = {k: v.integer(m[k], f"training.model.{k}", minimum=1) for k in keys[:3]}
    ratio = v.number(m.get("mlp_ratio", 4), "training.model.mlp_ratio", 0.0, math.inf, False)
    shape = ModelShape(mlp_ratio=int(ratio) if ratio.is_integer() else ratio, **sizes)
    try:
        shape.config(vocab=2, max_seq_len=1)
    except ModelConfigError as exc:
        raise v.fail(f"training.model.{exc.setting}", exc.detail) from None
    return shape


def _corpus(v: Validator, value: Any, seq_lens: tuple[int, ...], batch: int) -> CorpusSettings:
    keys = ("kind", "path", "vocab", "max_bytes", "val_fraction")
    c = v.mapping(value, "training.corpus", keys, ("kind",))
    kind = v.string(c["kind"], "training.corpus.kind", CORPUS_KINDS)
    path = None
    if kind == "stdlib":
        if "path" in c:
            raise v.fail("training.corpus.path", "the stdlib corpus takes no path")
    else:
        if "path" not in c:
            raise v.fail("training.corpus", f"a {kind} corpus needs `path`")
        path = v.string(c["path"], "training.corpus.path")
        is_there = Path(path).is_dir() if kind == "folder" else Path(path).is_file()
        if not is_there:
            what = "folder" if kind == "folder" else "token file"
            raise v.fail("training.corpus.path", f"no such {what}: {path}")
    if ("vocab" in c) != (kind == "tokens"):
        raise v.fail("training.corpus", "`vocab` is given for (and only for) a tokens corpus")
    vocab = v.integer(c["vocab"], "training.corpus.vocab", minimum=2) if "vocab" in c else None
    fraction = c.get("val_fraction")
    if fraction is not None:
        fraction = v.number(fraction, "training.corpus.val_fraction", 0.0, 1.0, True)
        if fraction <= 0:
            raise v.fail("training.corpus.val_fraction", "expected a number in (0, 1)")
    max_bytes = None
    if "max_bytes" in c:
        max_bytes = v.integer(c["max_bytes"], "training.corpus.max_bytes", minimum=1)
        share = CorpusSpec().val_fraction if fraction is None else fraction
        val_bytes = max(round(max_bytes * share), 1)  # as the corpus loader splits it
        for i, seq_len in enumerate(seq_lens):
            if seq_len + 1 > val_bytes:
                raise v.fail(
                    f"training.seq_len[{i}]",
                    f"{seq_len} is longer than the corpus allows: max_bytes {max_bytes} leaves "
                    f"{val_bytes} bytes for validation, which needs seq_len + 1",
                )
    return CorpusSettings(kind, path, vocab, max_bytes, fraction)


def _tasks(v: Validator, value: Any, seq_lens: tuple[int, ...]) -> tuple[TaskSettings, ...]:
    from scfa_bench.quality.data import validate_task

    items = value if isinstance(value, list) else [value]
    if not items:
        raise v.fail("training.task", "expected a task mapping or a non-empty list of them")
    tasks = []
    for i, item in enumerate(items):
        where = "training.task" if not isinstance(value, list) else f"training.task[{i}]"
        keys = ("name", "vocab", "n_pairs", "alpha")
        m = v.mapping(item, where, keys, ("name", "vocab"))
        name = v.string(m["name"], f"{where}.name", RECALL_TASKS)
        task = TaskSettings(
            name=name,
            vocab=v.integer(m["vocab"], f"{where}.vocab", minimum=2),
            n_pairs=v.integer(m["n_pairs"], f"{where}.n_pairs", minimum=1)
            if "n_pairs" in m
            else None,
            alpha=v.number(m["alpha"], f"{where}.alpha", 0.0, math.inf, False)
            if "alpha" in m
            else None,
        )
        if name != "mqar" and (task.n_pairs is not None or task.alpha is not None):
            raise v.fail(where, "`n_pairs` and `alpha` are mqar settings")
        for seq_len in seq_lens:
            if name == "mqar" and task.vocab <= seq_len:
                raise v.fail(
                    f"{where}.vocab",
                    f"vocabulary {task.vocab} is too small for mqar at seq_len {seq_len}: "
                    "it must exceed seq_len",
                )
            try:
                validate_task(task, seq_len)
            except ValueError as exc:
                raise v.fail(where, f"at seq_len {seq_len}: {exc}") from None
        tasks.append(task)
    if len({t.name for t in tasks}) < len(tasks):
        raise v.fail("training.task", "each task may appear once")
    return tuple(tasks)


def _optimizer(v: Validator, value: Any) -> OptimizerSettings:
    keys = ("lr", "betas", "weight_decay", "warmup_fraction", "min_lr_fraction", "grad_clip")
    o = v.mapping(value, "training.optimizer", keys, ())
    d = OptimizerSettings()
    betas = d.betas
    if "betas" in o:
        if not isinstance(o["betas"], list) or len(o["betas"]) != 2:
            raise v.fail("training.optimizer.betas", "expected a list of two numbers in [0, 1)")
        b1, b2 = (
            v.number(b, f"training.optimizer.betas[{i}]", 0.0, 1.0, True)
            for i, b in enumerate(o["betas"])
        )
        betas = (b1, b2)
    clip = o.get("grad_clip", d.grad_clip)
    lr = v.number(o.get("lr", d.lr), "training.optimizer.lr", 0.0, math.inf, False)
    if lr <= 0:
        raise v.fail("training.optimizer.lr", f"expected a number > 0, got {lr}")
    number = lambda key, default, high: v.number(
        o.get(key, default), f"training.optimizer.{key}", 0.0, high, False
    )
    return OptimizerSettings(
        lr=lr,
        betas=betas,
        weight_decay=number("weight_decay", d.weight_decay, math.inf),
        warmup_fraction=number("warmup_fraction", d.warmup_fraction, 1.0),
        min_lr_fraction=number("min_lr_fraction", d.min_lr_fraction, 1.0),
        grad_clip=None if clip is None else number("grad_clip", d.grad_clip, math.inf),
    )


def _settings(v: Validator, value: Any, model: ModelShape) -> tuple[AttentionSetting, ...]:
    if not isinstance(value, list) or not value:
        raise v.fail("training.settings", "expected a non-empty list of attention settings")
    out: list[AttentionSetting] = []
    for i, item in enumerate(value):
        out.extend(_setting(v, item, f"training.settings[{i}]", model))
    labels = [s.label() for s in out]
    for i, label in enumerate(labels):
        if label in labels[:i]:
            raise v.fail("training.settings", f"two settings are labelled {label!r}; add `name`")
    return tuple(out)


def _setting(v: Validator, item: Any, where: str, model: ModelShape) -> list[AttentionSetting]:
    keys = ("impl", "n_buckets", "drop_rate", "lsh", "heads", "name")
    s = v.mapping(item, where, keys, ("impl",))
    impl = v.string(s["impl"], f"{where}.impl")
    known = sorted(n for n in (*PLUGS, REFORMER) if n not in SHARED_QK_PLUGS)
    if impl in SHARED_QK_PLUGS:
        raise v.fail(f"{where}.impl", "use `scfa_hash` / `naive_hash` with shared_qk: true")
    if impl not in known:
        expected = ", ".join(known)
        raise v.fail(f"{where}.impl", f"unknown attention {impl!r}; expected one of: {expected}")
    pattern = "hash" if impl == REFORMER else PLUGS[impl].pattern
    heads = _setting_heads(v, s, where, impl, model)
    axis = {"hash": "n_buckets", "qk": "drop_rate"}.get(pattern)
    for other in ("n_buckets", "drop_rate"):
        if other in s and other != axis:
            raise v.fail(f"{where}.{other}", f"{impl!r} takes no {other}")
    if "lsh" in s and pattern != "hash":
        raise v.fail(f"{where}.lsh", f"{impl!r} hashes nothing: lsh is for hash settings")
    lsh = v.string(s.get("lsh", "per_call"), f"{where}.lsh", LSH_MODES)
    name = v.string(s["name"], f"{where}.name") if "name" in s else None
    if axis is None:
        return [AttentionSetting(impl, name=name, heads=heads)]
    if axis not in s:
        raise v.fail(where, f"{impl!r} needs {axis}")
    raw = s[axis] if isinstance(s[axis], list) else [s[axis]]
    if name is not None and len(raw) > 1:
        raise v.fail(f"{where}.name", "one name cannot label several settings")
    if axis == "n_buckets":
        values = v.seq(raw, f"{where}.n_buckets", v.integer, minimum=2)
        for j, nb in enumerate(values):
            if nb % 2:
                at = f"{where}.n_buckets" + (f"[{j}]" if isinstance(s[axis], list) else "")
                raise v.fail(at, f"LSH buckets need an even count, got {nb}")
        return [
            AttentionSetting(impl, n_buckets=nb, lsh=lsh, name=name, heads=heads) for nb in values
        ]
    rates = v.seq(raw, f"{where}.drop_rate", v.number, low=0.0, high=1.0, high_open=True)
    return [AttentionSetting(impl, drop_rate=p, name=name, heads=heads) for p in rates]


def _setting_heads(
    v: Validator, s: dict[str, Any], where: str, impl: str, model: ModelShape
) -> int | None:
    """The setting's `heads` (None: the model's), checked against what `impl` declares: head
    dims, and heads per KV head for grouped-query methods (NSA)."""
    heads = v.integer(s["heads"], f"{where}.heads", minimum=1) if "heads" in s else None
    count = model.heads if heads is None else heads
    # The path to change: the setting's own heads when it has them, else the model's.
    at = f"{where}.heads" if heads is not None else "training.model.heads"
    if model.d_model % count:
        raise v.fail(at, f"{count} heads do not divide d_model {model.d_model}")
    registered = impl if impl == REFORMER else PLUGS[impl].registered
    if registered is None:
        return heads
    spec = get_spec(registered)
    head_dim = model.d_model // count
    problem = spec.head_dim_problem(head_dim)
    if problem:
        raise v.fail(
            at,
            f"head dim {head_dim} (d_model {model.d_model} / heads {count}): "
            f"{problem} ({where} {impl!r})",
        )
    problem = spec.heads_problem(count)
    if problem:
        raise v.fail(
            f"{where}.heads",
            f"{problem} (the model has {model.heads}): give this setting `heads: "
            f"{spec.heads_multiple}` or another multiple dividing d_model {model.d_model}",
        )
    return heads


def training_suite(v: Validator, data: dict[str, Any]) -> Suite:
    """A suite with a `training` section."""
    import re

    training = parse_training(v, data)
    name = v.string(data["name"], "name")
    if not re.match(r"^[A-Za-z0-9_.-]+$", name):
        raise v.fail("name", f"expected letters, digits, '_', '-' or '.' only, got {name!r}")
    impls = tuple(dict.fromkeys(s.impl for s in training.settings))
    return Suite(
        name=name,
        description=v.string(data.get("description", ""), "description"),
        shape=None,
        sweep=Sweep(seq_len=training.seq_len),
        implementations=impls,
        baseline=None,
        modes=(),
        check=False,
        device=v.string(data.get("device", "auto"), "device", DEVICES),
        training=training,
        split_groups=False,
    )


__all__ = ["TOP_KEYS", "parse_training", "training_suite"]
