"""Which cards a local multi-GPU run uses: `--gpus all | N | 0,2` as CUDA_VISIBLE_DEVICES
values, one per worker."""

from __future__ import annotations

import os
from collections.abc import Sequence

from scfa_bench.errors import InputError


def visible_gpus() -> list[str]:
    """Cards this process may use, as CUDA_VISIBLE_DEVICES entries."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def resolve_gpus(spec: str, visible: Sequence[str] | None = None) -> list[str]:
    """`all` | `N` | `0,2` -> the CUDA_VISIBLE_DEVICES value of each worker.

    Listed ids count within the cards visible to this process (as `cuda:I` does). Where no
    card is visible, listed ids are passed through unchecked: the workers then run on the CPU
    (tests use this to stand in for cards)."""
    visible = list(visible_gpus() if visible is None else visible)
    text = spec.strip()
    if text == "all":
        if not visible:
            raise InputError("--gpus all: no GPU is visible (CUDA_VISIBLE_DEVICES / torch)")
        return visible
    if text.isdigit():
        count = int(text)
        if count < 1 or count > len(visible):
            raise InputError(f"--gpus {text}: {len(visible)} GPU(s) visible, need 1..{count}")
        return visible[:count]
    ids = [t.strip() for t in text.split(",")]
    if not ids or not all(t.isdigit() for t in ids) or len(set(ids)) != len(ids):
        raise InputError(f"--gpus: expected all, a count or distinct ids like 0,2; got {spec!r}")
    if not visible:
        return ids
    bad = [t for t in ids if int(t) >= len(visible)]
    if bad:
        raise InputError(f"--gpus {spec}: {len(visible)} GPU(s) visible, no id {', '.join(bad)}")
    return [visible[int(t)] for t in ids]
