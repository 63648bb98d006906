"""More seeds where the answer rests: the grid points `align compare` picks at each KL budget get new seeds.

A frontier sweep runs every grid point on 3 seeds; the matched-KL answer quotes, per algorithm, task and
budget K, one grid point (the best seed-mean gold within K, frontier.csv) and the one soonest to the gain
within K (fastest.csv). This script reads finished runs as `align compare` does (run dirs or records files),
finds those chosen groups among experiment=<name>'s runs, matches each to its grid point of
align_cli/conf/experiment/<name>.yaml, and writes experiment=<name>_seeds: the same experiment (eval settings,
job dir names) restricted to the chosen grid points, at the new seeds. Run it into the same sweep dir, so
`align compare` pools the new seeds with the old:

    python scripts/more_seeds.py docs/results/frontier/runs.jsonl --experiment frontier [--seeds 3,4]
    align train -m experiment=frontier_seeds hydra.sweep.dir=runs/frontier resume=auto ...

Groups with fewer than --min-seeds distinct seeds are not candidates (as `align compare --min-seeds`).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import sys
from pathlib import Path

import yaml

from align_cli import registry
from align_cli.compare import (
    Gains,
    Group,
    KLBudgets,
    comparable_config,
    distinct_seeds,
    fastest_rows,
    final_points,
    group_runs,
    load_inputs,
    matched_rows,
)

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "align_cli" / "conf" / "experiment"
RUN_COMMAND = ("align train -m experiment={name}_seeds hydra.sweep.dir=runs/{name} resume=auto "
               "hydra/launcher=joblib hydra.launcher.n_jobs=2 threads=1")


def grid_points(grid: dict[str, str]) -> list[dict[str, str]]:
    """The single points of one grid: {key: "0.1,0.3"} -> [{key: "0.1"}, {key: "0.3"}] (`algo` kept)."""
    keys = [key for key in grid if key != "algo"]
    values = [str(grid[key]).split(",") for key in keys]
    return [{"algo": grid["algo"], **dict(zip(keys, (v.strip() for v in combo), strict=True))}
            for combo in itertools.product(*values)]


def same_value(written: str, value: object) -> bool:
    """A grid's value as written ("1.5", "false") against a run's config value (1.5, False)."""
    parsed = yaml.safe_load(written)
    if isinstance(parsed, bool) or isinstance(value, bool):
        return parsed is value
    if isinstance(parsed, (int, float)) and isinstance(value, (int, float)):
        return math.isclose(parsed, value, rel_tol=1e-9, abs_tol=0.0)
    return parsed == value


def config_default(algo: str, key: str) -> object:
    """The algorithm's Config default of `algo.<field>` (dataclasses.MISSING where it has none)."""
    fields = {field.name: field for field in dataclasses.fields(registry.get(algo).Config)}
    field = fields.get(key.split(".", 1)[1]) if key.startswith("algo.") else None
    return dataclasses.MISSING if field is None else field.default


def point_of(group: Group, grids: list[dict[str, str]]) -> dict[str, str] | None:
    """The grid point the group's runs ran at; None when no point of the grids matches its config. A point
    matches when the group has the point's values and, for the keys that another grid of the same algorithm
    sets but this point leaves out, the algorithm's defaults: SAC at alpha 1 and UTD 16 ran at
    {alpha: 1, utd: 16}, not at the UTD 4 grid's {alpha: 1} (which leaves algo.utd at its default, 4), and a
    run recorded at UTD 2 (an earlier default) matches neither. Of several matches, the most specific."""
    config = comparable_config(group.runs[0])
    algo = config.get("algo.name")
    varied = {key for grid in grids if grid["algo"] == algo for key in grid if key != "algo"}

    def matches(point: dict[str, str]) -> bool:
        if point["algo"] != algo or not all(key in config and same_value(written, config[key])
                                            for key, written in point.items() if key != "algo"):
            return False
        defaults = {key: config_default(algo, key) for key in varied - set(point)}
        return all(default is dataclasses.MISSING or (key in config and config[key] == default)
                   for key, default in defaults.items())

    matching = [point for grid in grids for point in grid_points(grid) if matches(point)]
    return max(matching, key=len, default=None)


