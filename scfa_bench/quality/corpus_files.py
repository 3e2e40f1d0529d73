"""Reading a corpus's files from disk: the standard library's `.py` tree (read once per
process), a folder tree, uint16 token files; the cap to `max_bytes`, the split by file and the
fingerprint digest. Knows nothing of batches.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

_SKIPPED_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__"})

Files = tuple[tuple[str, bytes], ...]


class CorpusError(ValueError):
    """A corpus that cannot be used: missing, empty, too small, or a bad setting."""


def goes_to_val(name: str, val_fraction: float) -> bool:
    """The split of one file (or token block): a hash of its name, independent of every other."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < val_fraction


@functools.lru_cache(maxsize=2)
def stdlib_files(root: str) -> Files:
    """The standard library is read once per process (about 30 MB); it does not change."""
    return read_tree(Path(root), python_only=True)


def read_tree(root: Path, *, python_only: bool) -> Files:
    """(relative posix path, bytes) of every file under `root`, sorted by path. Hidden files and
    folders are skipped; for the standard library also installed packages and non-.py files."""
    found: list[tuple[str, Path]] = []
    for folder, dirs, names in os.walk(root):
        skipped = _SKIPPED_DIRS if python_only else frozenset()
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in skipped]
        for name in names:
            if name.startswith(".") or (python_only and not name.endswith(".py")):
                continue
            path = Path(folder, name)
            if path.is_file():
                found.append((path.relative_to(root).as_posix(), path))
    found.sort()
    return tuple((rel, _read(path)) for rel, path in found)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CorpusError(f"corpus file {path}: cannot read ({exc.strerror or exc})") from exc


def split_files(
    files: Files, val_fraction: float, max_bytes: int | None, where: str
) -> tuple[Files, Files]:
    """(train files, val files), each in path order; with `max_bytes`, each split keeps its share
    of it (val `val_fraction` of it) from its first files, the last kept file cut."""
    train = tuple(f for f in files if not goes_to_val(f[0], val_fraction))
    val = tuple(f for f in files if goes_to_val(f[0], val_fraction))
    if max_bytes is not None:
        val_bytes = max(round(max_bytes * val_fraction), 1)
        train, val = _cap(train, max(max_bytes - val_bytes, 1)), _cap(val, val_bytes)
    if not train or not val:
        raise CorpusError(
            f"corpus {where}: too small, its {len(files)} file(s) leave the "
            f"{'train' if not train else 'val'} split empty (val_fraction {val_fraction}); "
            "use a folder with more files"
        )
    return train, val


def _cap(files: Files, max_bytes: int) -> Files:
    kept: list[tuple[str, bytes]] = []
    left = max_bytes
    for rel, data in files:
        if left <= 0:
            break
        kept.append((rel, data[:left]))
        left -= len(kept[-1][1])
    return tuple(kept)


def digest(files: Files) -> dict[str, Any]:
    """Count, size and a hash over every file's path, length and bytes, in path order."""
    sha = hashlib.sha256()
    for rel, data in sorted(files):
        sha.update(f"{rel}\0{len(data)}\0".encode())
        sha.update(data)
    return {"files": len(files), "bytes": sum(len(d) for _, d in files), "sha256": sha.hexdigest()}


def read_tokens(path: Path, limit: int | None, vocab: int) -> np.ndarray:
    size = path.stat().st_size
    if size % 2:
        raise CorpusError(f"token file {path}: {size} bytes, not a whole number of uint16 tokens")
    tokens = np.fromfile(path, dtype="<u2", count=-1 if limit is None else limit)
    if tokens.size == 0:
        raise CorpusError(f"token file {path}: empty")
    if int(tokens.max()) >= vocab:
        raise CorpusError(f"token file {path}: holds token id {int(tokens.max())} >= vocab {vocab}")
    return tokens
