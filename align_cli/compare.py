"""`align compare <run or sweep dirs...> [--out DIR] [--gain G]`: a table and three plots over finished runs.

Every run dir at or under the arguments is read back (align_cli.analysis); unfinished, failed and empty
runs are skipped and listed at the end. Runs whose .hydra/config.yaml agree on everything but the seed
(and the settings that do not change what a run computes: paths, logger, threads, device) form a group,
labelled by the settings that set it apart from the other groups. A table cell is the mean over a group's
seeds with a 95% percentile-bootstrap CI of that mean.

Written to --out (default `<dir>/compare` for one dir, else `./compare`): compare.md (the table and a
legend), compare.csv (the same numbers, unformatted), frontier.png (gold reward against KL to the
reference), curves.png (gold reward against RM queries, preference pairs and wall time) and
overoptimisation.png (reward-model reward against gold reward).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from align_cli.analysis import Run, find_run_dirs, first_reaching, load_run, number
from align_cli.tracking import flatten

GOLD, RM, KL = "eval/gold_reward", "eval/rm_reward", "eval/kl_ref"
QUERIES, PAIRS, WALL = "progress/rm_queries", "progress/pref_pairs", "progress/wall_s"
UNITS = {QUERIES: "q", PAIRS: "pairs"}
# The seed is what a group pools over; the rest do not change what a run computes.
IGNORED_KEYS = ("seed", "paths", "logger", "threads", "prepare.threads", "device", "hydra")
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0  # fixed, so the same runs always give the same table
CI_LEVEL = 0.95


# ---------------------------------------------------------------------------------------------- loading
@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str


def load_finished(roots: list[str | Path]) -> tuple[list[Run], list[Skipped]]:
    """The finished runs at or under `roots`, and every other run dir with the reason it was left out."""
    runs: list[Run] = []
    skipped: list[Skipped] = []
    for path in find_run_dirs(roots):
        if not (path / "summary.json").exists():
            skipped.append(Skipped(path, "unfinished (no summary.json)"))
            continue
        try:
            run = load_run(path)
        except Exception as exc:  # a corrupt file skips its run, not the whole comparison
            skipped.append(Skipped(path, f"unreadable: {type(exc).__name__}: {first_line(exc)}"))
            continue
        if run.summary.get("status") == "failed":
            error = first_line(run.summary.get("error") or "no error recorded")
            skipped.append(Skipped(path, f"failed: {error}"))
        elif not run.metrics:
            skipped.append(Skipped(path, "empty metrics.jsonl"))
        else:
            runs.append(run)
    return runs, skipped


def first_line(text: object) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


# --------------------------------------------------------------------------------------------- grouping
@dataclass
class Group:
    label: str
    runs: list[Run]


def group_runs(runs: list[Run]) -> list[Group]:
    """Runs pooled by their config less the ignored keys, labelled (`label_configs`), ordered by label."""
    configs = [comparable_config(run) for run in runs]
    members: dict[str, list[int]] = {}
    for index, config in enumerate(configs):
        members.setdefault(canonical(config), []).append(index)
    labels = label_configs([configs[indices[0]] for indices in members.values()])
    groups = [Group(label, [runs[i] for i in indices])
              for label, indices in zip(labels, members.values(), strict=True)]
    return sorted(groups, key=lambda group: natural_key(group.label))


def comparable_config(run: Run) -> dict[str, object]:
    """The run's config, interpolations resolved, as {dotted key: value}, less the ignored keys. A run
    without .hydra/config.yaml falls back to the names summary.json records."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    config = run.config or {section: {"name": run.summary[section]}
                            for section in ("algo", "task", "model", "reward") if section in run.summary}
    try:  # `budget.rm_queries: ${task.rm_queries}` and `budget.rm_queries: 8000` are the same setting
        config = OmegaConf.to_container(OmegaConf.create(config), resolve=True)
    except OmegaConfBaseException:  # an interpolation that no longer resolves compares as written
        pass
    return {key: value for key, value in flatten(config).items()
            if not any(key == ignored or key.startswith(ignored + ".") for ignored in IGNORED_KEYS)}


def canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def label_configs(configs: list[dict[str, object]]) -> list[str]:
    """One label per (distinct) config: algo.name, then `key=value` for the non-algo settings that differ
    across the configs, then `key=value` for the algo.* settings that differ among configs of one algo.

    A non-algo setting is left out when the ones shown before it already determine it: `task=tree` stands
    for every setting the tree task brings with it, and the first setting debug=smoke changes for the dozen
    it changes together. They are considered in this order: experiment, the names of task, model and
    reward, then the rest in config order. A setting some configs lack (they were written before it
    existed) differs only where the configs that have it disagree, unless that leaves two labels alike."""
    keys = list(dict.fromkeys(key for config in configs for key in config))  # config order, deterministic
    runs_of_algo: dict[str, list[dict[str, object]]] = {}
    for config in configs:
        runs_of_algo.setdefault(canonical(config.get("algo.name")), []).append(config)

    def distinct(settings: list[str], among: list[dict[str, object]]) -> int:
        return len({tuple(canonical(config.get(key, "<absent>")) for key in settings) for config in among})

    def priority(key: str) -> int:
        if key == "experiment":
            return 0
        return 1 if key.count(".") == 1 and key.endswith(".name") else 2

    def shown_settings(absent_differs: bool) -> list[str]:
        def differs(key: str, among: list[dict[str, object]]) -> bool:
            if absent_differs:
                return distinct([key], among) > 1
            return len({canonical(config[key]) for config in among if key in config}) > 1

        shown: list[str] = []
        for key in sorted((key for key in keys if not key.startswith("algo.")), key=priority):
            among = configs if absent_differs else [config for config in configs if key in config]
            if differs(key, among) and distinct([*shown, key], among) > distinct(shown, among):
                shown.append(key)
        return shown + [key for key in keys if key.startswith("algo.") and key != "algo.name"
                        and any(differs(key, peers) for peers in runs_of_algo.values())]

    def labels(shown: list[str], digits: int | None) -> list[str]:
        return [" ".join([str(config.get("algo.name", "?")),
                          *(f"{setting_name(key)}={show(config[key], digits)}"
                            for key in shown if key in config)])
                for config in configs]

    # Shortest first: lr=0.0001048, not the 17 digits a sweeper wrote.
    for absent_differs, digits in ((False, 4), (True, 4), (True, None)):
        candidates = labels(shown_settings(absent_differs), digits)
        if len(set(candidates)) == len(candidates):
            break
    return candidates


def setting_name(key: str) -> str:
    """`task` for task.name, `n` for algo.n, the dotted key otherwise."""
    section, _, rest = key.partition(".")
    if rest == "name":
        return section
    return rest if section == "algo" else key


def show(value: object, digits: int | None = None) -> str:
    """A setting's value as a label writes it; floats to `digits` significant digits when given."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and digits is not None:
        return f"{value:.{digits}g}"
    if isinstance(value, list):
        return ",".join(show(item, digits) for item in value)
    if isinstance(value, dict):
        return canonical(value)
    return str(value)


def natural_key(label: str) -> list[tuple[int, float, str]]:
    """Sort key reading numbers as numbers, so `bon n=4` comes before `bon n=16`."""
    return [(0, float(token), "") if index % 2 else (1, 0.0, token)
            for index, token in enumerate(re.split(r"(\d+(?:\.\d+)?)", label)) if token]


# ------------------------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class Estimate:
    """Mean over seeds and the bootstrap CI of that mean; n: how many seeds had a value."""

    mean: float
    lo: float
    hi: float
    n: int


def bootstrap_ci(values: list[float | None], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                 level: float = CI_LEVEL) -> Estimate | None:
    """Mean of the non-missing values with a percentile-bootstrap CI of the mean (None: no values)."""
    data = np.array([v for v in map(number, values) if v is not None])
    if data.size == 0:
        return None
    if np.all(data == data[0]):  # one seed, or seeds that agree: the mean is exact, the CI has no width
        return Estimate(float(data[0]), float(data[0]), float(data[0]), int(data.size))
    mean = float(data.mean())
    draws = np.random.default_rng(seed).integers(0, data.size, size=(resamples, data.size))
    resampled_means = data[draws].mean(axis=1)
    lo, hi = np.percentile(resampled_means, [50 * (1 - level), 50 * (1 + level)])
    # Summation rounding can put a bound a hair outside [min, max] or past the mean; clamp it back.
    lo = min(max(float(lo), float(data.min())), mean)
    hi = max(min(float(hi), float(data.max())), mean)
    return Estimate(mean, lo, hi, int(data.size))


@dataclass(frozen=True)
class Column:
    name: str  # in compare.csv
    header: str  # in the table
    value: Callable[[Run], float | None]


COLUMNS = (
    Column("gold_step0", "step-0 gold", lambda run: run.initial(GOLD)),
    Column("gold", "gold", lambda run: run.final(GOLD)),
    Column("rm_reward", "rm_reward", lambda run: run.final(RM)),
    Column("kl_ref", "kl_ref", lambda run: run.final(KL)),
    Column("win_rate_ref", "win_rate_ref", lambda run: run.final("eval/win_rate_ref")),
    Column("response_len", "response_len", lambda run: run.final("eval/response_len")),
)
WALL_COLUMN = Column("wall_s", "wall (s)", lambda run: number(run.summary.get("wall_s")))


@dataclass(frozen=True)
class ToGain:
    """The budget a group's seeds spent to first reach step-0 + gain, averaged over the seeds that did."""

    estimate: Estimate | None
    reached: int
    measured: int  # seeds that logged the metric at all
    units: tuple[str, ...]  # "q": reward-model queries (online), "pairs": preference pairs (offline)
    used_rm: bool  # some seed had no gold reward, so its reward-model reward was used


