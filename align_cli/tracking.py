"""The one place that writes metrics: metrics.jsonl, summary.json, samples.jsonl and the W&B run.

W&B runs offline unless you are logged in (or logger.mode=online); any W&B failure is a warning, never a
stop, and `finish` always closes the W&B run (marked failed when the run failed).
"""

from __future__ import annotations

import json
import logging
import math
import netrc
import os
import time
import warnings
from pathlib import Path

from omegaconf import OmegaConf

log = logging.getLogger(__name__)


def jsonable(value):
    """NaN and infinities as None: JSON has no non-finite numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def wandb_mode(configured: str | None) -> str:
    """online if configured or logged in (API key in the environment or ~/.netrc), else offline."""
    if configured:
        return configured
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return "online"
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        pass
    return "offline"


class Tracker:
    def __init__(self, run_dir: Path, cfg, run_name: str, group: str | None, job_type: str, tags: list[str],
                 overrides: list[str] | None = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.started = time.perf_counter()
        self.last: dict[str, float] = {}
        self.run_name, self.job_type = run_name, job_type
        self.wandb_run = None
        if cfg.logger.name == "wandb":
            self._init_wandb(cfg, run_name, group, job_type, tags, overrides or [])

    def _init_wandb(self, cfg, run_name, group, job_type, tags, overrides) -> None:
        try:
            import wandb

            mode = wandb_mode(cfg.logger.mode)
            self.wandb_run = wandb.init(
                project=cfg.logger.project,
                entity=cfg.logger.entity,
                group=group,
                job_type=job_type,
                name=run_name,
                tags=tags,
                config={**flatten(OmegaConf.to_container(cfg, resolve=True)), "overrides": " ".join(overrides)},
                dir=str(self.run_dir),
                mode=mode,
                reinit="finish_previous",
                settings=wandb.Settings(silent=True, console="off"),
            )
        except Exception as exc:  # W&B must never stop training
            warnings.warn(f"W&B is off for this run: {type(exc).__name__}: {exc}", stacklevel=2)
            self.wandb_run = None

    def log(self, metrics: dict[str, float], step: int) -> None:
        record = {"step": step, **{k: jsonable(v) for k, v in metrics.items()}}
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        self.last.update({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        if self.wandb_run is not None:
            try:
                self.wandb_run.log(metrics, step=step)
            except Exception as exc:
                warnings.warn(f"W&B log failed: {exc}", stacklevel=2)

    def write_samples(self, rows: list[dict]) -> None:
        with (self.run_dir / "samples.jsonl").open("w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")

    def finish(self, status: str, info: dict, final_metrics: dict[str, float] | None = None) -> dict:
        summary = {
            **info,
            "status": status,
            "wall_s": round(time.perf_counter() - self.started, 2),
            "final": {k: jsonable(v) for k, v in (final_metrics or self.last).items()},
        }
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        if self.wandb_run is not None:
            try:
                for key, value in summary["final"].items():
                    self.wandb_run.summary[key] = value
                self.wandb_run.summary["status"] = status
                self.wandb_run.finish(exit_code=0 if status == "completed" else 1)
            except Exception as exc:
                warnings.warn(f"W&B finish failed: {exc}", stacklevel=2)
            self.wandb_run = None
        return summary
