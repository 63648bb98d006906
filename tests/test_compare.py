"""`align compare` over hand-written run dirs with known numbers: statistics, grouping, skipping, output."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from align_cli.added_options import ADDED_OPTIONS
from align_cli.algos import sac
from align_cli.analysis import Run, load_run, record_of, run_of_record
from align_cli.compare import (
    DEFAULT_GAINS,
    DEFAULT_KL_BUDGETS,
    GOLD,
    Estimate,
    Gains,
    KLBudgets,
    best_within,
    bootstrap_ci,
    counter_of,
    final_points,
    format_estimate,
    format_to_gain,
    gain_entry,
    group_row,
    group_runs,
    kl_budget_entry,
    label_configs,
    load_finished,
    main,
    mean_curve,
    pareto_front,
)

ONLINE, OFFLINE = ("sac", "ppo", "rs", "bon"), ("dpo", "cpl")


def write_run(root: Path, name: str, golds: list[float] | None, *, algo: str = "sac", seed: int = 0,
              algo_params: dict | None = None, task: str = "sentiment", spent_per_eval: int = 100,
              rm: bool = True, status: str | None = "completed", wall_s: float = 10.0,
              final_kl: float | None = None, eval_metrics: dict[str, float] | None = None,
              forward_tokens_per_eval: int | None = None, kls: list[float] | None = None) -> Path:
    """A run dir as `align train` leaves it: one eval row per entry of `golds` (each spending
    `spent_per_eval` RM queries, or preference pairs for an offline algo), a training row between evals,
    summary.json (none when status is None) and .hydra/config.yaml. golds=None: a task without gold reward
    (five evals whose rm_reward goes 0, 0.1, ... 0.4). kl_ref climbs 0.1 per eval, or linearly to
    `final_kl`, or takes the values `kls`; `eval_metrics` are logged as they are at every eval; progress/forward_tokens only when
    `forward_tokens_per_eval` is given."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    n_evals = len(golds) if golds is not None else 5
    rows = []
    for i in range(n_evals):
        spent = i * spent_per_eval
        progress = {"progress/rm_queries": 0 if algo in OFFLINE else spent,
                    "progress/pref_pairs": spent if algo in OFFLINE else 0, "progress/wall_s": 2.0 * i}
        if forward_tokens_per_eval is not None:
            progress["progress/forward_tokens"] = i * forward_tokens_per_eval
        kl = kls[i] if kls is not None else 0.1 * i if final_kl is None else final_kl * i / (n_evals - 1)
        row = {"step": 10 * i, "eval/kl_ref": kl, "eval/win_rate_ref": 0.5 + 0.05 * i,
               "eval/response_len": 20.0, **(eval_metrics or {}), **progress}
        if golds is not None:
            row["eval/gold_reward"] = golds[i]
        if rm:
            row["eval/rm_reward"] = 2 * golds[i] if golds is not None else 0.1 * i
        rows += [row, {"step": 10 * i + 5, "train/loss": 1.0, **progress}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows[:-1]))
    config = {"algo": {"name": algo, **(algo_params or {})}, "task": {"name": task, "kl_coef": 0.1},
              "model": {"name": "tiny"}, "reward": {"name": "learned"}, "eval": {"every": 10},
              "budget": {"rm_queries": 1000},
              # settings a group ignores: they differ from run to run here
              "logger": {"name": "none", "group": name}, "paths": {"runs_dir": str(root)},
              "seed": seed, "threads": seed, "device": "cpu", "experiment": None}
    (run / ".hydra" / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    if status is not None:
        final = {k: v for k, v in rows[-1].items() if k.startswith(("eval/", "progress/"))} if rows else {}
        summary = {"algo": algo, "task": task, "seed": seed, "status": status, "wall_s": wall_s,
                   "final": final}
        if status == "failed":
            summary["error"] = "RuntimeError: CUDA out of memory\nsecond line of the error"
        (run / "summary.json").write_text(json.dumps(summary))
    return run


# ----------------------------------------------------------------------------------------- bootstrap CI
def test_bootstrap_ci_of_identical_values_has_no_width():
    assert bootstrap_ci([0.3, 0.3, 0.3]) == Estimate(0.3, 0.3, 0.3, 3)


def test_bootstrap_ci_of_two_seeds_zero_and_one_spans_zero_to_one():
    # Resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4: the 2.5th and 97.5th percentiles
    # are 0 and 1.
    assert bootstrap_ci([0.0, 1.0]) == Estimate(0.5, 0.0, 1.0, 2)


def test_bootstrap_ci_matches_the_normal_approximation_for_many_seeds():
    data = np.arange(100.0)
    half_width = 1.96 * data.std() / math.sqrt(len(data))  # ~5.66
    estimate = bootstrap_ci(list(data))
    assert estimate.mean == pytest.approx(49.5)
    assert estimate.lo == pytest.approx(49.5 - half_width, abs=0.5)
    assert estimate.hi == pytest.approx(49.5 + half_width, abs=0.5)


@pytest.mark.parametrize("values", [[0.1, 0.5, 0.2], [1, 2, 3, 10], [0] * 9 + [5], [-3.0, 7.5]])
def test_bootstrap_ci_contains_the_mean_within_the_data_range_and_is_reproducible(values):
    estimate = bootstrap_ci(values)
    assert min(values) <= estimate.lo < estimate.mean < estimate.hi <= max(values)
    assert estimate.mean == pytest.approx(np.mean(values)) and estimate.n == len(values)
    assert bootstrap_ci(values) == estimate


def test_bootstrap_ci_drops_missing_values():
    assert bootstrap_ci([0.7, None, float("nan")]) == Estimate(0.7, 0.7, 0.7, 1)
    assert bootstrap_ci([None, float("nan")]) is None
    assert bootstrap_ci([]) is None


def test_cells_show_mean_and_ci_a_single_value_or_a_dash():
    assert format_estimate(Estimate(0.48, 0.45, 0.51, 3)) == "0.48 [0.45, 0.51]"
    assert format_estimate(Estimate(0.48, 0.48, 0.48, 1)) == "0.48"
    assert format_estimate(Estimate(1088.0, 576.0, 1600.0, 2)) == "1088 [576, 1600]"
    assert format_estimate(Estimate(-1e-9, -1e-9, -1e-9, 1)) == "0.0000"
    assert format_estimate(None) == "-"


# --------------------------------------------------------------------------------------------- to +gain
def test_to_gain_counts_queries_online_averaged_over_the_seeds_that_reached_it(tmp_path):
    write_run(tmp_path, "s0", [0.1, 0.2, 0.45, 0.5], seed=0)  # step-0 + 0.3 = 0.4: reached at 200 queries
    write_run(tmp_path, "s1", [0.2, 0.55, 0.6, 0.7], seed=1)  # its own step 0 is 0.2: reached at 100
    write_run(tmp_path, "s2", [0.1, 0.2, 0.3, 0.39], seed=2)  # never
    runs, _ = load_finished([tmp_path])
    (group,) = group_runs(runs)
    result = group_row(group, gain=0.3).to_gain
    assert (result.estimate.mean, result.reached, result.measured, result.units) == (150.0, 2, 3, ("q",))
    assert format_to_gain(result) == "150 [100, 200] q (2/3)"
    later = group_row(group, gain=0.38).to_gain  # s0 now needs 0.48
    assert (later.estimate.mean, later.reached) == (250.0, 2)  # s0 at 300, s1 at 200


def test_to_gain_counts_preference_pairs_offline(tmp_path):
    # rm_queries stays 0 for an offline algorithm: reading it would give 0, not the pairs spent.
    write_run(tmp_path, "dpo", [0.0, 0.1, 0.31], algo="dpo", spent_per_eval=64)
    (group,) = group_runs(load_finished([tmp_path])[0])
    result = group_row(group, gain=0.3).to_gain
    assert format_to_gain(result) == "128 pairs (1/1)"


def test_to_gain_never_reached_and_reward_model_fallback(tmp_path):
    write_run(tmp_path / "flat", "s0", [0.1, 0.1, 0.2], seed=0)
    write_run(tmp_path / "flat", "s1", [0.1, 0.0, 0.1], seed=1)
    write_run(tmp_path / "nogold", "s0", None)  # rm_reward 0, 0.1, ... reaches 0 + 0.25 at the 4th eval
    (flat,) = group_runs(load_finished([tmp_path / "flat"])[0])
    assert format_to_gain(group_row(flat, gain=0.3).to_gain) == "never (0/2)"
    (nogold,) = group_runs(load_finished([tmp_path / "nogold"])[0])
    assert format_to_gain(group_row(nogold, gain=0.25).to_gain) == "300 q (1/1, rm)"


# --------------------------------------------------------------------------------------------- grouping
def test_groups_pool_seeds_and_split_on_algorithm_settings(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path, f"sac_s{seed}", [0.0, 0.5], seed=seed)
    write_run(tmp_path, "bon16", [0.0, 0.3], algo="bon", algo_params={"n": 16, "eval_every": 20})
    write_run(tmp_path, "bon4", [0.0, 0.2], algo="bon", algo_params={"n": 4, "eval_every": 20})
    groups = group_runs(load_finished([tmp_path])[0])
    assert [g.label for g in groups] == ["bon n=4", "bon n=16", "sac"]  # numbers sort as numbers
    assert [len(g.runs) for g in groups] == [1, 1, 2]
    assert {run.path.name for run in groups[2].runs} == {"sac_s0", "sac_s1"}
    sac = group_row(groups[2], gain=0.3)
    assert sac.n_seeds == sac.n_distinct_seeds == 2
    assert sac.values["gold"] == Estimate(0.5, 0.5, 0.5, 2) and sac.values["gold_step0"].mean == 0.0


def test_runs_recorded_before_an_option_existed_pool_with_runs_at_its_default(tmp_path):
    """sac runs without algo.learner (recorded before it existed) and with algo.learner=sac are one group;
    learner=pcl is another; a diagnostics cadence does not split a group."""
    write_run(tmp_path, "old", [0.0, 0.5], seed=0)
    write_run(tmp_path, "new", [0.0, 0.5], seed=1, algo_params={"learner": "sac", "diagnose_every": 4})
    write_run(tmp_path, "pcl", [0.0, 0.6], seed=0, algo_params={"learner": "pcl"})
    groups = group_runs(load_finished([tmp_path])[0])
    assert [(g.label, sorted(r.path.name for r in g.runs)) for g in groups] == [
        ("sac learner=pcl", ["pcl"]), ("sac learner=sac", ["new", "old"])]
    assert set(ADDED_OPTIONS["sac"]) <= set(sac.Config.__dataclass_fields__)  # every entry is a real field


def test_labels_show_what_differs_and_not_what_it_implies():
    configs = [
        {"algo.name": "sac", "algo.lr": 0.001, "task.name": "sentiment", "task.vocab": 300, "budget.q": 100},
        {"algo.name": "sac", "algo.lr": 0.001, "task.name": "tree", "task.depth": 3, "budget.q": 100},
        {"algo.name": "dpo", "algo.lr": 0.0003, "algo.beta": 0.1, "task.name": "tree", "task.depth": 3,
         "budget.q": 100},
        {"algo.name": "dpo", "algo.lr": 0.0003, "algo.beta": 0.5, "task.name": "tree", "task.depth": 3,
         "budget.q": 200},
    ]
    # task.vocab and task.depth come with the task; algo.lr differs between algorithms, never within one;
    # beta differs within dpo, so it shows although budget.q already tells the two dpo configs apart.
    assert label_configs(configs) == ["sac task=sentiment budget.q=100", "sac task=tree budget.q=100",
                                      "dpo task=tree budget.q=100 beta=0.1",
                                      "dpo task=tree budget.q=200 beta=0.5"]



def test_an_algo_setting_shows_only_for_the_algorithm_whose_configs_differ_in_it():
    configs = [{"algo.name": "sac", "algo.target_kl": 0.1}, {"algo.name": "sac", "algo.target_kl": 0.3},
               {"algo.name": "ppo", "algo.target_kl": None, "algo.kl_coef": 0.1},
               {"algo.name": "ppo", "algo.target_kl": None, "algo.kl_coef": 1.0}]
    assert label_configs(configs) == ["sac target_kl=0.1", "sac target_kl=0.3", "ppo kl_coef=0.1", "ppo kl_coef=1"]

def test_repeated_seeds_are_pooled_but_flagged(tmp_path):
    write_run(tmp_path, "a", [0.0, 0.5], seed=0)
    write_run(tmp_path, "b", [0.0, 0.7], seed=0)
    (group,) = group_runs(load_finished([tmp_path])[0])
    row = group_row(group, gain=0.3)
    assert (row.n_seeds, row.n_distinct_seeds) == (2, 1)


def set_build(run: Path, sft_heldout_loss: float, rm_accuracy: float, sft_s: float = 500.0) -> None:
    """Record in the run's summary the artefacts it was built on, as `align train` does."""
    summary = json.loads((run / "summary.json").read_text())
    summary["artefacts"] = {"base": {"path": "/cache/base/abc", "reused": True, "sft_heldout_loss": sft_heldout_loss,
                                     "params": 1000, "sft_s": sft_s},
                            "rm": {"path": "/cache/rm/def", "reused": False, "rm_accuracy": rm_accuracy, "train_s": 60.0}}
    (run / "summary.json").write_text(json.dumps(summary))


def test_runs_of_different_artefact_builds_are_named_and_the_groups_that_pool_them(tmp_path, capsys):
    # sac seeds 0, 1 on one build (timings and paths differ, which is not a different build), seed 2 on
    # another; ppo on the first build only
    set_build(write_run(tmp_path, "sac0", [0.0, 0.5], seed=0), 1.7619, 0.795, sft_s=500.0)
    set_build(write_run(tmp_path, "sac1", [0.0, 0.6], seed=1), 1.7619, 0.795, sft_s=900.0)
    set_build(write_run(tmp_path, "sac2", [0.01, 0.6], seed=2), 1.7649, 0.7975)
    set_build(write_run(tmp_path, "ppo0", [0.0, 0.7], algo="ppo"), 1.7619, 0.795)
    assert main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    note = ("sentiment: the runs come from 2 builds of the shared artefacts (`align prepare` on different "
            "machines; step-0 gold 0.0000 to 0.0100); groups pooling more than one: sac")
    assert f"builds: {note}" in capsys.readouterr().out
    assert f"- {note}" in (tmp_path / "out" / "compare.md").read_text()

    shutil.rmtree(tmp_path / "out")  # one build, or none recorded: no note
    shutil.rmtree(tmp_path / "sac2")
    assert main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    assert "builds:" not in capsys.readouterr().out
    assert "Builds of the shared artefacts" not in (tmp_path / "out" / "compare.md").read_text()


def test_mean_curve_interpolates_onto_the_range_every_seed_covers():
    grid, mean, low, high = mean_curve([[(0, 0.0), (100, 1.0), (200, 2.0)], [(0, 0.0), (150, 3.0)]])
    assert list(grid) == [0, 100, 150]  # 200 lies beyond the second seed
    assert list(mean) == pytest.approx([0.0, 1.5, 2.25])  # at 100: 1 and 2; at 150: 1.5 and 3
    assert list(low) == pytest.approx([0.0, 1.0, 1.5]) and list(high) == pytest.approx([0.0, 2.0, 3.0])
    assert mean_curve([[(0, 0.0), (10, 1.0)], [(20, 0.0), (30, 1.0)]]) is None  # disjoint ranges


# ---------------------------------------------------------------------------------------------- subsets
def test_a_single_run_shows_plain_values(tmp_path, capsys):
    run = write_run(tmp_path, "only", [0.1, 0.3, 0.6], wall_s=12.5)
    assert main([str(run), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    no_offline_panel = ("curves.png: panel against progress/pref_pairs skipped, "
                        "no offline group has eval/gold_reward")
    assert no_offline_panel in printed
    table_row = [line for line in printed.splitlines() if line.startswith("| sac")]
    cells = [cell.strip() for cell in table_row[0].strip("|").split("|")]
    # group, seeds, step-0 gold, gold, rm_reward, kl_ref, win_rate_ref, response_len, to +0.3, wall
    assert cells == ["sac", "1", "0.10", "0.60", "1.20", "0.20", "0.60", "20.0", "200 q (1/1)", "12.5"]
    assert load_run(run).final("eval/gold_reward") == 0.6


def test_a_run_without_gold_reward_shows_dashes_and_skips_gold_plots(tmp_path, capsys):
    write_run(tmp_path, "hf", None)
    out = tmp_path / "out"
    assert main([str(tmp_path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    (row,) = [line for line in printed.splitlines() if line.startswith("| sac")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[2:5] == ["-", "-", "0.40"]  # step-0 gold, gold, rm_reward
    assert "frontier.png: skipped, no run has eval/gold_reward" in printed
    assert "curves.png: skipped, no run has eval/gold_reward" in printed
    assert "overoptimisation.png: skipped, no run has eval/gold_reward" in printed
    assert not (out / "frontier.png").exists() and (out / "compare.csv").stat().st_size > 0


def test_failed_unfinished_and_empty_runs_are_skipped_with_their_reasons(tmp_path, capsys):
    write_run(tmp_path, "done", [0.1, 0.5])
    write_run(tmp_path, "crashed", [0.1], status="failed")
    write_run(tmp_path, "running", [0.1, 0.2], status=None)
    write_run(tmp_path, "empty", [])
    runs, skipped = load_finished([tmp_path, tmp_path / "done"])  # a run named twice is read once
    assert [run.path.name for run in runs] == ["done"]
    reasons = {s.path.name: s.reason for s in skipped}
    assert reasons == {"crashed": "failed: RuntimeError: CUDA out of memory",
                       "running": "unfinished (no summary.json)", "empty": "empty metrics.jsonl"}
    assert main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out.splitlines()
    skipped_at = printed.index("skipped:")
    assert sorted(printed[skipped_at + 1:]) == sorted(f"  {tmp_path / name}: {reason}" for name, reason in
                                                      reasons.items())
    assert "| sac " in "\n".join(printed[:skipped_at]) and "(1/1)" in "\n".join(printed[:skipped_at])


def test_only_unusable_runs_is_an_error(tmp_path, capsys):
    write_run(tmp_path, "running", [0.1], status=None)
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == f"align: error: no finished run dirs under {tmp_path}"
    assert f"  {tmp_path / 'running'}: unfinished (no summary.json)" in err
    assert not (tmp_path / "compare").exists()


def test_help_is_argparse_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("usage: align compare")


# ---------------------------------------------------------------------------------------- the real CLI
def test_align_compare_writes_the_table_csv_and_plots(run_align, tmp_path):
    sweep = tmp_path / "sweep"
    for seed, golds in enumerate([[0.1, 0.3, 0.5], [0.1, 0.45, 0.6], [0.1, 0.2, 0.3]]):
        write_run(sweep, f"{seed}_sac_s{seed}", golds, seed=seed, wall_s=10.0 + seed)
    for seed in (0, 1):
        write_run(sweep, f"dpo_s{seed}", [0.1, 0.3, 0.42], algo="dpo", seed=seed, spent_per_eval=64)
    write_run(sweep, "crashed", [0.1], status="failed")
    out = tmp_path / "out"
    proc = run_align("compare", str(sweep), "--out", str(out))
    assert "| group" in proc.stdout and "(2/3)" in proc.stdout and "pairs (2/2)" in proc.stdout
    assert f"  {sweep / 'crashed'}: failed: RuntimeError: CUDA out of memory" in proc.stdout
    for name in ("compare.md", "compare.csv", "frontier.png", "curves.png", "overoptimisation.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "percentile-bootstrap" in (out / "compare.md").read_text()
    rows = {row["label"]: row for row in csv.DictReader((out / "compare.csv").open())}
    assert set(rows) == {"dpo", "sac"}
    sac, dpo = rows["sac"], rows["dpo"]
    assert (sac["n_seeds"], sac["to_gain_reached"], sac["to_gain_measured"]) == ("3", "2", "3")
    assert sac["to_gain_unit"] == "q"
    assert float(sac["gold_mean"]) == pytest.approx(1.4 / 3) and float(sac["to_gain_mean"]) == 150.0
    assert float(sac["wall_s_mean"]) == pytest.approx(11.0)
    assert float(sac["gold_ci_lo"]) <= float(sac["gold_mean"]) <= float(sac["gold_ci_hi"])
    assert (dpo["to_gain_unit"], float(dpo["to_gain_mean"])) == ("pairs", 128.0)
    assert float(dpo["rm_reward_ci_lo"]) == float(dpo["rm_reward_ci_hi"]) == 0.84


def test_align_compare_on_a_missing_dir_is_one_error_line(run_align, tmp_path):
    proc = run_align("compare", str(tmp_path / "nonexistent"), check=False)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("align: error:")]
    assert errors == [f"align: error: no finished run dirs under {tmp_path / 'nonexistent'}"]
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------------- matched KL
# Groups whose gold@K is known by hand. Each run has three evals (step 0, middle, final) spending 100 RM
# queries (online) or 64 preference pairs (offline) each; kl_ref climbs linearly to the final KL.
# Per group: the final (kl_ref, gold) of each seed, the gold curve of each seed, and other final metrics.
#
#   task       group  final KL (seeds)   final gold   grammatical  kl_to_optimal  to +0.3 (tree +2) gold
#   sentiment  sac A  0.5, 0.5           0.3, 0.3     0.9, 0.9     -              200, 200 q
#              sac B  1.5, 2.5 (mean 2)  0.4, 0.8     0.7, 0.9     -              100, 200 q
#              sac C  2.2, 2.2           0.9, 0.9     0.6, 0.6     -              100, 100 q
#              sac D  3.0, 3.0           0.7, 0.7     0.5, 0.5     -              100, 100 q
#              dpo X  1.2, 1.2           0.0, 1.0     -            -              never, 64 pairs
#              dpo Y  5.0, 5.0           2.0, 2.0     -            -              64, 64 pairs
#   tree       sac T1 0.4, 0.4           5.0, 5.0     -            0.3, 0.3       200, 200 q (+0.3: 100)
#              sac T2 0.8, 0.8           6.0, 7.0     -            0.1, 0.3       100, 100 q
#              sac T3 3.0, 3.0           9.0, 9.0     -            0.2, 0.2       100, 100 q
#              ppo P  2.5, 2.5           8.0, 8.0     -            0.4, 0.4       100, 100 q
#
# So with the default budgets (sentiment 1, 2, 4; tree 0.5, 1, 2): sac is A at 1, B at 2 (its mean KL is
# exactly 2 though one seed is above), C at 4 (C beats B but ends just above 2; D ends within 4 but below
# C); dpo has nothing at 1 and X at 2 and 4 (Y beats every group but never ends within 4); tree sac is T1 at
# 0.5 and T2 at 1 and 2; ppo has nothing within 2. Two seeds give a bootstrap CI of [min, max] (resampled
# means are min, mid, max with probabilities 1/4, 1/2, 1/4), identical seeds a CI of no width.
MATCHED_GROUPS = {  # (algo, task, lr): [(golds, final KL, eval metrics) per seed]
    ("sac", "sentiment", 0.0001): [([0.0, 0.1, 0.3], 0.5, {"eval/grammatical": 0.9})] * 2,
    ("sac", "sentiment", 0.0002): [([0.0, 0.35, 0.4], 1.5, {"eval/grammatical": 0.7}),
                                   ([0.0, 0.2, 0.8], 2.5, {"eval/grammatical": 0.9})],
    ("sac", "sentiment", 0.0003): [([0.0, 0.9, 0.9], 2.2, {"eval/grammatical": 0.6})] * 2,
    ("sac", "sentiment", 0.0004): [([0.0, 0.7, 0.7], 3.0, {"eval/grammatical": 0.5})] * 2,
    ("dpo", "sentiment", 0.0001): [([0.0, 0.2, 0.0], 1.2, {}), ([0.0, 0.5, 1.0], 1.2, {})],
    ("dpo", "sentiment", 0.0002): [([0.0, 1.0, 2.0], 5.0, {})] * 2,
    ("sac", "tree", 0.0001): [([0.0, 1.0, 5.0], 0.4, {"eval/kl_to_optimal": 0.3})] * 2,
    ("sac", "tree", 0.0002): [([0.0, 6.0, 6.0], 0.8, {"eval/kl_to_optimal": 0.1}),
                              ([0.0, 7.0, 7.0], 0.8, {"eval/kl_to_optimal": 0.3})],
    ("sac", "tree", 0.0003): [([0.0, 9.0, 9.0], 3.0, {"eval/kl_to_optimal": 0.2})] * 2,
    ("ppo", "tree", 0.0001): [([0.0, 8.0, 8.0], 2.5, {"eval/kl_to_optimal": 0.4})] * 2,
}


def write_matched_sweep(root: Path) -> Path:
    for (algo, task, lr), seeds in MATCHED_GROUPS.items():
        for seed, (golds, final_kl, eval_metrics) in enumerate(seeds):
            write_run(root, f"{algo}_{task}_lr{lr}_s{seed}", golds, algo=algo, seed=seed, task=task,
                      algo_params={"lr": lr}, spent_per_eval=64 if algo in OFFLINE else 100,
                      final_kl=final_kl, eval_metrics=eval_metrics, forward_tokens_per_eval=5000)
    return root


SAC_A, SAC_B, SAC_C, SAC_D = (f"sac task=sentiment lr=0.000{i}" for i in (1, 2, 3, 4))
DPO_X, DPO_Y = "dpo task=sentiment lr=0.0001", "dpo task=sentiment lr=0.0002"
SAC_T1, SAC_T2 = "sac task=tree lr=0.0001", "sac task=tree lr=0.0002"
NONE = ("",) * 16  # no group qualifies: every cell after the budget is empty
# frontier.csv with the default budgets, in its row order: task, budget, then gold, best first.
# group, seeds, kl_ref [lo, hi], gold [lo, hi], budget_to_gain, budget_unit, grammatical, kl_to_optimal,
# to_gain_reached, to_gain_measured, gain, gold_metric
EXPECTED_FRONTIER = [
    ("sac", "sentiment", 1, SAC_A, 2, 0.5, 0.5, 0.5, 0.3, 0.3, 0.3, 200, "q", 0.9, "", 2, 2, 0.3, GOLD),
    ("dpo", "sentiment", 1, *NONE),
    ("sac", "sentiment", 2, SAC_B, 2, 2.0, 1.5, 2.5, 0.6, 0.4, 0.8, 150, "q", 0.8, "", 2, 2, 0.3, GOLD),
    ("dpo", "sentiment", 2, DPO_X, 2, 1.2, 1.2, 1.2, 0.5, 0.0, 1.0, 64, "pairs", "", "", 1, 2, 0.3, GOLD),
    ("sac", "sentiment", 4, SAC_C, 2, 2.2, 2.2, 2.2, 0.9, 0.9, 0.9, 100, "q", 0.6, "", 2, 2, 0.3, GOLD),
    ("dpo", "sentiment", 4, DPO_X, 2, 1.2, 1.2, 1.2, 0.5, 0.0, 1.0, 64, "pairs", "", "", 1, 2, 0.3, GOLD),
    ("sac", "tree", 0.5, SAC_T1, 2, 0.4, 0.4, 0.4, 5.0, 5.0, 5.0, 200, "q", "", 0.3, 2, 2, 2.0, GOLD),
    ("ppo", "tree", 0.5, *NONE),
    ("sac", "tree", 1, SAC_T2, 2, 0.8, 0.8, 0.8, 6.5, 6.0, 7.0, 100, "q", "", 0.2, 2, 2, 2.0, GOLD),
    ("ppo", "tree", 1, *NONE),
    ("sac", "tree", 2, SAC_T2, 2, 0.8, 0.8, 0.8, 6.5, 6.0, 7.0, 100, "q", "", 0.2, 2, 2, 2.0, GOLD),
    ("ppo", "tree", 2, *NONE),
]
FRONTIER_COLUMNS = ("algo,task,kl_budget,group,seeds,kl_ref,kl_ref_lo,kl_ref_hi,gold,gold_lo,gold_hi,"
                    "budget_to_gain,budget_unit,grammatical,kl_to_optimal,"
                    "to_gain_reached,to_gain_measured,gain,gold_metric").split(",")


def read_frontier(path: Path) -> list[list[str]]:
    with path.open() as f:
        header, *rows = csv.reader(f)
    assert header == FRONTIER_COLUMNS
    return rows


def assert_cells(row: list[str], expected: tuple) -> None:
    """Text cells exactly; numbers to float precision (0.4 and 0.8 average to 0.6000000000000001)."""
    assert len(row) == len(expected), row
    for cell, want in zip(row, expected, strict=True):
        if isinstance(want, str):
            assert cell == want, (row, want)
        else:
            assert float(cell) == pytest.approx(want), (row, want)


def test_frontier_csv_holds_the_best_group_within_each_budget_cell_by_cell(tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(write_matched_sweep(tmp_path / "sweep")), "--out", str(out)]) == 0
    rows = read_frontier(out / "frontier.csv")
    assert len(rows) == len(EXPECTED_FRONTIER)
    for row, expected in zip(rows, EXPECTED_FRONTIER, strict=True):
        assert_cells(row, expected)


# fastest.csv for the same sweep. Evals at 0, 100, 200 q (0, 64, 128 pairs), forward tokens 0, 5000, 10000,
# wall 0, 2, 4 s; KL at the middle eval is half the final. Within K = 1, sac B's seed 0 got to +0.3 at the
# middle eval (0.75 nats) but its seed 1 only at 2.5 nats, so A (both seeds, 200 q) wins on the share of
# seeds; within 2, C and D both got there at 100 q (1.1 and 1.5 nats): C, the first label. dpo X's seed 1
# got there at 64 pairs, its seed 0 never; Y only at 2.5 nats (K = 4). Tree: T2 at 100 q within every K;
# ppo P, whose final KL (2.5) is above every tree budget, got there at its middle eval (1.25 nats): K = 2.
# algo, task, K, group, reached, measured, budget [lo, hi], unit, forward tokens [lo, hi], wall [lo, hi]
EXPECTED_FASTEST = [
    ("dpo", "sentiment", 1, DPO_X, 1, 2, 64, 64, 64, "pairs", 5000, 5000, 5000, 2, 2, 2),
    ("sac", "sentiment", 1, SAC_A, 2, 2, 200, 200, 200, "q", 10000, 10000, 10000, 4, 4, 4),
    ("dpo", "sentiment", 2, DPO_X, 1, 2, 64, 64, 64, "pairs", 5000, 5000, 5000, 2, 2, 2),
    ("sac", "sentiment", 2, SAC_C, 2, 2, 100, 100, 100, "q", 5000, 5000, 5000, 2, 2, 2),
    ("dpo", "sentiment", 4, DPO_Y, 2, 2, 64, 64, 64, "pairs", 5000, 5000, 5000, 2, 2, 2),
    ("sac", "sentiment", 4, SAC_C, 2, 2, 100, 100, 100, "q", 5000, 5000, 5000, 2, 2, 2),
    ("sac", "tree", 0.5, SAC_T2, 2, 2, 100, 100, 100, "q", 5000, 5000, 5000, 2, 2, 2),
    ("ppo", "tree", 0.5, "", 0, 0, *("",) * 10),
    ("sac", "tree", 1, SAC_T2, 2, 2, 100, 100, 100, "q", 5000, 5000, 5000, 2, 2, 2),
    ("ppo", "tree", 1, "", 0, 0, *("",) * 10),
    ("ppo", "tree", 2, "ppo task=tree", 2, 2, 100, 100, 100, "q", 5000, 5000, 5000, 2, 2, 2),
    ("sac", "tree", 2, SAC_T2, 2, 2, 100, 100, 100, "q", 5000, 5000, 5000, 2, 2, 2),
]


def test_fastest_csv_holds_the_soonest_group_within_each_budget_cell_by_cell(tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(write_matched_sweep(tmp_path / "sweep")), "--out", str(out)]) == 0
    with (out / "fastest.csv").open() as f:
        header, *rows = csv.reader(f)
    assert header[:6] == ["algo", "task", "kl_budget", "group", "reached", "measured"]
    assert len(rows) == len(EXPECTED_FASTEST)
    for row, expected in zip(rows, EXPECTED_FASTEST, strict=True):
        assert_cells(row, expected)
    fastest = (out / "compare.md").read_text().split("## Fastest within K")[1]
    assert "| sentiment | 1     | sac  | " + SAC_A in fastest and "0.01M [0.01, 0.01]" in fastest
    assert "does not count" in fastest  # the legend


def test_compare_md_and_the_terminal_show_the_matched_kl_table(tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(write_matched_sweep(tmp_path / "sweep")), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = (out / "compare.md").read_text()
    per_group, matched = report.split("## Matched KL: best gold at KL <= K\n")
    matched = matched.split("## Fastest within K")[0]
    assert "| group " in per_group and "| task " not in per_group  # after the per-group table
    assert "highest seed-mean final gold reward" in matched and "sentiment 1, 2, 4; tree 0.5, 1, 2" in matched
    table = [line for line in matched.splitlines() if line.startswith("| ")]
    printed_matched = printed.split("Fastest within K")[0]
    assert table[1:] == [line for line in printed_matched.splitlines() if line.startswith(("| sentiment", "| tree"))]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in table[1:]]
    assert [row[:4] for row in cells[:4]] == [
        ["sentiment", "1", "sac", SAC_A], ["sentiment", "1", "dpo", "(none)"],
        ["sentiment", "2", "sac", SAC_B], ["sentiment", "2", "dpo", DPO_X]]
    # the budget's currency stays visible: queries online, pairs offline
    assert cells[2][5:] == ["2.00 [1.50, 2.50]", "0.60 [0.40, 0.80]", "150 [100, 200] q (2/2)", "0.80", "-"]
    assert cells[3][7] == "64 pairs (1/2)" and cells[8][8:] == ["-", "0.20"]
    assert cells[1][3:] == ["(none)"] + ["-"] * 6


def test_the_per_group_table_shows_grammatical_next_to_gold_where_logged(tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(write_matched_sweep(tmp_path / "sweep")), "--out", str(out)]) == 0
    header, _, *lines = capsys.readouterr().out.split("\n\n")[0].splitlines()
    headers = [cell.strip() for cell in header.strip("|").split("|")]
    assert headers[3:5] == ["gold", "grammatical"]
    rows = {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines)}
    assert rows[SAC_B][4] == "0.80 [0.70, 0.90]" and rows[SAC_T1][4] == "-"
    by_label = {row["label"]: row for row in csv.DictReader((out / "compare.csv").open())}
    assert float(by_label[SAC_B]["grammatical_mean"]) == pytest.approx(0.8)
    assert by_label[SAC_T1]["grammatical_mean"] == ""


def test_a_group_just_over_the_budget_is_left_out_however_good(tmp_path):
    runs, _ = load_finished([write_matched_sweep(tmp_path)])
    points = final_points(group_runs(runs))
    sac = [point for point in points if (point.algo, point.task) == ("sac", "sentiment")]
    assert best_within(sac, 2.0).group.label == SAC_B  # mean KL exactly 2: in
    assert best_within(sac, 2.19).group.label == SAC_B  # C (gold 0.9) ends at 2.2
    assert best_within(sac, 2.2).group.label == SAC_C
    assert best_within(sac, 0.49) is None
    # the staircase of the plot: each point beats every point at less KL; D (3.0, 0.7) is below C
    assert [point.group.label for point in pareto_front(sac)] == [SAC_A, SAC_B, SAC_C]
    dpo = [point for point in points if (point.algo, point.task) == ("dpo", "sentiment")]
    assert [point.group.label for point in pareto_front(dpo)] == [DPO_X, DPO_Y]


def test_kl_stat_peak_holds_every_eval_to_the_budget_not_only_the_last(tmp_path, capsys):
    # O overshoots: gold 0.5 at 3 nats, then 0.8 at 1.5; S climbs steadily: 0.35 at 1 nat, 0.6 at 1.8.
    for seed in (0, 1):
        write_run(tmp_path / "sweep", f"o{seed}", [0.0, 0.5, 0.8], seed=seed, algo_params={"lr": 1}, kls=[0, 3, 1.5])
        write_run(tmp_path / "sweep", f"s{seed}", [0.0, 0.35, 0.6], seed=seed, algo_params={"lr": 2},
                  kls=[0, 1, 1.8])
    o, s = "sac lr=1", "sac lr=2"

    def cells(kl_stat: str) -> tuple[list[list[str]], list[list[str]]]:
        out = tmp_path / kl_stat
        assert main([str(tmp_path / "sweep"), "--out", str(out), "--kl-stat", kl_stat]) == 0
        with (out / "fastest.csv").open() as f:
            fastest = list(csv.reader(f))[1:]
        return read_frontier(out / "frontier.csv"), fastest

    matched, fastest = cells("final")
    assert [(row[2], row[3], row[5]) for row in matched] == [("1.0", "", ""), ("2.0", o, "1.5"), ("4.0", o, "1.5")]
    # within 2 nats O only counts at its last eval (200 q); S got there at 100
    assert [(row[2], row[3], row[6]) for row in fastest] == [("1.0", s, "100.0"), ("2.0", s, "100.0"), ("4.0", o, "100.0")]
    matched, fastest = cells("peak")
    assert [(row[2], row[3], row[5]) for row in matched] == [("1.0", "", ""), ("2.0", s, "1.8"), ("4.0", o, "3.0")]
    assert [(row[2], row[3], row[6]) for row in fastest] == [("1.0", s, "100.0"), ("2.0", s, "100.0"), ("4.0", o, "100.0")]
    report = (tmp_path / "peak" / "compare.md").read_text()
    assert "peak eval/kl_ref" in report and "no later crossing counts" in report
    assert "final eval/kl_ref" in (tmp_path / "final" / "compare.md").read_text()


def test_min_seeds_keeps_a_group_of_fewer_seeds_out_of_the_matched_table_only(tmp_path, capsys):
    sweep = write_matched_sweep(tmp_path / "sweep")
    # one seed of a group that would win every sentiment budget: gold 2.0 at KL 0.3
    write_run(sweep, "sac_lucky_s0", [0.0, 2.0], algo="sac", algo_params={"lr": 0.0009}, final_kl=0.3)
    lucky = "sac task=sentiment lr=0.0009"

    def sentiment_sac(out: Path) -> list[str]:
        return [row[3] for row in read_frontier(out / "frontier.csv") if row[:2] == ["sac", "sentiment"]]

    assert main([str(sweep), "--out", str(tmp_path / "all")]) == 0
    assert sentiment_sac(tmp_path / "all") == [lucky] * 3
    capsys.readouterr()
    assert main([str(sweep), "--out", str(tmp_path / "two"), "--min-seeds", "2"]) == 0
    assert sentiment_sac(tmp_path / "two") == [SAC_A, SAC_B, SAC_C]
    printed = capsys.readouterr().out
    assert f"--min-seeds 2: 1 group(s) left out of the matched-KL table and frontier_final.png: {lucky}" in printed
    report = (tmp_path / "two" / "compare.md").read_text()
    assert f"Left out of the matched-KL table (fewer than 2 seeds): {lucky}." in report
    assert f"| {lucky} " in report  # the per-group table still shows it
    assert main([str(sweep), "--out", str(tmp_path / "none"), "--min-seeds", "3"]) == 0
    assert "frontier_final.png: skipped, no group to place" in capsys.readouterr().out


def test_a_task_without_gold_reward_is_matched_on_the_reward_model(tmp_path, capsys):
    write_run(tmp_path, "hf", None, task="hf_prefs")  # final rm_reward 0.4 at KL 0.4
    out = tmp_path / "out"
    assert main([str(tmp_path), "--out", str(out)]) == 0
    rows = read_frontier(out / "frontier.csv")
    assert [row[2] for row in rows] == ["1.0", "2.0", "4.0"]
    for row in rows:
        assert_cells(row, ("sac", "hf_prefs", float(row[2]), "sac", 1, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 300, "q",
                           "", "", 1, 1, 0.3, "eval/rm_reward"))
    (line, *_) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| hf_prefs")]
    assert [cell.strip() for cell in line.strip("|").split("|")] == [
        "hf_prefs", "1", "sac", "sac", "1", "0.40", "0.40 rm", "300 q (1/1, rm)", "-", "-"]
    assert "`rm`: no run of task hf_prefs has eval/gold_reward" in (out / "compare.md").read_text()


# ------------------------------------------------------------------------------------------- KL budgets
def test_budgets_default_by_task_and_a_plain_list_replaces_them_all():
    assert KLBudgets().of("tree") == DEFAULT_KL_BUDGETS["tree"] == (0.5, 1.0, 2.0)
    assert KLBudgets().of("sentiment") == KLBudgets().of("hf_prefs") == (1.0, 2.0, 4.0)
    plain = KLBudgets().overridden([kl_budget_entry("3,1")])
    assert plain.of("tree") == plain.of("sentiment") == (1.0, 3.0)
    both = KLBudgets().overridden([kl_budget_entry("tree=0.6"), kl_budget_entry("1,3")])  # order aside
    assert (both.of("tree"), both.of("sentiment")) == ((0.6,), (1.0, 3.0))
    only_tree = KLBudgets().overridden([kl_budget_entry("tree=0.25,0.5")])
    assert (only_tree.of("tree"), only_tree.of("sentiment")) == ((0.25, 0.5), (1.0, 2.0, 4.0))
    assert kl_budget_entry(" 2, 1,2 ") == (None, (1.0, 2.0))


def test_kl_budgets_on_the_command_line_set_the_rows_of_each_task(tmp_path, capsys):
    sweep = write_matched_sweep(tmp_path / "sweep")
    out = tmp_path / "out"
    assert main([str(sweep), "--out", str(out), "--kl-budgets", "1,3", "--kl-budgets", "tree=0.6"]) == 0
    rows = read_frontier(out / "frontier.csv")
    assert [tuple(row[:4]) for row in rows] == [
        ("sac", "sentiment", "1.0", SAC_A), ("dpo", "sentiment", "1.0", ""),
        ("sac", "sentiment", "3.0", SAC_C), ("dpo", "sentiment", "3.0", DPO_X),  # D at 3.0 is below C
        ("sac", "tree", "0.6", SAC_T1), ("ppo", "tree", "0.6", "")]
    assert "sentiment 1, 3; tree 0.6." in (out / "compare.md").read_text()
    assert main([str(sweep), "--out", str(out), "--kl-budgets", "tre=1"]) == 0
    assert "--kl-budgets tre=...: no run has task=tre" in capsys.readouterr().out


def test_gains_default_by_task_and_the_command_line_sets_them(tmp_path, capsys):
    assert (Gains().of("tree"), Gains().of("sentiment")) == (DEFAULT_GAINS["tree"], 0.3) == (2.0, 0.3)
    assert Gains().label(["sentiment", "tree"]) == "+0.3 (tree +2)" and Gains().label(["tree"]) == "+2"
    plain = Gains().overridden([gain_entry("0.5")])
    assert plain.of("tree") == plain.of("sentiment") == 0.5 and plain.label(["sentiment", "tree"]) == "+0.5"
    assert Gains().overridden([gain_entry("tree=1"), gain_entry("0.2")]).label(["sentiment", "tree"]) == \
        "+0.2 (tree +1)"
    sweep, out = write_matched_sweep(tmp_path / "sweep"), tmp_path / "out"
    assert main([str(sweep), "--out", str(out), "--gain", "tree=0.3", "--gain", "tre=1"]) == 0
    assert "--gain tre=...: no run has task=tre" in capsys.readouterr().out
    rows = {(row[0], row[1], row[2]): row for row in read_frontier(out / "frontier.csv")}
    assert (rows["sac", "tree", "0.5"][11], rows["sac", "tree", "0.5"][17]) == ("100.0", "0.3")  # T1: +0.3 at 100
    assert "to +0.3 gold (q / pairs)" in (out / "compare.md").read_text()
    assert main([str(sweep), "--out", str(out)]) == 0
    report = (out / "compare.md").read_text()
    assert "to +0.3 (tree +2) gold (q / pairs)" in report
    with (out / "compare.csv").open() as f:
        gains = {row["label"]: row["gain"] for row in csv.DictReader(f)}
    assert (gains[SAC_T1], gains[SAC_A]) == ("2.0", "0.3")


@pytest.mark.parametrize("value", ["abc", "tree=", "=1", "-2", "0", "nan", "inf", "tree=x", "a b=1"])
def test_a_bad_gain_is_one_argparse_error(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--gain", value])
    assert exit_info.value.code == 2
    assert f"argument --gain: {value!r}" in capsys.readouterr().err


@pytest.mark.parametrize("value",
                         ["abc", "1,,2", "tree=", "=1", "1,-2", "0", "nan", "1,inf", "tree=x", "a b=1"])
def test_a_bad_kl_budget_is_one_argparse_error(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--kl-budgets", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if "error" in line] == [err[-1]]
    assert err[-1].startswith(f"align compare: error: argument --kl-budgets: {value!r}: ")


# ------------------------------------------------------------------------------------------------ plots
def test_the_final_frontier_and_the_forward_tokens_panel_are_drawn(tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(write_matched_sweep(tmp_path / "sweep")), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("frontier.png", "frontier_final.png", "curves.png", "overoptimisation.png"):
        assert f"wrote {out / name}" in printed
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "forward_tokens" not in printed  # every run logs it: no skipped panel


def test_the_forward_tokens_panel_is_skipped_when_no_run_logs_them(tmp_path, capsys):
    write_run(tmp_path, "old", [0.1, 0.3, 0.6])
    assert main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert ("curves.png: panel against progress/forward_tokens skipped, "
            "no run has progress/forward_tokens") in printed
    assert f"wrote {tmp_path / 'out' / 'curves.png'}" in printed


# ---------------------------------------------------------------------------------------------- records
def compare_files(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in ("compare.csv", "frontier.csv")}


def write_uneven_seeds(root: Path, seeds: tuple[int, ...]) -> Path:
    """Seeds of one sac config whose dir names sort against their seeds, with golds that differ seed to
    seed: the bootstrap CI of three or more seeds depends on the order the runs are read in."""
    golds = {0: [0.1, 0.3, 0.5], 1: [0.1, 0.45, 0.6], 2: [0.1, 0.2, 0.3], 3: [0.0, 0.6, 0.9]}
    for seed in seeds:
        write_run(root, f"{'zyxw'[seed]}_sac_s{seed}", golds[seed], seed=seed, wall_s=10.0 + seed)
    return root


def test_records_read_back_give_the_same_tables_and_plots(tmp_path, capsys):
    sweep = write_matched_sweep(tmp_path / "sweep")
    write_uneven_seeds(sweep, (0, 1, 2, 3))
    write_run(sweep, "repeat_a", [0.0, 0.5], algo="bon", seed=0)  # one config and seed run twice
    write_run(sweep, "repeat_b", [0.0, 0.7], algo="bon", seed=0)
    records = tmp_path / "kept" / "runs.jsonl"
    assert main([str(sweep), "--out", str(tmp_path / "from_dirs"), "--records", str(records)]) == 0
    assert f"wrote {records}: 26 runs" in capsys.readouterr().out
    lines = records.read_text().splitlines()
    assert len(lines) == 26 and all(set(json.loads(line)) == {"name", "summary", "config", "metrics"}
                                    for line in lines)
    assert main([str(records), "--out", str(tmp_path / "from_records")]) == 0
    assert compare_files(tmp_path / "from_records") == compare_files(tmp_path / "from_dirs")
    for name in ("compare.md", "frontier.png", "frontier_final.png", "curves.png", "overoptimisation.png"):
        assert (tmp_path / "from_records" / name).read_bytes() == (tmp_path / "from_dirs" / name).read_bytes()
    rows = {row["label"]: row for row in csv.DictReader((tmp_path / "from_records" / "compare.csv").open())}
    bon = rows["bon task=sentiment"]
    assert (bon["n_seeds"], bon["n_distinct_seeds"]) == ("2", "1")  # both repeats kept


def test_a_record_keeps_eval_rows_the_last_row_and_the_rows_that_show_a_counter_moved(tmp_path):
    rows = [{"step": 0, "train/loss": 1.0, "progress/pref_pairs": 0},  # no step-0 eval: the pairs' first value
            {"step": 1, "eval/gold_reward": 0.2, "progress/pref_pairs": 64},
            {"step": 2, "train/loss": 0.9, "progress/pref_pairs": 64},
            {"step": 3, "eval/gold_reward": 0.4, "progress/pref_pairs": 64},
            {"step": 4, "train/loss": 0.8, "progress/pref_pairs": 64}]
    run = Run(tmp_path / "dpo", {"status": "completed"}, rows, {"algo": {"name": "dpo"}})
    record = json.loads(json.dumps(record_of(run)))
    assert [row["step"] for row in record["metrics"]] == [0, 1, 3, 4]
    back = run_of_record(record, tmp_path / "runs.jsonl")
    assert back.moved("progress/pref_pairs") and counter_of(back) == counter_of(run) == "progress/pref_pairs"
    assert (back.name, back.path) == ("dpo", tmp_path / "runs.jsonl#dpo")
    assert (back.evals, back.summary, back.config) == (run.evals, run.summary, run.config)


def test_a_run_in_a_dir_and_in_a_record_counts_once(tmp_path, capsys):
    sweep = write_uneven_seeds(tmp_path / "sweep", (0, 1, 2))
    records = tmp_path / "runs.jsonl"
    assert main([str(sweep), "--out", str(tmp_path / "dirs"), "--records", str(records)]) == 0
    # the dir wins over its record: a record whose wall time disagrees is not the one used
    edited = [json.loads(line) for line in records.read_text().splitlines()]
    for record in edited:
        record["summary"]["wall_s"] = 999.0
    records.write_text("".join(json.dumps(record) + "\n" for record in edited))
    assert main([str(records), str(sweep), "--out", str(tmp_path / "both")]) == 0
    assert "counted once: 3 records" in capsys.readouterr().out
    assert compare_files(tmp_path / "both") == compare_files(tmp_path / "dirs")
    (row,) = csv.DictReader((tmp_path / "both" / "compare.csv").open())
    assert (row["n_seeds"], row["n_distinct_seeds"], row["wall_s_mean"]) == ("3", "3", "11.0")


def test_of_two_records_of_a_run_the_later_input_counts(tmp_path):
    sweep = write_uneven_seeds(tmp_path / "sweep", (0, 1))
    older, newer = tmp_path / "older.jsonl", tmp_path / "newer.jsonl"
    assert main([str(sweep), "--out", str(tmp_path / "out"), "--records", str(older)]) == 0
    records = [json.loads(line) for line in older.read_text().splitlines()]
    newer.write_text(json.dumps({**records[0], "summary": {**records[0]["summary"], "wall_s": 40.0}}) + "\n")
    for inputs, wall_s in (([older, newer], "25.5"), ([newer, older], "10.5")):  # seed 0: 10 or 40 s, seed 1: 11
        assert main([*map(str, inputs), "--out", str(tmp_path / "out")]) == 0
        (row,) = csv.DictReader((tmp_path / "out" / "compare.csv").open())
        assert (row["n_seeds"], row["wall_s_mean"]) == ("2", wall_s)


def test_records_of_one_sweep_and_dirs_of_another_combine_into_one_records_file(tmp_path, capsys):
    first, second = tmp_path / "machine1", tmp_path / "machine2"
    write_uneven_seeds(first, (0, 1))  # seeds of one config split over two machines
    write_run(first, "dpo_s0", [0.1, 0.3, 0.42], algo="dpo", spent_per_eval=64)
    write_uneven_seeds(second, (2, 3))
    records = tmp_path / "results" / "runs.jsonl"
    assert main([str(first), "--out", str(tmp_path / "out1"), "--records", str(records)]) == 0
    shutil.rmtree(first)  # the disk is wiped between sessions: only the records file is left
    assert main([str(second), str(records), "--records", str(records), "--out", str(tmp_path / "union")]) == 0
    written = records.read_bytes()
    names = [json.loads(line)["name"] for line in written.decode().splitlines()]
    assert names == ["dpo_s0", "z_sac_s0", "y_sac_s1", "x_sac_s2", "w_sac_s3"]  # by algo, config, then seed
    # the same bytes written again, and the same tables as all four seeds' dirs read together
    assert main([str(records), str(second), "--records", str(records), "--out", str(tmp_path / "again")]) == 0
    assert records.read_bytes() == written
    all_dirs = tmp_path / "all"
    write_uneven_seeds(all_dirs, (0, 1, 2, 3))
    write_run(all_dirs, "dpo_s0", [0.1, 0.3, 0.42], algo="dpo", spent_per_eval=64)
    assert main([str(all_dirs), "--out", str(tmp_path / "dirs")]) == 0
    assert compare_files(tmp_path / "union") == compare_files(tmp_path / "again") == compare_files(tmp_path /
                                                                                                   "dirs")
    assert "n_seeds" in (tmp_path / "union" / "compare.csv").read_text()


def test_a_missing_records_file_is_one_error_line(tmp_path, capsys):
    write_run(tmp_path, "done", [0.1, 0.5])
    missing_file = tmp_path / "results" / "runs.jsonl"
    assert main([str(tmp_path / "done"), str(missing_file), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"align: error: no such records file: {missing_file}"]
    assert not (tmp_path / "out").exists()


def test_a_malformed_record_is_skipped_with_its_reason(tmp_path, capsys):
    records = tmp_path / "runs.jsonl"
    assert main([str(write_run(tmp_path, "done", [0.1, 0.5])), "--out", str(tmp_path / "out"),
                 "--records", str(records)]) == 0
    good = records.read_text()
    records.write_text(good + "{not json\n" + json.dumps({"name": "x", "summary": {}}) + "\n\n[1, 2]\n")
    capsys.readouterr()
    assert main([str(records), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out.splitlines()
    skipped = printed[printed.index("skipped:") + 1:]
    assert [line.split(": malformed record: ")[0] for line in skipped] == [
        f"  {records}#line {n}" for n in (2, 3, 5)]
    assert skipped[1].endswith("missing or mistyped config, metrics")
    assert "| sac " in "\n".join(printed)


def test_records_must_be_a_jsonl_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--records", str(tmp_path / "runs.json")])
    assert exit_info.value.code == 2
    assert "argument --records: " in capsys.readouterr().err
