"""Checkpoints of one training unit (setting, data, seq_len, seed): everything a resumed run
needs to continue exactly as the uninterrupted one would have (model, optimizer, schedule,
random states, step, training seconds so far). Written atomically: a kill mid-write leaves
the previous checkpoint. A finished unit keeps only a small marker."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

import torch


def checkpoint_name(setting: str, task: str, seq_len: int, seed: int) -> str:
    """A file name for one unit: `scfa_hash-nb-8_corpus_T8192_s0.pt`."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", setting).strip("-")
    return f"{slug}_{task}_T{seq_len}_s{seed}.pt"


def random_states(device: str) -> dict[str, Any]:
    states: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device == "cuda":
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def restore_random_states(states: dict[str, Any], device: str) -> None:
    torch.set_rng_state(states["cpu"])
    if device == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"])


def save(path: Path, state: dict[str, Any]) -> None:
    """Replace `path` with `state` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def load(path: Path, device: str) -> dict[str, Any] | None:
    """The checkpoint at `path`, or None when there is none."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location=device, weights_only=True)
    # RNG states must be CPU byte tensors whatever map_location did.
    if "rng" in state:
        state["rng"] = {k: v.cpu() for k, v in state["rng"].items()}
    return state


__all__ = ["checkpoint_name", "load", "random_states", "restore_random_states", "save"]
