"""The repository stands alone: no tracked file points at notes that do not ship
with it. Tuning logs under results/ are raw output and exempt."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Built from parts so this file does not match itself.
_NAMES = ("DESIGN", "KINDS", "METHOD", "HOPPER")
FORBIDDEN = re.compile(
    "|".join(re.escape(n + ".md") for n in _NAMES) + "|" + re.escape("../" + "shared")
)


def tracked_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip(f"{ROOT} is not a git checkout")
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    return [
        name
        for name in listing.split("\0")
        if name and not name.startswith("results/tuning/") and not name.endswith(".log")
    ]


def offending_lines(names: list[str]) -> list[str]:
    hits = []
    for name in names:
        path = ROOT / name
        if not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if FORBIDDEN.search(line):
                hits.append(f"{name}:{number}: {line.strip()[:120]}")
    return hits


def test_pattern_matches_what_it_must() -> None:
    examples = [f"see {n}.md." for n in _NAMES] + ["(`../" + "shared/anchors`)"]
    for text in examples:
        assert FORBIDDEN.search(text), text
    assert not FORBIDDEN.search("ARCHITECTURE.md README.md shared memory")


def test_no_tracked_file_points_outside_the_repository() -> None:
    names = tracked_files()
    assert len(names) > 50  # the listing really covers the repository
    assert offending_lines(names) == []
