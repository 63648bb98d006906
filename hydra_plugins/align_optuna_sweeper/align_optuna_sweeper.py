"""`hydra/sweeper=align_optuna`: the Optuna sweeper with `n_trials` read as the study's total.

hydra-optuna-sweeper loads a stored study (`load_if_exists=True`) but then runs `n_trials` more trials,
numbers their jobs from 0 again (so the new trials land in the earlier trials' job dirs) and leaves a
trial whose session was killed RUNNING for good. This sweeper (same settings) continues a stored study
instead: it re-runs each interrupted trial with its own parameters in its own job dir, then asks only the
trials still missing, every job numbered by its trial (`_impl.py`). One session per study at a time: a
trial RUNNING in the storage is taken for one a killed session left behind. `trials_file=<path>.jsonl`
keeps the finished trials in a text file too, from which a fresh machine's storage is filled first.

Defined only where the optuna extra is installed: without it this module registers nothing, quietly.
No `from __future__ import annotations` here: Hydra's plugin scan runs a module before it is in
sys.modules, where a dataclass with string annotations fails.
"""

from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore

try:
    from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
except ImportError:  # pip install -e '.[optuna]' brings it
    OptunaSweeper = None

if OptunaSweeper is not None:

    class AlignOptunaSweeper(OptunaSweeper):
        """OptunaSweeper whose implementation continues a stored study (optuna is imported only here)."""

        def __init__(self, **settings: Any) -> None:
            from ._impl import ContinuedStudySweeperImpl

            self.sweeper = ContinuedStudySweeperImpl(**settings)

    @dataclass
    class AlignOptunaSweeperConf(OptunaSweeperConf):
        _target_: str = "hydra_plugins.align_optuna_sweeper.align_optuna_sweeper.AlignOptunaSweeper"
        # The sampler arrives as its config: the sweep builds it once it knows how many trials are done.
        _recursive_: bool = False
        # A JSON-lines copy of the study's finished trials, which a fresh machine's sweep adds to its storage
        # first (commit it to continue a study elsewhere); None: the storage alone.
        trials_file: str | None = None

    ConfigStore.instance().store(group="hydra/sweeper", name="align_optuna", node=AlignOptunaSweeperConf,
                                 provider="align")
