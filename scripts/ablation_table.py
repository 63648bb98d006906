"""Each SAC option of experiment=sac_ablation against plain SAC: gold@1, gold@2 and the reward-model queries to
first reach step-0 gold + 0.3 within K, over seeds (README "SAC at its best").

    python scripts/ablation_table.py docs/results/sac_ablation/runs.jsonl --out docs/results/sac_ablation \
        [--kl-budgets 1,2] [--gain 0.3]

Reads run dirs or records files (as `align compare`). A variant is what a sentiment SAC group changes from
SAC's defaults besides its temperature (algo.alpha at a fixed temperature, algo.target_kl when learned); its
groups at the different temperatures are the variant's KL grid, its final points (seed means of final gold
and KL) its frontier. Per KL budget K:
- gold at K: the variant's frontier read at KL = K, linear between its two points around K (a grid of two or
  three temperatures seldom ends a point at K exactly), or its top point's gold where that ended just under
  K (at >= 0.9 K: no extrapolation); none where K lies outside its points' KL range otherwise; with
  a 95% bootstrap CI (each resample redraws every group's seeds); `vs plain`: minus plain SAC's (the same
  family: fixed or learned temperature) at K, CI from the same resamples drawn independently for both;
- best <= K: `align compare`'s gold@K, the best seed-mean final gold among its groups that ended within K;
- queries to +gain within K: as `align compare`'s fastest-within-K, of the variant's fastest group.
Writes ablation.md and ablation.csv into --out, the table to stdout.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from align_cli.compare import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    GOLD,
    KL,
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
    soonest,
)
from align_cli.config import register_configs

TEMPERATURE = ("algo.alpha", "algo.autotune_alpha", "algo.target_kl")
NEAR = 0.9  # a frontier whose top point ended at >= NEAR x K (and < K) is read at that point for K
PLAIN = "plain SAC"


@dataclass(frozen=True)
class Variant:
    family: str  # "fixed alpha" or "learned alpha"
    name: str  # the changed options, "key=value ...", or PLAIN
    groups: tuple[Group, ...]


@dataclass(frozen=True)
class Cell:
    """One variant at one KL budget K."""

    at_k: Estimate | None  # the frontier's gold at KL = K (None: K outside its points' KL range)
    delta: Estimate | None  # at_k minus plain SAC's at_k
    best: FinalPoint | None  # its group with the most gold among those ending within K
    temperature: str  # that group's alpha or target_kl
    fastest: FastestRow | None  # its group that first reached the gain within K soonest


def plain_sac() -> dict[str, object]:
    """SAC's options as experiment=sac_ablation runs them where an arm does not change them: algo=sac's config,
    composed with the experiment, which pins the options whose defaults changed after its runs started (so a
    later change of a default does not turn its plain runs into a variant)."""
    register_configs()
    with initialize_config_module(config_module="align_cli.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=["algo=sac", "experiment=sac_ablation"])
    return OmegaConf.to_container(cfg.algo, resolve=True)


def changes_from(plain: dict[str, object], config: dict[str, object], ignored: set[str]) -> dict[str, object]:
    """The algo.* settings of a flattened run config that differ from `plain` (SAC's options), but `ignored`."""
    return {key: value for key, value in config.items() if key.startswith("algo.") and key not in ignored
            and key[5:] in plain and plain[key[5:]] != value}


def variants(groups: list[Group]) -> list[Variant]:
    """The sentiment SAC groups by (family, changed options), plain SAC first in each family."""
    plain = plain_sac()
    sac = [(group, config) for group in groups for config in [comparable_config(group.runs[0])]
           if config.get("algo.name") == "sac" and config.get("task.name") == "sentiment"]
    # a setting all the groups share is nobody's change (diagnose_every: every ablation run logs diag/*)
    shared = {key for key in {key for _, config in sac for key in config}
              if len({repr(config.get(key)) for _, config in sac}) == 1}
    by_key: dict[tuple[str, str], list[Group]] = {}
    for group, config in sac:
        # autotune_alpha true, or None in records made before it defaulted to false (learned on sentiment)
        family = "fixed alpha" if config.get("algo.autotune_alpha") is False else "learned alpha"
        changed = sorted(f"{key[5:]}={value}"
                         for key, value in changes_from(plain, config, {*TEMPERATURE, "algo.name", *shared}).items())
        by_key.setdefault((family, " ".join(changed) or PLAIN), []).append(group)
    order = sorted(by_key, key=lambda key: (key[0] != "fixed alpha", key[1] != PLAIN, key[1]))
    return [Variant(family, name, tuple(by_key[(family, name)])) for family, name in order]


def temperature_of(group: Group) -> str:
    config = comparable_config(group.runs[0])
    if config.get("algo.autotune_alpha") is False:
        return f"alpha {config.get('algo.alpha'):g}"
    return f"target_kl {config.get('algo.target_kl'):g}"


def seed_means(group: Group, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
    """The group's mean final KL and gold: over its seeds (rng None), or over BOOTSTRAP_RESAMPLES redraws of
    its seeds with replacement; seeds missing either value are left out."""
    pairs = np.array([(run.final(KL), run.final(GOLD)) for run in group.runs
                      if run.final(KL) is not None and run.final(GOLD) is not None], dtype=float).reshape(-1, 2)
    if rng is None:
        return pairs[:, 0].mean(keepdims=True), pairs[:, 1].mean(keepdims=True)
    draws = pairs[rng.integers(0, len(pairs), (BOOTSTRAP_RESAMPLES, len(pairs)))]  # [resample, seed, (kl, gold)]
    return draws[:, :, 0].mean(axis=1), draws[:, :, 1].mean(axis=1)


def placed(groups: tuple[Group, ...]) -> list[Group]:
    """The groups with at least one seed that logged both a final KL and a final gold."""
    return [group for group in groups
            if any(run.final(KL) is not None and run.final(GOLD) is not None for run in group.runs)]


def gold_at(groups: tuple[Group, ...], budget: float, rng: np.random.Generator | None) -> np.ndarray:
    """The frontier through the groups' final points read at KL = budget, linearly between the points around
    it, or at the top point where that ended just under the budget (>= NEAR x budget), per resample (one
    value when rng is None); NaN where the budget lies outside the points' KL range otherwise."""
    points = placed(groups)
    if len(points) < 2:
        return np.full(1 if rng is None else BOOTSTRAP_RESAMPLES, np.nan)
    kls, golds = map(np.stack, zip(*(seed_means(group, rng) for group in points), strict=True))  # [group, draw]
    out = np.full(kls.shape[1], np.nan)
    for draw in range(kls.shape[1]):
        order = np.argsort(kls[:, draw])
        x, y = kls[order, draw], golds[order, draw]
        if x[0] <= budget <= x[-1]:
            out[draw] = np.interp(budget, x, y)
        elif NEAR * budget <= x[-1] < budget:  # the top point ended just under K: read there, no extrapolation
            out[draw] = y[-1]
    return out


def estimate(point: float, draws: np.ndarray) -> Estimate | None:
    """The point value with the 95% percentile interval of the resamples where it is defined."""
    draws = draws[~np.isnan(draws)]
    if np.isnan(point) or draws.size == 0:
        return None
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return Estimate(float(point), min(float(lo), point), max(float(hi), point), draws.size)


def cells(variant: Variant, plain: Variant | None, budgets: tuple[float, ...], gain: float) -> list[Cell]:
    points = [final_point(group, GOLD) for group in variant.groups]
    out = []
    for budget in budgets:
        mine = gold_at(variant.groups, budget, np.random.default_rng(BOOTSTRAP_SEED))
        at_k = estimate(gold_at(variant.groups, budget, None)[0], mine)
        delta = None
        if plain is not None and variant is not plain and at_k is not None:
            theirs = gold_at(plain.groups, budget, np.random.default_rng(BOOTSTRAP_SEED + 1))
            delta = estimate(at_k.mean - gold_at(plain.groups, budget, None)[0], mine - theirs)
        best = best_within(points, budget)
        out.append(Cell(at_k, delta, best, temperature_of(best.group) if best else "-",
                        soonest([reach_within(group, gain, budget, GOLD) for group in variant.groups])))
    return out


def frontier_shift(variant: Variant, plain: Variant | None) -> float | None:
    """How far the variant's final points lie above (+) or below (-) plain SAC's frontier at the same KL:
    the mean over its groups of gold minus plain's gold interpolated linearly between plain's groups in KL
    order (seed means); groups outside plain's KL range are left out (no extrapolation)."""
    if plain is None or variant is plain:
        return None
    anchors = sorted(tuple(float(v[0]) for v in seed_means(group, None)) for group in placed(plain.groups))
    if len(anchors) < 2:
        return None
    kls, golds = zip(*anchors, strict=True)
    mine = [tuple(float(v[0]) for v in seed_means(group, None)) for group in placed(variant.groups)]
    shifts = [gold - float(np.interp(kl, kls, golds)) for kl, gold in mine if kls[0] <= kl <= kls[-1]]
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
        header += [f"gold at {k:g}", f"vs plain at {k:g}", f"best <= {k:g}", f"to +{args.gain:g} within {k:g}"]
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
            best = (f"{cell.best.gold.mean:.2f} ({cell.temperature}, {cell.best.kl_ref.mean:.2f} nats)"
                    if cell.best else "(none)")
            cells_md += [format_estimate(cell.at_k, 2) if cell.at_k else "(none)", format_delta(cell.delta), best,
                         format_fastest(cell.fastest, seeds)]
            at_k, delta = mean_and_ci(cell.at_k), mean_and_ci(cell.delta)
            spent = mean_and_ci(cell.fastest.spent if cell.fastest else None)
            csv_row.update({f"gold_at_{k:g}": at_k[0], f"gold_at_{k:g}_lo": at_k[1], f"gold_at_{k:g}_hi": at_k[2],
                            f"delta_at_{k:g}": delta[0], f"delta_at_{k:g}_lo": delta[1],
                            f"delta_at_{k:g}_hi": delta[2],
                            f"best_within_{k:g}": cell.best.gold.mean if cell.best else "",
                            f"best_temperature_{k:g}": cell.temperature,
                            f"best_kl_{k:g}": cell.best.kl_ref.mean if cell.best else "",
                            f"queries_within_{k:g}": spent[0], f"queries_within_{k:g}_lo": spent[1],
                            f"queries_within_{k:g}_hi": spent[2],
                            f"reached_within_{k:g}": cell.fastest.reached if cell.fastest else 0})
        lines.append("| " + " | ".join(cells_md) + " |")
        csv_rows.append(csv_row)
    table = "\n".join(lines)
    legend = (f"\n\n- vs plain's frontier: the mean over the variant's temperatures of its final gold minus "
              f"plain SAC's at the same final KL (seed means; plain's points joined linearly in KL order, "
              f"points outside their KL range left out): + above plain's frontier, - below.\n"
              f"- gold at K: the variant's frontier (its temperatures' final points, seed means) read at "
              f"KL = K, linear between the two points around K (or its top point where that ended at 0.9 K to K), "
              f"mean [95% bootstrap CI: every group's seeds redrawn]; `(none)`: K outside its points' KL range. vs plain: minus plain SAC's gold at K in the "
              f"same family (fixed or learned temperature), both redrawn independently.\n"
              f"- best <= K: `align compare`'s gold@K, the best seed-mean final gold among the variant's "
              f"temperatures that ended within K (temperature, final KL).\n"
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
