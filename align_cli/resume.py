"""`resume=auto`: a re-run of a run or a sweep skips the run dirs that completed and runs the others again.

A run dir is completed when its summary.json says `"status": "completed"`. Any other (failed, or
unfinished: killed before it wrote its summary) is cleared of what the earlier attempt wrote and run from
scratch, so its metrics.jsonl never holds two attempts. Hydra rewrites `.hydra/` at every launch, with the
config the relaunch composes (an experiment edited since, a default changed since); a run keeps the config it
ran with in RUN_CONFIG, which a skipped run's `.hydra/config.yaml` is restored from, so `align compare` reads
what ran. The job log (`train.log`) keeps every attempt.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from align_cli.errors import UserError

RESUME_MODES = ("auto",)
# What a run writes into its run dir: tracking.Tracker (metrics, summary, samples, W&B), pipeline.train (the
# checkpoint), task=tree (tree_task.json, reference/), and `align eval` (eval_rerun.json, of that checkpoint).
RUN_CONFIG = "run_config.yaml"  # the .hydra/config.yaml a run started with (keep_run_config)
RUN_OUTPUTS = ("metrics.jsonl", "summary.json", "samples.jsonl", "checkpoints", "wandb", "tree_task.json",
               "reference", "eval_rerun.json", RUN_CONFIG)
# summary.json's record of what was run: a completed run of something else is never taken for this one.
RUN_IDENTITY = ("algo", "task", "model", "reward", "seed")


def check_resume(value: object) -> None:
    if value is not None and value not in RESUME_MODES:
        raise UserError(f"resume={value!r} is not supported: resume=auto (skip completed runs, re-run the others) "
                        "or resume=null (continuing a run from its checkpoint, resume=<run dir>, is planned)")


def completed_summary(run_dir: Path) -> dict | None:
    """The summary.json of a completed run; None for no summary, another status or an unreadable one."""
    try:
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) and summary.get("status") == "completed" else None


def check_same_run(summary: dict, cfg, run_dir: Path) -> None:
    """A completed run dir must hold this very run (a sweep re-run with other params numbers its jobs anew)."""
    wanted = {"algo": cfg.algo.name, "task": cfg.task.name, "model": cfg.model.name, "reward": cfg.reward.name,
              "seed": cfg.seed}
    stored = {key: summary.get(key) for key in RUN_IDENTITY}
    if stored != wanted:
        def show(settings: dict) -> str:
            return " ".join(f"{key}={value}" for key, value in settings.items())

        raise UserError(f"resume=auto: {run_dir} holds a completed run of {show(stored)}, not of this job's "
                        f"{show(wanted)}; re-run with the same params, or in a new hydra.sweep.dir / hydra.run.dir")


def clear_run_outputs(run_dir: Path) -> list[str]:
    """Remove what an earlier attempt wrote into `run_dir` (RUN_OUTPUTS); returns the names removed."""
    removed = []
    for name in RUN_OUTPUTS:
        path = Path(run_dir) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


def keep_run_config(run_dir: Path) -> None:
    """Copy the config Hydra saved for this run (.hydra/config.yaml) to RUN_CONFIG, as the run starts."""
    hydra_config = Path(run_dir) / ".hydra" / "config.yaml"
    if hydra_config.is_file():
        shutil.copyfile(hydra_config, Path(run_dir) / RUN_CONFIG)


def restore_run_config(run_dir: Path) -> bool:
    """A skipped completed run: put the config it ran with back into .hydra/config.yaml, over the one this
    launch composed. False for a run made before runs kept their config (left as Hydra wrote it)."""
    kept = Path(run_dir) / RUN_CONFIG
    if not kept.is_file():
        return False
    shutil.copyfile(kept, Path(run_dir) / ".hydra" / "config.yaml")
    return True
