"""How far each configuration's KL to the reference rose above where it ended: the README's "KL on the way".

    python scripts/kl_peak.py docs/results/final/runs.jsonl [--min-seeds 3] [--out docs/results/final]

Reads run dirs or records files (as `align compare`), pools runs by configuration (`align compare`'s
groups) and, per task and algorithm, writes one row per configuration: its final eval/kl_ref (seed mean),
its peak (the largest eval/kl_ref of each run, seed mean), the peak over the final (the mean of each seed's
ratio, 95% bootstrap CI) and the budget (reward-model queries or preference pairs) at which the peak
came. Then one line per algorithm and task: the range of that ratio over its configurations. A ratio near 1
means a KL budget on the final eval also holds the whole run; `--kl-stat peak` in `align compare` and
scripts/final_answer.py holds every eval to K instead.
Markdown to stdout; with --out, kl_peak.md and kl_peak.csv there.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from align_cli.analysis import Run, number
from align_cli.compare import (
    KL,
    Estimate,
    Group,
    bootstrap_ci,
    comparable_config,
    counter_of,
    distinct_seeds,
    format_estimate,
    group_runs,
    label_configs,
    load_inputs,
    markdown,
)
from align_cli.registry import question_order


@dataclass(frozen=True)
class PeakRow:
    task: str
    algo: str
    label: str  # the configuration among its algorithm's on its task
    seeds: int
    final: Estimate
    peak: Estimate
    ratio: Estimate  # mean over seeds of peak / final
    spent_at_peak: Estimate  # the budget counter at each run's peak eval
    unit: str  # "q" (reward-model queries) or "pairs"


def kl_evals(run: Run) -> list[dict]:
    """The run's eval rows that logged eval/kl_ref as a number."""
    return [row for row in run.evals if number(row.get(KL)) is not None]


def peak_row(group: Group, label: str) -> PeakRow | None:
    """The group's final and peak KL, or None when no run logged eval/kl_ref at two evals (a run with one
    eval has no "on the way")."""
    runs = [run for run in group.runs if len(kl_evals(run)) >= 2]
    if not runs:
        return None
    finals = [run.final(KL) for run in runs]
    peak_evals = [max(kl_evals(run), key=lambda row: number(row[KL])) for run in runs]  # the first, on a tie
    peaks = [number(row[KL]) for row in peak_evals]
    counter = counter_of(runs[0])
    spent = [number(row.get(counter)) for row in peak_evals]
    ratios = [peak / final if final and final > 0 else None for peak, final in zip(peaks, finals, strict=True)]
    estimates = [bootstrap_ci(values) for values in (finals, peaks, ratios, spent)]
    if any(estimate is None for estimate in estimates):
        return None
    final, peak, ratio, spent_at_peak = estimates
    return PeakRow(runs[0].task, runs[0].algo, label, len(runs), final, peak, ratio, spent_at_peak,
                   "pairs" if counter.endswith("pref_pairs") else "q")


def peak_rows(groups: list[Group]) -> list[PeakRow]:
    """One row per group, by task, then algorithm (the question's order), then label."""
    by_algo: dict[tuple[str, str], list[Group]] = {}
    for group in groups:
        by_algo.setdefault((group.runs[0].task, group.runs[0].algo), []).append(group)
    rows = []
    tasks = sorted({task for task, _ in by_algo})
    for task in tasks:
        for algo in sorted({algo for t, algo in by_algo if t == task}, key=question_order):
            members = by_algo[task, algo]
            labels = label_configs([comparable_config(group.runs[0]) for group in members])
            rows += [row for row in (peak_row(group, without_algo(label, algo))
                                     for group, label in zip(members, labels, strict=True)) if row is not None]
    return rows


def without_algo(label: str, algo: str) -> str:
    """`sac alpha=1 utd=16` -> `alpha=1 utd=16` (the table has an algorithm column); `(default)` if nothing is left."""
    rest = label[len(algo):].strip() if label == algo or label.startswith(algo + " ") else label
    return rest or "(default)"


def ranges(rows: list[PeakRow]) -> list[tuple[str, str, float, float, float, int]]:
    """(task, algo, smallest, median and largest ratio, configurations) in the rows' order."""
    out: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        out.setdefault((row.task, row.algo), []).append(row.ratio.mean)
    return [(task, algo, min(values), statistics.median(values), max(values), len(values))
            for (task, algo), values in out.items()]


def to_markdown(rows: list[PeakRow]) -> str:
    parts = []
    for task in dict.fromkeys(row.task for row in rows):
        mine = [row for row in rows if row.task == task]
        cells = [["algorithm", "configuration", "seeds", "final KL", "peak KL", "peak / final", "at (budget)"]]
        cells += [[row.algo, row.label, str(row.seeds), f"{row.final.mean:.2f}", f"{row.peak.mean:.2f}",
                   format_estimate(row.ratio, 2), f"{row.spent_at_peak.mean:.0f} {row.unit}"] for row in mine]
        summary = [f"- {algo}: {lo:.2f}-{hi:.2f}x (median {median:.2f}x) over {n} configuration{'s' * (n > 1)}"
                   for t, algo, lo, median, hi, n in ranges(rows) if t == task]
        parts.append(f"## {task}\n\n" + markdown(cells, text_columns=2) + "\n\nPeak over final KL by algorithm:\n"
                     + "\n".join(summary))
    return "\n\n".join(parts) + "\n"


def write_csv(rows: list[PeakRow], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "algo", "config", "seeds", "final_kl", "peak_kl", "peak_over_final",
                         "peak_over_final_lo", "peak_over_final_hi", "spent_at_peak", "unit"])
        for row in rows:
            writer.writerow([row.task, row.algo, row.label, row.seeds, row.final.mean, row.peak.mean,
                             row.ratio.mean, row.ratio.lo, row.ratio.hi, row.spent_at_peak.mean, row.unit])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="run dirs, sweep dirs or records files")
    parser.add_argument("--min-seeds", type=int, default=3, help="configurations with fewer seeds are left out")
    parser.add_argument("--out", type=Path, help="where kl_peak.md and kl_peak.csv go (default: stdout only)")
    args = parser.parse_args(argv)
    groups = [group for group in group_runs(load_inputs(args.inputs).runs) if distinct_seeds(group) >= args.min_seeds]
    rows = peak_rows(groups)
    if not rows:
        print(f"kl_peak: no configuration with >= {args.min_seeds} seeds and two evals of {KL} in "
              f"{' '.join(args.inputs)}", file=sys.stderr)
        return 2
    text = to_markdown(rows)
    print(text, end="")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "kl_peak.md").write_text("# KL to the reference: peak along the run against final "
                                             "(scripts/kl_peak.py)\n\n" + text)
        write_csv(rows, args.out / "kl_peak.csv")
        print(f"wrote {args.out / 'kl_peak.md'} and {args.out / 'kl_peak.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
