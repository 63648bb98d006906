"""Continuing a stored Optuna study: the stock sweep, started from where the stored study stands.

With `trials_file` (a JSON-lines file, one finished trial a line: number, state, values, params, their
distributions, user attrs) the study is also kept where a machine's disk does not survive: the file's
trials the storage lacks are added to it before the sweep (a fresh machine continues a study from a
committed file), and the file is rewritten from the storage before every launch and at the end.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import optuna
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from optuna.distributions import distribution_to_json, json_to_distribution
from optuna.trial import TrialState, create_trial

log = logging.getLogger(__name__)


class ContinuedStudySweeperImpl(OptunaSweeperImpl):
    """`n_trials` is the study's total: a stored study runs only the trials it still lacks.

    Trial k's job is job k (its dir `<k>_...`), in every session, so no two trials share a job dir and a
    re-run interrupted trial lands in its own dir again, where `resume=auto` keeps what it had finished."""

    def __init__(self, *args: Any, trials_file: str | None = None, **settings: Any) -> None:
        super().__init__(*args, **settings)
        self.trials_file = Path(trials_file).resolve() if trials_file else None  # before any job changes dir

    def sweep(self, arguments: list[str]) -> None:
        sampler_config = self.sampler
        if self.storage is None:  # an in-memory study starts empty every time: the stock sweep as it is
            self.sampler = instantiate(sampler_config)
            return super().sweep(arguments)
        check_storage_backend(self.storage)
        Path(str(self.sweep_dir)).mkdir(parents=True, exist_ok=True)  # a SQLite file there opens before any job
        study = optuna.create_study(study_name=self.study_name, storage=self.storage,
                                    directions=self._get_directions(), load_if_exists=True)
        if self.trials_file is not None:
            added = add_recorded_trials(study, self.trials_file)
            if added:
                log.info("Added %d trial(s) of %s to the study", added, self.trials_file)
            self._write_trials_before_each_launch(study)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            self._rerun_interrupted(study, trial)
        done = len(study.trials)
        missing = max(0, self.n_trials - done)
        if done:
            log.info("Study %s holds %d of its %d trials: %s", study.study_name, done, self.n_trials,
                     f"running the {missing} missing" if missing else "none missing")
        self.sampler = continued_sampler(sampler_config, done)
        self.job_idx = done
        self.n_trials = missing
        try:
            super().sweep(arguments)
        except ValueError:  # the stock sweep ends on study.best_trial, which fails while no trial completed
            if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                raise
            log.error("Study %s has no completed trial: no optimization_results.yaml", study.study_name)
        finally:
            if self.trials_file is not None:
                write_trials(study, self.trials_file)

    def _write_trials_before_each_launch(self, study: optuna.Study) -> None:
        """The stock sweep tells the study a batch's results after its launch returns: writing the file as
        the next launch starts keeps every told trial in it, a kill losing at most the running ones."""
        launch = self.launcher.launch

        def launch_after_writing(*args: Any, **kwargs: Any) -> Any:
            write_trials(study, self.trials_file)
            return launch(*args, **kwargs)

        self.launcher.launch = launch_after_writing

    def _rerun_interrupted(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Run a trial a killed session left RUNNING again, with its parameters, and tell the study.
        The stock sweeper sends a trial's sampled params and then its fixed ones (kept as user attrs)."""
        overrides = tuple(f"{name}={value}" for name, value in {**trial.params, **trial.user_attrs}.items())
        log.info("Re-running trial %d, interrupted in an earlier session: %s", trial.number, " ".join(overrides))
        [job] = self.launcher.launch([overrides], initial_job_idx=trial.number)
        try:
            values = job_values(job.return_value, len(study.directions))
        except Exception as exc:  # the job raised, or returned no number (align returns None for a failed run)
            log.warning("Trial %d failed: %s", trial.number, exc)
            study.tell(trial.number, state=TrialState.FAIL)
            return
        study.tell(trial.number, values=values)


def job_values(returned: Any, n_objectives: int) -> list[float]:
    """A job's return value as the study's objective values; ValueError unless they are finite numbers."""
    values = list(returned) if n_objectives > 1 else [returned]
    try:
        numbers = [float(value) for value in values]
    except (TypeError, ValueError):
        raise ValueError(f"the job returned {returned!r}, not {n_objectives} number(s)") from None
    if len(numbers) != n_objectives or not all(math.isfinite(number) for number in numbers):
        raise ValueError(f"the job returned {returned!r}, not {n_objectives} finite number(s)")
    return numbers


def continued_sampler(config: Any, trials_done: int) -> Any:
    """The sampler of a study that holds `trials_done` trials. A sampler starts its random stream anew in
    every session, so with the configured seed a continued study would ask the first trials' parameters
    again: its seed moves on by the trials done (the same kill point always continues the same way)."""
    if trials_done and config.get("seed") is not None:
        return instantiate(config, seed=config.seed + trials_done)
    return instantiate(config)


def check_storage_backend(storage: Any) -> None:
    """Optuna 2.x (the newest this plugin allows) cannot create a SQL storage with SQLAlchemy 2: it fails
    with a bare AssertionError, or 'database is locked'. Say so, with the fix."""
    if not (isinstance(storage, str) and "://" in storage):
        return
    import sqlalchemy

    if int(sqlalchemy.__version__.split(".")[0]) >= 2:
        raise RuntimeError(f"Optuna {optuna.__version__} cannot use the SQL storage {storage!r} with SQLAlchemy "
                           f"{sqlalchemy.__version__}: pip install 'sqlalchemy<2' (the optuna extra pins it)")


FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


def trial_record(trial: optuna.trial.FrozenTrial) -> dict:
    return {"number": trial.number, "state": trial.state.name, "values": trial.values, "params": trial.params,
            "distributions": {name: json.loads(distribution_to_json(distribution))
                              for name, distribution in trial.distributions.items()},
            "user_attrs": trial.user_attrs}


def write_trials(study: optuna.Study, path: Path) -> None:
    """The study's finished trials, one JSON line each in trial order (written whole, then renamed)."""
    trials = sorted(study.get_trials(deepcopy=False, states=FINISHED), key=lambda trial: trial.number)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join(json.dumps(trial_record(trial), sort_keys=True) + "\n" for trial in trials))
    os.replace(partial, path)


def add_recorded_trials(study: optuna.Study, path: Path) -> int:
    """Add the file's trials that come after the study's last one, in order, so trial k keeps number k
    (and its job dir); returns how many. A file that disagrees with the study on a shared trial number is
    an error: it belongs to another study."""
    if not path.exists():
        return 0
    records = sorted((json.loads(line) for line in path.read_text().splitlines() if line.strip()),
                     key=lambda record: record["number"])
    stored = {trial.number: trial for trial in study.get_trials(deepcopy=False)}
    added = 0
    for record in records:
        trial = stored.get(record["number"])
        if trial is not None:
            if trial.state in FINISHED and trial.params != record["params"]:
                raise ValueError(f"{path}: trial {record['number']} has other params than the stored study "
                                 f"{study.study_name}'s: a trials file of another study?")
            continue
        if record["number"] != len(study.trials):
            raise ValueError(f"{path}: trial {record['number']} follows a gap (the study holds "
                             f"{len(study.trials)} trials)")
        state = TrialState[record["state"]]
        study.add_trial(create_trial(
            state=state, values=record["values"] if state == TrialState.COMPLETE else None, params=record["params"],
            distributions={name: json_to_distribution(json.dumps(spec))
                           for name, spec in record["distributions"].items()},
            user_attrs=record["user_attrs"]))
        added += 1
    return added
