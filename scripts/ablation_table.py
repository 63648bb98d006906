"""Each SAC option of experiment=sac_ablation against plain SAC: gold@1, gold@2 and the reward-model queries to
first reach step-0 gold + 0.3 within K, over seeds (README "SAC at its best").

    python scripts/ablation_table.py docs/results/sac_ablation/runs.jsonl --out docs/results/sac_ablation \
        [--kl-budgets 1,2] [--gain 0.3]

Reads run dirs or records files (as `align compare`). A variant is what a sentiment SAC group changes from
SAC's defaults besides its temperature (algo.alpha at a fixed temperature, algo.target_kl when learned); its
groups at the different temperatures are the variant's KL grid, so, as `align compare`'s matched-KL table
does for an algorithm, gold@K is the variant's best seed-mean final gold among its groups whose seed-mean
final KL is at most K, and queries-to-gain within K that of its fastest group. Each variant is set against
plain SAC of its family (fixed or learned temperature): the difference of the means at each K, with a 95%
bootstrap CI over both groups' seeds. Writes ablation.md and ablation.csv into --out, the table to stdout.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from align_cli.compare import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    GOLD,
    Estimate,
    FastestRow,
    FinalPoint,
    Group,
    best_within,
    comparable_config,
    final_point,
    format_estimate,
    group_runs,
    load_inputs,
    mean_and_ci,
    reach_within,
)
from align_cli.registry import get

TEMPERATURE = ("algo.alpha", "algo.autotune_alpha", "algo.target_kl")
PLAIN = "plain SAC"


@dataclass(frozen=True)
class Variant:
    family: str  # "fixed alpha" or "learned alpha"
    name: str  # the changed options, "key=value ...", or PLAIN
    groups: tuple[Group, ...]


@dataclass(frozen=True)
class Cell:
    """One variant at one KL budget K."""

    best: FinalPoint | None  # its group with the most gold among those ending within K
    temperature: str  # that group's alpha or target_kl
    delta: Estimate | None  # best gold minus plain SAC's best gold within K (bootstrap over both seed sets)
    fastest: FastestRow | None  # its group that first reached the gain within K soonest


def variants(groups: list[Group]) -> list[Variant]:
    """The sentiment SAC groups by (family, changed options), plain SAC first in each family."""
    defaults = get("sac").Config()
    sac = [(group, config) for group in groups for config in [comparable_config(group.runs[0])]
           if config.get("algo.name") == "sac" and config.get("task.name") == "sentiment"]
    # a setting all the groups share is nobody's change, even where the yaml and the dataclass disagree
    shared = {key for key in {key for _, config in sac for key in config}
              if len({repr(config.get(key)) for _, config in sac}) == 1}
    by_key: dict[tuple[str, str], list[Group]] = {}
    for group, config in sac:
        # autotune_alpha None learns the temperature on a task with a target_kl (sentiment has one)
        family = "fixed alpha" if config.get("algo.autotune_alpha") is False else "learned alpha"
        changed = sorted(f"{key[5:]}={value}" for key, value in config.items()
                         if key.startswith("algo.") and key not in TEMPERATURE and key != "algo.name"
                         and key not in shared and hasattr(defaults, key[5:]) and getattr(defaults, key[5:]) != value)
        by_key.setdefault((family, " ".join(changed) or PLAIN), []).append(group)
    order = sorted(by_key, key=lambda key: (key[0] != "fixed alpha", key[1] != PLAIN, key[1]))
    return [Variant(family, name, tuple(by_key[(family, name)])) for family, name in order]


def temperature_of(group: Group) -> str:
    config = comparable_config(group.runs[0])
    if config.get("algo.autotune_alpha") is False:
        return f"alpha {config.get('algo.alpha'):g}"
    return f"target_kl {config.get('algo.target_kl'):g}"


def difference(treated: Group, control: Group) -> Estimate | None:
    """Mean final gold of `treated` minus `control`'s, with a percentile-bootstrap CI: each resample draws
    both groups' seeds with replacement, independently (their seeds are separate runs)."""
    a = np.array([v for v in (run.final(GOLD) for run in treated.runs) if v is not None], dtype=float)
    b = np.array([v for v in (run.final(GOLD) for run in control.runs) if v is not None], dtype=float)
    if a.size == 0 or b.size == 0:
        return None
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    draws = (a[rng.integers(0, a.size, (BOOTSTRAP_RESAMPLES, a.size))].mean(axis=1)
             - b[rng.integers(0, b.size, (BOOTSTRAP_RESAMPLES, b.size))].mean(axis=1))
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return Estimate(float(a.mean() - b.mean()), float(lo), float(hi), int(min(a.size, b.size)))


def fastest(variant: Variant, gain: float, budget: float) -> FastestRow | None:
    """As `align compare`'s fastest-within-K: the largest share of seeds that got there, then the least
    mean budget."""
    reached = [row for row in (reach_within(group, gain, budget, GOLD) for group in variant.groups) if row.reached]
    return min(reached, key=lambda row: (-row.reached / row.measured, row.spent.mean), default=None)


def cells(variant: Variant, plain: Variant | None, budgets: tuple[float, ...], gain: float) -> list[Cell]:
    points = [final_point(group, GOLD) for group in variant.groups]
    control_points = [final_point(group, GOLD) for group in plain.groups] if plain else []
    out = []
    for budget in budgets:
        best = best_within(points, budget)
        control = best_within(control_points, budget)
        delta = (difference(best.group, control.group)
                 if best and control and variant is not plain else None)
        out.append(Cell(best, temperature_of(best.group) if best else "-", delta, fastest(variant, gain, budget)))
    return out


