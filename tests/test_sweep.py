"""Sweeps: a smoke multirun over every algorithm and two seeds (joblib launcher, W&B offline) that
`align compare` reads back; one failed job does not stop a sweep; resume=auto re-runs only what did not
complete; the Optuna presets give every algorithm the same budget and objective (the mean over two seeds of
what `align train` returns) and continue a stored study where it stopped."""

from __future__ import annotations

import contextlib
import csv
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import read_jsonl

from align_cli import registry
from align_cli.pipeline import peak_rss_mb, reset_peak_memory, seeds_objective, sweep_objective

ALGOS = ["sac", "ppo", "dpo", "cpl", "rs", "bon"]
WANDB = str(Path(sys.executable).parent / "wandb")
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def summaries(root: Path) -> dict[Path, dict]:
    return {p.parent: json.loads(p.read_text()) for p in sorted(root.rglob("summary.json"))}


def wandb_run_record(run_dir: Path) -> dict:
    """The run record (group, job_type, name, config) of a run dir's offline W&B run, read with no server."""
    offline = next((run_dir / "wandb").glob("offline-run-*"))
    out = subprocess.run([WANDB, "leet", "inspect", "--json", str(offline)], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return next(json.loads(line)["run"] for line in out.splitlines() if '"type":"run"' in line)


def test_sweep_objective_by_hand():
    final = {"eval/gold_reward": 0.5, "eval/rm_reward": 2.0, "eval/kl_ref": 4.0}
    assert sweep_objective(final) == 0.5
    assert sweep_objective(final, kl_cap=3.0) == pytest.approx(0.5 - 1.0)  # 1 nat over the cap
    assert sweep_objective(final, kl_cap=5.0) == 0.5
    assert sweep_objective({"eval/rm_reward": 2.0, "eval/kl_ref": 4.0}, kl_cap=3.5) == pytest.approx(1.5)


def test_peak_memory_restarts_with_each_run():
    """A joblib worker runs many jobs: each run's perf/peak_mem_mb must not include the earlier ones."""
    block = torch.ones(50_000_000)  # 200 MB
    before = peak_rss_mb()
    del block
    reset_peak_memory(torch.device("cpu"))
    assert peak_rss_mb() < before - 100


@pytest.mark.xdist_group("sentiment")
def test_compare_all_smoke_sweep_every_algorithm_two_seeds_then_compare(run_align, tmp_path):
    proc = run_align("train", "-m", "experiment=compare_all", "debug=smoke", "seed=0,1", "hydra/launcher=joblib",
                     "hydra.launcher.n_jobs=2", "threads=1", "hydra.sweep.dir=sweep")
    runs = summaries(tmp_path / "sweep")
    assert sorted((s["algo"], s["seed"]) for s in runs.values()) == sorted((a, s) for a in ALGOS for s in (0, 1))
    assert all(s["status"] == "completed" for s in runs.values())
    bon = {s["seed"]: s["final"]["eval/rm_reward"] for s in runs.values() if s["algo"] == "bon"}
    assert bon[0] != bon[1]  # the run seed picks best-of-N's candidates

    # Invariant: for one seed, every algorithm's step-0 eval is the same SFT eval, metric for metric.
    for seed in (0, 1):
        step0 = {s["algo"]: next(r for r in read_jsonl(d / "metrics.jsonl") if r["step"] == 0)
                 for d, s in runs.items() if s["seed"] == seed}
        evals = {k: v for k, v in step0["sac"].items() if k.startswith("eval/")}
        assert len(evals) >= 8
        for algo, row in step0.items():
            assert {k: row.get(k) for k in evals} == evals, algo

    # One W&B group per sweep, job_type = algo, name = algo-task-seed, the overrides in the config.
    run_dir, summary = next((d, s) for d, s in runs.items() if s["algo"] == "ppo" and s["seed"] == 1)
    record = wandb_run_record(run_dir)
    assert record["run_group"].startswith("compare_all-")
    assert record["job_type"] == "ppo" and record["display_name"] == "ppo-sentiment-s1"
    assert "algo=ppo" in record["config"]["update"]["overrides"]
    other = wandb_run_record(next(d for d, s in runs.items() if s["algo"] == "bon" and s["seed"] == 0))
    assert other["run_group"] == record["run_group"]

    proc = run_align("compare", "sweep", "--out", "cmp")
    group_table = proc.stdout.split("Matched KL")[0]  # the per-group table comes first
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in group_table.splitlines()
            if line.startswith("| ") and not line.startswith("| group")]
    assert sorted(row[0] for row in rows) == sorted(ALGOS)  # one group per algorithm, the seeds pooled
    assert all(row[1] == "2" for row in rows)
    with (tmp_path / "cmp" / "compare.csv").open() as f:
        assert sorted(row["label"] for row in csv.DictReader(f)) == sorted(ALGOS)
    with (tmp_path / "cmp" / "frontier.csv").open() as f:  # one row per algorithm and KL budget (1, 2, 4)
        assert sorted({row["algo"] for row in csv.DictReader(f)}) == sorted(ALGOS)
    for name in ["compare.md", "frontier.png", "frontier_final.png", "curves.png", "overoptimisation.png"]:
        assert (tmp_path / "cmp" / name).stat().st_size > 0, name


