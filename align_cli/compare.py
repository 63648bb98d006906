"""`align compare <run or sweep dirs, records files...> [--out DIR] [--records FILE.jsonl] [--gain G]
[--kl-budgets B]`: tables and plots over runs.

Every run dir at or under the arguments is read back (align_cli.analysis); unfinished, failed and empty
runs are skipped and listed at the end. Runs whose .hydra/config.yaml agree on everything but the seed
(and the settings that do not change what a run computes: paths, logger, threads, device) form a group,
labelled by the settings that set it apart from the other groups. A table cell is the mean over a group's
seeds with a 95% percentile-bootstrap CI of that mean.

Algorithms end at different KL from the reference, so their final gold rewards are compared at matched KL
too: for each task, KL budget K and algorithm, the algorithm's best group among those that ended within K,
and its fastest: the group that first reached step-0 gold + the gain at KL <= K with the least budget.

Records: run dirs hold checkpoints and do not outlive a machine, so `--records FILE.jsonl` writes what the
comparison needs of each run (summary.json, config, the eval rows of metrics.jsonl: analysis.record_of),
one JSON line per run in a fixed order, small enough to commit. A records file given as an input is read
back as its runs (shown as `FILE#name`), so sweeps run on several machines combine: a run found twice (its
comparable config and seed alike) counts once, from its run dir if there is one, else from the later input.
`align compare runs/frontier docs/results/frontier/runs.jsonl --records docs/results/frontier/runs.jsonl`
adds this machine's finished runs to the committed ones; the tables and plots are the same whether a run
is read from its dir or from its record.

Written to --out (default `<dir>/compare` for one dir, `compare/` beside one records file, else
`./compare`): compare.md (the three tables, with legends), compare.csv (the per-group numbers, unformatted),
frontier.csv (the matched-KL numbers), fastest.csv (the budget, compute and wall time to the gain within
each KL budget), frontier.png (gold reward against KL to the reference at every
eval), frontier_final.png (each group's final point with CIs and each algorithm's best gold within KL, per
task), curves.png (gold reward against RM queries, preference pairs, forward tokens and wall time) and
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

from align_cli.added_options import with_added_options
from align_cli.analysis import (
    Run,
    find_run_dirs,
    first_reaching,
    first_row_reaching,
    load_run,
    number,
    record_of,
    run_of_record,
)
from align_cli.tracking import flatten

GOLD, RM, KL = "eval/gold_reward", "eval/rm_reward", "eval/kl_ref"
GRAMMATICAL, KL_TO_OPTIMAL = "eval/grammatical", "eval/kl_to_optimal"
QUERIES, PAIRS, WALL = "progress/rm_queries", "progress/pref_pairs", "progress/wall_s"
FASTEST_HEADING = "Fastest within K: budget to first reach step-0 gold + the gain at KL <= K"
FORWARD_TOKENS = "progress/forward_tokens"  # tokens through any network: a compute axis across algorithms
UNITS = {QUERIES: "q", PAIRS: "pairs"}
# The seed is what a group pools over; the rest do not change what a run computes.
# Settings that do not change what a run computes: runs differing only in these pool into one group.
IGNORED_KEYS = ("seed", "paths", "logger", "threads", "prepare.threads", "device", "hydra", "experiment", "resume",
                "objective_seeds", "objective_kl_cap", "algo.diagnose_every")  # diagnostics only read the update
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0  # fixed, so the same runs always give the same table
CI_LEVEL = 0.95
# KL budgets (nats) of the matched-KL table by task, unless --kl-budgets says otherwise. The tree task's
# KL scale is smaller than sentiment's; every task not named here gets FALLBACK_KL_BUDGETS.
DEFAULT_KL_BUDGETS: dict[str, tuple[float, ...]] = {"tree": (0.5, 1.0, 2.0)}
FALLBACK_KL_BUDGETS: tuple[float, ...] = (1.0, 2.0, 4.0)
# The gain of the "to +gain gold" columns by task, unless --gain says otherwise. Sentiment's gold lies in
# [-1, 1] and starts near 0; the tree's runs from about 5.5 (pi_ref) to 9.0 (pi*), where +0.3 is passed by
# the first eval of every run, so it counts the budget to +2 (most of the way to pi*).
DEFAULT_GAINS: dict[str, float] = {"tree": 2.0}
FALLBACK_GAIN = 0.3
MATCHED_HEADING = "Matched KL: best gold at KL <= K"
KL_STATS = ("final", "peak")  # which eval/kl_ref of a run a KL budget holds: the last eval's, or the largest


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
        keep_if_finished(run, runs, skipped)
    return runs, skipped


def keep_if_finished(run: Run, runs: list[Run], skipped: list[Skipped]) -> None:
    """Append a read run to `runs` if it finished and logged anything, else to `skipped` with the reason."""
    if run.summary.get("status") == "failed":
        error = first_line(run.summary.get("error") or "no error recorded")
        skipped.append(Skipped(run.path, f"failed: {error}"))
    elif not run.metrics:
        skipped.append(Skipped(run.path, "empty metrics.jsonl"))
    else:
        runs.append(run)


def is_records_file(text: str) -> bool:
    """An input naming a records file (*.jsonl, `--records`) rather than a run or sweep dir."""
    return text.endswith(".jsonl") and not Path(text).is_dir()


def load_records(path: Path) -> tuple[list[Run], list[Skipped]]:
    """The finished runs of a records file; a line that is not a record is skipped as `FILE#line N`."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Skipped(path, f"unreadable: {type(exc).__name__}: {first_line(exc)}")]
    runs: list[Run] = []
    skipped: list[Skipped] = []
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            run = run_of_record(json.loads(line), path)
        except ValueError as exc:  # json's errors are ValueErrors too
            skipped.append(Skipped(Path(f"{path}#line {line_number}"), f"malformed record: {first_line(exc)}"))
            continue
        keep_if_finished(run, runs, skipped)
    return runs, skipped