def chosen_groups(inputs: list[str], experiment: str, min_seeds: int) -> list[tuple[Group, list[str]]]:
    """The groups of `experiment`'s runs that the matched-KL and fastest-within-K tables pick, each with the
    reasons (e.g. "sentiment K=2: best gold"), in the order first picked."""
    runs = [run for run in load_inputs(inputs).runs if (run.config or {}).get("experiment") == experiment]
    groups = [group for group in group_runs(runs) if distinct_seeds(group) >= min_seeds]
    points = final_points(groups)
    budgets, gains = KLBudgets(), Gains()
    reasons: dict[str, tuple[Group, list[str]]] = {}
    for row in matched_rows(points, budgets, gains):
        if row.best is not None:
            reasons.setdefault(row.best.group.label, (row.best.group, []))[1].append(
                f"{row.task} K={row.budget:g}: best gold")
    for row in fastest_rows(points, budgets, gains):
        if row.group is not None:
            reasons.setdefault(row.group.label, (row.group, []))[1].append(f"{row.task} K={row.budget:g}: soonest")
    return list(reasons.values())


def experiment_text(name: str, chosen: list[tuple[dict[str, str], list[str]]], seeds: str, source: str) -> str:
    lines = [
        "# @package _global_",
        f"# {RUN_COMMAND.format(name=name)}",
        f"# experiment={name} at the grid points its matched-KL answer rests on, at more seeds: for each",
        "# algorithm, task and KL budget, the point with the best seed-mean gold within K and the one soonest to",
        f"# the gain within K. Written by scripts/more_seeds.py from {source}; run it into",
        f"# experiment={name}'s sweep dir, so `align compare` pools these seeds with the first ones.",
        "defaults:",
        f"  - {name}",
        "  - _self_",
        "",
        "hydra:",
        "  sweeper:",
        "    params:",
        f"      seed: {seeds}",
        "    grids:  # each chosen grid point, with why",
    ]
    for point, why in chosen:
        cells = ", ".join([f"algo: {point['algo']}"] + [f'{key}: "{value}"' for key, value in point.items()
                                                       if key != "algo"])
        lines.append(f"      - {{{cells}}}  # {'; '.join(why)}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", help="run dirs, sweep dirs or records files (as align compare)")
    parser.add_argument("--experiment", required=True, help="the experiment whose runs and grids to read")
    parser.add_argument("--seeds", default="3,4", help="the new seeds, comma-separated (default 3,4)")
    parser.add_argument("--min-seeds", type=int, default=3, help="only groups with at least this many seeds")
    parser.add_argument("--out", type=Path, help="the file to write (default: the experiment dir's <name>_seeds.yaml)")
    args = parser.parse_args(argv)
    source = EXPERIMENTS / f"{args.experiment}.yaml"
    try:
        if not source.exists():
            raise ValueError(f"no experiment {args.experiment} ({source})")
        grids = (yaml.safe_load(source.read_text()) or {}).get("hydra", {}).get("sweeper", {}).get("grids")
        if not grids:
            raise ValueError(f"{source}: no hydra.sweeper.grids")
        chosen = []
        for group, why in chosen_groups(args.inputs, args.experiment, args.min_seeds):
            point = point_of(group, grids)
            if point is None:  # a point since dropped from the grid: this experiment cannot rerun it
                print(f"more_seeds: left out {group.label} ({'; '.join(why)}): no grid point of {source.name} "
                      "matches its config", file=sys.stderr)
            elif point not in [known for known, _ in chosen]:
                chosen.append((point, why))
        if not chosen:
            raise ValueError(f"no group of experiment={args.experiment} with >= {args.min_seeds} seeds on its grid "
                             "in the inputs")
    except (OSError, ValueError) as exc:
        print(f"more_seeds: error: {exc}", file=sys.stderr)
        return 2
    out = args.out or EXPERIMENTS / f"{args.experiment}_seeds.yaml"
    out.write_text(experiment_text(args.experiment, chosen, args.seeds, " ".join(args.inputs)))
    print(f"wrote {out}: {len(chosen)} grid points x seeds {args.seeds}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
