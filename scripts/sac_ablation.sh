#!/usr/bin/env bash
# What holds SAC back (README "SAC at its best"): experiment=sac_ablation (plain SAC and each candidate fix at
# alpha 0.5 and 1, 3 seeds), compared into docs/results/sac_ablation/, then the table of each fix's gold@1,
# gold@2 and queries to +0.3 (scripts/ablation_table.py) and the UTD curve (queries to +0.3 gold within 2
# nats against UTD, both learners) by scripts/utd_curve.py.
#   bash scripts/sac_ablation.sh [extra overrides]        (about 10 hours on a 2-core CPU)
# Resumable as scripts/frontier.sh: finished runs are kept in the committed docs/results/sac_ablation/runs.jsonl
# and restored before the sweep continues; `hydra.sweeper.algos`-style splitting is not needed (one algo),
# extra arguments go to the sweep (e.g. seed=0).
set -euo pipefail
cd "$(dirname "$0")/.."
make install
.venv/bin/python -m pip install -q -e '.[sweep]'  # hydra-joblib-launcher
SWEEP_ROOT=${SWEEP_ROOT:-runs}
OUT=docs/results/sac_ablation
RECORDS=$OUT/runs.jsonl
started=$(date +%s)
mkdir -p "$OUT"
if [ -f "$RECORDS" ]; then .venv/bin/python scripts/restore_records.py "$RECORDS" --into "$SWEEP_ROOT"; fi
.venv/bin/python scripts/pinned_build.py restore  # the one build of the SFT policy, pairs and RM every machine uses (README)
.venv/bin/align prepare > /dev/null  # the shared SFT policy, pairs and reward model, once
source scripts/recording.sh
start_recording "$RECORDS" "$SWEEP_ROOT/sac_ablation"  # every 10 minutes: a session cut off keeps what finished
OMP_NUM_THREADS=1 .venv/bin/align train -m experiment=sac_ablation resume=auto logger=none \
    hydra/launcher=joblib hydra.launcher.n_jobs="${JOBS:-2}" threads=1 \
    hydra.sweep.dir="$SWEEP_ROOT/sac_ablation" "$@" || echo "some sac_ablation jobs failed (listed above)"
stop_recording
inputs=("$SWEEP_ROOT/sac_ablation")
if [ -f "$RECORDS" ]; then inputs+=("$RECORDS"); fi
.venv/bin/align compare "${inputs[@]}" --records "$RECORDS" --out "$OUT" || echo "align compare: nothing to compare yet"
if [ -f "$RECORDS" ]; then
    .venv/bin/python scripts/ablation_table.py "$RECORDS" --out "$OUT" || echo "ablation_table: not enough runs yet"
    .venv/bin/python scripts/utd_curve.py "$RECORDS" --out "$OUT" || echo "utd_curve: not enough runs yet"
    .venv/bin/python scripts/sac_diagnostics.py "$RECORDS" --out "$OUT/diagnostics.md" > /dev/null || true
fi
echo "total wall time: $(( $(date +%s) - started )) s; results in $OUT"