def frontier_shift(variant: Variant, plain: Variant | None) -> float | None:
    """How far the variant's final points lie above (+) or below (-) plain SAC's frontier at the same KL:
    the mean over its groups of gold minus plain's gold interpolated linearly between plain's groups in KL
    order (seed means); groups outside plain's KL range are left out (no extrapolation)."""
    if plain is None or variant is plain:
        return None
    anchors = sorted((p.kl_ref.mean, p.gold.mean) for p in map(lambda g: final_point(g, GOLD), plain.groups)
                     if p.placed)
    if len(anchors) < 2:
        return None
    kls, golds = zip(*anchors, strict=True)
    shifts = [p.gold.mean - float(np.interp(p.kl_ref.mean, kls, golds))
              for p in (final_point(group, GOLD) for group in variant.groups)
              if p.placed and kls[0] <= p.kl_ref.mean <= kls[-1]]
    return float(np.mean(shifts)) if shifts else None


def format_delta(delta: Estimate | None) -> str:
    if delta is None:
        return "-"
    return f"{delta.mean:+.2f} [{delta.lo:+.2f}, {delta.hi:+.2f}]"


def format_fastest(row: FastestRow | None, seeds: int) -> str:
    if row is None:
        return f"never (0/{seeds})"
    return f"{row.spent.mean:.0f} q ({row.reached}/{row.measured})"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="run dirs, sweep dirs or records files")
    parser.add_argument("--out", type=Path, required=True, help="where ablation.md and ablation.csv go")
    parser.add_argument("--kl-budgets", default="1,2", help="comma-separated K (nats)")
    parser.add_argument("--gain", type=float, default=0.3, help="gold gain over step 0")
    args = parser.parse_args(argv)
    budgets = tuple(float(k) for k in args.kl_budgets.split(","))
    found = variants(group_runs(load_inputs(args.inputs).runs))
    if not found:
        print(f"ablation_table: no sentiment sac group in {' '.join(args.inputs)}", file=sys.stderr)
        return 2
    plains = {variant.family: variant for variant in found if variant.name == PLAIN}
    header = ["family", "variant", "seeds", "vs plain's frontier"]
    for k in budgets:
        header += [f"gold@{k:g}", f"vs plain @{k:g}", f"at @{k:g}", f"to +{args.gain:g} within {k:g}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    csv_rows = []
    for variant in found:
        row_cells = cells(variant, plains.get(variant.family), budgets, args.gain)
        seeds = max(len(group.runs) for group in variant.groups)
        shift = frontier_shift(variant, plains.get(variant.family))
        cells_md = [variant.family, variant.name, str(seeds), "-" if shift is None else f"{shift:+.3f}"]
        csv_row: dict[str, object] = {"family": variant.family, "variant": variant.name, "seeds": seeds,
                                      "frontier_shift": "" if shift is None else shift}
        for k, cell in zip(budgets, row_cells, strict=True):
            cells_md += [format_estimate(cell.best.gold, 2) if cell.best else "(none)", format_delta(cell.delta),
                         cell.temperature + (f", {cell.best.kl_ref.mean:.2f} nats" if cell.best else ""),
                         format_fastest(cell.fastest, seeds)]
            gold = mean_and_ci(cell.best.gold if cell.best else None)
            spent = mean_and_ci(cell.fastest.spent if cell.fastest else None)
            csv_row.update({f"gold_at_{k:g}": gold[0], f"gold_at_{k:g}_lo": gold[1], f"gold_at_{k:g}_hi": gold[2],
                            f"delta_at_{k:g}": cell.delta.mean if cell.delta else "",
                            f"delta_at_{k:g}_lo": cell.delta.lo if cell.delta else "",
                            f"delta_at_{k:g}_hi": cell.delta.hi if cell.delta else "",
                            f"temperature_at_{k:g}": cell.temperature,
                            f"kl_at_{k:g}": cell.best.kl_ref.mean if cell.best else "",
                            f"queries_within_{k:g}": spent[0], f"queries_within_{k:g}_lo": spent[1],
                            f"queries_within_{k:g}_hi": spent[2],
                            f"reached_within_{k:g}": cell.fastest.reached if cell.fastest else 0})
        lines.append("| " + " | ".join(cells_md) + " |")
        csv_rows.append(csv_row)
    table = "\n".join(lines)
    legend = (f"\n\n- vs plain's frontier: the mean over the variant's temperatures of its final gold minus "
              f"plain SAC's at the same final KL (seed means; plain's points joined linearly in KL order, "
              f"points outside their KL range left out): + above plain's frontier, - below.\n"
              f"- gold@K: the variant's best seed-mean final gold among its groups (temperatures) that ended at "
              f"a seed-mean eval/kl_ref <= K, mean [95% bootstrap CI] over its seeds; `at`: that group's "
              f"temperature and KL; `(none)`: no group ended within K.\n"
              f"- vs plain: that gold minus plain SAC's gold@K in the same family (fixed or learned "
              f"temperature), [95% CI] resampling both groups' seeds.\n"
              f"- to +{args.gain:g} within K: reward-model queries to the first eval at step-0 gold + "
              f"{args.gain:g} with eval/kl_ref <= K, of the variant's group whose seeds got there most often, "
              f"then soonest (mean over the seeds that got there; k/n of its seeds).\n")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.md").write_text("# SAC options against plain SAC (scripts/ablation_table.py)\n\n"
                                         + table + legend)
    with (args.out / "ablation.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(csv_rows[0]))
        writer.writeheader()
        writer.writerows(csv_rows)
    print(table)
    print(f"wrote {args.out / 'ablation.md'} and {args.out / 'ablation.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
