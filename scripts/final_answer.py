"""The README's answer: per task and KL budget K, does SAC beat, match or trail each baseline, on gold at
matched KL and on the budget to first reach step-0 gold + the gain within K, with bootstrap CIs.

    python scripts/final_answer.py docs/results/final/runs.jsonl --out docs/results/final [--of sac] \
        [--min-seeds 3] [--kl-stat peak]

Reads run dirs or records files (as `align compare`) and picks, for every algorithm, the configurations
`align compare` picks (groups with at least --min-seeds seeds):
- gold@K: the group with the best seed-mean final gold among those that ended at KL <= K;
  SAC minus the baseline, 95% percentile-bootstrap CI with both groups' seeds redrawn independently:
  "beats" where the CI lies above 0, "trails" below, "level" where it holds 0;
- to +gain within K: the group whose seeds reached step-0 gold + the gain at an eval with KL <= K most
  often, then soonest; SAC's budget over the baseline's (reward-model queries; an offline baseline's
  preference pairs are another unit and get no ratio; best-of-N's queries select at inference, N per prompt
  every time it answers, so its ratio is shown but not judged), with its CI from the same redraws over the seeds that
  got there: "fewer" where the CI lies below 1, "more" above, "level" where it holds 1; the same ratios of
  training compute (progress/forward_tokens at that eval) and of wall time beside it.
Writes answer.md (per task: a matrix of both verdicts, one row per baseline and one column per K, then the
full table) and answer.csv into --out, the tables to stdout. With --kl-stat peak, K holds each run's largest
eval/kl_ref along the way instead of its final one, for gold@K and for the crossings alike.
"""

from __future__ import annotations

import argparse
import csv
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from align_cli.analysis import number
from align_cli.compare import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    CI_LEVEL,
    KL_STATS,
    Estimate,
    FastestRow,
    FinalPoint,
    Gains,
    KLBudgets,
    best_within,
    comparable_config,
    distinct_seeds,
    final_points,
    format_estimate,
    group_runs,
    label_configs,
    load_inputs,
    reach_within,
    soonest,
)
from align_cli.registry import question_order

# Algorithms whose reward queries select responses at inference (N per prompt, spent again at every answer)
# instead of buying training data once: their budget is not the same cost as a trained policy's.
INFERENCE_QUERIES = frozenset({"bon"})


@dataclass(frozen=True)
class Verdict:
    baseline: str
    task: str
    budget: float
    sac: FinalPoint | None
    other: FinalPoint | None
    gold_delta: Estimate | None  # SAC's gold@K minus the baseline's
    gold_verdict: str
    sac_crossing: FastestRow | None
    other_crossing: FastestRow | None
    ratios: dict[str, Estimate | None]  # budget, compute, wall: SAC's over the baseline's
    budget_verdict: str


def percentile_ci(mean: float, draws: np.ndarray, n: int) -> Estimate:
    lo, hi = np.percentile(draws, [50 * (1 - CI_LEVEL), 50 * (1 + CI_LEVEL)])
    return Estimate(float(mean), float(min(lo, mean)), float(max(hi, mean)), n)