@dataclass(frozen=True)
class Loaded:
    runs: list[Run]  # in `run_order`
    skipped: list[Skipped]
    duplicates: int  # records left out because their run was already read (from its dir or a later input)


def load_inputs(inputs: list[str]) -> Loaded:
    """The finished runs of the run dirs at or under `inputs` and of the records files among them, each run
    once (`merge_records`), in `run_order`; and what was skipped, with the reasons."""
    runs, skipped = load_finished([text for text in inputs if not is_records_file(text)])
    recorded = []
    for text in filter(is_records_file, inputs):
        records, bad = load_records(Path(text))
        recorded.append(records)
        skipped += bad
    merged = merge_records(runs, recorded)
    return Loaded(sorted(merged, key=run_order), skipped, len(runs) + sum(map(len, recorded)) - len(merged))


def merge_records(dir_runs: list[Run], recorded: list[list[Run]]) -> list[Run]:
    """The runs of the run dirs, then those of each records file (in input order) that are not already
    there: a run read from its dir beats its record, and a later records file an earlier one. Runs within
    one source are never merged: two run dirs of one config and seed are two runs (format_seeds flags them)."""
    runs = list(dir_runs)
    seen = {identity(run) for run in dir_runs}
    for records in reversed(recorded):
        fresh = [run for run in records if identity(run) not in seen]
        seen |= {identity(run) for run in fresh}
        runs += fresh
    return runs


def identity(run: Run) -> tuple[str, str]:
    """What makes two runs the same run: the comparable config and the seed."""
    return canonical(comparable_config(run)), canonical(seed_of(run))


def seed_of(run: Run) -> object:
    return run.summary.get("seed", run.config.get("seed"))


def run_order(run: Run) -> tuple:
    """A deterministic order, the same whether runs come from dirs or records: the bootstrap and the labels
    depend on the order of runs, and a records file written twice from the same runs is the same bytes."""
    return (run.algo, run.task, canonical(comparable_config(run)), natural_key(canonical(seed_of(run))),
            run.name, canonical(run.summary))


