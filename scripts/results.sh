#!/usr/bin/env bash
# Every sweep behind the README's final answer, in order, each resumable (resume=auto + committed records):
#   ablation  scripts/sac_ablation.sh      each candidate SAC fix, 3 seeds, and the UTD curve
#   frontier  scripts/frontier.sh          the KL grids of all eight algorithms, sentiment and tree, on the
#                                          pinned build (scripts/pinned_build.py) -> docs/results/final
#   seeds     scripts/more_seeds.py        seeds 3 and 4 at the grid points the frontier's answer picks
#   gold      experiment=frontier_gold     the online algorithms with reward=gold -> docs/results/frontier_gold
#   tuning    scripts/tuning.sh            the Optuna studies and experiment=compare_tuned -> docs/results/final_tuned
#   bash scripts/results.sh                      (days on a 2-core CPU; run it again to continue: every sweep
#                                                 rewrites its records file every 10 minutes; commit them)
#   PARTS="ablation gold" bash scripts/results.sh    (only those parts)
set -euo pipefail
cd "$(dirname "$0")/.."
PARTS=${PARTS:-"ablation frontier seeds gold tuning"}
SWEEP_ROOT=${SWEEP_ROOT:-runs}
for part in $PARTS; do
    echo "== $part: $(date -u +%H:%M:%S)"
    case $part in
        ablation) bash scripts/sac_ablation.sh ;;
        frontier) SWEEP_ROOT="$SWEEP_ROOT/final" RECORDS=docs/results/final/runs.jsonl bash scripts/frontier.sh ;;
        # the tuned configurations (studies of earlier builds; GRPO's and RLOO's on the pinned one) on the
        # pinned build: their compare_tuned runs in docs/results/final_tuned
        tuning) SWEEP_ROOT="$SWEEP_ROOT/final" RECORDS=docs/results/final_tuned/runs.jsonl bash scripts/tuning.sh ;;
        seeds)  # experiment=<name>_seeds into the frontier's own sweep dirs, so its table pools 5 seeds there;
            # it runs after the frontier part returned, so it picks its points from a finished frontier
            make install
            .venv/bin/python -m pip install -q -e '.[sweep]'
            records=docs/results/final/runs.jsonl
            if [ ! -f "$records" ]; then echo "seeds: no $records yet (run the frontier part first)"; continue; fi
            .venv/bin/python scripts/restore_records.py "$records" --into "$SWEEP_ROOT/final"
            .venv/bin/python scripts/pinned_build.py restore
            source scripts/recording.sh
            start_recording "$records" "$SWEEP_ROOT/final/frontier" "$SWEEP_ROOT/final/frontier_tree"
            for experiment in frontier frontier_tree; do
                task=$([ "$experiment" = frontier_tree ] && echo tree || echo sentiment)
                if ! .venv/bin/python scripts/more_seeds.py "$records" --experiment "$experiment" --seeds 3,4; then
                    echo "seeds: nothing to add for $experiment yet"
                    continue
                fi
                .venv/bin/align prepare task="$task" > /dev/null
                OMP_NUM_THREADS=1 .venv/bin/align train -m experiment="${experiment}_seeds" resume=auto logger=none \
                    hydra/launcher=joblib hydra.launcher.n_jobs="${JOBS:-2}" threads=1 \
                    hydra.sweep.dir="$SWEEP_ROOT/final/$experiment" || echo "some ${experiment}_seeds jobs failed (listed above)"
            done
            stop_recording
            .venv/bin/align compare "$SWEEP_ROOT/final/frontier" "$SWEEP_ROOT/final/frontier_tree" "$records" \
                --records "$records" --out docs/results/final --min-seeds 3 || echo "align compare: nothing to compare yet"
            .venv/bin/python scripts/final_answer.py "$records" --out docs/results/final --min-seeds 3 \
                || echo "final_answer: not enough runs yet" ;;
        gold)
            make install
            .venv/bin/python -m pip install -q -e '.[sweep]'
            records=docs/results/frontier_gold/runs.jsonl
            mkdir -p docs/results/frontier_gold
            if [ -f "$records" ]; then .venv/bin/python scripts/restore_records.py "$records" --into "$SWEEP_ROOT"; fi
            .venv/bin/python scripts/pinned_build.py restore
            .venv/bin/align prepare > /dev/null
            source scripts/recording.sh
            start_recording "$records" "$SWEEP_ROOT/frontier_gold"
            OMP_NUM_THREADS=1 .venv/bin/align train -m experiment=frontier_gold resume=auto logger=none \
                hydra/launcher=joblib hydra.launcher.n_jobs="${JOBS:-2}" threads=1 \
                hydra.sweep.dir="$SWEEP_ROOT/frontier_gold" || echo "some frontier_gold jobs failed (listed above)"
            stop_recording
            inputs=("$SWEEP_ROOT/frontier_gold")
            if [ -f "$records" ]; then inputs+=("$records"); fi
            .venv/bin/align compare "${inputs[@]}" --records "$records" --out docs/results/frontier_gold \
                || echo "align compare: nothing to compare yet" ;;
        *) echo "unknown part $part (ablation, frontier, seeds, gold, tuning)" >&2; exit 2 ;;
    esac
done
