#!/usr/bin/env bash
# The matched-KL answer (README "Results"): experiment=frontier (sentiment) and experiment=frontier_tree,
# every algorithm over a grid of its KL knob, 3 seeds, two jobs at a time on one thread each, then
# `align compare` on both sweeps together into docs/results/frontier/ (frontier.csv, compare.md, plots).
#   bash scripts/frontier.sh [extra overrides]      (several hours on a 2-core CPU)
# Resumable: the sweeps run with resume=auto in fixed dirs, so running the script again (after a kill, a
# time limit, a closed laptop) runs only the jobs that did not complete. SWEEP_ROOT=... picks where the run
# dirs go (default: runs/); JOBS=... the parallel jobs; EXPERIMENTS="frontier" runs only one of the two.
set -euo pipefail
cd "$(dirname "$0")/.."
make install
.venv/bin/python -m pip install -q -e '.[sweep]'  # hydra-joblib-launcher
SWEEP_ROOT=${SWEEP_ROOT:-runs}
JOBS=${JOBS:-2}
EXPERIMENTS=${EXPERIMENTS:-"frontier frontier_tree"}
started=$(date +%s)
for experiment in $EXPERIMENTS; do
    task=$([ "$experiment" = frontier_tree ] && echo tree || echo sentiment)
    .venv/bin/align prepare task="$task" > /dev/null  # build the shared artefacts once, before the jobs
    OMP_NUM_THREADS=1 .venv/bin/align train -m experiment="$experiment" resume=auto logger=none \
        hydra/launcher=joblib hydra.launcher.n_jobs="$JOBS" threads=1 \
        hydra.sweep.dir="$SWEEP_ROOT/$experiment" "$@" || echo "some $experiment jobs failed (listed above)"
done
dirs=()
for experiment in $EXPERIMENTS; do dirs+=("$SWEEP_ROOT/$experiment"); done
.venv/bin/align compare "${dirs[@]}" --out docs/results/frontier
echo "total wall time: $(( $(date +%s) - started )) s; results in docs/results/frontier"
