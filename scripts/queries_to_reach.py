"""Sample efficiency of finished runs: reward-model queries to first reach step-0 + GAIN gold reward.

    python scripts/queries_to_reach.py RUN_OR_SWEEP_DIR... [--gain 0.3] [--metric eval/gold_reward]

Prints one markdown row per run: its command-line overrides, step-0 and final metric, final KL to the
reference, the queries (and optimizer steps, and seconds) at the first eval at or above the threshold, the
update throughput and the wall time. The resolution is the eval cadence (`eval.every`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from align_cli.analysis import find_runs, first_reaching  # noqa: E402


def overrides(run) -> str:
    path = run.path / ".hydra" / "overrides.yaml"
    if not path.exists():
        return run.path.name
    skip = ("logger=", "paths.", "eval.every=", "hydra.")
    lines = [line[2:].strip() for line in path.read_text().splitlines() if line.startswith("- ")]
    return " ".join(item for item in lines if not item.startswith(skip)) or "(defaults)"


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", help="run dirs or dirs containing run dirs")
    parser.add_argument("--gain", type=float, default=0.3, help="gain over the step-0 value to reach")
    parser.add_argument("--metric", default="eval/gold_reward", help="eval metric")
    args = parser.parse_args()
    runs = find_runs(args.dirs)
    if not runs:
        sys.exit(f"no run dirs (metrics.jsonl) under {args.dirs}")
    short = args.metric.split("/")[-1]
    print(f"| run | {short} step 0 | final | kl_ref final | queries to +{args.gain} | steps | seconds | "
          "tokens/s | wall s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for run in runs:
        evals = run.evals
        first = evals[0].get(args.metric) if evals else None
        final = evals[-1].get(args.metric) if evals else None
        print(f"| {overrides(run)} | {fmt(first, '.3f')} | {fmt(final, '.3f')} | "
              f"{fmt(evals[-1].get('eval/kl_ref') if evals else None, '.2f')} | "
              f"{fmt(first_reaching(evals, args.gain, args.metric), 'd')} | "
              f"{fmt(first_reaching(evals, args.gain, args.metric, 'progress/optimizer_steps'), 'd')} | "
              f"{fmt(first_reaching(evals, args.gain, args.metric, 'progress/wall_s'), '.0f')} | "
              f"{fmt(run.last('perf/tokens_per_s'), '.0f')} | {fmt(run.summary.get('wall_s'), '.0f')} |")


if __name__ == "__main__":
    main()