def counter_of(run: Run) -> str:
    """The budget an algorithm spends: preference pairs if it consumed any (offline), else RM queries."""
    return PAIRS if run.moved(PAIRS) else QUERIES


def kind_of(group: Group) -> str:
    return "offline" if any(counter_of(run) == PAIRS for run in group.runs) else "online"


def logs(run: Run, key: str) -> bool:
    return any(number(row.get(key)) is not None for row in run.evals)


def to_gain(runs: list[Run], gain: float) -> ToGain:
    reached: list[float] = []
    units: set[str] = set()
    measured, used_rm = 0, False
    for run in runs:
        metric = GOLD if logs(run, GOLD) else RM if logs(run, RM) else None
        if metric is None:
            continue
        counter = counter_of(run)
        measured, used_rm = measured + 1, used_rm or metric == RM
        units.add(UNITS[counter])
        value = number(first_reaching(run.evals, gain, metric=metric, counter=counter))
        if value is not None:
            reached.append(value)
    return ToGain(bootstrap_ci(reached), len(reached), measured, tuple(sorted(units)), used_rm)


@dataclass(frozen=True)
class GroupRow:
    label: str
    n_seeds: int  # runs pooled
    n_distinct_seeds: int  # fewer than n_seeds when a config was run twice with one seed
    values: dict[str, Estimate | None]  # by Column.name
    to_gain: ToGain


def group_row(group: Group, gain: float) -> GroupRow:
    values = {column.name: bootstrap_ci([column.value(run) for run in group.runs])
              for column in (*COLUMNS, WALL_COLUMN)}
    seeds = {canonical(run.summary.get("seed", run.config.get("seed"))) for run in group.runs}
    return GroupRow(group.label, len(group.runs), len(seeds), values, to_gain(group.runs, gain))


# ----------------------------------------------------------------------------------------------- output
def format_estimate(estimate: Estimate | None, decimals: int | None = None) -> str:
    """`0.48 [0.45, 0.51]`; one seed: `0.48`; nothing: `-`. Decimals: as given, else by magnitude."""
    if estimate is None:
        return "-"
    if decimals is None:
        decimals = decimals_for(max(abs(estimate.mean), abs(estimate.lo), abs(estimate.hi)))
    # + 0.0 turns a value that rounds to -0.0 into 0.0
    mean, lo, hi = (f"{round(v, decimals) + 0.0:.{decimals}f}"
                    for v in (estimate.mean, estimate.lo, estimate.hi))
    return mean if estimate.n == 1 else f"{mean} [{lo}, {hi}]"