def write_records(runs: list[Run], path: Path) -> None:
    """One record (analysis.record_of) per line, in the order of `runs`. Written beside and renamed over
    `path`, which may be an input just read: an interrupted write leaves the old file whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join(json.dumps(record_of(run), separators=(",", ":")) + "\n" for run in runs))
    partial.replace(path)


def first_line(text: object) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


# ---------------------------------------------------------------------------------------------- builds
def build_of(run: Run) -> tuple:
    """What tells two builds of `align prepare`'s artefacts apart: their measured figures (SFT losses, the
    reward model's accuracies, the pairs' label agreement), recorded in summary.json "artefacts". The same
    config rebuilt on another machine gives slightly different weights (floating point differs by CPU), so
    these differ too; paths, timings and cache reuse do not tell builds apart."""
    artefacts = run.summary.get("artefacts") or {}
    return tuple(sorted((stage, key, round(value, 6)) for stage, info in artefacts.items() if isinstance(info, dict)
                        for key, value in info.items()
                        if isinstance(value, (int, float)) and not isinstance(value, bool) and not key.endswith("_s")))


def build_notes(groups: list[Group]) -> list[str]:
    """One line per task whose runs come from more than one build of the shared artefacts, naming the groups
    that pool runs of different builds: their seeds then differ in their starting point, not only in seed."""
    notes = []
    for task in sorted({run.task for group in groups for run in group.runs}, key=natural_key):
        task_groups = [group for group in groups if group.runs[0].task == task]
        builds = {build_of(run) for group in task_groups for run in group.runs if build_of(run)}
        if len(builds) < 2:
            continue
        mixed = [group.label for group in task_groups  # runs recorded before builds were: no evidence either way
                 if len({build_of(run) for run in group.runs} - {()}) > 1]
        step0 = [run.initial(GOLD) for group in task_groups for run in group.runs]
        step0 = [value for value in step0 if isinstance(value, (int, float))]
        spread = f"; step-0 gold {min(step0):.4f} to {max(step0):.4f}" if step0 else ""
        notes.append(f"{task}: the runs come from {len(builds)} builds of the shared artefacts (`align prepare` "
                     f"on different machines{spread})"
                     + (f"; groups pooling more than one: {', '.join(mixed)}" if mixed else
                        "; no group pools more than one, but groups of different builds start from different policies"))
    return notes


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
    return {key: value for key, value in with_added_options(flatten(config)).items()
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

    def differs(key: str, among: list[dict[str, object]], absent_differs: bool) -> bool:
        if absent_differs:
            return distinct([key], among) > 1
        return len({canonical(config[key]) for config in among if key in config}) > 1

    def shown_settings(absent_differs: bool) -> tuple[list[str], dict[str, list[str]]]:
        """The non-algo settings shown for every config, and per algorithm the algo.* settings shown for
        its configs: those its own configs differ in (PPO's target_kl is not shown because SAC's differ)."""
        shown: list[str] = []
        for key in sorted((key for key in keys if not key.startswith("algo.")), key=priority):
            among = configs if absent_differs else [config for config in configs if key in config]
            if differs(key, among, absent_differs) and distinct([*shown, key], among) > distinct(shown, among):
                shown.append(key)
        per_algo = {algo: [key for key in keys if key.startswith("algo.") and key != "algo.name"
                           and differs(key, peers, absent_differs)]
                    for algo, peers in runs_of_algo.items()}
        return shown, per_algo

    def labels(settings: tuple[list[str], dict[str, list[str]]], digits: int | None) -> list[str]:
        shown, per_algo = settings
        return [" ".join([str(config.get("algo.name", "?")),
                          *(f"{setting_name(key)}={show(config[key], digits)}"
                            for key in [*shown, *per_algo[canonical(config.get("algo.name"))]] if key in config)])
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
    optional: bool = False  # left out of the table (not of compare.csv) when no group logs it


COLUMNS = (
    Column("gold_step0", "step-0 gold", lambda run: run.initial(GOLD)),
    Column("gold", "gold", lambda run: run.final(GOLD)),
    # Fluency next to gold: a gold reward bought with ungrammatical text is reward hacking.
    Column("grammatical", "grammatical", lambda run: run.final(GRAMMATICAL), optional=True),
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
    gain: float  # the gain measured to


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
    return ToGain(bootstrap_ci(reached), len(reached), measured, tuple(sorted(units)), used_rm, gain)


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
    seeds = {canonical(seed_of(run)) for run in group.runs}
    return GroupRow(group.label, len(group.runs), len(seeds), values, to_gain(group.runs, gain))


# ------------------------------------------------------------------------------------------- matched KL
T = TypeVar("T")
PerTaskT = TypeVar("PerTaskT", bound="PerTask")


@dataclass(frozen=True)
class PerTask(Generic[T]):
    """A per-task option of `align compare` (--gain, --kl-budgets): `by_task` where it names the task, else
    `default`."""

    default: T
    by_task: dict[str, T]

    def of(self, task: str) -> T:
        return self.by_task.get(task, self.default)

    def overridden(self: PerTaskT, entries: list[tuple[str | None, T]]) -> PerTaskT:
        """These values with the command line's entries applied: a plain value (task None) replaces every
        task's, the built-in per-task ones included; a task-qualified one then sets its task's. Of several
        entries for the same tasks, the last wins."""
        plain = [value for task, value in entries if task is None]
        default, by_task = (plain[-1], {}) if plain else (self.default, dict(self.by_task))
        by_task.update({task: value for task, value in entries if task is not None})
        return replace(self, default=default, by_task=by_task)


@dataclass(frozen=True)
class Gains(PerTask[float]):
    """The gain of the "to +gain gold" columns of each task."""

    default: float = FALLBACK_GAIN
    by_task: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_GAINS))

    def label(self, tasks: list[str]) -> str:
        """`+0.3`, or `+0.3 (tree +2)` when the tasks compared measure to different gains."""
        gains = {task: self.of(task) for task in tasks}
        common = max(set(gains.values()), key=list(gains.values()).count, default=self.default)
        others = [f"{task} +{gain:g}" for task, gain in sorted(gains.items()) if gain != common]
        return f"+{common:g}" + (f" ({', '.join(others)})" if others else "")


@dataclass(frozen=True)
class KLBudgets(PerTask[tuple[float, ...]]):
    """The KL budgets (nats, ascending) of each task."""

    default: tuple[float, ...] = FALLBACK_KL_BUDGETS
    by_task: dict[str, tuple[float, ...]] = field(default_factory=lambda: dict(DEFAULT_KL_BUDGETS))


@dataclass(frozen=True)
class FinalPoint:
    """Where a group ended: the seed mean [CI] of its final evals, on the reward–KL plane and beside it."""

    group: Group
    algo: str
    task: str
    reward: str  # GOLD, or RM on a task where no run has a gold reward
    kl_ref: Estimate | None
    gold: Estimate | None  # of `reward`
    grammatical: Estimate | None
    kl_to_optimal: Estimate | None
    kl_stat: str = "final"  # kl_ref is each seed's final eval/kl_ref, or its peak over every eval ("peak")

    @property
    def placed(self) -> bool:
        """Both coordinates known, so the group can be held to a KL budget."""
        return self.kl_ref is not None and self.gold is not None


def final_points(groups: list[Group], kl_stat: str = "final") -> list[FinalPoint]:
    """One point per group. The runs of a group differ only in the seed, so they share its algo and task.
    kl_stat "peak" places each group at its seeds' largest eval/kl_ref along the run instead of the final one,
    so a KL budget holds every eval, not only the last."""
    if kl_stat not in KL_STATS:
        raise ValueError(f"kl_stat must be one of {', '.join(KL_STATS)}, not {kl_stat!r}")
    tasks_with_gold = {run.task for group in groups for run in group.runs if logs(run, GOLD)}
    return [final_point(group, GOLD if group.runs[0].task in tasks_with_gold else RM, kl_stat)
            for group in groups]


def final_point(group: Group, reward: str, kl_stat: str = "final") -> FinalPoint:
    def final(key: str) -> Estimate | None:
        return bootstrap_ci([run.final(key) for run in group.runs])

    first = group.runs[0]
    kl = final(KL) if kl_stat == "final" else bootstrap_ci([run.peak(KL) for run in group.runs])
    return FinalPoint(group, first.algo, first.task, reward, kl, final(reward), final(GRAMMATICAL),
                      final(KL_TO_OPTIMAL), kl_stat)


def best_within(points: list[FinalPoint], budget: float) -> FinalPoint | None:
    """Gold@K: of the points whose seed-mean KL is at most `budget`, the one with the highest seed-mean gold
    (of equals, the one with less KL); None when none is that close to the reference."""
    within = [point for point in points if point.placed and point.kl_ref.mean <= budget]
    return max(within, key=lambda point: (point.gold.mean, -point.kl_ref.mean), default=None)


def pareto_front(points: list[FinalPoint]) -> list[FinalPoint]:
    """The placed points with more gold than every point at less KL, in KL order: joined as a staircase,
    the best gold at KL <= x (what best_within picks at each x)."""
    front: list[FinalPoint] = []
    for point in sorted((p for p in points if p.placed), key=lambda p: (p.kl_ref.mean, -p.gold.mean)):
        if not front or point.gold.mean > front[-1].gold.mean:
            front.append(point)
    return front


@dataclass(frozen=True)
class MatchedRow:
    algo: str
    task: str
    budget: float
    best: FinalPoint | None  # None: none of the algorithm's groups on the task ended within the budget
    to_gain: ToGain | None  # of the best group


def matched_rows(points: list[FinalPoint], budgets: KLBudgets, gains: Gains) -> list[MatchedRow]:
    """One row per (algorithm, task, budget), ordered by task, budget, then gold, best first."""
    rows = []
    for task, algo in sorted({(point.task, point.algo) for point in points}):
        candidates = [point for point in points if (point.task, point.algo) == (task, algo)]
        for budget in budgets.of(task):
            best = best_within(candidates, budget)
            spent = to_gain(best.group.runs, gains.of(task)) if best else None
            rows.append(MatchedRow(algo, task, budget, best, spent))
    return sorted(rows, key=lambda row: (natural_key(row.task), row.budget,
                                         -row.best.gold.mean if row.best else math.inf, row.algo))


@dataclass(frozen=True)
class FastestRow:
    """For a task, a KL budget K and an algorithm: of its groups, the one whose seeds first reached step-0
    gold + the gain at an eval within K soonest (budget spent), with the compute and wall time it took."""

    algo: str
    task: str
    budget: float
    group: Group | None  # None: no seed of any group reached the gain within K
    spent: Estimate | None  # RM queries (online) or preference pairs (offline), over the seeds that got there
    units: tuple[str, ...]
    forward_tokens: Estimate | None  # progress/forward_tokens at that eval: training compute
    wall_s: Estimate | None  # progress/wall_s at that eval (evals included)
    reached: int
    measured: int
    per_seed: tuple[tuple[float | None, float | None, float | None], ...] = ()  # (spent, forward tokens, wall) of
    # each seed that got there: what the three estimates are means of


def reach_within(group: Group, gain: float, kl_budget: float, reward: str, peak: bool = False) -> FastestRow:
    """The group's seeds' first evals at step-0 `reward` + gain with eval/kl_ref <= kl_budget (with `peak`:
    at every eval up to there)."""
    rows, units, measured = [], set(), 0
    for run in group.runs:
        if not logs(run, reward):
            continue
        measured += 1
        counter = counter_of(run)
        units.add(UNITS[counter])
        row = first_row_reaching(run.evals, gain, metric=reward, max_kl=kl_budget, peak=peak)
        if row is not None:
            rows.append((number(row.get(counter)), number(row.get(FORWARD_TOKENS)), number(row.get(WALL))))
    first = group.runs[0]
    spent, tokens, wall = ([bootstrap_ci([values[i] for values in rows]) for i in range(3)] if rows
                           else [None, None, None])
    return FastestRow(first.algo, first.task, kl_budget, group, spent, tuple(sorted(units)), tokens, wall,
                      len(rows), measured, tuple(rows))


def soonest(rows: list[FastestRow]) -> FastestRow | None:
    """Of groups' crossings within one budget: the largest share of seeds that got there, then the least
    mean budget (of equals, the first label); None when no seed got there."""
    reached = [row for row in rows if row.reached]
    return min(reached, key=lambda r: (-r.reached / r.measured, r.spent.mean, natural_key(r.group.label)),
               default=None)


def fastest_rows(points: list[FinalPoint], budgets: KLBudgets, gains: Gains) -> list[FastestRow]:
    """One row per (algorithm, task, budget): the group with the largest share of seeds that reached the
    gain within K, the least mean budget among those (of equals, the first label); ordered by task, budget,
    then budget spent."""
    rows = []
    for task, algo in sorted({(point.task, point.algo) for point in points}):
        mine = [point for point in points if (point.task, point.algo) == (task, algo)]
        for budget in budgets.of(task):
            best = soonest([reach_within(p.group, gains.of(task), budget, p.reward, p.kl_stat == "peak")
                            for p in mine])
            rows.append(best or FastestRow(algo, task, budget, None, None, (), None, None, 0, 0))
    return sorted(rows, key=lambda row: (natural_key(row.task), row.budget,
                                         row.spent.mean if row.spent else math.inf, row.algo))


# ----------------------------------------------------------------------------------------------- output
def format_estimate(estimate: Estimate | None, decimals: int | None = None) -> str:
    """`0.48 [0.45, 0.51]`; one seed: `0.48`; nothing: `-`. Decimals: as given, else by magnitude."""
    if estimate is None:
        return "-"
    if decimals is None:
        decimals = decimals_for(max(abs(estimate.mean), abs(estimate.lo), abs(estimate.hi)))
    mean, lo, hi = (format_number(v, decimals) for v in (estimate.mean, estimate.lo, estimate.hi))
    return mean if estimate.n == 1 else f"{mean} [{lo}, {hi}]"


def format_mean(estimate: Estimate | None) -> str:
    """The mean alone, `-` when missing: for cells that show no CI."""
    return "-" if estimate is None else format_number(estimate.mean, decimals_for(abs(estimate.mean)))


def format_number(value: float, decimals: int) -> str:
    return f"{round(value, decimals) + 0.0:.{decimals}f}"  # + 0.0 turns a value that rounds to -0.0 into 0.0


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


def table_cells(rows: list[GroupRow], gain: str) -> list[list[str]]:
    columns = [column for column in COLUMNS
               if not column.optional or any(row.values[column.name] is not None for row in rows)]
    header = ["group", "seeds", *(column.header for column in columns), f"to {gain} gold (q / pairs)",
              WALL_COLUMN.header]
    body = [[row.label, format_seeds(row), *(format_estimate(row.values[column.name]) for column in columns),
             format_to_gain(row.to_gain), format_estimate(row.values[WALL_COLUMN.name])] for row in rows]
    return [header, *body]


def format_seeds(row: GroupRow) -> str:
    """`3`, or `4 (1 distinct)` when runs repeat a seed (the CI then reflects run-to-run noise only)."""
    distinct = f" ({row.n_distinct_seeds} distinct)" if row.n_distinct_seeds < row.n_seeds else ""
    return f"{row.n_seeds}{distinct}"


def markdown_table(rows: list[GroupRow], gain: str) -> str:
    return markdown(table_cells(rows, gain))


def markdown(cells: list[list[str]], text_columns: int = 1) -> str:
    """A markdown table padded to line up in a terminal: the first `text_columns` columns left-aligned,
    the numbers after them right-aligned."""
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]

    def line(values: list[str]) -> str:
        padded = [value.ljust(width) if i < text_columns else value.rjust(width) for i, (value, width) in
                  enumerate(zip(values, widths, strict=True))]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (width + 1)) + ("-" if i < text_columns else ":")
                          for i, width in enumerate(widths)) + "|"
    return "\n".join([line(cells[0]), rule, *(line(values) for values in cells[1:])])


def legend(gain: str, n_runs: int, n_groups: int) -> str:
    return "\n".join([
        f"{n_runs} finished runs in {n_groups} groups; a group is one config, its seeds pooled.",
        "",
        f"- Cells: mean over the group's seeds [{CI_LEVEL:.0%} percentile-bootstrap CI of the mean, "
        f"{BOOTSTRAP_RESAMPLES} resamples]; one seed shows its value alone; `-`: not logged.",
        "- step-0 gold: eval/gold_reward of the SFT policy (the step-0 eval).",
        "- gold, grammatical, rm_reward, kl_ref, win_rate_ref, response_len: final eval/* values "
        "(summary.json \"final\", else the last eval); grammatical (the share of response sentences the "
        "sentiment grammar can produce) is shown where runs log it.",
        f"- to {gain} gold (--gain): the budget spent by the first eval whose gold reward is at least its "
        "step-0 value + the gain: `q` reward-model queries (online algorithms), `pairs` preference pairs "
        "(offline). Mean over the seeds that got there; (k/n): k of the n seeds got there; `rm`: a seed "
        "without a gold reward was measured on eval/rm_reward instead.",
        "- wall (s): summary.json wall_s.",
    ])


def mean_and_ci(estimate: Estimate | None) -> list[float | str]:
    """Three CSV cells: mean, CI low, CI high (empty when missing)."""
    return ["", "", ""] if estimate is None else [estimate.mean, estimate.lo, estimate.hi]


def write_csv(rows: list[GroupRow], path: Path) -> None:
    stats = ("mean", "ci_lo", "ci_hi")
    header = ["label", "n_seeds", "n_distinct_seeds",
              *(f"{column.name}_{stat}" for column in COLUMNS for stat in stats),
              *(f"to_gain_{stat}" for stat in stats), "to_gain_unit", "to_gain_reached", "to_gain_measured",
              "gain", *(f"{WALL_COLUMN.name}_{stat}" for stat in stats)]

    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            writer.writerow([row.label, row.n_seeds, row.n_distinct_seeds,
                             *(v for column in COLUMNS for v in mean_and_ci(row.values[column.name])),
                             *mean_and_ci(row.to_gain.estimate), "/".join(row.to_gain.units),
                             row.to_gain.reached, row.to_gain.measured, row.to_gain.gain,
                             *mean_and_ci(row.values[WALL_COLUMN.name])])


def matched_cells(rows: list[MatchedRow], gain: str) -> list[list[str]]:
    header = ["task", "KL <=", "algo", "group", "seeds", "kl_ref", "gold", f"to {gain} gold (q / pairs)",
              "grammatical", "kl_to_optimal"]
    body = []
    for row in rows:
        where = [row.task, f"{row.budget:g}", row.algo]
        best = row.best
        if best is None:
            body.append([*where, "(none)", *["-"] * (len(header) - len(where) - 1)])
            continue
        gold = format_estimate(best.gold) + (" rm" if best.reward == RM else "")
        body.append([*where, best.group.label, str(len(best.group.runs)), format_estimate(best.kl_ref), gold,
                     format_to_gain(row.to_gain), format_mean(best.grammatical),
                     format_mean(best.kl_to_optimal)])
    return [header, *body]


def matched_legend(rows: list[MatchedRow], budgets: KLBudgets, gain: str, kl_stat: str = "final") -> str:
    tasks = sorted({row.task for row in rows}, key=natural_key)
    held = ("final eval/kl_ref" if kl_stat == "final"
            else "peak eval/kl_ref (each seed's largest over all its evals, --kl-stat peak)")
    lines = [
        "- Each row: for a task, a KL budget K (nats) and an algorithm, the algorithm's group (config) with "
        f"the highest seed-mean final gold reward among its groups whose seed-mean {held} is at "
        "most K; `(none)`: none of its groups stayed that close to the reference. Rows run by task, K, then "
        "gold, best first.",
        "- Budgets (--kl-budgets): " + "; ".join(f"{task} {', '.join(f'{k:g}' for k in budgets.of(task))}"
                                                 for task in tasks) + ".",
        f"- kl_ref ({kl_stat}), gold: mean [95% CI] over that group's seeds; seeds: runs pooled; to {gain} gold: that "
        "group's budget to step-0 gold + the task's gain, as in the table above; grammatical, "
        "kl_to_optimal: seed means of the final values (`-`: not logged).",
    ]
    rm_tasks = sorted({row.task for row in rows if row.best and row.best.reward == RM}, key=natural_key)
    if rm_tasks:
        lines.append(f"- `rm`: no run of task {', '.join(rm_tasks)} has eval/gold_reward; eval/rm_reward "
                     "stands in for gold, in the choice as in the value.")
    return "\n".join(lines)


FRONTIER_CSV_COLUMNS = ("algo", "task", "kl_budget", "group", "seeds", "kl_ref", "kl_ref_lo", "kl_ref_hi",
                        "gold", "gold_lo", "gold_hi", "budget_to_gain", "budget_unit", "grammatical",
                        "kl_to_optimal", "to_gain_reached", "to_gain_measured", "gain", "gold_metric")


def write_frontier_csv(rows: list[MatchedRow], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(FRONTIER_CSV_COLUMNS)
        writer.writerows(frontier_csv_row(row) for row in rows)


def frontier_csv_row(row: MatchedRow) -> list[object]:
    """The row's cells; all empty after the budget when no group qualifies."""
    where = [row.algo, row.task, row.budget]
    best, spent = row.best, row.to_gain
    if best is None:
        return [*where, *[""] * (len(FRONTIER_CSV_COLUMNS) - len(where))]
    budget_to_gain = [spent.estimate.mean, "/".join(spent.units)] if spent.estimate else ["", ""]
    means = ["" if metric is None else metric.mean for metric in (best.grammatical, best.kl_to_optimal)]
    return [*where, best.group.label, len(best.group.runs), *mean_and_ci(best.kl_ref),
            *mean_and_ci(best.gold), *budget_to_gain, *means, spent.reached, spent.measured, spent.gain,
            best.reward]