def redraw_means(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """BOOTSTRAP_RESAMPLES means of `values` ([seeds, ...]) over seeds drawn with replacement: [resamples, ...]."""
    draws = rng.integers(0, len(values), (BOOTSTRAP_RESAMPLES, len(values)))
    return values[draws].mean(axis=1)


def gold_difference(sac: FinalPoint, other: FinalPoint, rng: np.random.Generator) -> Estimate:
    def golds(point: FinalPoint) -> np.ndarray:
        return np.array([v for v in (number(run.final(point.reward)) for run in point.group.runs) if v is not None])

    mine, theirs = golds(sac), golds(other)
    return percentile_ci(mine.mean() - theirs.mean(), redraw_means(mine, rng) - redraw_means(theirs, rng),
                         min(len(mine), len(theirs)))


def crossing(points: list[FinalPoint], gain: float, budget: float) -> FastestRow | None:
    """The algorithm's group that reached the gain within `budget` most often, then soonest (align compare's
    fastest within K)."""
    return soonest([reach_within(point.group, gain, budget, point.reward, point.kl_stat == "peak")
                    for point in points])


def ratio(mine: FastestRow, theirs: FastestRow, column: int, rng: np.random.Generator) -> Estimate | None:
    """Mean of SAC's seeds' crossings over the baseline's, column 0 budget, 1 forward tokens, 2 wall time."""
    a = np.array([seed[column] for seed in mine.per_seed], dtype=float)
    b = np.array([seed[column] for seed in theirs.per_seed], dtype=float)
    if np.isnan(a).any() or np.isnan(b).any() or b.mean() <= 0:
        return None
    draws = redraw_means(a, rng) / np.maximum(redraw_means(b, rng), 1e-12)
    return percentile_ci(a.mean() / b.mean(), draws, min(len(a), len(b)))


def judge(estimate: Estimate | None, neutral: float, above: str, below: str) -> str:
    if estimate is None:
        return "-"
    if estimate.lo > neutral:
        return above
    if estimate.hi < neutral:
        return below
    return "level"


def verdicts(points: list[FinalPoint], of: str, budgets: KLBudgets, gains: Gains) -> list[Verdict]:
    out = []
    for task in sorted({point.task for point in points}):
        by_algo: dict[str, list[FinalPoint]] = {}
        for point in points:
            if point.task == task:
                by_algo.setdefault(point.algo, []).append(point)
        if of not in by_algo:
            continue
        for budget in budgets.of(task):
            sac = best_within(by_algo[of], budget)
            sac_crossing = crossing(by_algo[of], gains.of(task), budget)
            for baseline in sorted(set(by_algo) - {of}):
                # one stream per row, so adding a baseline or a budget leaves the other rows' CIs as they were
                rng = np.random.default_rng([BOOTSTRAP_SEED, zlib.crc32(f"{task}/{baseline}/{budget:g}".encode())])
                other = best_within(by_algo[baseline], budget)
                delta = gold_difference(sac, other, rng) if sac and other else None
                other_crossing = crossing(by_algo[baseline], gains.of(task), budget)
                ratios: dict[str, Estimate | None] = {"budget": None, "compute": None, "wall": None}
                if sac_crossing and other_crossing and sac_crossing.units == other_crossing.units:
                    ratios = {name: ratio(sac_crossing, other_crossing, column, rng)
                              for column, name in enumerate(ratios)}
                budget_verdict = judge(ratios["budget"], 1.0, "more", "fewer")
                if baseline in INFERENCE_QUERIES:
                    budget_verdict = "- (queries at inference)"
                elif budget_verdict == "-" and sac_crossing and other_crossing is None:
                    budget_verdict = "fewer (it never got there)"
                elif budget_verdict == "-" and other_crossing and sac_crossing is None:
                    budget_verdict = "more (SAC never got there)"
                elif budget_verdict == "-" and sac_crossing and other_crossing:
                    budget_verdict = f"- ({'/'.join(other_crossing.units)})"
                out.append(Verdict(baseline, task, budget, sac, other, delta, judge(delta, 0.0, "beats", "trails"),
                                   sac_crossing, other_crossing, ratios, budget_verdict))
    return out


def short_labels(points: list[FinalPoint]) -> dict[int, str]:
    """id(group) -> its label among its own algorithm's groups on its task (`alpha=0.5`, not every setting
    that differs across algorithms and tasks)."""
    labels = {}
    for task, algo in {(point.task, point.algo) for point in points}:
        groups = [point.group for point in points if (point.task, point.algo) == (task, algo)]
        names = label_configs([comparable_config(group.runs[0]) for group in groups])
        labels.update({id(group): name for group, name in zip(groups, names, strict=True)})
    return labels


def describe_point(point: FinalPoint | None, labels: dict[int, str]) -> str:
    if point is None:
        return "(none within K)"
    return f"{format_estimate(point.gold)} ({labels[id(point.group)]}; {point.kl_ref.mean:.2f} nats)"


def describe_crossing(row: FastestRow | None, labels: dict[int, str]) -> str:
    if row is None:
        return "never"
    return f"{row.spent.mean:.0f} {'/'.join(row.units)} ({row.reached}/{row.measured}; {labels[id(row.group)]})"


def format_ratio(estimate: Estimate | None) -> str:
    return "-" if estimate is None else f"{estimate.mean:.2f}x [{estimate.lo:.2f}, {estimate.hi:.2f}]"


def verdict_cell(row: Verdict) -> str:
    """`gold +0.05 [+0.04, +0.06] beats; 0.71x [0.60, 0.86] q fewer (compute 3.3x, wall 2.2x)`: the row's two
    verdicts in one cell."""
    if row.gold_delta is None:
        gold = "gold: none within K"
    else:
        delta = row.gold_delta
        gold = f"gold {delta.mean:+.2f} [{delta.lo:+.2f}, {delta.hi:+.2f}] {row.gold_verdict}"
    budget = row.ratios["budget"]
    if budget is None:
        return f"{gold}; to +gain: {row.budget_verdict}"
    side = [f"{name} {row.ratios[name].mean:.1f}x" for name in ("compute", "wall") if row.ratios[name] is not None]
    units = "/".join(row.other_crossing.units) if row.other_crossing else ""
    return f"{gold}; {format_ratio(budget)} {units} {row.budget_verdict}" + (f" ({', '.join(side)})" if side else "")


def verdict_matrix(rows: list[Verdict], of: str, task: str) -> list[str]:
    """One row per baseline, one column per K: the summary the README quotes."""
    mine = [row for row in rows if row.task == task]
    budgets = sorted({row.budget for row in mine})
    cells = {(row.baseline, row.budget): verdict_cell(row) for row in mine}
    baselines = sorted({row.baseline for row in mine}, key=question_order)
    return ([f"## {task}: {of} against each baseline, per K", "",
             "| baseline | " + " | ".join(f"KL <= {k:g}" for k in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
            + [f"| {baseline} | " + " | ".join(cells.get((baseline, k), "-") for k in budgets) + " |"
               for baseline in baselines] + [""])


def markdown(rows: list[Verdict], of: str, gains: Gains, labels: dict[int, str], kl_stat: str = "final") -> str:
    held = ("that ended at KL <= K" if kl_stat == "final"
            else "whose seed-mean peak KL (each seed's largest eval/kl_ref, --kl-stat peak) is <= K")
    lines = []
    for task in sorted({row.task for row in rows}):
        lines += verdict_matrix(rows, of, task)
        lines += [f"## {task}: {of} against each baseline (gain +{gains.of(task):g})", "",
                  f"| K | baseline | gold@K: {of} | gold@K: baseline | {of} - baseline | gold | "
                  f"to +gain: {of} | to +gain: baseline | budget ratio | compute ratio | wall ratio | budget |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in (r for r in rows if r.task == task):
            lines.append(
                f"| {row.budget:g} | {row.baseline} | {describe_point(row.sac, labels)} | "
                f"{describe_point(row.other, labels)} | "
                f"{format_estimate(row.gold_delta, decimals=2)} | {row.gold_verdict} | "
                f"{describe_crossing(row.sac_crossing, labels)} | {describe_crossing(row.other_crossing, labels)} | "
                f"{format_ratio(row.ratios['budget'])} | {format_ratio(row.ratios['compute'])} | "
                f"{format_ratio(row.ratios['wall'])} | {row.budget_verdict} |")
        lines.append("")
    lines += [
        f"- per K: {of}'s gold@K minus the baseline's with its CI and verdict; then, where both reached the gain "
        f"within K in the same unit, {of}'s queries over the baseline's with its CI and verdict, and the compute "
        f"and wall-time ratios to get there.",
        f"- gold@K: `align compare`'s choice, the best seed-mean final gold among the algorithm's configurations "
        f"{held} "
        f"(mean [95% bootstrap CI]); {of} - baseline: the difference, both groups' seeds "
        f"redrawn independently; gold: beats / trails where that CI excludes 0, else level.",
        "- to +gain: the budget (reward-model queries `q`, or preference pairs) to the first eval at step-0 gold + "
        f"the gain with KL <= K{' there and at every eval before' if kl_stat == 'peak' else ''}, mean over the seeds that got there (k/n), of the configuration that got there "
        "most often, then soonest; ratios are SAC's over the baseline's (CI from the same redraws; compute: "
        "progress/forward_tokens at that eval, wall: progress/wall_s); budget: fewer / more where the budget "
        "ratio's CI excludes 1; no ratio across units (pairs against queries); best-of-N's queries select at "
        "inference (N per prompt, spent again at every answer), so its ratio is not judged.",
    ]
    return "\n".join(lines) + "\n"


def write_csv(rows: list[Verdict], path: Path, labels: dict[int, str]) -> None:
    def est(estimate: Estimate | None) -> list[object]:
        return ["", "", ""] if estimate is None else [estimate.mean, estimate.lo, estimate.hi]

    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "kl_budget", "baseline", "sac_group", "sac_gold", "baseline_group", "baseline_gold",
                         "gold_delta", "gold_delta_lo", "gold_delta_hi", "gold_verdict", "sac_budget", "baseline_budget",
                         "budget_unit", "budget_ratio", "budget_ratio_lo", "budget_ratio_hi", "compute_ratio",
                         "compute_ratio_lo", "compute_ratio_hi", "wall_ratio", "wall_ratio_lo", "wall_ratio_hi",
                         "budget_verdict"])
        for row in rows:
            writer.writerow([
                row.task, row.budget, row.baseline, labels[id(row.sac.group)] if row.sac else "",
                row.sac.gold.mean if row.sac else "", labels[id(row.other.group)] if row.other else "",
                row.other.gold.mean if row.other else "", *est(row.gold_delta), row.gold_verdict,
                row.sac_crossing.spent.mean if row.sac_crossing else "",
                row.other_crossing.spent.mean if row.other_crossing else "",
                "/".join(row.other_crossing.units) if row.other_crossing else "",
                *est(row.ratios["budget"]), *est(row.ratios["compute"]), *est(row.ratios["wall"]), row.budget_verdict])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="run dirs, sweep dirs or records files")
    parser.add_argument("--out", type=Path, required=True, help="where answer.md and answer.csv go")
    parser.add_argument("--of", default="sac", help="the algorithm held against every other")
    parser.add_argument("--min-seeds", type=int, default=3, help="groups with fewer seeds are not chosen")
    parser.add_argument("--kl-stat", choices=KL_STATS, default="final",
                        help="hold each run's final eval/kl_ref to K, or its peak over every eval (as align compare)")
    args = parser.parse_args(argv)
    groups = [group for group in group_runs(load_inputs(args.inputs).runs) if distinct_seeds(group) >= args.min_seeds]
    budgets, gains = KLBudgets(), Gains()
    points = final_points(groups, args.kl_stat)
    labels = short_labels(points)
    rows = verdicts(points, args.of, budgets, gains)
    if not rows:
        print(f"final_answer: no task with {args.of} and another algorithm at >= {args.min_seeds} seeds in "
              f"{' '.join(args.inputs)}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, args.of, gains, labels, args.kl_stat)
    held = "" if args.kl_stat == "final" else ", KL held at every eval (--kl-stat peak)"
    (args.out / "answer.md").write_text(f"# {args.of} against each baseline at matched KL{held} "
                                        f"(scripts/final_answer.py)\n\n" + text)
    write_csv(rows, args.out / "answer.csv", labels)
    print(text)
    print(f"wrote {args.out / 'answer.md'} and {args.out / 'answer.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
