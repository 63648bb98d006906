"""scripts/more_seeds.py: the grid points the matched-KL answer picks, written as an experiment at new seeds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from test_compare import write_run

from hydra_plugins.align_grid_sweeper.align_grid_sweeper import union_of_grids

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "more_seeds.py"


def frontier_run(root: Path, name: str, golds: list[float], final_kl: float, seed: int, algo: str = "ppo",
                 experiment: str | None = "frontier", **algo_params) -> None:
    run = write_run(root, name, golds, algo=algo, seed=seed, final_kl=final_kl, algo_params=algo_params)
    config_path = run / ".hydra" / "config.yaml"
    config = json.loads(config_path.read_text())
    config["experiment"] = experiment
    config_path.write_text(json.dumps(config))


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def test_the_best_and_the_soonest_point_within_each_budget_get_the_new_seeds(tmp_path):
    runs = tmp_path / "runs"
    for seed in range(3):
        # kl_coef 1.5 ends at 0.6 nats (best gold within K = 1 and 2), crossing +0.3 at the 4th eval (300 q)
        frontier_run(runs, f"ppo1.5_s{seed}", [0.0, 0.1, 0.2, 0.35, 0.45], 0.6, seed, kl_coef=1.5)
        # 0.3 ends at 3 nats (best within K = 4) and crosses at the 2nd eval (100 q, at 0.75 nats): the
        # soonest within every K
        frontier_run(runs, f"ppo0.3_s{seed}", [0.0, 0.4, 0.6, 0.7, 0.77], 3.0, seed, kl_coef=0.3)
        # 0.05 ends past every K and crosses later (200 q, at 4 nats): never chosen
        frontier_run(runs, f"ppo0.05_s{seed}", [0.0, 0.2, 0.5, 0.8, 0.9], 8.0, seed, kl_coef=0.05)
        # another experiment's runs at a better point are not this experiment's
        frontier_run(runs, f"other_s{seed}", [0.0, 0.9, 0.9, 0.9, 0.9], 0.5, seed, experiment="sac_ablation",
                     kl_coef=1.0)
    for seed in range(2):  # fewer than --min-seeds 3: not a candidate, however good
        frontier_run(runs, f"sac_s{seed}", [0.0, 0.9, 0.9, 0.9, 0.9], 0.5, seed, algo="sac", alpha=1.0,
                     autotune_alpha=False)
    out = tmp_path / "frontier_seeds.yaml"
    proc = run_script(str(runs), "--experiment", "frontier", "--seeds", "3,4", "--out", str(out))
    assert proc.returncode == 0, proc.stderr

    text = out.read_text()
    assert text.splitlines()[1] == ("# align train -m experiment=frontier_seeds hydra.sweep.dir=runs/frontier "
                                    "resume=auto hydra/launcher=joblib hydra.launcher.n_jobs=2 threads=1")
    cfg = yaml.safe_load(text)
    assert cfg["defaults"] == ["frontier", "_self_"]  # the experiment's eval settings and job dir names
    sweeper = cfg["hydra"]["sweeper"]
    assert sweeper["params"] == {"seed": "3,4"}
    assert sweeper["grids"] == [{"algo": "ppo", "algo.kl_coef": "1.5"}, {"algo": "ppo", "algo.kl_coef": "0.3"}]
    assert "# sentiment K=1: best gold; sentiment K=2: best gold" in text
    assert "# sentiment K=4: best gold; sentiment K=1: soonest; sentiment K=2: soonest; sentiment K=4: soonest" in text
    jobs = union_of_grids(sweeper["grids"], sweeper["params"], [], OverridesParser.create())
    assert jobs == [["algo=ppo", "algo.kl_coef=1.5", "seed=3"], ["algo=ppo", "algo.kl_coef=1.5", "seed=4"],
                    ["algo=ppo", "algo.kl_coef=0.3", "seed=3"], ["algo=ppo", "algo.kl_coef=0.3", "seed=4"]]


def test_a_group_off_the_grid_is_left_out_with_a_note_and_nothing_left_is_an_error(tmp_path):
    runs = tmp_path / "runs"
    for seed in range(3):  # kl_coef 0.7 is not a point of experiment=frontier's ppo grid
        frontier_run(runs, f"ppo0.7_s{seed}", [0.0, 0.4, 0.6], 1.5, seed, kl_coef=0.7)
    out = tmp_path / "x.yaml"
    proc = run_script(str(runs), "--experiment", "frontier", "--out", str(out))
    assert proc.returncode == 2 and "no grid point of frontier.yaml matches its config" in proc.stderr
    assert "seeds on its grid" in proc.stderr and "Traceback" not in proc.stderr and not out.exists()
    for seed in range(3):  # a point on the grid, the best within K = 1 (0.7 ends at 1.5 nats): written
        frontier_run(runs, f"ppo1_s{seed}", [0.0, 0.2, 0.35], 0.8, seed, kl_coef=1.0)
    proc = run_script(str(runs), "--experiment", "frontier", "--out", str(out))
    assert proc.returncode == 0 and "left out ppo" in proc.stderr
    assert yaml.safe_load(out.read_text())["hydra"]["sweeper"]["grids"] == [{"algo": "ppo", "algo.kl_coef": "1"}]
    out.unlink()
    proc = run_script(str(runs), "--experiment", "nope", "--out", str(out))
    assert proc.returncode == 2 and "no experiment nope" in proc.stderr and not out.exists()


def test_a_group_maps_to_the_most_specific_grid_point_it_matches(tmp_path):
    # experiment=frontier sweeps SAC's alpha at the default UTD 4 and again at UTD 8 and 16: a UTD 16 run at
    # alpha 1 also matches the UTD 4 grid's {alpha: 1} (which sets no algo.utd), but ran at {alpha: 1, utd: 16}
    runs = tmp_path / "runs"
    for seed in range(3):
        # UTD 16 is best within K = 1 (0.56 at 0.96 nats) and crosses +0.3 first (at 100 q)
        frontier_run(runs, f"sac16_s{seed}", [0.0, 0.35, 0.56], 0.96, seed, algo="sac", alpha=1.0, utd=16)
        frontier_run(runs, f"sac4_s{seed}", [0.0, 0.2, 0.51], 0.9, seed, algo="sac", alpha=1.0, utd=4)
    out = tmp_path / "frontier_seeds.yaml"
    proc = run_script(str(runs), "--experiment", "frontier", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    grids = yaml.safe_load(out.read_text())["hydra"]["sweeper"]["grids"]
    assert grids == [{"algo": "sac", "algo.alpha": "1", "algo.utd": "16"}]
    # and the UTD 4 group, when it is the pick, maps to the UTD 4 grid's point
    for seed in range(3):
        (runs / f"sac16_s{seed}" / "summary.json").unlink()  # unfinished: not a candidate
    proc = run_script(str(runs), "--experiment", "frontier", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(out.read_text())["hydra"]["sweeper"]["grids"] == [{"algo": "sac", "algo.alpha": "1"}]
    # a group recorded at UTD 2 (an earlier default), now the best and the soonest, ran at no point of today's
    # grids: left out rather than rerun at UTD 4, which leaves nothing to write
    for seed in range(3):
        frontier_run(runs, f"sac2_s{seed}", [0.0, 0.4, 0.6], 0.95, seed, algo="sac", alpha=1.0, utd=2)
    out.unlink()
    proc = run_script(str(runs), "--experiment", "frontier", "--out", str(out))
    assert proc.returncode == 2 and "left out sac utd=2" in proc.stderr and not out.exists()
