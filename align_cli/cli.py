"""`align` entry point: the first word is the command, the rest are Hydra overrides.

    align train [overrides]          one run (`-m` for a Hydra multirun sweep)
    align prepare [overrides]        build + cache the shared artefacts
    align eval run=<run_dir>         re-run the eval harness on a finished run's final checkpoint

Each command is its own `@hydra.main`. Overrides are composed once up front so a user error (unknown
option, unknown key, wrong type) ends with one line that names the problem and the valid choices.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import tempfile
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from align_cli import resume
from align_cli.errors import UserError

log = logging.getLogger("align")
COMMANDS = {"train": "train", "prepare": "prepare", "eval": "eval"}
USAGE = """usage: align <command> [hydra overrides]

commands:
  train     one run (default: algo=sac task=sentiment model=tiny reward=learned); -m sweeps
  prepare   build and cache the shared artefacts (SFT policy, preference pairs, reward model)
  eval      re-run the eval harness on a finished run:  align eval run=<run_dir>
  compare   table + plots over run dirs, sweep dirs or records files:  align compare <dirs...> [--out DIR]

`align <command> --help` lists the config groups and their options."""


def fail(message: str, code: int = 2) -> None:
    print(f"align: error: {message}", file=sys.stderr)
    raise SystemExit(code)


# ------------------------------------------------------------------------------------------- commands
@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def train_command(cfg: DictConfig) -> float | None:
    """One job: a run, or with objective_seeds=N one run per seed; returns the sweeper's objective."""
    from align_cli import pipeline

    hydra_cfg = HydraConfig.get()
    job_dir = Path(hydra_cfg.runtime.output_dir)
    sweeping = hydra_cfg.mode.name == "MULTIRUN"
    group = wandb_group(cfg, hydra_cfg)
    run_dir, ran, finals = job_dir, False, []
    try:
        resume.check_resume(cfg.resume)
        for run_cfg, run_dir, overrides in job_runs(cfg, job_dir, list(hydra_cfg.overrides.task)):
            summary = completed_run(run_cfg, run_dir) if cfg.resume == "auto" else None
            if summary is None:
                ran = True
                resume.keep_run_config(run_dir)
                summary = pipeline.train(run_cfg, run_dir, group=group, overrides=overrides)
            final = summary["final"]
            shown = {k: round(v, 4) for k, v in final.items() if k.startswith("eval/") and isinstance(v, (int, float))}
            log.info("run dir: %s", run_dir)
            log.info("final: %s", json.dumps(shown))
            finals.append(final)
    except Exception as exc:
        if not sweeping:
            if isinstance(exc, UserError):
                fail(str(exc))
            raise
        # One failed job must not stop a sweep: its summary.json and W&B run already say "failed".
        log.error("job %s failed: %s: %s (run dir %s)", hydra_cfg.job.num, type(exc).__name__, exc, run_dir)
        record_sweep_job("failed", run_dir, exc)
        # Optuna records a trial that returns no number as failed (hydra-optuna-sweeper crashes on NaN).
        return None
    if cfg.resume == "auto":
        record_sweep_job("ran" if ran else "skipped", job_dir)
    objective = pipeline.seeds_objective(finals, cfg.objective_kl_cap)
    if len(finals) > 1:
        log.info("objective (mean over seeds %d-%d): %r", cfg.seed, cfg.seed + len(finals) - 1, objective)
    return objective


