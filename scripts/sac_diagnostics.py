"""Where SAC's critic stands, per group: the diag/* metrics (algo.diagnose_every) averaged over the first and
the second half of each run (by reward-model queries), then over seeds, beside the eval response length
(start, lowest, end) and the final gold and KL.

    python scripts/sac_diagnostics.py docs/results/sac_ablation/runs.jsonl [more run dirs or records]
        [--out docs/results/sac_ablation/diagnostics.md]

diag/q_minus_mc_return < 0: the critic underestimates the soft return of the replayed paths (the twin
minimum, stale n-step returns); diag/q_eos_minus_v > 0: ending now looks better than the policy's average
next token, a pull toward shorter responses. Groups without diag/* rows are left out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from align_cli.analysis import number
from align_cli.compare import group_runs, load_inputs

DIAGNOSTICS = ("diag/q_minus_mc_return", "diag/q_eos_minus_v", "diag/pi_eos")


def halves(run, key: str) -> tuple[float | None, float | None]:
    """Mean of `key` over the diagnostics rows in the first and the second half of the run's queries."""
    rows = [(number(row.get("progress/rm_queries")), number(row.get(key))) for row in run.metrics]
    rows = [(q, v) for q, v in rows if q is not None and v is not None]
    if not rows:
        return None, None
    middle = max(q for q, _ in rows) / 2
    first = [v for q, v in rows if q <= middle]
    second = [v for q, v in rows if q > middle]
    return (sum(first) / len(first) if first else None, sum(second) / len(second) if second else None)


def mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def cell(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(groups) -> list[str]:
    header = ["group", "seeds", *(f"{key[5:]} (1st / 2nd half)" for key in DIAGNOSTICS),
              "response_len (start / min / end)", "final gold", "final kl_ref"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    for group in groups:
        runs = [run for run in group.runs if any(k.startswith("diag/") for row in run.metrics for k in row)]
        if not runs:
            continue
        cells = [group.label, str(len(runs))]
        for key in DIAGNOSTICS:
            first, second = zip(*(halves(run, key) for run in runs), strict=True)
            cells.append(f"{cell(mean(list(first)))} / {cell(mean(list(second)))}")
        lengths = [[number(row.get("eval/response_len")) for row in run.evals] for run in runs]
        lengths = [[v for v in seq if v is not None] for seq in lengths]
        lengths = [seq for seq in lengths if seq]
        cells.append(" / ".join(cell(mean([pick(seq) for seq in lengths]), 1) for pick in (lambda s: s[0], min,
                                                                                            lambda s: s[-1])))
        cells.append(cell(mean([run.final("eval/gold_reward") for run in runs])))
        cells.append(cell(mean([run.final("eval/kl_ref") for run in runs]), 2))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="run dirs, sweep dirs or records files")
    parser.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = parser.parse_args(argv)
    lines = table(group_runs(load_inputs(args.inputs).runs))
    if len(lines) == 2:
        print(f"sac_diagnostics: no run with diag/* metrics in {' '.join(args.inputs)} "
              "(train with algo.diagnose_every=N)", file=sys.stderr)
        return 2
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(f"Means over seeds; diag/* in reward units (scripts/sac_diagnostics.py).\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
