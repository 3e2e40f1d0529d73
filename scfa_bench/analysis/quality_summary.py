"""The numbers of the quality report: per setting, its final value over seeds, its difference
from dense with the seed interval, and its time-to-quality speedup over dense.

Definitions (written once, here):
- a run is one (setting, seed); its final value is its last evaluation's, and a run whose last
  evaluation is not `ok` (diverged, oom, ...) has none.
- the difference from dense is mean(setting's finals) - mean(dense's finals); its seed interval
  is the range of (setting final - dense final) over every pair of a setting seed and a dense
  seed, so it holds the seed-to-seed spread of both. "Inside seed noise" when it contains 0.
- time-to-quality, per seed s: dense's final val loss L is the target; dense's time is the
  train_seconds of its first evaluation at or below L, the setting's the same on its own run with
  seed s ("not reached" when none is). The speedup is dense's time / the setting's; the summary
  is the mean over seeds with their min..max.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scfa_bench.analysis.quality_frame import DENSE_SETTING, experiments, ok_rows, primary_metric

HIGHER_IS_BETTER = frozenset({"val_accuracy"})


@dataclass(frozen=True)
class SettingSummary:
    setting: str
    metric: str
    finals: dict[int, float]  # seed -> final value of the metric
    final_losses: dict[int, float]  # seed -> final val loss
    failed: dict[int, str]  # seed -> status of a run that did not end ok
    diff: float | None  # mean final - dense's mean final
    diff_interval: tuple[float, float] | None  # over seed pairs; None with a single pair
    speedups: dict[int, float | None]  # seed -> time-to-quality speedup, None: not reached

    @property
    def final(self) -> float | None:
        return float(np.mean(list(self.finals.values()))) if self.finals else None

    @property
    def inside_noise(self) -> bool | None:
        if self.diff_interval is None:
            return None
        return self.diff_interval[0] <= 0.0 <= self.diff_interval[1]

    @property
    def verdict(self) -> str:
        """'inside seed noise', 'better', 'worse', or why there is no verdict."""
        if self.setting == DENSE_SETTING:
            return "reference"
        if not self.finals:
            return "no run ended ok"
        if self.diff is None:
            return "no dense run to compare"
        if self.inside_noise is None:
            return "one seed: no interval"
        if self.inside_noise:
            return "inside seed noise"
        lower = self.diff < 0
        return "better" if lower != (self.metric in HIGHER_IS_BETTER) else "worse"


def summarise(rows: pd.DataFrame) -> list[SettingSummary]:
    """One summary per setting of one experiment's rows; dense first, then by name."""
    metric = primary_metric(rows)
    runs = {setting: _runs(group, metric) for setting, group in rows.groupby("setting")}
    dense = runs.get(DENSE_SETTING)
    dense_rows = rows[rows["setting"] == DENSE_SETTING]
    order = sorted(runs, key=lambda s: (s != DENSE_SETTING, s))
    summaries = []
    for setting in order:
        finals, losses, failed = runs[setting]
        diff = interval = None
        speedups: dict[int, float | None] = {}
        if dense is not None and dense[0]:
            # A run that failed still has a time-to-quality (reached before it failed, or not).
            speedups = _speedups(dense_rows, dense[1], rows[rows["setting"] == setting])
            if finals:
                diff = float(np.mean(list(finals.values())) - np.mean(list(dense[0].values())))
                pairs = [a - b for a in finals.values() for b in dense[0].values()]
                interval = (min(pairs), max(pairs)) if len(pairs) > 1 else None
        summaries.append(
            SettingSummary(setting, metric, finals, losses, failed, diff, interval, speedups)
        )
    return summaries


def _runs(group: pd.DataFrame, metric: str) -> tuple[dict[int, float], dict[int, float], dict]:
    """(seed -> final metric, seed -> final loss, seed -> failing status) of one setting."""
    finals: dict[int, float] = {}
    losses: dict[int, float] = {}
    failed: dict[int, str] = {}
    for seed, run in group.groupby("seed"):
        last = run.sort_values("step", kind="stable").iloc[-1]
        if last["status"] != "ok" or pd.isna(last["val_loss"]) or pd.isna(last[metric]):
            failed[int(seed)] = str(last["status"])
        else:
            finals[int(seed)] = float(last[metric])
            losses[int(seed)] = float(last["val_loss"])
    return finals, losses, failed


