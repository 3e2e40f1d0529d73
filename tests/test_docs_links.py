"""The documents a newcomer reads: every relative link in README.md and docs/*.md points at a
file git tracks (a git-ignored report would be a dead link on a fresh clone), and the README
stays a five-minute read."""

from __future__ import annotations

import posixpath
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_README_LINES = 200
# [text](target) and [text](target "title"); images too. Reference-style links are not used.
_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)


def _tracked() -> set[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    return {name for name in out.decode().split("\0") if name}


def relative_links(markdown: str) -> list[str]:
    """The relative link targets of a Markdown text, anchors cut off; code spans ignored."""
    targets = []
    for target in _LINK.findall(_CODE.sub("", markdown)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http:, mailto:, ... or an anchor in the same page
        targets.append(target.split("#", 1)[0])
    return targets


def dead_links(document: str, markdown: str, tracked: set[str]) -> list[str]:
    """Links of `document` (a path relative to the root) that resolve to no tracked file or
    folder holding one."""
    folders = {posixpath.dirname(name) for name in tracked}
    folders |= {f for name in folders for f in _parents(name)}
    dead = []
    for target in relative_links(markdown):
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(document), target))
        if resolved not in tracked and resolved.rstrip("/") not in folders:
            dead.append(f"{document}: {target}")
    return dead


def _parents(folder: str) -> list[str]:
    parts = folder.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _documents() -> list[str]:
    return ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]


def test_every_relative_link_resolves_to_a_tracked_file() -> None:
    tracked = _tracked()
    dead = []
    for document in _documents():
        dead += dead_links(document, (ROOT / document).read_text(encoding="utf-8"), tracked)
    assert not dead, "links to files git does not track:\n" + "\n".join(dead)


def test_the_checker_finds_an_ignored_or_missing_target() -> None:
    tracked = {"README.md", "docs/cli.md", "reports/h100/hash/README.md"}
    text = (
        "[a](docs/cli.md#run) [b](reports/h200/hash/README.md) [c](https://example.org/x.md) "
        "[d](#set-up) [e](reports/h100/hash/) `[f](nowhere.md)`"
    )
    assert dead_links("README.md", text, tracked) == ["README.md: reports/h200/hash/README.md"]
    assert dead_links("docs/cli.md", "[up](../README.md) [x](results.md)", tracked) == [
        "docs/cli.md: results.md"
    ]


def test_the_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move reference to docs/"
