#!/usr/bin/env bash
# Training suites on the GPU: a one-minute CUDA sanity check of the training path, then the
# recall and quality suites; a short table of the final evaluations last.
#
#   tools/gpu_quality_check.sh [PHASE ...]    # default: sanity recall quality
#   GPUS=4 tools/gpu_quality_check.sh quality # one shard of the suite per GPU, merged after
#
# Phases: sanity (suites/quality_gpu_sanity.yaml, fails on any row that is not ok, or when
# cuDNN and math SDPA, or an SCFA kernel and its dense reference, train differently), recall (~11 min on one H100, estimated; recall_peers more), quality (T=8192,
# ~8 min), quality_16k (T=16384, ~10 min), summary; those times are without the peer settings
# (MoBA, AdaSplash, NSA), which add an unmeasured few minutes to each where their packages are
# installed: shard with GPUS=N. With a 10-minute limit per command, run one or two phases per
# command. Runs live in $RUNS (default results/quality-gpu, git-ignored,
# so it survives between commands on the same machine); a phase whose run was cut short resumes
# it (`--resume`), a finished one is not run again. With GPUS=N > 1 each GPU trains every N-th
# setting (`--shard i/N`, logs in $RUNS/<phase>.parts/) and tools/quality_merge.py joins the
# parts. The CSVs and metas are copied to $OUT (when set) after each phase.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${RUNS:-results/quality-gpu}"
gpus="${GPUS:-1}"
mkdir -p "$runs"
phases=("$@")
[ ${#phases[@]} -eq 0 ] && phases=(sanity recall quality)

if ! command -v scfa-bench >/dev/null 2>&1; then
    python -m pip install --no-deps --no-build-isolation -e . >/dev/null
fi
echo "revision ${SCFA_BENCH_GIT_REV:-$(git rev-parse --short HEAD 2>/dev/null || echo n/a)}, GPUS=$gpus"
nvidia-smi -L || true

latest_csv() { ls -t "$1"/*.csv 2>/dev/null | head -n 1 || true; }
state_of() {  # the run state in a CSV's meta
    python -c "import json,sys; print(json.load(open(sys.argv[1]))['state'])" \
        "${1%.csv}.meta.json" 2>/dev/null || echo unknown
}

run_in() {  # dir, suite name, extra args: resume the dir's unfinished run, else start one
    local dir=$1 name=$2 last state
    shift 2
    mkdir -p "$dir"
    last=$(latest_csv "$dir")
    state=""
    [ -n "$last" ] && state=$(state_of "$last")
    if [ -n "$last" ] && [ "$state" = complete ]; then
        echo "== $name $*: already complete in $last"
    elif [ -n "$last" ]; then
        echo "== $name $*: resuming $last ($state)"
        scfa-bench run "suites/$name.yaml" --resume "$last" --no-progress "$@"
    else
        echo "== $name $*"
        scfa-bench run "suites/$name.yaml" --out "$dir" --no-progress "$@"
    fi
}

run_suite() {  # suite name: on one GPU, or one shard per GPU and a merge
    local name=$1 rc=0 start i pids=() parts=()
    start=$(date +%s)
    if [ "$gpus" -le 1 ]; then
        run_in "$runs/$name" "$name" || rc=$?
    else
        for ((i = 0; i < gpus; i++)); do
            mkdir -p "$runs/$name.parts/part$i"
            CUDA_VISIBLE_DEVICES=$i run_in "$runs/$name.parts/part$i" "$name" --shard "$i/$gpus" \
                >"$runs/$name.parts/part$i.log" 2>&1 &
            pids+=($!)
        done
        for i in "${!pids[@]}"; do
            wait "${pids[$i]}" || rc=1
            echo "-- part $i: $(grep -c ': val_loss' "$runs/$name.parts/part$i.log" || true) evaluations"
            tail -n 2 "$runs/$name.parts/part$i.log"
        done
        for ((i = 0; i < gpus; i++)); do parts+=("$(latest_csv "$runs/$name.parts/part$i")"); done
        mkdir -p "$runs/$name"
        python tools/quality_merge.py "$runs/$name/$name-merged.csv" "${parts[@]}" || rc=1
    fi
    echo "== $name: exit $rc after $(( $(date +%s) - start )) s"
    if [ -n "${OUT:-}" ]; then
        mkdir -p "$OUT/$name"
        cp "$runs/$name"/*.csv "$runs/$name"/*.meta.json "$OUT/$name/" 2>/dev/null || true
        [ "$gpus" -gt 1 ] && cp "$runs/$name.parts"/*.log "$OUT/$name/" 2>/dev/null || true
    fi
    return $rc
}

status=0
for phase in "${phases[@]}"; do
    case "$phase" in
        sanity)
            run_suite quality_gpu_sanity || status=1
            python tools/quality_summary.py "$runs/quality_gpu_sanity" --strict || status=1
            # Pairs that compute the same model must train alike (suite file says which).
            for pair in "dense|dense math" "scfa_hash nb=8 fixed|hash reference" \
                "scfa_qk p=0.5|qk reference"; do
                python tools/quality_summary.py "$runs/quality_gpu_sanity" \
                    --agree "${pair%%|*}" "${pair##*|}" | tail -n 3 || status=1
            done ;;
        recall|recall_peers|quality|quality_16k)
            run_suite "$phase" || status=1 ;;
        summary) ;;
        *) echo "unknown phase $phase (sanity, recall, recall_peers, quality, quality_16k, summary)"; exit 2 ;;
    esac
done

echo
echo "== summary (last evaluation per setting, seeds averaged; dense_s/s = dense's train"
echo "   seconds over the setting's for the same steps)"
python tools/quality_summary.py "$runs"
exit $status
