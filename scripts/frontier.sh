#!/usr/bin/env bash
# The matched-KL answer (README "Results"): experiment=frontier (sentiment) and experiment=frontier_tree,
# every algorithm over a grid of its KL knob, 3 seeds, two jobs at a time on one thread each, then
# `align compare` on both sweeps together into the records file's dir (frontier.csv, compare.md, plots).
#   bash scripts/frontier.sh [extra overrides]      (several hours on a 2-core CPU)
# Resumable: the sweeps run with resume=auto in fixed dirs, so running the script again (after a kill, a
# time limit, a closed laptop) runs only the jobs that did not complete. Across machines too: every finished
# run is kept in the committed records file (align compare --records; rewritten every 10 minutes while the
# sweeps run, so a session cut off keeps what finished),
# which is restored into the sweep dirs first (scripts/restore_records.py), so a fresh clone on a fresh
# machine continues where the last one stopped; every machine uses the pinned build of the shared artefacts
# (scripts/pinned_build.py). RECORDS=... picks the records file (its dir gets the comparison; default:
# docs/results/frontier/runs.jsonl, the first answer, made before the build was pinned).
# SWEEP_ROOT=... picks where the run dirs go (default: runs/);
# JOBS=... the parallel jobs; EXPERIMENTS="frontier" runs only one of the two; extra arguments go to both
# sweeps (`hydra.sweeper.algos=[sac,ppo]` runs only those algorithms' grids, `seed=0` only seed 0).
set -euo pipefail
cd "$(dirname "$0")/.."
make install
.venv/bin/python -m pip install -q -e '.[sweep]'  # hydra-joblib-launcher
SWEEP_ROOT=${SWEEP_ROOT:-runs}
JOBS=${JOBS:-2}
EXPERIMENTS=${EXPERIMENTS:-"frontier frontier_tree"}
RECORDS=${RECORDS:-docs/results/frontier/runs.jsonl}  # results.sh: docs/results/final/runs.jsonl (pinned build)
OUT=$(dirname "$RECORDS")
MIN_SEEDS=${MIN_SEEDS:-3}  # groups with fewer seeds stay out of the matched-KL table (MIN_SEEDS=1: all)
started=$(date +%s)
if [ -f "$RECORDS" ]; then .venv/bin/python scripts/restore_records.py "$RECORDS" --into "$SWEEP_ROOT"; fi
.venv/bin/python scripts/pinned_build.py restore  # the one build of the SFT policy, pairs and RM every machine uses (README)
source scripts/recording.sh
start_recording "$RECORDS" "$SWEEP_ROOT/frontier" "$SWEEP_ROOT/frontier_tree"
for experiment in $EXPERIMENTS; do
    task=$([ "$experiment" = frontier_tree ] && echo tree || echo sentiment)
    .venv/bin/align prepare task="$task" > /dev/null  # build the shared artefacts once, before the jobs
    OMP_NUM_THREADS=1 .venv/bin/align train -m experiment="$experiment" resume=auto logger=none \
        hydra/launcher=joblib hydra.launcher.n_jobs="$JOBS" threads=1 \
        hydra.sweep.dir="$SWEEP_ROOT/$experiment" "$@" || echo "some $experiment jobs failed (listed above)"
done
stop_recording
dirs=()
for experiment in frontier frontier_tree; do
    if [ -d "$SWEEP_ROOT/$experiment" ]; then dirs+=("$SWEEP_ROOT/$experiment"); fi
done
if [ -f "$RECORDS" ]; then dirs+=("$RECORDS"); fi
.venv/bin/align compare "${dirs[@]}" --records "$RECORDS" --out "$OUT" --min-seeds "$MIN_SEEDS" \
    || echo "align compare: nothing to compare yet"
# SAC against each baseline per task and K: gold difference and budget ratios with CIs (answer.md / answer.csv)
.venv/bin/python scripts/final_answer.py "${dirs[@]}" --out "$OUT" --min-seeds "$MIN_SEEDS" \
    || echo "final_answer: not enough runs yet"
echo "total wall time: $(( $(date +%s) - started )) s; results in $OUT"
