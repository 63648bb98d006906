"""Frontier sweeps: the align_grid sweeper (a union of per-algorithm grids) and the experiment files that
use it (every algorithm once, over its documented KL knob)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import read_jsonl
from hydra.core.override_parser.overrides_parser import OverridesParser

from align_cli import registry
from hydra_plugins.align_grid_sweeper.align_grid_sweeper import grids_of, union_of_grids

CONF = Path(__file__).resolve().parents[1] / "align_cli" / "conf"
# The one KL knob of each algorithm (README "Matched KL"); each experiment grid sweeps exactly this key.
KL_KNOBS = {"sac": {"algo.target_kl", "algo.alpha"}, "ppo": {"algo.kl_coef"}, "dpo": {"algo.beta"},
            "cpl": {"algo.alpha"}, "rs": {"algo.rounds", "algo.top_frac"}, "bon": {"algo.n"},
            "grpo": {"algo.kl_coef"}, "rloo": {"algo.kl_coef"}}


def jobs(grids, params, arguments) -> list[list[str]]:
    return union_of_grids(grids, params, arguments, OverridesParser.create())


def test_grid_sweeper_runs_the_union_of_each_grid_crossed_with_the_shared_params():
    assert jobs([{"algo": "sac", "algo.target_kl": "0.1,0.3"}, {"algo": "bon", "algo.n": "4"}], {"seed": "0,1"},
                ["threads=1"]) == [
        ["algo=sac", "algo.target_kl=0.1", "seed=0", "threads=1"],
        ["algo=sac", "algo.target_kl=0.1", "seed=1", "threads=1"],
        ["algo=sac", "algo.target_kl=0.3", "seed=0", "threads=1"],
        ["algo=sac", "algo.target_kl=0.3", "seed=1", "threads=1"],
        ["algo=bon", "algo.n=4", "seed=0", "threads=1"],
        ["algo=bon", "algo.n=4", "seed=1", "threads=1"],
    ]


def test_grid_sweeper_command_line_wins_and_no_grids_is_the_basic_sweeper():
    assert jobs([{"algo": "sac", "seed": "5"}], {"seed": "0,1"}, ["seed=7"]) == [["algo=sac", "seed=7"]]
    assert jobs([], {"seed": "0,1"}, ["algo=ppo,dpo"]) == [
        ["seed=0", "algo=ppo"], ["seed=0", "algo=dpo"], ["seed=1", "algo=ppo"], ["seed=1", "algo=dpo"]]


def test_a_grids_own_value_of_a_shared_param_replaces_it():
    grids = [{"algo": "sac", "algo.alpha": "1", "seed": "3,4"}, {"algo": "ppo"}]
    assert jobs(grids, {"seed": "0,1"}, []) == [
        ["algo=sac", "algo.alpha=1", "seed=3"], ["algo=sac", "algo.alpha=1", "seed=4"],
        ["algo=ppo", "seed=0"], ["algo=ppo", "seed=1"]]


def test_grid_sweeper_algos_keeps_only_the_listed_algorithms_grids_and_rejects_unknown_ones():
    grids = [{"algo": "bon", "algo.n": "2,4"}, {"algo": "dpo", "algo.beta": "0.1"}, {"algo": "sac"}]
    assert grids_of(grids, None) == grids
    assert grids_of(grids, ["sac", "bon"]) == [grids[0], grids[2]]  # in the grids' own order
    with pytest.raises(ValueError, match="no grid has algo ppo"):
        grids_of(grids, ["ppo", "dpo"])


@pytest.mark.parametrize("name", ["frontier", "frontier_tree"])
def test_frontier_experiments_sweep_every_algorithm_over_its_kl_knob_with_three_seeds(name):
    text = (CONF / "experiment" / f"{name}.yaml").read_text()
    assert text.splitlines()[1].startswith(f"# align train -m experiment={name} ")  # the command, first
    cfg = yaml.safe_load(text)
    sweeper = cfg["hydra"]["sweeper"]
    assert "override /hydra/sweeper" in str(cfg["defaults"]) and "align_grid" in str(cfg["defaults"])
    assert len(str(sweeper["params"]["seed"]).split(",")) >= 3
    algos = [grid["algo"] for grid in sweeper["grids"]]
    assert sorted(set(algos)) == sorted(registry.ALGORITHMS)  # every algorithm (some over two grids)
    for grid in sweeper["grids"]:
        knobs = set(grid) - {"algo"}
        # besides the KL knob: settings that pick a variant (SAC's UTD 8 and 16 grids, rejection sampling's selection)
        assert knobs and knobs <= KL_KNOBS[grid["algo"]] | {"algo.autotune_alpha", "algo.select", "algo.kl", "algo.utd"}
        fields = registry.get(grid["algo"]).Config.__dataclass_fields__
        for key in knobs:
            assert key.split(".", 1)[1] in fields, (grid["algo"], key)
        assert max(len(str(grid[key]).split(",")) for key in knobs & KL_KNOBS[grid["algo"]]) >= 3  # one swept


@pytest.mark.xdist_group("sentiment")
def test_frontier_sweep_through_the_cli_names_job_dirs_by_their_overrides(run_align, tmp_path):
    # experiment=frontier with its grids cut down to three smoke jobs: the experiment's job-dir naming
    # (its overrides, less the algo and run-level settings) must win over train.yaml's numbered default.
    sweep = tmp_path / "sweep"
    run_align("train", "-m", "experiment=frontier", "hydra.sweeper.grids=[{algo:bon,algo.n:'1,2'},{algo:rs}]",
              "hydra.sweeper.params.seed=0", "debug=smoke", "logger=none", "threads=1", f"hydra.sweep.dir={sweep}")
    dirs = sorted(p.name for p in sweep.iterdir() if (p / "summary.json").is_file())
    assert dirs == ["bon_algo.n=1,debug=smoke,seed=0", "bon_algo.n=2,debug=smoke,seed=0", "rs_debug=smoke,seed=0"]
    n_evals = [len([r for r in read_jsonl(sweep / d / "metrics.jsonl") if "eval/kl_ref" in r]) for d in dirs]
    assert n_evals[0] == n_evals[1] == 2  # bon: the SFT eval and the best-of-n eval


def load_experiment(name: str) -> tuple[str, dict]:
    text = (CONF / "experiment" / f"{name}.yaml").read_text()
    assert text.splitlines()[1].startswith(f"# align train -m experiment={name} ")  # the command, first
    return text, yaml.safe_load(text)


def test_frontier_gold_sweeps_every_online_algorithm_with_the_gold_judge():
    _, cfg = load_experiment("frontier_gold")
    assert {"override /reward": "gold"} in cfg["defaults"]
    grids = cfg["hydra"]["sweeper"]["grids"]
    online = sorted(name for name, module in registry.ALGORITHMS.items() if module.ONLINE)
    assert sorted({grid["algo"] for grid in grids}) == online
    for grid in grids:
        fields = registry.get(grid["algo"]).Config.__dataclass_fields__
        assert all(key.split(".", 1)[1] in fields for key in set(grid) - {"algo"}), grid
        assert set(grid) & KL_KNOBS[grid["algo"]], grid  # each grid sweeps its algorithm's KL knob


def test_sac_ablation_changes_one_documented_sac_option_per_grid_at_the_frontier_settings():
    _, cfg = load_experiment("sac_ablation")
    _, frontier = load_experiment("frontier")
    assert cfg["eval"] == frontier["eval"]  # same eval resolution as experiment=frontier's SAC points
    assert "algo.diagnose_every" in cfg["hydra"]["job"]["config"]["override_dirname"]["exclude_keys"]
    fields = registry.get("sac").Config.__dataclass_fields__
    base = {"algo", "algo.autotune_alpha", "algo.alpha", "algo.target_kl"}
    grids = cfg["hydra"]["sweeper"]["grids"]
    baselines = [grid for grid in grids if not set(grid) - base]  # plain SAC: what each fix is measured against
    assert baselines == [{"algo": "sac", "algo.autotune_alpha": "false", "algo.alpha": "0.5,1,1.5"},
                         {"algo": "sac", "algo.target_kl": "0.03,0.1"}]
    for grid in [grid for grid in grids if grid not in baselines]:
        assert grid["algo"] == "sac"
        options = set(grid) - base
        assert options and all(key.split(".", 1)[1] in fields for key in options), grid
        settings = {key: value for key, value in grid.items() if key in base}
        if grid.get("algo.autotune_alpha") == "false":  # one change each, at the baseline's fixed temperatures
            # (the costliest arms, PCL at UTD 4-8, run at one of them)
            assert set(settings.pop("algo.alpha").split(",")) <= {"0.5", "1", "1.5"}, grid
            assert settings == {"algo": "sac", "algo.autotune_alpha": "false"}, grid
        else:
            assert settings in baselines, grid


def test_the_results_tables_order_names_every_algorithm_once():
    # the row order of scripts/final_answer.py and frontier_table.py: a new algorithm must take its place
    assert sorted(registry.QUESTION_ORDER) == sorted(registry.ALGORITHMS)
    assert sorted(["bon", "zzz", "sac", "ppo"], key=registry.question_order) == ["sac", "ppo", "bon", "zzz"]
