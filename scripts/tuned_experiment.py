"""Write `experiment=compare_tuned` from the eight Optuna studies' trials files: each algorithm at its best trial.

The studies (`hparams_search=<algo>_optuna`, run by scripts/tuning.sh) keep their finished trials in
docs/results/tuning/<algo>_trials.jsonl. This script picks each study's best completed trial (highest
objective; the earliest of equal ones) and writes one grid per algorithm with exactly those settings (the
trial's sampled parameters, the fixed `algo.*` ones the sweeper sent with them, and the `algo:` settings the
study's preset align_cli/conf/hparams_search/<algo>_optuna.yaml fixes, e.g. SAC's fixed temperature) into
align_cli/conf/experiment/compare_tuned.yaml, whose header holds the commands that ran the studies.

    python scripts/tuned_experiment.py [--trials docs/results/tuning] [--presets align_cli/conf/hparams_search]
                                       [--out align_cli/conf/experiment/compare_tuned.yaml]

The tuned configurations run on fresh seeds (3, 4, 5): the studies scored seeds 0 and 1, and a config
picked as the best on those seeds would be favoured by them (the winner's curse).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ALGOS = ("sac", "ppo", "grpo", "rloo", "dpo", "cpl", "rs", "bon")  # the grids' order: the longest runs first
SEEDS = "3,4,5"
STUDY_COMMAND = ("align train -m hparams_search={algo}_optuna hydra.sweep.dir=runs/tuning/{algo} "
                 "hydra.sweeper.trials_file=docs/results/tuning/{algo}_trials.jsonl resume=auto logger=none threads=1")
RUN_COMMAND = ("align train -m experiment=compare_tuned hydra.sweep.dir=runs/compare_tuned resume=auto "
               "hydra/launcher=joblib hydra.launcher.n_jobs=2 threads=1")


def best_trial(path: Path) -> tuple[dict, int]:
    """The best completed trial of a trials file and how many trials the file holds."""
    trials = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    completed = [t for t in trials if t["state"] == "COMPLETE" and t.get("values")]
    if not completed:
        raise ValueError(f"{path}: no completed trial")
    return max(completed, key=lambda t: (t["values"][0], -t["number"])), len(trials)


def override_value(value: object) -> str:
    """A value as a Hydra override writes it (a float keeps every digit the study used)."""
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


def preset_settings(path: Path) -> dict:
    """The `algo:` settings a study's preset fixes for every trial (not swept, so not in the trials file)."""
    preset = yaml.safe_load(path.read_text()) or {}
    algo = preset.get("algo") or {}
    if not isinstance(algo, dict):
        raise ValueError(f"{path}: 'algo' is not a mapping")
    return {f"algo.{key}": value for key, value in algo.items()}


def grid_line(algo: str, trial: dict, n_trials: int, preset: dict) -> str:
    # The sweeper keeps a study's fixed overrides as user attrs: the command line's too (logger=none,
    # threads=1), which are how the study ran, not what it tuned; only the algorithm's are kept. The
    # preset's own settings come first: the command line and the sampled values override them.
    fixed = {key: value for key, value in trial.get("user_attrs", {}).items() if key.startswith("algo.")}
    settings = {**preset, **trial["params"], **fixed}
    cells = ", ".join(f'{key}: "{override_value(value)}"' for key, value in sorted(settings.items()))
    return (f"      - {{algo: {algo}, {cells}}}  # trial {trial['number']} of {n_trials}: "
            f"objective {trial['values'][0]:.4f}")


def experiment_text(trials_dir: Path, presets_dir: Path = ROOT / "align_cli/conf/hparams_search") -> str:
    missing = [algo for algo in ALGOS if not (trials_dir / f"{algo}_trials.jsonl").exists()]
    if missing:
        raise FileNotFoundError(f"{trials_dir}: no trials file for {', '.join(missing)} ({missing[0]}_trials.jsonl)")
    grids, studies = [], []
    for algo in ALGOS:
        trial, n_trials = best_trial(trials_dir / f"{algo}_trials.jsonl")
        grids.append(grid_line(algo, trial, n_trials, preset_settings(presets_dir / f"{algo}_optuna.yaml")))
        studies.append(f"#   {STUDY_COMMAND.format(algo=algo)}")
    header = [
        "# @package _global_",
        f"# {RUN_COMMAND}",
        "# Every algorithm at the best configuration its Optuna study found (hparams_search=<algo>_optuna: the",
        "# same trial count for all, each trial scored by the mean over seeds 0 and 1 of the final gold reward",
        "# minus the final KL above 3 nats), on 3 fresh seeds (3, 4, 5: the seeds that picked a config would",
        "# favour it), then: align compare runs/compare_tuned. Written by scripts/tuned_experiment.py from the",
        "# studies' trials files (docs/results/tuning/<algo>_trials.jsonl); the studies ran (scripts/tuning.sh):",
        *studies,
        "defaults:",
        "  - override /hydra/sweeper: align_grid",
        "",
        "experiment: compare_tuned",
        "eval:",
        "  every_budget: 256  # one eval resolution for all, as in experiment=frontier",
        "",
        "hydra:",
        "  sweep:",
        "    subdir: ${algo.name}_${hydra.job.override_dirname}",
        "  job:",
        "    config:",
        "      override_dirname:",
        "        exclude_keys: [algo, experiment, threads, resume, device, logger, paths.runs_dir, paths.cache_dir]",
        "  sweeper:",
        "    params:",
        f"      seed: {SEEDS}",
        "    grids:  # each study's best trial",
        *grids,
    ]
    return "\n".join(header) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=Path, default=ROOT / "docs/results/tuning", help="dir of <algo>_trials.jsonl")
    parser.add_argument("--presets", type=Path, default=ROOT / "align_cli/conf/hparams_search",
                        help="dir of the studies' presets <algo>_optuna.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "align_cli/conf/experiment/compare_tuned.yaml",
                        help="the experiment file to write")
    args = parser.parse_args(argv)
    try:
        text = experiment_text(args.trials, args.presets)
    except (OSError, ValueError, KeyError) as exc:
        print(f"tuned_experiment: error: {exc}", file=sys.stderr)
        return 2
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
