#!/usr/bin/env bash
# Equal tuning budgets (README "Results: tuned"): the eight Optuna studies hparams_search=<algo>_optuna (8 trials
# x 2 seeds each, the same objective), two studies at a time on one thread each; then experiment=compare_tuned
# (each algorithm's best trial on 3 fresh seeds, written by scripts/tuned_experiment.py) and `align compare`
# into docs/results/tuned/.
#   bash scripts/tuning.sh [extra overrides for the studies]     (several hours on a 2-core CPU)
# Resumable, across machines too: each study keeps its finished trials in the committed
# docs/results/tuning/<algo>_trials.jsonl (hydra.sweeper.trials_file), from which a fresh machine's study
# continues, and the compare_tuned runs are kept in docs/results/tuned/runs.jsonl (restored first, as in
# scripts/frontier.sh). STUDIES="sac ppo" runs only those studies; SWEEP_ROOT=... picks where run dirs go.
set -euo pipefail
cd "$(dirname "$0")/.."
make install
.venv/bin/python -m pip install -q -e '.[sweep,optuna]'  # hydra-joblib-launcher, hydra-optuna-sweeper
SWEEP_ROOT=${SWEEP_ROOT:-runs}
STUDIES=${STUDIES:-"sac ppo grpo rloo dpo cpl rs bon"}
TRIALS=docs/results/tuning
RECORDS=${RECORDS:-docs/results/tuned/runs.jsonl}  # results.sh: docs/results/final_tuned/runs.jsonl (pinned build)
OUT=$(dirname "$RECORDS")
started=$(date +%s)
.venv/bin/python scripts/pinned_build.py restore  # the one build of the SFT policy, pairs and RM every machine uses (README)
.venv/bin/align prepare > /dev/null  # the shared SFT policy, pairs and reward model, once

study() {  # one study to its n_trials, its Hydra log in <sweep dir>/study.log
    local algo=$1 dir="$SWEEP_ROOT/tuning/$1"
    shift
    mkdir -p "$dir"
    echo "study $algo: $dir"
    OMP_NUM_THREADS=1 .venv/bin/align train -m hparams_search="${algo}_optuna" hydra.sweep.dir="$dir" \
        hydra.sweeper.trials_file="$TRIALS/${algo}_trials.jsonl" resume=auto logger=none threads=1 "$@" \
        > "$dir/study.log" 2>&1 || echo "study $algo failed: see $dir/study.log"
}

# Two workers, one core each, take the studies from one queue, the slowest first (SAC with UTD up to 4, then
# the TRL-trained CPL and DPO), so neither idles while the other has studies left; a worker claims a study
# by creating $SWEEP_ROOT/tuning/.claims/<algo>.
claims="$SWEEP_ROOT/tuning/.claims"
rm -rf "$claims" && mkdir -p "$claims"
worker() {
    for algo in sac cpl dpo ppo grpo rloo rs bon; do
        if [[ " $STUDIES " == *" $algo "* ]] && mkdir "$claims/$algo" 2> /dev/null; then study "$algo" "$@"; fi
    done
}
pids=()
for _ in 1 2; do
    worker "$@" &
    pids+=($!)
done
wait "${pids[@]}"

.venv/bin/python scripts/tuned_experiment.py
if [ -f "$RECORDS" ]; then
    .venv/bin/python scripts/restore_records.py "$RECORDS" --into "$SWEEP_ROOT" --experiment compare_tuned
fi
source scripts/recording.sh
start_recording "$RECORDS" "$SWEEP_ROOT/compare_tuned"  # every 10 minutes: a session cut off keeps what finished
OMP_NUM_THREADS=1 .venv/bin/align train -m experiment=compare_tuned resume=auto logger=none \
    hydra/launcher=joblib hydra.launcher.n_jobs=2 threads=1 hydra.sweep.dir="$SWEEP_ROOT/compare_tuned" \
    || echo "some compare_tuned jobs failed (listed above)"
stop_recording
inputs=("$SWEEP_ROOT/compare_tuned")
if [ -f "$RECORDS" ]; then inputs+=("$RECORDS"); fi
.venv/bin/align compare "${inputs[@]}" --records "$RECORDS" --out "$OUT" || echo "align compare: nothing to compare yet"
echo "total wall time: $(( $(date +%s) - started )) s; results in $OUT"