def job_runs(cfg: DictConfig, job_dir: Path, overrides: list[str]) -> list[tuple[DictConfig, Path, list[str]]]:
    """(config, run dir, overrides) of each run of a job: the job itself, or with objective_seeds=N > 1 seeds
    seed, ..., seed+N-1 in run dirs <job dir>/seed<k>/. Each of those gets the .hydra/config.yaml and
    overrides.yaml of a single run of its seed, so `align compare` and `align eval` read it like any run
    (the job dir itself has no metrics.jsonl, so it is not taken for a run)."""
    n_seeds = cfg.objective_seeds
    if n_seeds < 1:
        raise UserError(f"objective_seeds={n_seeds}: needs at least 1 seed")
    if n_seeds == 1:
        return [(cfg, job_dir, overrides)]
    runs = []
    for seed in range(cfg.seed, cfg.seed + n_seeds):
        single = {"seed": seed, "objective_seeds": 1}
        run_cfg = OmegaConf.merge(cfg, single)
        run_overrides = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] not in single]
        run_overrides += [f"{key}={value}" for key, value in single.items()]
        run_dir = job_dir / f"seed{seed}"
        (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
        OmegaConf.save(run_cfg, run_dir / ".hydra" / "config.yaml")  # unresolved, as Hydra saves a job's
        OmegaConf.save(OmegaConf.create(run_overrides), run_dir / ".hydra" / "overrides.yaml")
        runs.append((run_cfg, run_dir, run_overrides))
    return runs


def completed_run(cfg: DictConfig, run_dir: Path) -> dict | None:
    """resume=auto: the summary of a completed run in `run_dir` (skipped), else None, with the dir cleared
    of an earlier attempt's files so the run starts from scratch."""
    summary = resume.completed_summary(run_dir)
    if summary is not None:
        resume.check_same_run(summary, cfg, run_dir)
        resume.restore_run_config(run_dir)  # what it ran with, not what this launch composed
        log.info("skipping completed job %s", run_dir)
        return summary
    cleared = resume.clear_run_outputs(run_dir)
    if cleared:
        log.info("resume=auto: running %s again from scratch (removed the earlier %s)", run_dir, ", ".join(cleared))
    return None


def wandb_group(cfg: DictConfig, hydra_cfg) -> str | None:
    """logger.group if set; in a sweep, the sweep (experiment name + the sweep dir's last two parts, by
    default its date and time), so the jobs of one sweep share a group and two sweeps do not; else the
    experiment name (or none)."""
    if cfg.logger.group:
        return str(cfg.logger.group)
    if hydra_cfg.mode.name == "MULTIRUN":
        sweep_dir = Path(hydra_cfg.sweep.dir).resolve()
        return f"{cfg.experiment or 'sweep'}-{sweep_dir.parent.name}_{sweep_dir.name}"
    return cfg.experiment


# A file where the jobs of a sweep (any launcher's processes) list their outcome: "failed" always, "ran" or
# "skipped" under resume=auto; `main` reads it when the sweep is over.
SWEEP_JOURNAL_ENV = "ALIGN_SWEEP_JOURNAL"


def record_sweep_job(outcome: str, run_dir: Path, exc: BaseException | None = None) -> None:
    path = os.environ.get(SWEEP_JOURNAL_ENV)
    if path:
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}" if exc else ""
        with open(path, "a") as f:
            f.write(f"{outcome}\t{run_dir}\t{error}\n")


def report_sweep(journal: str) -> None:
    """After a sweep: how many jobs resume=auto skipped and ran, then the failed jobs (exit 1 if any)."""
    jobs = [line.split("\t", 2) for line in journal.splitlines() if line.strip()]
    failed = [(run_dir, error) for outcome, run_dir, error in jobs if outcome == "failed"]
    skipped = sum(outcome == "skipped" for outcome, _, _ in jobs)
    ran = sum(outcome == "ran" for outcome, _, _ in jobs)
    if skipped or ran:
        print(f"align: resume=auto: {skipped} job(s) skipped as completed, {ran + len(failed)} ran", file=sys.stderr)
    if failed:
        for run_dir, error in failed:
            print(f"align: failed job: {run_dir}: {error}", file=sys.stderr)
        fail(f"{len(failed)} sweep job(s) failed (listed above); every other job ran", code=1)


@hydra.main(config_path="conf", config_name="prepare", version_base="1.3")
def prepare_command(cfg: DictConfig) -> None:
    # stdout carries only the JSON below; anything a library prints meanwhile goes to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        from align_cli import models, pipeline

        try:
            pipeline.setup_torch(cfg.threads or cfg.prepare.threads)
            artefacts = pipeline.prepare(cfg, models.pick_device(cfg.device))
        except UserError as exc:
            fail(str(exc))
    rm = artefacts.info.get("rm", {})
    if "rm_accuracy" in rm:
        line = f"reward model held-out accuracy {rm['rm_accuracy']:.3f} on {rm['heldout_pairs']} pairs"
        if "gold_accuracy" in rm:
            line += f" (gold reward on the same pairs: {rm['gold_accuracy']:.3f}, the ceiling under label noise)"
        log.info(line)
    print(json.dumps(artefacts.info, indent=2, default=str))


@hydra.main(config_path="conf", config_name="eval", version_base="1.3")
def eval_command(cfg: DictConfig) -> None:
    from align_cli import pipeline

    try:
        metrics, recorded = pipeline.evaluate_run(Path(cfg.run), cfg.checkpoint)
    except UserError as exc:
        fail(str(exc))
    out = Path(cfg.out) if cfg.out else Path(cfg.run) / "eval_rerun.json"
    from align_cli.tracking import jsonable

    finite = {k: jsonable(v) for k, v in metrics.items()}
    out.write_text(json.dumps({"metrics": finite, "recorded_final": recorded}, indent=2))
    print(f"{'metric':<22}{'re-run':>12}{'recorded':>12}")
    for key, value in metrics.items():
        before = recorded.get(key)
        print(f"{key:<22}{value:>12.4f}{'-' if before is None else f'{before:.4f}':>12}")
    print(f"written to {out}")


