"""Sweeps: a smoke multirun over every algorithm and two seeds (joblib launcher, W&B offline) that
`align compare` reads back; one failed job does not stop a sweep; the Optuna presets optimise what
`align train` returns."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import read_jsonl

from align_cli.pipeline import peak_rss_mb, reset_peak_memory, sweep_objective

ALGOS = ["sac", "ppo", "dpo", "cpl", "rs", "bon"]
WANDB = str(Path(sys.executable).parent / "wandb")


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
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in proc.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| group")]
    assert sorted(row[0] for row in rows) == sorted(ALGOS)  # one group per algorithm, the seeds pooled
    assert all(row[1] == "2" for row in rows)
    with (tmp_path / "cmp" / "compare.csv").open() as f:
        assert sorted(row["label"] for row in csv.DictReader(f)) == sorted(ALGOS)
    for name in ["compare.md", "frontier.png", "curves.png", "overoptimisation.png"]:
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


@pytest.mark.xdist_group("sentiment")
def test_optuna_preset_maximises_the_objective_align_train_returns(run_align, tmp_path):
    run_align("train", "-m", "hparams_search=rs_optuna", "debug=smoke", "logger=none", "hydra.sweeper.n_trials=3",
              "hydra.sweep.dir=sweep")
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert set(results["best_params"]) == {"algo.lr", "algo.rounds", "algo.k", "algo.temperature"}
    trials = summaries(tmp_path / "sweep")
    assert len(trials) == 3 and all(s["algo"] == "rs" for s in trials.values())
    objectives = [sweep_objective(s["final"], kl_cap=3.0) for s in trials.values()]
    assert not any(math.isnan(v) for v in objectives)
    assert results["best_value"] == pytest.approx(max(objectives))