def _speedups(
    dense_rows: pd.DataFrame, dense_losses: dict[int, float], setting_rows: pd.DataFrame
) -> dict[int, float | None]:
    """Per seed both ran (and dense ended ok): dense's time to its final loss / the setting's."""
    speedups: dict[int, float | None] = {}
    for seed, target in sorted(dense_losses.items()):
        own = setting_rows[setting_rows["seed"] == seed]
        if ok_rows(own).empty:  # never evaluated (unavailable, oom at once): nothing to time
            continue
        dense_time = time_to_loss(dense_rows[dense_rows["seed"] == seed], target)
        setting_time = time_to_loss(own, target)
        if dense_time is None or setting_time is None or setting_time <= 0:
            speedups[seed] = None
        else:
            speedups[seed] = dense_time / setting_time
    return speedups


def time_to_loss(run: pd.DataFrame, target: float) -> float | None:
    """train_seconds of a run's first ok evaluation at or below `target`; None if none is."""
    ok = ok_rows(run).sort_values("step", kind="stable")
    reached = ok[ok["val_loss"] <= target]
    return None if reached.empty else float(reached["train_seconds"].iloc[0])


def speedup_text(speedups: dict[int, float | None]) -> str:
    """'1.50x (1.40-1.60)' over seeds; 'not reached' when no seed reached dense's loss; the
    seeds that did not reach it named when only some did."""
    if not speedups:
        return "-"
    reached = {s: v for s, v in speedups.items() if v is not None}
    if not reached:
        return "not reached"
    values = list(reached.values())
    text = f"{np.mean(values):.2f}x"
    if len(values) > 1:
        text += f" ({min(values):.2f}-{max(values):.2f})"
    missed = sorted(s for s, v in speedups.items() if v is None)
    if missed:
        text = f"not reached (seed {', '.join(map(str, missed))}); seed {_seeds(reached)}: {text}"
    return text


def spread_text(values: list[float], digits: int = 4) -> str:
    """Mean over seeds, with min-max when there are several; '-' for none."""
    if not values:
        return "-"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def interval_text(bounds: tuple[float, float], digits: int = 4) -> str:
    return f"[{bounds[0]:+.{digits}f}, {bounds[1]:+.{digits}f}]"


def _seeds(values: dict[int, float]) -> str:
    return ", ".join(str(s) for s in sorted(values))


@dataclass(frozen=True)
class RepeatDifference:
    """One (experiment, setting, seed) trained in two runs: how far its final val loss moved,
    against the seed spread of that setting in the first run (max - min over its seeds)."""

    experiment: str
    setting: str
    seed: int
    first: float
    second: float
    seed_spread: float | None  # None with a single seed: nothing to compare with

    @property
    def difference(self) -> float:
        return abs(self.second - self.first)

    @property
    def within_seed_noise(self) -> bool | None:
        return None if self.seed_spread is None else self.difference <= self.seed_spread


def repeat_differences(first: pd.DataFrame, second: pd.DataFrame) -> list[RepeatDifference]:
    """Every run (setting, seed) of each experiment that ended ok in both frames."""
    again = dict(experiments(second))
    found = []
    for title, rows in experiments(first):
        if title not in again:
            continue
        before = {s: _runs(g, "val_loss")[1] for s, g in rows.groupby("setting")}
        after = {s: _runs(g, "val_loss")[1] for s, g in again[title].groupby("setting")}
        for setting, losses in sorted(before.items()):
            values = list(losses.values())
            spread = max(values) - min(values) if len(values) > 1 else None
            for seed, loss in sorted(losses.items()):
                other = after.get(setting, {}).get(seed)
                if other is not None:
                    found.append(RepeatDifference(title, setting, seed, loss, other, spread))
    return found