def quiet_libraries() -> None:
    """Keep the console to align's own lines and the trainers' progress bars."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the Optuna sweeper's storage layer, at import
    try:
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:
        pass


HYDRA_MAINS = {"train": train_command, "prepare": prepare_command, "eval": eval_command}


# ------------------------------------------------------------------------------------------- validation
def group_options(group: str) -> list[str]:
    """The yaml options of a config group (what a user may pick)."""
    folder = Path(__file__).parent / "conf" / group
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _exception_text(exc: BaseException) -> str:
    parts = []
    while exc is not None:
        parts.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


def explain(exc: BaseException, config_name: str, overrides: list[str]) -> str:
    """One line naming the bad override and the valid choices."""
    text = _exception_text(exc)
    missing = re.search(r"Could not find '([\w/]+)/([^'/]+)'", text)
    if missing:
        group, name = missing.group(1), missing.group(2)
        return f"unknown {group} {name!r}; valid choices: {', '.join(group_options(group))}"
    bad_key = re.search(r"Key '([^']+)' not in '[^']*'\s*\n\s*full_key: ([\w.]+)", text)
    if bad_key:
        full_key = bad_key.group(2)
        parent = full_key.rsplit(".", 1)[0] if "." in full_key else ""
        valid = valid_keys(config_name, overrides, parent)
        where = f" in {parent}" if parent else ""
        return f"unknown key {full_key!r}; valid keys{where}: {', '.join(valid)}"
    bad_value = re.search(r"(Value '.*' (?:could not be converted to|is not a valid) [^\n]*)\s*\n\s*full_key: ([\w.]+)",
                          text)
    if bad_value:
        return f"bad value for {bad_value.group(2)!r}: {bad_value.group(1)}"
    missing_value = re.search(r"Missing mandatory value: [\w.]+\s*\n\s*full_key: ([\w.]+)", text)
    if missing_value:
        return f"{missing_value.group(1)} is required: add {missing_value.group(1)}=<value> to the command"
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    return first


def valid_keys(config_name: str, overrides: list[str], parent: str) -> list[str]:
    """Keys of a config node, composed with the same group choices as the failing command line."""
    from hydra import compose, initialize_config_module

    known = {"algo", "task", "model", "reward", "eval", "logger", "debug", "experiment", "hparams_search"}
    groups = [o for o in overrides if re.fullmatch(r"[\w/]+=[\w.-]+", o) and o.split("=")[0] in known]
    try:
        with initialize_config_module(config_module="align_cli.conf", version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=groups)
        node = OmegaConf.select(cfg, parent) if parent else cfg
        return sorted(node.keys()) if isinstance(node, DictConfig) else []
    except Exception:
        return []


def validate(config_name: str, overrides: list[str]) -> None:
    """Compose the config once so user errors fail here, before any work, with a clear message."""
    from hydra import compose, initialize_config_module

    try:
        with initialize_config_module(config_module="align_cli.conf", version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=overrides)
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except Exception as exc:
        fail(explain(exc, config_name, overrides))


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        raise SystemExit(0 if argv else 2)
    command, overrides = argv[0], argv[1:]
    if command == "compare":
        from align_cli.compare import main as compare_main

        raise SystemExit(compare_main(overrides))
    if command not in HYDRA_MAINS:
        fail(f"unknown command {command!r}; valid commands: {', '.join(HYDRA_MAINS)}")
    if command == "train":
        check_resume_override(overrides)
    # Registering the configs imports every algorithm (torch, trl): only the Hydra commands pay for it.
    # stdout carries `align prepare`'s JSON, and transformers prints a W&B line when imported with
    # WANDB_MODE=offline, so these imports print to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        from align_cli.config import register_configs

        register_configs()
    logging.basicConfig(level=logging.INFO, format="[align] %(message)s")
    quiet_libraries()
    flags = [o for o in overrides if o.startswith("-")]
    sweeping = any(f in ("-m", "--multirun") for f in flags)
    informational = any(f in ("-h", "--help", "--hydra-help", "--info", "-c", "--cfg", "--resolve") for f in flags)
    if not flags or not (sweeping or informational):
        validate(COMMANDS[command], [o for o in overrides if not o.startswith("-")])
    sys.argv = [f"align {command}", *overrides]
    if not sweeping:
        HYDRA_MAINS[command]()
        return
    with tempfile.NamedTemporaryFile("r", prefix="align-sweep-", suffix=".tsv") as journal:
        os.environ[SWEEP_JOURNAL_ENV] = journal.name
        HYDRA_MAINS[command]()
        jobs = journal.read()
    report_sweep(jobs)


def check_resume_override(overrides: list[str]) -> None:
    """resume=<value> on the command line, checked before any job starts (a sweep's jobs would each fail)."""
    for override in overrides:
        key, sep, value = override.lstrip("+").partition("=")
        if sep and key == "resume":
            try:
                resume.check_resume(None if value == "null" else value)
            except UserError as exc:
                fail(str(exc))


if __name__ == "__main__":
    main()
