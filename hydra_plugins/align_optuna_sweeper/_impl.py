"""Continuing a stored Optuna study: the stock sweep, started from where the stored study stands."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import optuna
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from optuna.trial import TrialState

log = logging.getLogger(__name__)


class ContinuedStudySweeperImpl(OptunaSweeperImpl):
    """`n_trials` is the study's total: a stored study runs only the trials it still lacks.

    Trial k's job is job k (its dir `<k>_...`), in every session, so no two trials share a job dir and a
    re-run interrupted trial lands in its own dir again, where `resume=auto` keeps what it had finished."""

    def sweep(self, arguments: list[str]) -> None:
        sampler_config = self.sampler
        if self.storage is None:  # an in-memory study starts empty every time: the stock sweep as it is
            self.sampler = instantiate(sampler_config)
            return super().sweep(arguments)
        check_storage_backend(self.storage)
        Path(str(self.sweep_dir)).mkdir(parents=True, exist_ok=True)  # a SQLite file there opens before any job
        study = optuna.create_study(study_name=self.study_name, storage=self.storage,
                                    directions=self._get_directions(), load_if_exists=True)
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
