"""Committed baselines against the kernels in this tree: the CI gate's baseline must have been
measured on exactly these kernels (a kernel change re-records it), and every other committed
run either was too or is listed here as history (docs/results.md marks runs of older kernels)."""

from __future__ import annotations

import json
from pathlib import Path

from scfa_bench.constants import HOPPER_OFF
from scfa_bench.measure.envinfo import hopper_kernels_hash, kernels_hash

ROOT = Path(__file__).resolve().parents[3]
BASELINES = ROOT / "results" / "baselines"
# Runs of older kernels kept as history (docs/results.md lists or marks them), by
# path under results/baselines without the suffix. A suite may have both: a history run on one
# card and a current one on another.
HISTORY = {
    "h100/dense_parity-20261126-185823",
    "h100/dense_parity-20261128-031754",
    "h100/dense_parity_d128-20261128-032000",
    "h100/e2e-20261127-154813",
    "h100/e2e_graphs-20261128-030849",
    "h100/e2e_targets-20261127-191838",
    "h100/e2e_targets-20261127-223905",
    "h100/hash-20261127-192454",
    "h100/hash-20261127-224505",
    "h100/hash_baselines-20261127-032813",
    "h100/hash_d128-20261126-190341",
    "h100/hash_d128-20261127-225052",
    "h100/qk-20261127-192920",
    "h100/qk-20261127-224831",
    "h100/qk_baselines-20261127-033045",
    "h100/qk_d128-20261126-190615",
    "h100/qk_d128-20261127-225341",
    "h200/dense_parity-20261127-190858",
    "h200/e2e-20261128-042613",
    "h200/hash-20261127-190647",
    "h200/hash_baselines-20261128-043611",
    "h200/hash_d128-20261127-190740",
    "h200/qk-20261127-190611",
    "h200/qk_baselines-20261128-043611",
    "h200/qk_d128-20261127-190549",
}


def _metas() -> dict[Path, dict]:
    return {p: json.loads(p.read_text()) for p in sorted(BASELINES.rglob("*.meta.json"))}


def test_gate_baseline_was_measured_on_these_kernels() -> None:
    current = kernels_hash(ROOT / "kernels")
    meta = json.loads((BASELINES / "ci" / "h100-ci.meta.json").read_text())
    assert meta.get("kernels_hash") == current, (
        "results/baselines/ci/h100-ci.csv was measured on other kernels: re-record it on a GPU "
        "(scfa-bench run suites/ci.yaml) after any kernel change"
    )
    # The opt-in Hopper path: either the gate did not take it, or it took these kernels.
    hopper = meta.get("hopper_kernels_hash", HOPPER_OFF)
    assert hopper in (HOPPER_OFF, hopper_kernels_hash(ROOT / "kernels")), (
        "results/baselines/ci/h100-ci.csv took another Hopper path: re-record it"
    )


def test_other_baselines_are_current_or_listed_as_history() -> None:
    current = kernels_hash(ROOT / "kernels")
    metas = _metas()
    assert metas, f"no committed baselines under {BASELINES}"
    stems = {str(p.relative_to(BASELINES)).removesuffix(".meta.json") for p in metas}
    assert HISTORY <= stems, f"listed as history but not committed: {sorted(HISTORY - stems)}"
    for path, meta in metas.items():
        name = meta.get("suite_name")
        if str(path.relative_to(BASELINES)).removesuffix(".meta.json") in HISTORY:
            assert meta.get("kernels_hash") != current, (
                f"{path.name} is current: take it off HISTORY"
            )
        else:
            assert meta.get("kernels_hash") == current, (
                f"{path.name} ({name}) was measured on other kernels: re-record it, or list it "
                "as history here"
            )
