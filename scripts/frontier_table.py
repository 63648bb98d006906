"""The README's matched-KL tables: one row per algorithm, one column per KL budget K, from the `frontier.csv`
and `fastest.csv` that `align compare --out DIR` writes.

    python scripts/frontier_table.py docs/results/final [--task sentiment]

Per task, two tables:
- gold@K: `align compare`'s pick (the best seed-mean final gold among the algorithm's configurations that
  ended at KL <= K), mean [95% bootstrap CI], with its knob, final KL, runs pooled (one per seed) and final
  grammatical share (sentiment) or `eval/kl_to_optimal` (x*, the tree); `(rm)` where a task without a gold
  reward stands in the reward model's;
- to +gain within K: the budget (reward-model queries `q`, or preference pairs) to the first eval at step-0
  gold + the gain with KL <= K, of the algorithm's configuration that got there most often, then soonest,
  mean [CI] over the seeds that got there (k/n), with its knob.
Algorithms in the question's order (sac, then the on-policy baselines, then the rest); markdown to stdout.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from align_cli.compare import GOLD, Gains
from align_cli.registry import question_order


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def short(value: str, decimals: int = 2) -> str:
    return f"{float(value):.{decimals}f}"


def knob(group: str, algo: str) -> str:
    """`sac task=tree alpha=1 utd=16` -> `alpha 1, utd 16`: the group's settings without its algorithm's name
    and its task (the table's own); empty for an algorithm with one configuration (`align compare` labels a
    group by what differs between its algorithm's groups)."""
    settings = [s for s in group.removeprefix(algo).strip().split() if not s.startswith("task=")]
    return ", ".join(setting.replace("=", " ") for setting in settings)


def gold_cell(row: dict[str, str] | None) -> str:
    if row is None or not row["group"]:
        return "none within K"
    ci = f" [{short(row['gold_lo'])}, {short(row['gold_hi'])}]" if int(row["seeds"]) > 1 else ""
    side = (f"gram {short(row['grammatical'])}" if row["grammatical"]
            else f"x* {short(row['kl_to_optimal'])}" if row["kl_to_optimal"] else "")
    details = [knob(row["group"], row["algo"]), f"KL {short(row['kl_ref'])}", f"{row['seeds']} runs", side]
    stand_in = " (rm)" if row["gold_metric"] and row["gold_metric"] != GOLD else ""
    return f"{short(row['gold'])}{ci}{stand_in} ({'; '.join(detail for detail in details if detail)})"


def fastest_cell(row: dict[str, str] | None) -> str:
    if row is None or not row["group"] or not row["budget_to_gain"]:
        return "never"  # no seed of any of its configurations got there within K
    spent = f"{float(row['budget_to_gain']):.0f}"
    if int(row["reached"]) > 1:
        spent += f" [{float(row['budget_to_gain_lo']):.0f}, {float(row['budget_to_gain_hi']):.0f}]"
    details = [f"{row['reached']}/{row['measured']}", knob(row["group"], row["algo"])]
    return f"{spent} {row['budget_unit']} ({'; '.join(detail for detail in details if detail)})"


def tables(frontier: list[dict[str, str]], fastest: list[dict[str, str]], task: str) -> str:
    by_cell: dict[tuple[str, float], dict[str, str]] = {}
    budgets: set[float] = set()
    for row in frontier:
        if row["task"] == task:
            by_cell[row["algo"], float(row["kl_budget"])] = row
            budgets.add(float(row["kl_budget"]))
    fast = {(row["algo"], float(row["kl_budget"])): row for row in fastest if row["task"] == task}
    algos = sorted({algo for algo, _ in by_cell}, key=question_order)
    ks = sorted(budgets)
    gain = next((float(row["gain"]) for row in frontier if row["task"] == task and row["gain"]), Gains().of(task))
    header = "| algo | " + " | ".join(f"KL <= {k:g}" for k in ks) + " |\n|---|" + "---|" * len(ks) + "\n"
    gold = "".join(f"| {algo} | " + " | ".join(gold_cell(by_cell.get((algo, k))) for k in ks) + " |\n"
                   for algo in algos)
    spent = "".join(f"| {algo} | " + " | ".join(fastest_cell(fast.get((algo, k))) for k in ks) + " |\n"
                    for algo in algos)
    return (f"### {task}: gold@K\n\n{header}{gold}\n"
            f"### {task}: budget to step-0 gold + {gain:g} within K\n\n{header}{spent}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("compare_dir", type=Path, help="an `align compare --out` dir (frontier.csv, fastest.csv)")
    parser.add_argument("--task", action="append", help="only this task (repeatable); default: every task")
    args = parser.parse_args(argv)
    paths = [args.compare_dir / name for name in ("frontier.csv", "fastest.csv")]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        print(f"frontier_table: no {', '.join(missing)} (run `align compare ... --out {args.compare_dir}`)",
              file=sys.stderr)
        return 2
    frontier, fastest = (read_rows(path) for path in paths)
    tasks = args.task or sorted({row["task"] for row in frontier})
    unknown = sorted(set(tasks) - {row["task"] for row in frontier})
    if unknown:
        print(f"frontier_table: no task {', '.join(unknown)} in {paths[0]}", file=sys.stderr)
        return 2
    print("\n".join(tables(frontier, fastest, task) for task in tasks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
