"""Where our fwd+bwd loses to the limit, per point: a developer tool for docs/performance-notes.md.

    python tools/limit_breakdown.py PROFILE_DIR [PROFILE_DIR ...] --out FILE.md

Reads the per-kernel CSVs and stage tables that `scfa-bench profile ... --mode fwd+bwd` writes
for our kernels (`scfa_hash_*`, `scfa_qk_*`) and for the limits (`limit_hash_*`, `limit_qk_*`)
at the same points, and prints one row per point:
* the measured call times and their ratio (the fraction of limit),
* our plan (sort and tile ranges), forward kernel and backward kernels (delta, dK/dV, dQ and
  their merges), against the limit's forward and backward kernels, and the rate of each
  (limit ms / ours: 1.0 means our kernel does its share of the work as fast as cuDNN),
* the call time not covered by kernels (host-paced or idle GPU time).
The limit's kernels are told apart by cuDNN's names: `fprop` is its forward; `bprop`, the
`dot_do_o` pre-pass and `convert_dq` its backward. A folder's head dim is read from its name
(`d128` in it: 128, else 64).
"""

from __future__ import annotations

import argparse
import csv
import re
from dataclasses import dataclass
from pathlib import Path

_NAME = re.compile(r"^(scfa|limit)_(hash|qk)_T(\d+)_(.+)_fwd-bwd\.csv$")
_CALL = re.compile(r"Measured call time ([\d.]+) ms")
LIMIT_FWD = ("fprop",)
LIMIT_BWD = ("bprop", "dot_do_o", "convert_dq")


@dataclass(frozen=True)
class Profiled:
    """One profiled call: milliseconds per call by part, and the measured call time."""

    parts: dict[str, float]
    call_ms: float | None

    @property
    def kernels_ms(self) -> float:
        return sum(self.parts.values())


def part_of(kind: str, kernel: str, stage: str) -> str:
    """plan / fwd / bwd / other for our kernels (by stage), fwd / bwd / other for the limit's."""
    if kind == "limit":
        name = kernel.lower()
        if any(part in name for part in LIMIT_FWD):
            return "fwd"
        if any(part in name for part in LIMIT_BWD):
            return "bwd"
        return "other"
    for prefix, part in (("plan", "plan"), ("forward", "fwd"), ("backward", "bwd")):
        if stage.startswith(prefix):
            return part
    return "other"


def read_profile(csv_path: Path, kind: str) -> Profiled:
    parts: dict[str, float] = {}
    with csv_path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            part = part_of(kind, row["kernel"], row["stage"])
            parts[part] = parts.get(part, 0.0) + float(row["total_us"]) / 1e3
    stage_table = csv_path.with_suffix(".md")
    match = _CALL.search(stage_table.read_text(encoding="utf-8")) if stage_table.exists() else None
    return Profiled(parts, float(match.group(1)) if match else None)


def collect(folders: list[Path]) -> dict[tuple, dict[str, Profiled]]:
    """(pattern, head dim, T, axis label) -> {"scfa": ..., "limit": ...}."""
    points: dict[tuple, dict[str, Profiled]] = {}
    for folder in folders:
        head_dim = 128 if "d128" in folder.name else 64
        for path in sorted(folder.glob("*_fwd-bwd.csv")):
            match = _NAME.match(path.name)
            if match is None:
                continue
            kind, pattern, seq_len, axis = match.groups()
            key = (pattern, head_dim, int(seq_len), axis)
            points.setdefault(key, {})[kind] = read_profile(path, kind)
    return points


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _rate(limit: float | None, ours: float | None) -> str:
    return "" if not limit or not ours else f"{limit / ours:.2f}"


def table(points: dict[tuple, dict[str, Profiled]]) -> str:
    header = (
        "| pattern | D | T | point | ours ms | limit ms | fraction | plan ms | fwd ms (limit) "
        "| fwd rate | bwd ms (limit) | bwd rate | not kernels ms |"
    )
    lines = [header, "|" + "---|" * 13]
    for key in sorted(points, key=lambda k: (k[0], k[1], k[2], k[3])):
        pair = points[key]
        if "scfa" not in pair or "limit" not in pair:
            continue
        ours, limit = pair["scfa"], pair["limit"]
        pattern, head_dim, seq_len, axis = key
        uncovered = None if ours.call_ms is None else ours.call_ms - ours.kernels_ms
        lines.append(
            f"| {pattern} | {head_dim} | {seq_len} | {axis} | {_ms(ours.call_ms)} "
            f"| {_ms(limit.call_ms)} | {_rate(limit.call_ms, ours.call_ms)} "
            f"| {_ms(ours.parts.get('plan'))} "
            f"| {_ms(ours.parts.get('fwd'))} ({_ms(limit.parts.get('fwd'))}) "
            f"| {_rate(limit.parts.get('fwd'), ours.parts.get('fwd'))} "
            f"| {_ms(ours.parts.get('bwd'))} ({_ms(limit.parts.get('bwd'))}) "
            f"| {_rate(limit.parts.get('bwd'), ours.parts.get('bwd'))} "
            f"| {'' if uncovered is None else f'{max(uncovered, 0.0):.3f}'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    text = table(collect(args.folders))
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