@pytest.mark.xdist_group("sentiment")
def test_a_failed_job_does_not_stop_the_sweep(run_align, tmp_path):
    # rs cannot split 5 queries over 4 rounds of 4 samples; bon ignores the budget and completes.
    proc = run_align("train", "-m", "algo=rs,bon", "budget.rm_queries=5", "debug=smoke", "logger=wandb",
                     "hydra.sweep.dir=sweep", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "1 sweep job(s) failed" in proc.stderr and "0_rs_sentiment_s0" in proc.stderr
    status = {s["algo"]: s["status"] for s in summaries(tmp_path / "sweep").values()}
    assert status == {"rs": "failed", "bon": "completed"}
    failed = next(d for d, s in summaries(tmp_path / "sweep").items() if s["algo"] == "rs")
    offline = next((failed / "wandb").glob("offline-run-*"))
    out = subprocess.run([WANDB, "leet", "inspect", "--json", str(offline)], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    exits = [json.loads(line)["exit"] for line in out.splitlines() if '"type":"exit"' in line]
    assert exits and exits[-1]["exit_code"] == 1  # the W&B run is marked failed


def run_files(run_dir: Path) -> dict[str, bytes]:
    """Every file under a run (or job) dir, by path, except .hydra/ (Hydra rewrites it at every launch)
    and the job log (train.log, which keeps every attempt)."""
    return {str(path.relative_to(run_dir)): path.read_bytes() for path in sorted(run_dir.rglob("*"))
            if path.is_file() and ".hydra" not in path.relative_to(run_dir).parts and path.name != "train.log"}


def step0_evals(run_dir: Path) -> list[dict]:
    return [row for row in read_jsonl(run_dir / "metrics.jsonl") if row["step"] == 0 and "eval/gold_reward" in row]


@pytest.mark.xdist_group("sentiment")
def test_resume_auto_reruns_only_the_failed_and_unfinished_jobs_of_a_sweep(run_align, tmp_path):
    command = ["train", "-m", "algo=bon", "seed=0,1,2", "debug=smoke", "logger=none", "hydra.sweep.dir=sweep",
               "resume=auto"]
    run_align(*command)
    jobs = {summary["seed"]: run_dir for run_dir, summary in summaries(tmp_path / "sweep").items()}
    completed, unfinished, failed = jobs[0], jobs[1], jobs[2]
    # What a killed sweep leaves behind: a job that never wrote its summary, and a failed one.
    (unfinished / "summary.json").unlink()
    summary = json.loads((failed / "summary.json").read_text())
    (failed / "summary.json").write_text(json.dumps({**summary, "status": "failed", "error": "killed"}))
    (completed / "marker").write_text("a completed job's dir is left alone")
    kept = run_files(completed)
    written = {run_dir: (run_dir / "metrics.jsonl").stat().st_mtime_ns for run_dir in (unfinished, failed)}

    proc = run_align(*command)
    assert f"skipping completed job {completed}" in proc.stderr
    assert "resume=auto: 1 job(s) skipped as completed, 2 ran" in proc.stderr
    assert run_files(completed) == kept
    for run_dir in (unfinished, failed):
        assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
        assert (run_dir / "metrics.jsonl").stat().st_mtime_ns != written[run_dir]
        assert len(step0_evals(run_dir)) == 1  # the earlier attempt's metrics were cleared, not appended to


@pytest.mark.xdist_group("sentiment")
def test_a_sweep_continues_on_a_fresh_machine_from_its_committed_records(run_align, tmp_path):
    """scripts/frontier.sh's cross-machine resume: runs kept only in a records file (align compare
    --records) are restored as run dirs, and resume=auto runs only the jobs with no record."""
    command = ["train", "-m", "algo=bon", "debug=smoke", "logger=none", "hydra.sweep.dir=sweep", "resume=auto"]
    run_align(*command, "seed=0,1")
    run_align("compare", "sweep", "--records", "runs.jsonl", "--out", "first")
    shutil.rmtree(tmp_path / "sweep")  # the machine is gone; the records file was committed

    restore = subprocess.run([sys.executable, str(SCRIPTS / "restore_records.py"), "runs.jsonl", "--into", "sweep"],
                             capture_output=True, text=True, cwd=tmp_path, check=True)
    assert "restored 2 run dirs" in restore.stdout
    restored = sorted((tmp_path / "sweep").glob("*/run_config.yaml"))  # kept when resume=auto skips the run
    assert len(restored) == 2 and all(path.read_text() == (path.parent / ".hydra" / "config.yaml").read_text()
                                      for path in restored)
    proc = run_align(*command, "seed=0,1,2")
    assert "resume=auto: 2 job(s) skipped as completed, 1 ran" in proc.stderr
    run_align("compare", "sweep", "runs.jsonl", "--records", "runs.jsonl", "--out", "second")
    assert [json.loads(line)["summary"]["seed"] for line in (tmp_path / "runs.jsonl").read_text().splitlines()] == [0, 1, 2]
    rows = list(csv.DictReader((tmp_path / "second" / "compare.csv").open()))
    assert [(row["n_seeds"], row["n_distinct_seeds"]) for row in rows] == [("3", "3")]


@pytest.mark.xdist_group("sentiment")
def test_resume_auto_skips_a_completed_single_run_and_other_values_are_refused(run_align, tmp_path):
    command = ["train", "algo=bon", "debug=smoke", "logger=none", "hydra.run.dir=run", "resume=auto"]
    run_align(*command)
    kept = run_files(tmp_path / "run")
    ran_with = (tmp_path / "run" / ".hydra" / "config.yaml").read_text()
    # relaunched with a config that differs from what ran (an experiment or a default changed since): skipped,
    # and the run dir still says what ran, not what this launch composed
    proc = run_align(*command, "algo.n=3")
    assert f"skipping completed job {tmp_path / 'run'}" in proc.stderr
    assert run_files(tmp_path / "run") == kept
    assert (tmp_path / "run" / ".hydra" / "config.yaml").read_text() == ran_with
    assert "algo.n=3" in (tmp_path / "run" / ".hydra" / "overrides.yaml").read_text()  # Hydra did rewrite .hydra
    for sweep in ([], ["-m", "hydra.sweep.dir=sweep"]):
        proc = run_align("train", *sweep, "resume=bogus", check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith("align: error: resume='bogus' is not supported")
    assert not (tmp_path / "sweep").exists()  # refused before any job


def test_every_optuna_preset_gives_the_same_budget_and_objective():
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from align_cli.cli import group_options
    from align_cli.config import register_configs

    register_configs()
    presets = group_options("hparams_search")
    assert presets == sorted(f"{algo}_optuna" for algo in registry.ALGORITHMS)
    budgets = {}
    with initialize_config_module(config_module="align_cli.conf", version_base="1.3"):
        for preset in presets:
            algo = preset.removesuffix("_optuna")
            lines = (Path(__file__).parents[1] / "align_cli/conf/hparams_search" / f"{preset}.yaml").read_text()
            assert lines.splitlines()[1] == f"# align train -m hparams_search={preset}"  # the command it runs
            cfg = compose("train", overrides=[f"hparams_search={preset}"], return_hydra_config=True)
            sweeper = cfg.hydra.sweeper
            assert cfg.algo.name == algo and sweeper.study_name == f"{algo}_gold_at_kl_cap"
            absent = object()
            assert sweeper.params and all(OmegaConf.select(cfg, knob, default=absent) is not absent
                                          for knob in sweeper.params)  # every knob is a key of the algo
            if algo == "sac":  # the fixed temperature, SAC's stronger form on the frontier, with alpha tuned
                assert cfg.algo.autotune_alpha is False and "algo.alpha" in sweeper.params
            budgets[preset] = {"n_trials": sweeper.n_trials, "direction": sweeper.direction,
                               "sampler": OmegaConf.to_container(sweeper.sampler),
                               "storage": OmegaConf.to_container(sweeper)["storage"],  # unresolved
                               "objective_seeds": cfg.objective_seeds, "objective_kl_cap": cfg.objective_kl_cap,
                               "resume": cfg.resume}
    assert all(budget == budgets["sac_optuna"] for budget in budgets.values()), budgets
    assert budgets["sac_optuna"]["n_trials"] == 8 and budgets["sac_optuna"]["objective_seeds"] == 2
    assert budgets["sac_optuna"]["sampler"]["n_startup_trials"] == 4  # TPE models half the trials
    assert budgets["sac_optuna"]["storage"] == "sqlite:///${hydra.sweep.dir}/optuna.db"


def stored_trials(sweep_dir: Path, study_name: str) -> list:
    import optuna

    return optuna.load_study(study_name=study_name, storage=f"sqlite:///{sweep_dir}/optuna.db").trials


def interrupt(sweep_dir: Path, trial_number: int) -> None:
    """What a session killed during a trial leaves in the storage: the trial RUNNING, without a value."""
    with contextlib.closing(sqlite3.connect(sweep_dir / "optuna.db")) as db, db:
        trial_id = "(SELECT trial_id FROM trials WHERE number = ?)"
        db.execute(f"UPDATE trials SET state = 'RUNNING', datetime_complete = NULL WHERE trial_id = {trial_id}",
                   (trial_number,))
        db.execute(f"DELETE FROM trial_values WHERE trial_id = {trial_id}", (trial_number,))


def trial_objective(job_dir: Path) -> float:
    """A trial's objective recomputed from its seeds' summaries: the mean, over seeds, of the final gold
    reward less the KL over the presets' cap."""
    finals = [json.loads((job_dir / f"seed{seed}" / "summary.json").read_text())["final"] for seed in (0, 1)]
    assert seeds_objective(finals, 3.0) == pytest.approx(sum(sweep_objective(f, 3.0) for f in finals) / 2)
    return seeds_objective(finals, 3.0)


@pytest.mark.xdist_group("sentiment")
def test_optuna_preset_scores_two_seeds_and_continues_a_stored_study(run_align, tmp_path):
    from optuna.trial import TrialState

    sweep = tmp_path / "sweep"
    # Sampler seed 2 asks n=8 first; with its seed unchanged a continued study would ask n=8 again.
    command = ["train", "-m", "hparams_search=bon_optuna", "debug=smoke", "logger=none", "hydra.sweep.dir=sweep",
               "hydra.sweeper.sampler.seed=2", "hydra.sweeper.n_trials=2"]
    run_align(*command[:-1], "hydra.sweeper.n_trials=1")  # a study stopped after 1 of its 2 trials
    job0 = next(sweep.glob("0_bon_*"))
    kept = run_files(job0)
    proc = run_align(*command)  # continued: exactly the missing trial runs, as job 1
    assert "holds 1 of its 2 trials: running the 1 missing" in proc.stdout  # Hydra's own log is on stdout
    assert "resume=auto: 0 job(s) skipped as completed, 1 ran" in proc.stderr
    assert run_files(job0) == kept
    job1 = next(sweep.glob("1_bon_*"))
    trials = stored_trials(sweep, "bon_gold_at_kl_cap")
    assert [trial.state for trial in trials] == [TrialState.COMPLETE] * 2
    assert trials[0].params != trials[1].params
    for trial, job_dir in zip(trials, (job0, job1), strict=True):
        assert trial.value == pytest.approx(trial_objective(job_dir))  # the mean over the job's two seeds
        assert sorted(p.name for p in job_dir.iterdir() if p.name.startswith("seed")) == ["seed0", "seed1"]
        assert not (job_dir / "metrics.jsonl").exists()  # the job dir is not a run; its seeds are
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(results["best_params"]) == {"algo.n"}
    assert results["best_value"] == pytest.approx(max(trial.value for trial in trials))

    run_align("compare", str(job1), "--out", "cmp")  # the job's seeds are one group of two runs
    with (tmp_path / "cmp" / "compare.csv").open() as f:
        assert [(row["label"], row["n_seeds"]) for row in csv.DictReader(f)] == [("bon", "2")]

    # The same command once more: nothing left to run, nothing touched.
    kept = {job_dir: run_files(job_dir) for job_dir in (job0, job1)}
    proc = run_align(*command)
    assert "holds 2 of its 2 trials: none missing" in proc.stdout and "Launching" not in proc.stdout
    assert {job_dir: run_files(job_dir) for job_dir in (job0, job1)} == kept
    assert [trial.state for trial in stored_trials(sweep, "bon_gold_at_kl_cap")] == [TrialState.COMPLETE] * 2

    # Killed during trial 1, after its seed 0 and before seed 1 finished: trial 1 runs again in its own job
    # dir, where resume=auto keeps seed 0 and runs seed 1 from scratch.
    interrupt(sweep, 1)
    (job1 / "seed1" / "summary.json").unlink()
    seed0 = run_files(job1 / "seed0")
    proc = run_align(*command)
    assert f"skipping completed job {job1 / 'seed0'}" in proc.stderr
    assert "Re-running trial 1, interrupted in an earlier session" in proc.stdout
    assert run_files(job1 / "seed0") == seed0
    assert len(step0_evals(job1 / "seed1")) == 1
    trials = stored_trials(sweep, "bon_gold_at_kl_cap")
    assert [trial.state for trial in trials] == [TrialState.COMPLETE] * 2
    assert trials[1].value == pytest.approx(trial_objective(job1))


@pytest.mark.xdist_group("sentiment")
def test_an_optuna_study_continues_on_a_fresh_machine_from_its_trials_file(run_align, tmp_path):
    from optuna.trial import TrialState

    command = ["train", "-m", "hparams_search=bon_optuna", "debug=smoke", "logger=none", "hydra.sweep.dir=sweep",
               "hydra.sweeper.sampler.seed=2", "hydra.sweeper.trials_file=tuning/bon.jsonl"]
    run_align(*command, "hydra.sweeper.n_trials=1")
    [first] = read_jsonl(tmp_path / "tuning" / "bon.jsonl")
    [trial0] = stored_trials(tmp_path / "sweep", "bon_gold_at_kl_cap")
    assert (first["number"], first["state"], first["values"], first["params"]) == (
        0, "COMPLETE", [trial0.value], trial0.params)
    shutil.rmtree(tmp_path / "sweep")  # the machine is gone, with the study's storage; the file was committed

    proc = run_align(*command, "hydra.sweeper.n_trials=2")
    assert "Added 1 trial(s)" in proc.stdout and "holds 1 of its 2 trials: running the 1 missing" in proc.stdout
    assert not list((tmp_path / "sweep").glob("0_*"))  # trial 0 was not run again
    trials = stored_trials(tmp_path / "sweep", "bon_gold_at_kl_cap")
    assert [trial.state for trial in trials] == [TrialState.COMPLETE] * 2 and trials[0].value == trial0.value
    assert [record["number"] for record in read_jsonl(tmp_path / "tuning" / "bon.jsonl")] == [0, 1]
    assert trials[1].params != trials[0].params  # the sampler moved on, as in a continued stored study


@pytest.mark.xdist_group("sentiment")
def test_a_failed_optuna_trial_is_recorded_as_failed_without_a_traceback(run_align, tmp_path):
    from optuna.trial import TrialState

    # rs cannot split 3 queries over its rounds x k >= 4 samples: every trial fails.
    proc = run_align("train", "-m", "hparams_search=rs_optuna", "debug=smoke", "logger=none", "budget.rm_queries=3",
                     "hydra.sweeper.n_trials=1", "hydra.sweep.dir=sweep", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "1 sweep job(s) failed" in proc.stderr
    assert [trial.state for trial in stored_trials(tmp_path / "sweep", "rs_gold_at_kl_cap")] == [TrialState.FAIL]
