#!/usr/bin/env bash
# Training suites on one GPU: a one-minute CUDA sanity check of the training path, then the
# recall and quality suites; a short table of the final evaluations last.
#
#   tools/gpu_quality_check.sh [PHASE ...]    # default: sanity recall quality
#
# Phases: sanity (suites/quality_gpu_sanity.yaml, fails on any row that is not ok), recall
# (~4 min), quality (T=8192, ~8 min), quality_16k (T=16384, ~12 min), summary. Each command on
# a machine with a 10-minute limit should run one or two phases. Runs live in $RUNS (default
# results/quality-gpu, git-ignored, so it survives between commands on the same machine); a
# phase whose run was cut short resumes it (`--resume`), a finished one is not run again. The
# CSVs and metas are copied to $OUT (when set) after each phase.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${RUNS:-results/quality-gpu}"
mkdir -p "$runs"
phases=("$@")
[ ${#phases[@]} -eq 0 ] && phases=(sanity recall quality)

if ! command -v scfa-bench >/dev/null 2>&1; then
    python -m pip install --no-deps --no-build-isolation -e . >/dev/null
fi
echo "revision ${SCFA_BENCH_GIT_REV:-$(git rev-parse --short HEAD 2>/dev/null || echo n/a)}"
nvidia-smi -L || true

run_suite() {  # suite name: resume an unfinished run in $runs/<name>, else start one
    local name=$1 dir="$runs/$1" last="" state=""
    mkdir -p "$dir"
    last=$(ls -t "$dir"/*.csv 2>/dev/null | head -n 1 || true)
    if [ -n "$last" ]; then
        state=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['state'])" \
            "${last%.csv}.meta.json" 2>/dev/null || echo unknown)
    fi
    local start rc=0
    start=$(date +%s)
    if [ -n "$last" ] && [ "$state" = complete ]; then
        echo "== $name: already complete in $last"
    elif [ -n "$last" ]; then
        echo "== $name: resuming $last ($state)"
        scfa-bench run "suites/$name.yaml" --resume "$last" --no-progress || rc=$?
    else
        echo "== $name"
        scfa-bench run "suites/$name.yaml" --out "$dir" --no-progress || rc=$?
    fi
    echo "== $name: exit $rc after $(( $(date +%s) - start )) s"
    if [ -n "${OUT:-}" ]; then
        mkdir -p "$OUT/$name"
        cp "$dir"/*.csv "$dir"/*.meta.json "$OUT/$name/" 2>/dev/null || true
    fi
    return $rc
}

status=0
for phase in "${phases[@]}"; do
    case "$phase" in
        sanity)
            run_suite quality_gpu_sanity || status=1
            python tools/quality_summary.py "$runs/quality_gpu_sanity" --strict || status=1
            # cuDNN's attention and the math backend must train the same model.
            python tools/quality_summary.py "$runs/quality_gpu_sanity" --agree dense "dense math" \
                | tail -n 4 || status=1 ;;
        recall|quality|quality_16k)
            run_suite "$phase" || status=1 ;;
        summary) ;;
        *) echo "unknown phase $phase (sanity, recall, quality, quality_16k, summary)"; exit 2 ;;
    esac
done

echo
echo "== summary (last evaluation per setting, seeds averaged; dense_s/s = dense's train"
echo "   seconds over the setting's for the same steps)"
python tools/quality_summary.py "$runs"
exit $status
