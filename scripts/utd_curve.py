"""The UTD curve of SAC: reward-model queries to first reach step-0 gold + a gain within a KL budget, against
the updates per batch of new rollouts (algo.utd), for each learner (twin-Q sac, pcl), over seeds.

    python scripts/utd_curve.py docs/results/sac_ablation/runs.jsonl \
        --out docs/results/sac_ablation [--alpha 1] [--kl-budget 2] [--gain 0.3]

Reads run dirs or records files (as `align compare`); keeps the sentiment SAC groups at the fixed temperature
`--alpha` that differ from the default config in nothing but algo.learner and algo.utd, and writes
utd_curve.csv and utd_curve.png (mean queries over the seeds that got there, 95% bootstrap CI; forward
tokens beside) into --out, and the table to stdout.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from ablation_table import plain_sac  # scripts/ is on the path of a script and of its tests

from align_cli.compare import GOLD, comparable_config, group_runs, load_inputs, mean_and_ci, reach_within

SWEPT = {"algo.learner", "algo.utd"}


def curve_groups(groups, alpha: float) -> dict[tuple[str, int], object]:
    """(learner, utd) -> group, for the sentiment SAC groups at fixed alpha that differ from plain SAC (as
    experiment=sac_ablation runs it) only in the swept keys."""
    plain = plain_sac()
    out = {}
    for group in groups:
        config = comparable_config(group.runs[0])
        if config.get("algo.name") != "sac" or config.get("task.name") != "sentiment":
            continue
        if config.get("algo.autotune_alpha") is not False or config.get("algo.alpha") != alpha:
            continue
        changed = {key for key, value in config.items() if key.startswith("algo.") and key not in SWEPT
                   and key not in ("algo.alpha", "algo.autotune_alpha", "algo.name", "algo.diagnose_every")
                   and key[5:] in plain and plain[key[5:]] != value}
        if not changed:
            out[(str(config.get("algo.learner", "sac")), int(config.get("algo.utd", plain["utd"])))] = group
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="run dirs, sweep dirs or records files")
    parser.add_argument("--out", type=Path, required=True, help="where utd_curve.csv and utd_curve.png go")
    parser.add_argument("--alpha", type=float, default=1.0, help="the fixed temperature of the curve")
    parser.add_argument("--kl-budget", type=float, default=2.0, help="K: the crossing must be at eval/kl_ref <= K")
    parser.add_argument("--gain", type=float, default=0.3, help="gold gain over step 0")
    args = parser.parse_args(argv)
    groups = curve_groups(group_runs(load_inputs(args.inputs).runs), args.alpha)
    if not groups:
        print(f"utd_curve: no sentiment sac group at fixed alpha {args.alpha:g} in {' '.join(args.inputs)}",
              file=sys.stderr)
        return 2
    rows = []
    for (learner, utd), group in sorted(groups.items()):
        reach = reach_within(group, args.gain, args.kl_budget, GOLD)
        rows.append((learner, utd, reach))
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "utd_curve.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["learner", "utd", "reached", "seeds", "queries", "queries_lo", "queries_hi",
                         "forward_tokens", "forward_tokens_lo", "forward_tokens_hi"])
        for learner, utd, reach in rows:
            writer.writerow([learner, utd, reach.reached, reach.measured, *mean_and_ci(reach.spent),
                             *mean_and_ci(reach.forward_tokens)])
    print(f"queries to step-0 gold +{args.gain:g} within {args.kl_budget:g} nats, alpha {args.alpha:g}")
    print("| learner | utd | reached | queries [95% CI] | forward tokens |")
    print("|---|---:|---:|---:|---:|")
    for learner, utd, reach in rows:
        spent = "-" if reach.spent is None else f"{reach.spent.mean:.0f} [{reach.spent.lo:.0f}, {reach.spent.hi:.0f}]"
        tokens = "-" if reach.forward_tokens is None else f"{reach.forward_tokens.mean / 1e6:.2f}M"
        print(f"| {learner} | {utd} | {reach.reached}/{reach.measured} | {spent} | {tokens} |")
    plot(rows, args)
    print(f"wrote {args.out / 'utd_curve.csv'} and {args.out / 'utd_curve.png'}")
    return 0


def plot(rows, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for learner in sorted({learner for learner, _, _ in rows}):
        points = [(utd, reach.spent) for name, utd, reach in rows if name == learner and reach.spent is not None]
        if not points:
            continue
        utds = [utd for utd, _ in points]
        means = [spent.mean for _, spent in points]
        errors = [[spent.mean - spent.lo for _, spent in points], [spent.hi - spent.mean for _, spent in points]]
        ax.errorbar(utds, means, yerr=errors, marker="o", capsize=3, label=f"learner={learner}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("updates per batch of 64 new rollouts (algo.utd)")
    ax.set_ylabel(f"RM queries to +{args.gain:g} gold at KL <= {args.kl_budget:g}")
    ax.set_title(f"SAC, alpha {args.alpha:g}: mean over the seeds that got there, 95% CI", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "utd_curve.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
