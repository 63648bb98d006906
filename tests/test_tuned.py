"""experiment=compare_tuned: written from the eight studies' trials files, each algorithm at its best trial."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from align_cli import registry
from hydra_plugins.align_grid_sweeper.align_grid_sweeper import union_of_grids

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "tuned_experiment.py"
ALGOS = ("sac", "ppo", "grpo", "rloo", "dpo", "cpl", "rs", "bon")
KNOB = {"sac": "algo.actor_lr", "ppo": "algo.lr", "grpo": "algo.lr", "rloo": "algo.lr", "dpo": "algo.lr", "cpl": "algo.lr",
        "rs": "algo.lr", "bon": "algo.n"}


def trial(number, state, value, params, user_attrs=None) -> dict:
    return {"number": number, "state": state, "values": None if value is None else [value], "params": params,
            "distributions": {}, "user_attrs": user_attrs or {}}


def write_trials(trials_dir: Path, algo: str, trials: list[dict]) -> None:
    (trials_dir / f"{algo}_trials.jsonl").write_text("".join(json.dumps(t) + "\n" for t in trials))


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def test_each_algorithm_gets_its_best_completed_trial_with_its_algo_settings_on_fresh_seeds(tmp_path):
    fixed = {"logger": "none", "threads": 1, "resume": "auto"}  # the study's command line: not kept
    for algo in ALGOS:  # a plain study for each; the interesting cases on sac, cpl and bon below
        write_trials(tmp_path, algo, [trial(0, "COMPLETE", 0.2, {KNOB[algo]: 0.001}, fixed)])
    write_trials(tmp_path, "sac", [
        trial(0, "COMPLETE", 0.31, {"algo.actor_lr": 0.00012345678901, "algo.utd": 2}, fixed),
        trial(1, "FAIL", None, {"algo.actor_lr": 0.0009, "algo.utd": 4}, fixed),  # failed: no value
        trial(2, "COMPLETE", 0.45, {"algo.actor_lr": 0.0003, "algo.utd": 4}, {**fixed, "algo.tau": 0.01}),
        trial(3, "COMPLETE", 0.45, {"algo.actor_lr": 0.0005, "algo.utd": 1}, fixed),  # ties with 2: later
        trial(4, "RUNNING", None, {"algo.actor_lr": 0.0007, "algo.utd": 1}, fixed),
    ])
    write_trials(tmp_path, "cpl", [trial(0, "COMPLETE", -0.1, {"algo.kl": False, "algo.alpha": 0.1}, fixed),
                                   trial(1, "COMPLETE", 0.05, {"algo.kl": True, "algo.alpha": 0.3}, fixed)])
    write_trials(tmp_path, "bon", [trial(0, "COMPLETE", 0.6, {"algo.n": 16}, fixed),
                                   trial(1, "COMPLETE", 0.5, {"algo.n": 64}, fixed)])
    out = tmp_path / "compare_tuned.yaml"
    proc = run_script("--trials", str(tmp_path), "--out", str(out))
    assert proc.returncode == 0, proc.stderr

    text = out.read_text()
    lines = text.splitlines()
    assert lines[0] == "# @package _global_"
    assert lines[1].startswith("# align train -m experiment=compare_tuned ")  # the command that runs it
    for algo in ALGOS:  # and the commands that found it
        assert (f"#   align train -m hparams_search={algo}_optuna hydra.sweep.dir=runs/tuning/{algo} "
                f"hydra.sweeper.trials_file=docs/results/tuning/{algo}_trials.jsonl") in text
    cfg = yaml.safe_load(text)
    sweeper = cfg["hydra"]["sweeper"]
    assert sweeper["params"] == {"seed": "3,4,5"}  # not the studies' seeds 0 and 1
    grids = {grid["algo"]: {k: v for k, v in grid.items() if k != "algo"} for grid in sweeper["grids"]}
    assert list(grids) == list(ALGOS)
    # sac_optuna.yaml fixes the temperature (autotune_alpha: false) for every trial: the tuned run must too
    assert grids["sac"] == {"algo.actor_lr": "0.0003", "algo.utd": "4", "algo.tau": "0.01",
                            "algo.autotune_alpha": "false"}
    assert grids["cpl"] == {"algo.kl": "true", "algo.alpha": "0.3"}
    assert grids["bon"] == {"algo.n": "16"}
    assert grids["ppo"] == {"algo.lr": "0.001"}
    assert "# trial 2 of 5: objective 0.4500" in text

    # Each grid is one job per seed, and its keys are settings of that algorithm.
    jobs = union_of_grids(sweeper["grids"], sweeper["params"], [], OverridesParser.create())
    assert len(jobs) == 3 * len(ALGOS)
    assert ["algo=sac", "algo.actor_lr=0.0003", "algo.autotune_alpha=False", "algo.tau=0.01", "algo.utd=4",
            "seed=3"] in jobs
    for algo, settings in grids.items():
        fields = registry.get(algo).Config.__dataclass_fields__
        assert all(key.removeprefix("algo.") in fields for key in settings), algo


def test_a_float_keeps_every_digit_the_study_used(tmp_path):
    for algo in ALGOS:
        write_trials(tmp_path, algo, [trial(0, "COMPLETE", 0.1, {"algo.beta": 0.12345678901234}, {})])
    out = tmp_path / "compare_tuned.yaml"
    assert run_script("--trials", str(tmp_path), "--out", str(out)).returncode == 0
    assert yaml.safe_load(out.read_text())["hydra"]["sweeper"]["grids"][0]["algo.beta"] == "0.12345678901234"


def test_a_missing_study_or_one_without_a_completed_trial_is_one_error_line(tmp_path):
    for algo in ALGOS[:-1]:
        write_trials(tmp_path, algo, [trial(0, "COMPLETE", 0.1, {KNOB[algo]: 0.001}, {})])
    out = tmp_path / "compare_tuned.yaml"
    proc = run_script("--trials", str(tmp_path), "--out", str(out))
    assert proc.returncode == 2 and "no trials file for bon" in proc.stderr and "Traceback" not in proc.stderr
    write_trials(tmp_path, "bon", [trial(0, "FAIL", None, {"algo.n": 4}, {})])
    proc = run_script("--trials", str(tmp_path), "--out", str(out))
    assert proc.returncode == 2 and "bon_trials.jsonl: no completed trial" in proc.stderr
    assert not out.exists()  # nothing written over
