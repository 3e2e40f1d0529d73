"""Print a short table of quality (training-suite) CSVs: per setting, task and seq_len, the last
evaluation averaged over seeds (val loss, bits per byte, accuracy, training seconds, steps,
statuses), and the time dense needed against each setting's.

    python tools/quality_summary.py RUN_DIR_OR_CSV [...] [--strict]

--strict exits 1 when a row is not `ok` or a final val loss is not finite (the sanity check).
--agree A B exits 1 unless settings A and B (two dense attentions: they must compute the same
model) have val losses within 2% of each other at every evaluation of every CSV.
--repeat FIRST.csv SECOND.csv: the same suite run twice with the same seeds; per setting and
seed, how far the final val loss moved against that setting's seed spread in the first run;
exits 1 when a move is larger than the spread.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from pathlib import Path

from scfa_bench.results.quality_rows import QualityRow, read_quality_rows


def _csvs(args: list[str]) -> list[Path]:
    found: list[Path] = []
    for arg in args:
        path = Path(arg)
        # Shard parts (`<suite>.parts/`) are summarised through their merged CSV.
        inside = sorted(p for p in path.rglob("*.csv") if ".parts" not in p.parent.as_posix())
        found += inside if path.is_dir() else [path]
    return found


def _summary(path: Path) -> tuple[list[str], bool]:
    rows = read_quality_rows(path)
    last: dict[tuple, QualityRow] = {}
    for row in rows:
        last[row.unit()] = row
    groups: dict[tuple, list[QualityRow]] = defaultdict(list)
    for (setting, task, seq_len, _seed), row in last.items():
        groups[(task, seq_len, setting)].append(row)
    lines = [f"== {path} ({len(rows)} rows)"]
    head = f"{'task':8} {'T':>6} {'setting':22} {'seeds':>5} {'step':>5} {'val_loss':>8} "
    head += f"{'bpb':>6} {'acc':>6} {'train_s':>8} {'Mtok/s':>6} {'dense_s/s':>9} status"
    lines.append(head)
    ok = True
    for (task, seq_len, setting), group in sorted(groups.items()):
        mean = lambda xs: sum(xs) / len(xs) if xs else math.nan
        losses = [r.val_loss for r in group if r.val_loss is not None]
        bpbs = [r.val_bpb for r in group if r.val_bpb is not None]
        accs = [r.val_accuracy for r in group if r.val_accuracy is not None]
        secs = mean([r.train_seconds for r in group])
        dense = [g for k, g in groups.items() if k[:2] == (task, seq_len) and k[2] == "dense"]
        ratio = mean([r.train_seconds for r in dense[0]]) / secs if dense and secs else math.nan
        speed = mean([r.tokens / r.train_seconds / 1e6 for r in group if r.train_seconds > 0])
        statuses = ",".join(sorted({r.status for r in group}))
        ok &= statuses == "ok" and len(losses) == len(group) and all(map(math.isfinite, losses))
        lines.append(
            f"{task:8} {seq_len:>6} {setting[:22]:22} {len(group):>5} "
            f"{max(r.step for r in group):>5} {mean(losses):>8.4f} {mean(bpbs):>6.3f} "
            f"{mean(accs):>6.3f} {secs:>8.1f} {speed:>6.2f} {ratio:>9.2f} {statuses}"
        )
    return lines, ok


def _agree(path: Path, a: str, b: str) -> bool:
    """Settings a and b evaluate within 2% of each other at every (task, T, seed, step)."""
    losses: dict[tuple, dict[str, float]] = defaultdict(dict)
    for row in read_quality_rows(path):
        if row.setting in (a, b) and row.val_loss is not None:
            losses[(row.task, row.seq_len, row.seed, row.step)][row.setting] = row.val_loss
    pairs = [(key, v) for key, v in sorted(losses.items()) if len(v) == 2]
    ok = bool(pairs)
    for key, v in pairs:
        gap = abs(v[a] - v[b]) / max(abs(v[b]), 1e-9)
        ok &= gap <= 0.02
        print(f"agree {a!r} vs {b!r} at {key}: {v[a]:.4f} vs {v[b]:.4f} ({gap:.2%})")
    return ok


def _repeat(first: Path, second: Path) -> bool:
    from scfa_bench.analysis.quality_frame import read_quality
    from scfa_bench.analysis.quality_summary import repeat_differences

    found = repeat_differences(read_quality(first), read_quality(second))
    for d in found:
        spread = "-" if d.seed_spread is None else f"{d.seed_spread:.4f}"
        verdict = {True: "within", False: "OUTSIDE", None: "no spread"}[d.within_seed_noise]
        print(
            f"repeat {d.experiment} | {d.setting} seed {d.seed}: {d.first:.4f} -> {d.second:.4f}"
            f" (moved {d.difference:.4f}, seed spread {spread}: {verdict})"
        )
    return bool(found) and all(d.within_seed_noise is not False for d in found)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--repeat"] and len(argv) == 3:
        ok = _repeat(Path(argv[1]), Path(argv[2]))
        print("repeat: every move within its seed spread" if ok else "FAIL: repeat")
        return 0 if ok else 1
    strict = "--strict" in argv
    agree: tuple[str, str] | None = None
    if "--agree" in argv:
        i = argv.index("--agree")
        agree = (argv[i + 1], argv[i + 2])
        argv = argv[:i] + argv[i + 3 :]
    paths = _csvs([a for a in argv if a != "--strict"])
    if not paths:
        print("no quality CSV found")
        return 1
    all_ok = True
    for path in paths:
        lines, ok = _summary(path)
        all_ok &= ok
        print("\n".join(lines))
    if strict and not all_ok:
        print("FAIL: a row is not ok or a final loss is not finite")
        return 1
    if agree is not None and not all(_agree(p, *agree) for p in paths):
        print(f"FAIL: {agree[0]!r} and {agree[1]!r} do not agree within 2%")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