def decimals_for(magnitude: float) -> int:
    """About three significant digits, at most four decimals; none for counts in the hundreds and up."""
    if magnitude >= 100:
        return 0
    if magnitude >= 10:
        return 1
    if magnitude >= 0.1 or magnitude == 0:
        return 2
    return min(4, 1 - math.floor(math.log10(magnitude)))


def format_to_gain(result: ToGain) -> str:
    """`1088 [576, 1600] q (2/3)`, `never (0/3)`, or `-` when no seed logged a reward to measure."""
    if result.measured == 0:
        return "-"
    count = f"{result.reached}/{result.measured}" + (", rm" if result.used_rm else "")
    if result.estimate is None:
        return f"never ({count})"
    return f"{format_estimate(result.estimate, decimals=0)} {'/'.join(result.units)} ({count})"  # counts


def table_cells(rows: list[GroupRow], gain: float) -> list[list[str]]:
    header = ["group", "seeds", *(column.header for column in COLUMNS), f"to +{gain:g} gold (q / pairs)",
              WALL_COLUMN.header]
    body = [[row.label, format_seeds(row), *(format_estimate(row.values[column.name]) for column in COLUMNS),
             format_to_gain(row.to_gain), format_estimate(row.values[WALL_COLUMN.name])] for row in rows]
    return [header, *body]


def format_seeds(row: GroupRow) -> str:
    """`3`, or `4 (1 distinct)` when runs repeat a seed (the CI then reflects run-to-run noise only)."""
    distinct = f" ({row.n_distinct_seeds} distinct)" if row.n_distinct_seeds < row.n_seeds else ""
    return f"{row.n_seeds}{distinct}"


def markdown_table(rows: list[GroupRow], gain: float) -> str:
    """A markdown table padded to line up in a terminal: the group label left, numbers right-aligned."""
    cells = table_cells(rows, gain)
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]

    def line(values: list[str]) -> str:
        padded = [value.ljust(width) if i == 0 else value.rjust(width) for i, (value, width) in
                  enumerate(zip(values, widths, strict=True))]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (width + 1)) + (":" if i else "-") for i, width in enumerate(widths)) + "|"
    return "\n".join([line(cells[0]), rule, *(line(values) for values in cells[1:])])


def legend(gain: float, n_runs: int, n_groups: int) -> str:
    return "\n".join([
        f"{n_runs} finished runs in {n_groups} groups; a group is one config, its seeds pooled.",
        "",
        f"- Cells: mean over the group's seeds [{CI_LEVEL:.0%} percentile-bootstrap CI of the mean, "
        f"{BOOTSTRAP_RESAMPLES} resamples]; one seed shows its value alone; `-`: not logged.",
        "- step-0 gold: eval/gold_reward of the SFT policy (the step-0 eval).",
        "- gold, rm_reward, kl_ref, win_rate_ref, response_len: final eval/* values (summary.json \"final\", "
        "else the last eval).",
        f"- to +{gain:g} gold: the budget spent by the first eval whose gold reward is at least its step-0 "
        f"value + {gain:g}: `q` reward-model queries (online algorithms), `pairs` preference pairs "
        "(offline). Mean over the seeds that got there; (k/n): k of the n seeds got there; `rm`: a seed "
        "without a gold reward was measured on eval/rm_reward instead.",
        "- wall (s): summary.json wall_s.",
    ])


def write_csv(rows: list[GroupRow], path: Path, gain: float) -> None:
    stats = ("mean", "ci_lo", "ci_hi")
    header = ["label", "n_seeds", "n_distinct_seeds",
              *(f"{column.name}_{stat}" for column in COLUMNS for stat in stats),
              *(f"to_gain_{stat}" for stat in stats), "to_gain_unit", "to_gain_reached", "to_gain_measured",
              "gain", *(f"{WALL_COLUMN.name}_{stat}" for stat in stats)]

    def triple(estimate: Estimate | None) -> list[float | str]:
        return ["", "", ""] if estimate is None else [estimate.mean, estimate.lo, estimate.hi]

    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            writer.writerow([row.label, row.n_seeds, row.n_distinct_seeds,
                             *(v for column in COLUMNS for v in triple(row.values[column.name])),
                             *triple(row.to_gain.estimate), "/".join(row.to_gain.units), row.to_gain.reached,
                             row.to_gain.measured, gain, *triple(row.values[WALL_COLUMN.name])])