def fastest_cells(rows: list[FastestRow], gain: str) -> list[list[str]]:
    header = ["task", "KL <=", "algo", "group", "reached", f"to {gain} gold", "forward tokens", "wall (s)"]
    body = []
    for row in rows:
        where = [row.task, f"{row.budget:g}", row.algo]
        if row.group is None:
            body.append([*where, "(none)", *["-"] * (len(header) - len(where) - 1)])
            continue
        body.append([*where, row.group.label, f"{row.reached}/{row.measured}",
                     f"{format_estimate(row.spent, decimals=0)} {'/'.join(row.units)}",
                     format_tokens(row.forward_tokens), format_estimate(row.wall_s, decimals=0)])
    return [header, *body]


def format_tokens(estimate: Estimate | None) -> str:
    """`4.15M [3.9M, 4.4M]`: forward tokens in millions."""
    if estimate is None:
        return "-"
    millions = Estimate(estimate.mean / 1e6, estimate.lo / 1e6, estimate.hi / 1e6, estimate.n)
    text = format_estimate(millions, decimals=2)
    return text.replace(" [", "M [") + ("" if estimate.n > 1 else "M")


def fastest_legend(gain: str, kl_stat: str = "final") -> str:
    within = ("A crossing at more KL than K does not count; a later one within K does." if kl_stat == "final"
              else "With --kl-stat peak, every eval up to the crossing must be within K: once a seed's KL has "
                   "passed K, no later crossing counts.")
    return "\n".join([
        f"- Each row: for a task, a KL budget K and an algorithm, the group (config) whose seeds first reached "
        f"step-0 gold {gain} at an eval with eval/kl_ref <= K soonest: of the groups with the largest share of "
        f"seeds that got there (reached k/n), the one with the least mean budget. {within} `(none)`: no seed "
        "of any group got there within K.",
        f"- to {gain} gold: reward-model queries (`q`, online) or preference pairs (`pairs`, offline) spent by "
        "that eval; forward tokens: progress/forward_tokens there (token positions through every network: "
        "the training compute); wall (s): progress/wall_s there (evals included). Means [95% CI] over the "
        "seeds that got there.",
    ])


