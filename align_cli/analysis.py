"""Reading finished run dirs back: eval curves, final values and sample efficiency.

Used by the benchmark scripts under `scripts/` (and by `align compare`): everything here works from the
files a run writes (metrics.jsonl, summary.json, .hydra/config.yaml), never from live objects, or from a
run's record (`record_of`, `run_of_record`): those files in one JSON object, small enough to commit, for
comparing runs whose dirs are gone.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from align_cli.resume import RUN_CONFIG


@dataclass
class Run:
    path: Path
    summary: dict
    metrics: list[dict]
    config: dict = field(default_factory=dict)
    recorded_name: str | None = None  # the run dir's name, for a run read from a record (path: FILE#name)

    @property
    def name(self) -> str:
        """The run dir's name, whether read from the dir or from its record."""
        return self.path.name if self.recorded_name is None else self.recorded_name

    @property
    def algo(self) -> str:
        return self.name_of("algo")

    @property
    def task(self) -> str:
        return self.name_of("task")

    def name_of(self, section: str) -> str:
        """`<section>.name` in the config (algo, task, ...), else summary.json's `<section>`, else "?"."""
        settings = self.config.get(section)
        name = settings.get("name") if isinstance(settings, dict) else None
        return str(name if name is not None else self.summary.get(section, "?"))

    @property
    def evals(self) -> list[dict]:
        """Eval rows in step order (rows holding eval/* metrics)."""
        return [row for row in self.metrics if any(k.startswith("eval/") for k in row)]

    def last(self, key: str) -> float | None:
        """The last logged value of `key` (None if never logged)."""
        for row in reversed(self.metrics):
            if row.get(key) is not None:
                return row[key]
        return None

    def initial(self, key: str) -> float | None:
        """`key` at the first eval (the step-0 policy), else summary.json's "initial"."""
        evals = self.evals
        value = number(evals[0].get(key)) if evals else None
        return value if value is not None else number(self.summary.get("initial", {}).get(key))

    def final(self, key: str) -> float | None:
        """`key` in summary.json's "final", else at the last eval."""
        value = number(self.summary.get("final", {}).get(key))
        evals = self.evals
        return value if value is not None or not evals else number(evals[-1].get(key))

    def peak(self, key: str) -> float | None:
        """The largest value of `key` over the evals (None if never logged): what a budget on every eval
        along the run, not only the last, holds the run to."""
        values = [value for value in (number(row.get(key)) for row in self.evals) if value is not None]
        return max(values) if values else None

    def moved(self, counter: str) -> bool:
        """Whether a cumulative counter ever changed from its first logged value."""
        values = {number(row.get(counter)) for row in self.metrics} - {None}
        return len(values) > 1

    def points(self, x: str, y: str) -> list[tuple[float, float]]:
        """(x, y) at every eval that logged both as numbers, in step order."""
        pairs = [(number(row.get(x)), number(row.get(y))) for row in self.evals]
        return [(a, b) for a, b in pairs if a is not None and b is not None]