# ------------------------------------------------------------------------------------------------ plots
def plot_all(groups: list[Group], out: Path) -> list[str]:
    """Draw the three figures; one line per figure: where it was written, or why it (or a panel) was not."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(groups)
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20" if n <= 20 else "turbo")
    colours = [cmap(i) if n <= 20 else cmap(i / (n - 1)) for i in range(n)]
    notes: list[str] = []
    for draw in (plot_frontier, plot_curves, plot_overoptimisation):
        notes += draw(plt, groups, colours, out)
    return notes


def save(plt, fig, path: Path) -> str:
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return f"wrote {path}"


def legend_outside(ax) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", frameon=False)


def missing(groups: list[Group], keys: tuple[str, ...]) -> str:
    """Why no run could be plotted: the first of `keys` no run logs, else that none logs them together."""
    for key in keys:
        if not any(logs(run, key) for group in groups for run in group.runs):
            return f"no run has {key}"
    return f"no run logs {' and '.join(keys)} at the same eval"


def plot_frontier(plt, groups: list[Group], colours: list, out: Path) -> list[str]:
    path = out / "frontier.png"
    if not any(run.points(KL, GOLD) for group in groups for run in group.runs):
        return [f"{path.name}: skipped, {missing(groups, (GOLD, KL))}"]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for group, colour in zip(groups, colours, strict=True):
        points = [point for run in group.runs for point in run.points(KL, GOLD)]
        if not points:
            continue
        finals = [(run.final(KL), run.final(GOLD)) for run in group.runs]
        finals = [(kl, gold) for kl, gold in finals if kl is not None and gold is not None]
        ax.scatter(*zip(*points, strict=True), s=12, alpha=0.5, color=colour, linewidths=0,
                   label=None if finals else group.label)
        if finals:
            ax.scatter(*np.mean(finals, axis=0), s=110, color=colour, edgecolors="black", linewidths=0.8,
                       zorder=3, label=group.label)
    ax.set_xlabel("KL to the reference policy (eval/kl_ref)")
    ax.set_ylabel("gold reward (eval/gold_reward)")
    ax.set_title("Reward–KL frontier: every eval (small), final mean over seeds (large)")
    ax.grid(alpha=0.3)
    legend_outside(ax)
    return [save(plt, fig, path)]


def mean_curve(curves: list[list[tuple[float, float]]]) -> tuple[np.ndarray, ...] | None:
    """(x, mean, min, max) of the seeds' curves interpolated onto the x values within the range every seed
    covers (seeds log evals at slightly different budgets); None when the ranges do not overlap."""
    curves = [sorted(dict(curve).items()) for curve in curves if curve]  # one y per x: the latest eval's
    start, stop = max(curve[0][0] for curve in curves), min(curve[-1][0] for curve in curves)
    if start > stop:
        return None
    grid = np.unique([x for curve in curves for x, _ in curve if start <= x <= stop] + [start, stop])
    ys = np.array([np.interp(grid, *zip(*curve, strict=True)) for curve in curves])
    return grid, ys.mean(axis=0), ys.min(axis=0), ys.max(axis=0)


CURVE_PANELS = (  # (which groups, x counter, x label)
    ("online", QUERIES, "reward-model queries (progress/rm_queries)"),
    ("offline", PAIRS, "preference pairs (progress/pref_pairs)"),
    ("all", WALL, "wall time, s (progress/wall_s)"),
)


def plot_curves(plt, groups: list[Group], colours: list, out: Path) -> list[str]:
    path = out / "curves.png"
    with_gold = [(group, colour) for group, colour in zip(groups, colours, strict=True)
                 if any(logs(run, GOLD) for run in group.runs)]
    if not with_gold:
        return [f"{path.name}: skipped, no run has {GOLD}"]
    notes, panels = [], []
    for kind, counter, xlabel in CURVE_PANELS:
        members = [(group, colour) for group, colour in with_gold if kind in ("all", kind_of(group))]
        if members:
            panels.append((kind, counter, xlabel, members))
        else:
            notes.append(f"{path.name}: panel against {counter} skipped, no {kind} group has {GOLD}")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    for ax, (kind, counter, xlabel, members) in zip(axes[0], panels, strict=True):
        for group, colour in members:
            curves = [run.points(counter, GOLD) for run in group.runs if run.points(counter, GOLD)]
            summary = mean_curve(curves) if curves else None
            if summary is None:  # the seeds cover disjoint ranges: draw each seed
                for i, curve in enumerate(curves):
                    ax.plot(*zip(*curve, strict=True), color=colour, marker="o", markersize=3,
                            label=None if i else group.label)
                continue
            grid, mean, low, high = summary
            ax.plot(grid, mean, color=colour, marker="o", markersize=3, label=group.label)
            ax.fill_between(grid, low, high, color=colour, alpha=0.2, linewidth=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("gold reward (eval/gold_reward)")
        ax.set_title(f"{kind} groups" if kind != "all" else "all groups")
        ax.grid(alpha=0.3)
    fig.suptitle("Gold reward: line = mean over seeds, band = min–max over seeds")
    handles, labels = axes[0][-1].get_legend_handles_labels()  # the last panel (wall time) has every group
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small", frameon=False)
    fig.tight_layout()
    return [*notes, save(plt, fig, path)]


def plot_overoptimisation(plt, groups: list[Group], colours: list, out: Path) -> list[str]:
    path = out / "overoptimisation.png"
    if not any(run.points(GOLD, RM) for group in groups for run in group.runs):
        return [f"{path.name}: skipped, {missing(groups, (RM, GOLD))}"]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for group, colour in zip(groups, colours, strict=True):
        labelled = False
        for run in group.runs:
            points = run.points(GOLD, RM)
            if points:
                ax.plot(*zip(*points, strict=True), color=colour, marker="o", markersize=3, linewidth=0.8,
                        alpha=0.7, label=None if labelled else group.label)
                labelled = True
    ax.set_xlabel("gold reward (eval/gold_reward)")
    ax.set_ylabel("reward-model reward (eval/rm_reward)")
    ax.set_title("Over-optimisation: reward model vs gold at every eval (lines follow each run)")
    ax.grid(alpha=0.3)
    legend_outside(ax)
    return [save(plt, fig, path)]


# -------------------------------------------------------------------------------------------------- CLI
def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="align compare",
        description="Table and plots over finished runs: seeds of one config pooled (mean with a 95% "
                    "bootstrap CI), unfinished, failed and empty runs skipped.")
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="run dirs, or dirs holding run dirs (sweeps)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="where to write compare.md, compare.csv and the plots "
                             "(default: DIR/compare for one DIR, else ./compare)")
    parser.add_argument("--gain", type=float, default=0.3,
                        help="the 'to +GAIN' column: budget until gold reward first reaches step-0 + GAIN "
                             "(default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    runs, skipped = load_finished(args.dirs)
    if not runs:
        if skipped:
            print("\n".join(skipped_lines(skipped)), file=sys.stderr)
        print(f"align: error: no finished run dirs under {' '.join(args.dirs)}", file=sys.stderr)
        return 2
    out = args.out or (Path(args.dirs[0]) / "compare" if len(args.dirs) == 1 else Path("compare"))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"align: error: cannot write to {out}: {exc.strerror}", file=sys.stderr)
        return 2

    groups = group_runs(runs)
    rows = [group_row(group, args.gain) for group in groups]
    table = markdown_table(rows, args.gain)
    print(table)
    report = ["# align compare", "", table, "", legend(args.gain, len(runs), len(groups))]
    if skipped:
        report += ["", "Skipped run dirs:", "", *(f"- {s.path}: {s.reason}" for s in skipped)]
    (out / "compare.md").write_text("\n".join(report) + "\n")
    write_csv(rows, out / "compare.csv", args.gain)

    print()
    print(f"wrote {out / 'compare.md'} and {out / 'compare.csv'}")
    for note in plot_all(groups, out):
        print(note)
    if skipped:
        print("\n".join(skipped_lines(skipped)))
    return 0


def skipped_lines(skipped: list[Skipped]) -> list[str]:
    return ["skipped:", *(f"  {s.path}: {s.reason}" for s in skipped)]
