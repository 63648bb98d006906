"""The UTD curve of SAC: reward-model queries to first reach step-0 gold + a gain within a KL budget, against
the updates per batch of new rollouts (algo.utd), for each learner (twin-Q sac, without and with the retrace
correction of its n-step targets; pcl), at each fixed temperature, over seeds.

    python scripts/utd_curve.py docs/results/sac_ablation/runs.jsonl \
        --out docs/results/sac_ablation [--alphas 0.5,1] [--kl-budget 2] [--gain 0.3]

Reads run dirs or records files (as `align compare`); keeps the sentiment SAC groups at the fixed temperatures
`--alphas` that differ from plain SAC (as experiment=sac_ablation runs it) in nothing but algo.learner,
algo.n_step_correction and algo.utd, and writes utd_curve.csv and utd_curve.png (mean queries over the seeds
that got there, 95% bootstrap CI; forward tokens beside) into --out, and the table to stdout.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from ablation_table import changes_from, plain_sac  # scripts/ is on the path of a script and of its tests

from align_cli.compare import GOLD, comparable_config, group_runs, load_inputs, mean_and_ci, reach_within

SWEPT = {"algo.learner", "algo.n_step_correction", "algo.utd"}
IGNORED = {"algo.alpha", "algo.autotune_alpha", "algo.name", "algo.diagnose_every"}  # the temperature; logging


def curve_name(config: dict) -> str:
    """sac, sac+retrace, sac+tree_backup or pcl (a correction of None is the learner's default)."""
    learner = str(config.get("algo.learner", "sac"))
    correction = config.get("algo.n_step_correction")
    if correction is None:
        correction = "retrace" if learner == "sac" else "none"
    return learner if correction == "none" else f"{learner}+{correction}"


def curve_groups(groups, alphas: list[float]) -> dict[tuple[float, str, int], object]:
    """(alpha, curve, utd) -> group, for the sentiment SAC groups at those fixed temperatures that differ from
    plain SAC only in the swept keys."""
    plain = plain_sac()
    out = {}
    for group in groups:
        config = comparable_config(group.runs[0])
        if config.get("algo.name") != "sac" or config.get("task.name") != "sentiment":
            continue
        if config.get("algo.autotune_alpha") is not False or config.get("algo.alpha") not in alphas:
            continue
        if not changes_from(plain, config, SWEPT | IGNORED):
            out[(float(config["algo.alpha"]), curve_name(config), int(config.get("algo.utd", plain["utd"])))] = group
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="run dirs, sweep dirs or records files")
    parser.add_argument("--out", type=Path, required=True, help="where utd_curve.csv and utd_curve.png go")
    parser.add_argument("--alphas", default="0.5,1", help="the fixed temperatures, comma-separated: one curve each")
    parser.add_argument("--kl-budget", type=float, default=2.0, help="K: the crossing must be at eval/kl_ref <= K")
    parser.add_argument("--gain", type=float, default=0.3, help="gold gain over step 0")
    args = parser.parse_args(argv)
    alphas = [float(a) for a in args.alphas.split(",")]
    groups = curve_groups(group_runs(load_inputs(args.inputs).runs), alphas)
    if not groups:
        print(f"utd_curve: no sentiment sac group at fixed alpha {args.alphas} in {' '.join(args.inputs)}",
              file=sys.stderr)
        return 2
    rows = [(alpha, curve, utd, reach_within(group, args.gain, args.kl_budget, GOLD))
            for (alpha, curve, utd), group in sorted(groups.items())]
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "utd_curve.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["alpha", "learner", "utd", "reached", "seeds", "queries", "queries_lo", "queries_hi",
                         "forward_tokens", "forward_tokens_lo", "forward_tokens_hi"])
        for alpha, curve, utd, reach in rows:
            writer.writerow([f"{alpha:g}", curve, utd, reach.reached, reach.measured, *mean_and_ci(reach.spent),
                             *mean_and_ci(reach.forward_tokens)])
    print(f"queries to step-0 gold +{args.gain:g} within {args.kl_budget:g} nats")
    print("| alpha | learner | utd | reached | queries [95% CI] | forward tokens |")
    print("|---:|---|---:|---:|---:|---:|")
    for alpha, curve, utd, reach in rows:
        spent = "-" if reach.spent is None else f"{reach.spent.mean:.0f} [{reach.spent.lo:.0f}, {reach.spent.hi:.0f}]"
        tokens = "-" if reach.forward_tokens is None else f"{reach.forward_tokens.mean / 1e6:.2f}M"
        print(f"| {alpha:g} | {curve} | {utd} | {reach.reached}/{reach.measured} | {spent} | {tokens} |")
    plot(rows, args)
    print(f"wrote {args.out / 'utd_curve.csv'} and {args.out / 'utd_curve.png'}")
    return 0


def plot(rows, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for alpha, curve in sorted({(alpha, curve) for alpha, curve, _, _ in rows}):
        points = [(utd, reach.spent) for a, c, utd, reach in rows
                  if (a, c) == (alpha, curve) and reach.spent is not None]
        if not points:
            continue
        means = [spent.mean for _, spent in points]
        errors = [[spent.mean - spent.lo for _, spent in points], [spent.hi - spent.mean for _, spent in points]]
        ax.errorbar([utd for utd, _ in points], means, yerr=errors, marker="o", capsize=3,
                    linestyle="-" if alpha == max(a for a, _, _, _ in rows) else "--", label=f"{curve}, alpha {alpha:g}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("updates per batch of 64 new rollouts (algo.utd)")
    ax.set_ylabel(f"RM queries to +{args.gain:g} gold at KL <= {args.kl_budget:g}")
    ax.set_title("SAC: mean over the seeds that got there, 95% CI", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "utd_curve.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