def number(value: object) -> float | None:
    """`value` as a float; None for null, NaN, booleans and anything not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def load_run(path: str | Path) -> Run:
    path = Path(path)
    metrics = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines() if line.strip()]
    summary_path = path / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    config = {}
    config_path = path / RUN_CONFIG  # the config it ran with, should a relaunch have rewritten .hydra
    if not config_path.exists():
        config_path = path / ".hydra" / "config.yaml"
    if config_path.exists():
        from omegaconf import OmegaConf

        config = OmegaConf.to_container(OmegaConf.load(config_path), resolve=False)
    return Run(path, summary, metrics, config)


RECORD_FIELDS = {"name": str, "summary": dict, "config": dict, "metrics": list}


def record_of(run: Run) -> dict:
    """The run as one JSON object: its name, summary.json, config (as load_run reads it) and the metric
    rows `record_rows` keeps."""
    return {"name": run.name, "summary": run.summary, "config": run.config, "metrics": record_rows(run.metrics)}


def record_rows(metrics: list[dict]) -> list[dict]:
    """The rows of `metrics` a record keeps, in order: every eval row, the last row, and for each cumulative
    counter (progress/*) the first row logging it and the first row where it changed. Read back, they give
    the same `evals` (so `initial`, `final`, `points`, `first_reaching`) and the same `moved(counter)` as
    the whole file, at a fraction of its size (training rows are most of a run's rows). Rows with
    diagnostics (diag/*, SAC's algo.diagnose_every) are kept too, with only their step, progress/* and diag/*
    values: what scripts/sac_diagnostics.py reads."""
    kept = {index for index, row in enumerate(metrics) if any(key.startswith("eval/") for key in row)}
    kept |= {len(metrics) - 1} if metrics else set()
    counters = dict.fromkeys(key for row in metrics for key in row if key.startswith("progress/"))
    for counter in counters:
        kept |= rows_showing_a_change(metrics, counter)
    diagnosed = {index for index, row in enumerate(metrics) if any(key.startswith("diag/") for key in row)}
    return [metrics[index] if index in kept else diagnostics_of(metrics[index])
            for index in sorted(kept | diagnosed)]


def diagnostics_of(row: dict) -> dict:
    """A diagnostics row trimmed to its step, counters and diag/* values."""
    return {key: value for key, value in row.items() if key == "step" or key.startswith(("diag/", "progress/"))}


def rows_showing_a_change(metrics: list[dict], counter: str) -> set[int]:
    """The index of the first row logging `counter` as a number and of the first where it differs."""
    first = None
    for index, row in enumerate(metrics):
        value = number(row.get(counter))
        if value is None:
            continue
        if first is None:
            first = index, value
        elif value != first[1]:
            return {first[0], index}
    return set() if first is None else {first[0]}


def run_of_record(record: object, source: str | Path) -> Run:
    """A record (`record_of`) read back from the records file `source`, as a Run whose path is
    `source#name`; ValueError when it is not a record."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    wrong = [key for key, kind in RECORD_FIELDS.items() if not isinstance(record.get(key), kind)]
    if wrong:
        raise ValueError("missing or mistyped " + ", ".join(wrong))
    if not all(isinstance(row, dict) for row in record["metrics"]):
        raise ValueError("metrics: expected a list of JSON objects")
    name = record["name"]
    return Run(Path(f"{source}#{name}"), record["summary"], record["metrics"], record["config"], name)


def find_run_dirs(roots: list[str | Path]) -> list[Path]:
    """Every run dir (a dir with metrics.jsonl) at or under each root, in path order, each once."""
    dirs: list[Path] = []
    seen: set[Path] = set()  # a run named twice (a sweep dir and one of its runs) is read once
    for root in map(Path, roots):
        for path in sorted(root.rglob("metrics.jsonl")):
            if path.parent.resolve() not in seen:
                seen.add(path.parent.resolve())
                dirs.append(path.parent)
    return dirs


def find_runs(roots: list[str | Path]) -> list[Run]:
    """Every run dir (a dir with metrics.jsonl) at or under each root, loaded, in path order."""
    return [load_run(d) for d in find_run_dirs(roots)]


def first_reaching(evals: list[dict], gain: float, metric: str = "eval/gold_reward",
                   counter: str = "progress/rm_queries", max_kl: float | None = None,
                   peak: bool = False) -> float | None:
    """`counter` at the first eval whose `metric` is >= the step-0 value + `gain` (None: never reached);
    with `max_kl`, at the first such eval whose eval/kl_ref is also <= max_kl (a crossing bought with more
    KL does not count, a later one within it does; with `peak` too, none after an eval past max_kl counts).

    The first eval row is the step-0 baseline; evals are checked in order, so a later dip does not
    undo a crossing."""
    row = first_row_reaching(evals, gain, metric, max_kl, peak)
    return None if row is None else row.get(counter)


def first_row_reaching(evals: list[dict], gain: float, metric: str = "eval/gold_reward",
                       max_kl: float | None = None, peak: bool = False) -> dict | None:
    """The eval row of `first_reaching` (all its counters), or None. With `peak`, `max_kl` holds every eval
    up to the crossing: once the run's eval/kl_ref has passed max_kl, no later crossing counts."""
    rows = [row for row in evals if row.get(metric) is not None and not math.isnan(row[metric])]
    if not rows:
        return None
    threshold = rows[0][metric] + gain
    highest = -math.inf  # the largest eval/kl_ref so far; an eval without one might have been anywhere
    for index, row in enumerate(rows):
        kl = number(row.get("eval/kl_ref"))
        if peak and max_kl is not None:
            highest = max(highest, math.inf if kl is None else kl)
            if highest > max_kl:
                return None
        if index and row[metric] >= threshold and (max_kl is None or (kl is not None and kl <= max_kl)):
            return row
    return None
