#!/usr/bin/env bash
# Multi-GPU check on a machine with two or more GPUs: run a suite on every GPU
# (`scfa-bench run SUITE --gpus all`) and on one GPU, report both wall times and the speedup,
# and check that the merged CSV holds exactly the rows of the one-GPU run (same keys, same
# statuses). Both runs start from empty Triton and Inductor caches, so neither inherits the
# other's compiled kernels. Logs and CSVs go under $OUT (default: a new temporary folder).
#
#   tools/gpu_multi_check.sh [SUITE]        # SUITE defaults to suites/hash.yaml
#
# PHASES (default "multi one compare") runs part of it, in the order given, so that the two
# runs can go in separate sessions of a machine with a time limit per command: each run leaves
# its wall time in $out/<name>.seconds, and `compare` reads both. Keep OUT the same across the
# calls. MULTI_ARGS adds options to the --gpus run (PHASES="one multi compare"
# MULTI_ARGS="--cost-from <the one-GPU CSV>" balances its shards by measured times).
#
# Exit 0: same rows and at least 1.8x faster; 1: the rows differ or a run failed; 3: same rows
# but below 1.8x.
set -euo pipefail
cd "$(dirname "$0")/.."

suite="${1:-suites/hash.yaml}"
out="${OUT:-$(mktemp -d)}"
mkdir -p "$out"
log="$out/gpu_multi_check.log"
exec > >(tee -a "$log") 2>&1

gpus=$(nvidia-smi -L | tee "$out/nvidia-smi-L.txt" | wc -l)
echo "suite $suite, $gpus GPU(s), revision ${SCFA_BENCH_GIT_REV:-$(git rev-parse --short HEAD 2>/dev/null || echo n/a)}"
cat "$out/nvidia-smi-L.txt"
if [ "$gpus" -lt 2 ]; then
    echo "FAIL: needs at least two GPUs"
    exit 1
fi

timed_run() {  # name, then the command; prints the wall seconds
    local name=$1
    shift
    mkdir -p "$out/$name"
    local start end rc=0
    start=$(date +%s.%N)
    TRITON_CACHE_DIR="$out/cache-$name/triton" TORCHINDUCTOR_CACHE_DIR="$out/cache-$name/inductor" \
        "$@" >"$out/$name.log" 2>&1 || rc=$?
    end=$(date +%s.%N)
    echo "$name: exit $rc, $(python -c "print(f'{$end - $start:.1f}')") s ($out/$name.log)" >&2
    python -c "print(f'{$end - $start:.3f}')"
    # exit 1 = some rows incorrect/error: still comparable; anything else is a failed run
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ]; then
        echo "FAIL: $name run exited $rc; last lines of its log:" >&2
        tail -20 "$out/$name.log" >&2
        exit 1
    fi
}

phases="${PHASES:-multi one compare}"
has_phase() { [[ " $phases " == *" $1 "* ]]; }

first_gpu=$(nvidia-smi --query-gpu=index --format=csv,noheader | awk 'NR == 1 { gsub(/ /, ""); print }')
if [ -z "$first_gpu" ]; then
    echo "FAIL: nvidia-smi lists no GPU index"
    exit 1
fi
run_multi() {
    # MULTI_ARGS: more options for the --gpus run, e.g. "--cost-from <an earlier CSV>"
    # shellcheck disable=SC2086
    timed_run multi scfa-bench run "$suite" --gpus all --out "$out/multi" --no-progress \
        ${MULTI_ARGS:-} >"$out/multi.seconds"
}
run_one() {
    timed_run one env CUDA_VISIBLE_DEVICES="$first_gpu" \
        scfa-bench run "$suite" --out "$out/one" --no-progress >"$out/one.seconds"
}
# The runs go in the order PHASES names them ("one multi" lets the --gpus run balance its
# shards by the one-GPU run's times: MULTI_ARGS="--cost-from ...").
for phase in $phases; do
    case "$phase" in
        multi) run_multi ;;
        one) run_one ;;
        compare) ;;
        *)
            echo "FAIL: unknown phase $phase (multi, one, compare)"
            exit 1
            ;;
    esac
done
has_phase compare || exit 0
for name in multi one; do
    if [ ! -s "$out/$name.seconds" ]; then
        echo "FAIL: no wall time of the $name run in $out (run PHASES=$name first)"
        exit 1
    fi
done
multi_s=$(cat "$out/multi.seconds")
one_s=$(cat "$out/one.seconds")

python - "$out" "$multi_s" "$one_s" "$gpus" <<'PY'
import csv
import sys
from collections import Counter
from pathlib import Path

out, multi_s, one_s, gpus = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
KEY = ("impl", "mode", "batch", "heads", "head_dim", "seq_len", "n_buckets", "drop_rate", "dtype")


def rows_of(folder: Path) -> tuple[Path, list[dict]]:
    csvs = sorted(p for p in folder.glob("*.csv"))  # the parts live in a subfolder
    if len(csvs) != 1:
        sys.exit(f"FAIL: expected one results CSV in {folder}, found {[str(p) for p in csvs]}")
    with csvs[0].open(newline="", encoding="utf-8") as handle:
        return csvs[0], list(csv.DictReader(handle))


multi_csv, multi = rows_of(out / "multi")
one_csv, one = rows_of(out / "one")
keys_multi = Counter(tuple(r[c] for c in KEY) for r in multi)
keys_one = Counter(tuple(r[c] for c in KEY) for r in one)
problems = []
if any(n > 1 for n in keys_multi.values()):
    problems.append(f"duplicate keys in the merged CSV: {[k for k, n in keys_multi.items() if n > 1]}")
only_multi, only_one = set(keys_multi) - set(keys_one), set(keys_one) - set(keys_multi)
if only_multi or only_one:
    problems.append(f"keys only in --gpus all: {sorted(only_multi)}; only in one GPU: {sorted(only_one)}")
status_one = {tuple(r[c] for c in KEY): r["status"] for r in one}
changed = [
    (k, status_one.get(k), r["status"])
    for r in multi
    if (k := tuple(r[c] for c in KEY)) in status_one and status_one[k] != r["status"]
]
if changed:
    problems.append(f"statuses differ (key, one GPU, all GPUs): {changed}")

ratios = sorted(
    float(m["ms_median"]) / float(o["ms_median"])
    for o in one
    for m in multi
    if tuple(m[c] for c in KEY) == tuple(o[c] for c in KEY) and m["ms_median"] and o["ms_median"]
)
speedup = one_s / multi_s
print(f"merged CSV:  {multi_csv} ({len(multi)} rows)")
print(f"one GPU CSV: {one_csv} ({len(one)} rows)")
print(f"wall time: {gpus} GPUs {multi_s:.1f} s, one GPU {one_s:.1f} s, speedup {speedup:.2f}x")
if ratios:
    mid = ratios[len(ratios) // 2]
    print(
        f"per-row ms_median, all GPUs / one GPU: median {mid:.3f}, "
        f"min {ratios[0]:.3f}, max {ratios[-1]:.3f} (timings measured side by side)"
    )
for p in problems:
    print("FAIL:", p)
if problems:
    sys.exit(1)
print(f"rows: same {len(one)} keys and statuses")
if speedup < 1.8:
    print(f"BELOW TARGET: {speedup:.2f}x < 1.8x")
    sys.exit(3)
print("PASS")
PY
