"""The one rule for a run's new file names: `<out>/<name>-<YYYYmmdd-HHMMSS><tail>` plus a
counter when a file of that stem already exists (two runs started in the same second)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path


def stamp() -> str:
    """Local time as the file names carry it."""
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def stamped_stem(out_dir: Path, name: str, suffixes: Sequence[str], tail: str = "") -> Path:
    """`out_dir / stem`, free for every suffix in `suffixes` (`.csv`, `.parts`). A counter goes
    before `tail`, so `-shard-I-of-N` stays the end of a part's name (`merge` looks for it)."""
    base = f"{name}-{stamp()}"
    stem, counter = f"{base}{tail}", 1
    while any((out_dir / f"{stem}{suffix}").exists() for suffix in suffixes):
        stem, counter = f"{base}-{counter}{tail}", counter + 1
    return out_dir / stem


def new_csv_path(out_dir: Path, name: str, tail: str = "") -> Path:
    """`<out>/<name>-<stamp><tail>.csv`, a name no file has yet."""
    stem = stamped_stem(out_dir, name, (".csv",), tail)
    return stem.with_name(stem.name + ".csv")
