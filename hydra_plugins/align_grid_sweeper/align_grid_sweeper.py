"""`hydra/sweeper=align_grid`: the basic sweeper over a union of grids.

Hydra's basic sweeper runs one cartesian product. A frontier sweep needs a different knob per algorithm
(SAC's target KL, PPO's kl_coef, DPO's beta, ...), so this sweeper takes a list of grids: each grid is a
mapping of overrides like `hydra.sweeper.params`, crossed with the shared `params` (e.g. seeds) and the
command line's overrides, and the jobs are the grids' products one after another, in the order written.

    hydra:
      sweeper:
        grids:
          - {algo: sac, algo.target_kl: "0.03,0.1,0.3"}
          - {algo: ppo, algo.kl_coef: "0.1,0.5"}
        params:
          seed: 0,1,2

Without `grids` it is the basic sweeper. `hydra.sweeper.algos=[dpo,ppo]` runs only the grids whose `algo`
is one of those (one sweep's algorithms split over several machines or sessions).
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


# No `from __future__ import annotations`: Hydra's plugin scan runs this module before it is in
# sys.modules, where dataclasses cannot resolve string annotations.
@dataclass
class GridSweeperConf:
    _target_: str = "hydra_plugins.align_grid_sweeper.align_grid_sweeper.GridSweeper"
    max_batch_size: int | None = None
    params: dict[str, str] | None = None  # crossed with every grid (e.g. seed: 0,1,2)
    grids: list[dict[str, str]] | None = None  # the union of these products (each like `params`)
    algos: list[str] | None = None  # run only the grids whose `algo` is one of these (None: every grid)


ConfigStore.instance().store(group="hydra/sweeper", name="align_grid", node=GridSweeperConf, provider="align")


class GridSweeper(BasicSweeper):
    def __init__(self, max_batch_size: int | None, params: dict[str, str] | None = None,
                 grids: list[dict[str, str]] | None = None, algos: list[str] | None = None) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.grids = grids_of(grids, algos)

    def job_overrides(self, arguments: list[str]) -> list[list[str]]:
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        return union_of_grids(self.grids, self.params, arguments, parser)

    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        jobs = self.job_overrides(arguments)
        size = self.max_batch_size or len(jobs)
        self.overrides = [jobs[i : i + size] for i in range(0, len(jobs), size)]
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        log.info("align_grid: %d jobs from %d grid(s)", len(jobs), max(1, len(self.grids)))
        returns, initial_job_idx = [], 0
        while not self.is_done():
            batch = self.get_job_batch()
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=initial_job_idx)
            for result in results:
                _ = result.return_value  # raises if the job raised (as the basic sweeper does)
            initial_job_idx += len(batch)
            returns.append(results)
        return returns


def grids_of(grids: list[dict[str, str]] | None, algos: list[str] | None) -> list[dict[str, str]]:
    """The grids to run: all of them, or (with `algos`) those whose `algo` is listed; an algo no grid has is
    an error, so a typo does not silently run nothing."""
    grids = [dict(grid) for grid in grids or []]
    if algos is None:
        return grids
    wanted = [str(algo) for algo in algos]
    present = {str(grid.get("algo")) for grid in grids}
    unknown = [algo for algo in wanted if algo not in present]
    if unknown:
        raise ValueError(f"hydra.sweeper.algos: no grid has algo {', '.join(unknown)} "
                         f"(the grids' algos: {', '.join(sorted(present))})")
    return [grid for grid in grids if str(grid.get("algo")) in wanted]


def union_of_grids(grids: list[dict[str, str]], params: dict[str, str], arguments: list[str],
                   parser: OverridesParser) -> list[list[str]]:
    """Every job's overrides: for each grid, the product of its values, the shared params and the command
    line (a key given twice keeps its last value: the command line wins; a grid's own value of a shared
    param replaces it, e.g. `seed: "3,4"` in a grid adds seeds to some points); no grids: the basic sweep."""
    jobs: list[list[str]] = []
    for grid in grids or [{}]:
        shared = {k: v for k, v in params.items() if k not in grid}
        entries = [f"{k}={v}" for k, v in {**grid, **shared}.items()] + list(arguments)
        jobs.extend(BasicSweeper.split_arguments(parser.parse_overrides(entries), None)[0])
    return jobs
