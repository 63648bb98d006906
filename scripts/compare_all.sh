#!/usr/bin/env bash
# Reproduces the README "Results": every algorithm at its defaults, 3 seeds, two jobs at a time on one
# thread each, then `align compare` on the sweep (table, CSV and plots in <sweep dir>/compare).
#   bash scripts/compare_all.sh [extra overrides, e.g. seed=0]     (about 35 min on a 2-core CPU)
# SWEEP_DIR=... picks the output dir (default: runs/compare_all/<timestamp>); JOBS=... the parallel jobs.
set -euo pipefail
cd "$(dirname "$0")/.."
make install
.venv/bin/python -m pip install -q -e '.[sweep]'  # hydra-joblib-launcher
SWEEP_DIR=${SWEEP_DIR:-runs/compare_all/$(date +%Y-%m-%d_%H-%M-%S)}
JOBS=${JOBS:-2}
started=$(date +%s)
.venv/bin/python scripts/pinned_build.py restore  # the one build of the SFT policy, pairs and RM every machine uses (README)
.venv/bin/align prepare > /dev/null  # build the shared SFT policy, pairs and reward model once
OMP_NUM_THREADS=1 .venv/bin/align train -m experiment=compare_all hydra/launcher=joblib \
    hydra.launcher.n_jobs="$JOBS" threads=1 hydra.sweep.dir="$SWEEP_DIR" "$@"
.venv/bin/align compare "$SWEEP_DIR" --out "$SWEEP_DIR/compare"
echo "total wall time: $(( $(date +%s) - started )) s; results in $SWEEP_DIR/compare"