FASTEST_CSV_COLUMNS = ("algo", "task", "kl_budget", "group", "reached", "measured", "budget_to_gain",
                       "budget_to_gain_lo", "budget_to_gain_hi", "budget_unit", "forward_tokens",
                       "forward_tokens_lo", "forward_tokens_hi", "wall_s", "wall_s_lo", "wall_s_hi")


def write_fastest_csv(rows: list[FastestRow], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(FASTEST_CSV_COLUMNS)
        for row in rows:
            where = [row.algo, row.task, row.budget]
            if row.group is None:
                writer.writerow([*where, "", 0, 0, *[""] * (len(FASTEST_CSV_COLUMNS) - len(where) - 3)])
                continue
            writer.writerow([*where, row.group.label, row.reached, row.measured, *mean_and_ci(row.spent),
                             "/".join(row.units), *mean_and_ci(row.forward_tokens), *mean_and_ci(row.wall_s)])


# ------------------------------------------------------------------------------------------------ plots
def plot_all(groups: list[Group], points: list[FinalPoint], budgets: KLBudgets, out: Path) -> list[str]:
    """Draw the four figures; one line per figure: where it was written, or why it (or a panel) was not."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = palette(plt, len(groups))
    notes = plot_frontier(plt, groups, colours, out)
    notes += plot_final_frontier(plt, points, budgets, out)
    for draw in (plot_curves, plot_overoptimisation):
        notes += draw(plt, groups, colours, out)
    return notes


def palette(plt, n: int) -> list:
    """`n` distinct colours."""
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20" if n <= 20 else "turbo")
    return [cmap(i) if n <= 20 else cmap(i / (n - 1)) for i in range(n)]


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


WIDE_KL_SPAN = 20  # final KLs spanning this factor or more are drawn on a log axis


def plot_final_frontier(plt, points: list[FinalPoint], budgets: KLBudgets, out: Path) -> list[str]:
    """One panel per task: each group's final point (seed mean, 95% CI bars on both axes) coloured by
    algorithm, each algorithm's best gold at KL <= x as a staircase, and the task's KL budgets dotted."""
    from matplotlib.lines import Line2D

    path = out / "frontier_final.png"
    if not points:
        return [f"{path.name}: skipped, no group to place (see --min-seeds)"]
    placed = [point for point in points if point.placed]
    if not placed:
        return [f"{path.name}: skipped, {missing([point.group for point in points], (KL, GOLD))}"]
    tasks = sorted({point.task for point in placed}, key=natural_key)
    algos = sorted({point.algo for point in placed})
    colours = dict(zip(algos, palette(plt, len(algos)), strict=True))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.6 * len(tasks), 4.4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        on_task = [point for point in placed if point.task == task]
        # The staircases run on to the last budget or point, so each budget line meets every algorithm's.
        right = max([point.kl_ref.hi for point in on_task] + list(budgets.of(task)))
        for algo in algos:
            own = [point for point in on_task if point.algo == algo]
            if own:
                draw_final_points(ax, own, colours[algo])
                front = pareto_front(own)
                ax.step([p.kl_ref.mean for p in front] + [right], [p.gold.mean for p in front + front[-1:]],
                        where="post", color=colours[algo], linewidth=1.5, alpha=0.8)
        for budget in budgets.of(task):
            ax.axvline(budget, color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"task={task}")
        which = on_task[0].kl_stat  # final or peak
        ax.set_xlabel(f"{which} KL to the reference (eval/kl_ref)")
        lowest = min(point.kl_ref.lo for point in on_task)
        if lowest > 0 and right >= WIDE_KL_SPAN * lowest:
            # A grid over a KL knob spans decades (0.2 to 18 nats on sentiment): a linear axis crowds the
            # low budgets into a corner. (A KL estimate at or below 0 keeps the axis linear.)
            ax.set_xscale("log")
            ax.set_xlim(lowest / 1.5, right * 1.5)
            ax.set_xlabel(f"{which} KL to the reference (eval/kl_ref, log scale)")
        reward = on_task[0].reward
        ax.set_ylabel(f"final gold reward ({GOLD})" if reward == GOLD else f"final {reward} (no gold reward)")
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=colours[algo], marker="o", label=algo) for algo in algos]
    handles.append(Line2D([], [], color="grey", linestyle=":", label="KL budgets"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small", frameon=False)
    fig.suptitle("Final points (seed mean, 95% CI); line: the algorithm's best gold at KL <= x")
    fig.tight_layout()
    return [save(plt, fig, path)]


def draw_final_points(ax, points: list[FinalPoint], colour) -> None:
    kl = np.array([[p.kl_ref.mean, p.kl_ref.lo, p.kl_ref.hi] for p in points])
    gold = np.array([[p.gold.mean, p.gold.lo, p.gold.hi] for p in points])
    ax.errorbar(kl[:, 0], gold[:, 0], xerr=[kl[:, 0] - kl[:, 1], kl[:, 2] - kl[:, 0]],
                yerr=[gold[:, 0] - gold[:, 1], gold[:, 2] - gold[:, 0]], fmt="o", color=colour, markersize=6,
                markeredgecolor="black", markeredgewidth=0.6, elinewidth=1, capsize=2, zorder=3)


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


CURVE_PANELS = (  # (which groups, x counter, x label); wall time last: its legend names every group
    ("online", QUERIES, "reward-model queries (progress/rm_queries)"),
    ("offline", PAIRS, "preference pairs (progress/pref_pairs)"),
    ("all", FORWARD_TOKENS, "tokens through any network (progress/forward_tokens)"),
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
        of_kind = [(group, colour) for group, colour in with_gold if kind in ("all", kind_of(group))]
        members = [(group, colour) for group, colour in of_kind  # runs written before a counter existed
                   if any(run.points(counter, GOLD) for run in group.runs)]
        if members:
            panels.append((kind, counter, xlabel, members))
        elif not of_kind:
            notes.append(f"{path.name}: panel against {counter} skipped, no {kind} group has {GOLD}")
        else:
            skipped_because = missing([group for group, _ in of_kind], (counter, GOLD))
            notes.append(f"{path.name}: panel against {counter} skipped, {skipped_because}")
    if not panels:
        return [*notes, f"{path.name}: skipped, no panel has data"]
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
                    "bootstrap CI), unfinished, failed and empty runs skipped.",
        epilog="Runs whose dirs are gone (another machine, a wiped disk) are compared from a records file: "
               "`align compare runs/frontier docs/results/frontier/runs.jsonl --records "
               "docs/results/frontier/runs.jsonl --out docs/results/frontier` adds this machine's finished "
               "runs to the committed ones.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="run dirs, dirs holding run dirs (sweeps), or records files (*.jsonl, written "
                             "by --records); a run both in a dir and in a record, or in two records files, "
                             "counts once: the dir's, else the later input's")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="where to write compare.md, compare.csv and the plots (default: INPUT/compare "
                             "for one dir, compare/ beside one records file, else ./compare)")
    parser.add_argument("--records", type=records_file, default=None, metavar="FILE.jsonl",
                        help="also write every run compared to FILE.jsonl, one line per run (summary.json, "
                             "config and the eval rows of metrics.jsonl), in a fixed order; FILE.jsonl may be "
                             "an input, read before it is overwritten")
    gain_defaults = "; ".join([*(f"{task}={gain:g}" for task, gain in DEFAULT_GAINS.items()),
                               f"other tasks {FALLBACK_GAIN:g}"])
    parser.add_argument("--gain", action="append", type=gain_entry, default=[], metavar="GAIN",
                        help="the 'to +GAIN gold' columns: the budget until the gold reward first reaches "
                             "step-0 + GAIN; G for every task, or TASK=G for one task, which overrides the "
                             f"plain value there; repeatable (default: {gain_defaults})")
    defaults = "; ".join([*(f"{task}={','.join(f'{k:g}' for k in budgets)}"
                            for task, budgets in DEFAULT_KL_BUDGETS.items()),
                          f"other tasks {','.join(f'{k:g}' for k in FALLBACK_KL_BUDGETS)}"])
    parser.add_argument("--kl-budgets", action="append", type=kl_budget_entry, default=[], metavar="BUDGETS",
                        help="KL budgets K (nats) of the matched-KL table (best gold at KL <= K): K1,K2,... "
                             "for every task, or TASK=K1,K2,... for one task, which overrides the plain "
                             f"list there; repeatable (default: {defaults})")
    parser.add_argument("--min-seeds", type=positive_int, default=1, metavar="N",
                        help="only groups with at least N distinct seeds take part in the matched-KL table "
                             "and frontier_final.png (a sweep still running has groups of fewer); the group "
                             "table shows every group (default: %(default)s)")
    parser.add_argument("--kl-stat", choices=KL_STATS, default="final",
                        help="which KL a budget K holds a run to: its final eval/kl_ref, or its peak, the "
                             "largest over every eval (online runs pass their final KL on the way: a budget "
                             "on the peak is a constraint kept all along) (default: %(default)s)")
    return parser.parse_args(argv)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 1")
    return value


def distinct_seeds(group: Group) -> int:
    return len({canonical(seed_of(run)) for run in group.runs})


def task_entry(text: str, usage: str) -> tuple[str | None, str]:
    """`VALUES` or `TASK=VALUES` (a per-task option value) as (task or None, VALUES)."""
    task, equals, values = text.partition("=")
    if not equals:
        return None, text
    if not re.fullmatch(r"[A-Za-z_][\w.-]*", task):
        raise argparse.ArgumentTypeError(f"{text!r}: expected {usage}")
    return task, values


def kl_budget_entry(text: str) -> tuple[str | None, tuple[float, ...]]:
    """One --kl-budgets value, `1,2,4` or `tree=0.5,1,2`, as (task or None, ascending budgets)."""
    task, values = task_entry(text, "K1,K2,... or TASK=K1,K2,...")
    try:
        budgets = {float(value) for value in values.split(",")}
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: budgets are comma-separated numbers, e.g. 1,2,4 or "
                                         "tree=0.5,1,2") from None
    if not all(math.isfinite(budget) and budget > 0 for budget in budgets):
        raise argparse.ArgumentTypeError(f"{text!r}: budgets are KLs in nats, positive and finite")
    return task, tuple(sorted(budgets))


def gain_entry(text: str) -> tuple[str | None, float]:
    """One --gain value, `0.3` or `tree=2`, as (task or None, gain)."""
    task, value = task_entry(text, "G or TASK=G")
    try:
        gain = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a gain is a number, e.g. 0.3 or tree=2") from None
    if not (math.isfinite(gain) and gain > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: a gain is a positive, finite reward difference")
    return task, gain


def records_file(text: str) -> Path:
    if not text.endswith(".jsonl"):
        raise argparse.ArgumentTypeError(f"{text!r}: a records file ends with .jsonl")
    return Path(text)


def default_out(inputs: list[str]) -> Path:
    if len(inputs) != 1:
        return Path("compare")
    return Path(inputs[0]).parent / "compare" if is_records_file(inputs[0]) else Path(inputs[0]) / "compare"


def make_out_and_records(out: Path, records: Path | None, runs: list[Run]) -> str | None:
    """Create `out` and write `records` (when given); why not, when one of them cannot be written."""
    target = out
    try:
        out.mkdir(parents=True, exist_ok=True)
        if records is not None:
            target = records
            write_records(runs, records)
    except OSError as exc:
        return f"cannot write to {target}: {exc.strerror}"
    return None


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    absent = [text for text in args.inputs if is_records_file(text) and not Path(text).is_file()]
    if absent:  # a typo in a records file's name would otherwise drop all its runs from the comparison
        print(f"align: error: no such records file: {' '.join(absent)}", file=sys.stderr)
        return 2
    loaded = load_inputs(args.inputs)
    runs, skipped = loaded.runs, loaded.skipped
    if not runs:
        if skipped:
            print("\n".join(skipped_lines(skipped)), file=sys.stderr)
        print(f"align: error: no finished run dirs under {' '.join(args.inputs)}", file=sys.stderr)
        return 2
    out = args.out or default_out(args.inputs)
    error = make_out_and_records(out, args.records, runs)
    if error:
        print(f"align: error: {error}", file=sys.stderr)
        return 2

    groups = group_runs(runs)
    gains = Gains().overridden(args.gain)
    gain = gains.label(sorted({run.task for run in runs}, key=natural_key))
    rows = [group_row(group, gains.of(group.runs[0].task)) for group in groups]
    table = markdown_table(rows, gain)
    all_points = final_points(groups, args.kl_stat)
    points = [point for point in all_points if distinct_seeds(point.group) >= args.min_seeds]
    too_few = [group.label for group in groups if distinct_seeds(group) < args.min_seeds]
    budgets = KLBudgets().overridden(args.kl_budgets)
    matched = matched_rows(points, budgets, gains)
    matched_table = markdown(matched_cells(matched, gain), text_columns=4)
    fastest = fastest_rows(points, budgets, gains)
    fastest_table = markdown(fastest_cells(fastest, gain), text_columns=4)
    print(table)
    print()
    print(f"{MATCHED_HEADING} (frontier.csv)")
    print(matched_table)
    print()
    print(f"{FASTEST_HEADING} (fastest.csv)")
    print(fastest_table)
    report = ["# align compare", "", table, "", legend(gain, len(runs), len(groups)), "",
              f"## {MATCHED_HEADING}", "", matched_table, "", matched_legend(matched, budgets, gain, args.kl_stat), "",
              f"## {FASTEST_HEADING}", "", fastest_table, "", fastest_legend(gain, args.kl_stat)]
    if too_few:
        left_out = f"Left out of the matched-KL table (fewer than {args.min_seeds} seeds): {', '.join(too_few)}."
        report += ["", left_out]
    builds = build_notes(groups)
    if builds:
        report += ["", "Builds of the shared artefacts:", "", *(f"- {note}" for note in builds)]
    if skipped:
        report += ["", "Skipped runs:", "", *(f"- {s.path}: {s.reason}" for s in skipped)]
    (out / "compare.md").write_text("\n".join(report) + "\n")
    write_csv(rows, out / "compare.csv")
    write_frontier_csv(matched, out / "frontier.csv")
    write_fastest_csv(fastest, out / "fastest.csv")

    print()
    print(f"wrote {out / 'compare.md'}, {out / 'compare.csv'}, {out / 'frontier.csv'} and {out / 'fastest.csv'}")
    if args.records:
        print(f"wrote {args.records}: {len(runs)} runs")
    if loaded.duplicates:
        print(f"counted once: {loaded.duplicates} records of runs also read from a run dir or a later input")
    for task in sorted({task for task, _ in args.kl_budgets if task} - {point.task for point in all_points}):
        print(f"--kl-budgets {task}=...: no run has task={task}")  # a typo would otherwise pass unnoticed
    for task in sorted({task for task, _ in args.gain if task} - {run.task for run in runs}):
        print(f"--gain {task}=...: no run has task={task}")
    if too_few:
        print(f"--min-seeds {args.min_seeds}: {len(too_few)} group(s) left out of the matched-KL table "
              f"and frontier_final.png: {', '.join(too_few)}")
    for note in builds:
        print(f"builds: {note}")
    for note in plot_all(groups, points, budgets, out):
        print(note)
    if skipped:
        print("\n".join(skipped_lines(skipped)))
    return 0


def skipped_lines(skipped: list[Skipped]) -> list[str]:
    return ["skipped:", *(f"  {s.path}: {s.reason}" for s in skipped)]
