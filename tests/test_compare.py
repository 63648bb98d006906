"""`align compare` over hand-written run dirs with known numbers: statistics, grouping, skipping, output."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from align_cli.analysis import load_run
from align_cli.compare import (
    Estimate,
    bootstrap_ci,
    format_estimate,
    format_to_gain,
    group_row,
    group_runs,
    label_configs,
    load_finished,
    main,
    mean_curve,
)

ONLINE, OFFLINE = ("sac", "ppo", "rs", "bon"), ("dpo", "cpl")


def write_run(root: Path, name: str, golds: list[float] | None, *, algo: str = "sac", seed: int = 0,
              algo_params: dict | None = None, task: str = "sentiment", spent_per_eval: int = 100,
              rm: bool = True, status: str | None = "completed", wall_s: float = 10.0) -> Path:
    """A run dir as `align train` leaves it: one eval row per entry of `golds` (each spending
    `spent_per_eval` RM queries, or preference pairs for an offline algo), a training row between evals,
    summary.json (none when status is None) and .hydra/config.yaml. golds=None: a task without gold reward
    (five evals whose rm_reward goes 0, 0.1, ... 0.4)."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    n_evals = len(golds) if golds is not None else 5
    rows = []
    for i in range(n_evals):
        spent = i * spent_per_eval
        progress = {"progress/rm_queries": 0 if algo in OFFLINE else spent,
                    "progress/pref_pairs": spent if algo in OFFLINE else 0, "progress/wall_s": 2.0 * i}
        row = {"step": 10 * i, "eval/kl_ref": 0.1 * i, "eval/win_rate_ref": 0.5 + 0.05 * i,
               "eval/response_len": 20.0, **progress}
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


def test_repeated_seeds_are_pooled_but_flagged(tmp_path):
    write_run(tmp_path, "a", [0.0, 0.5], seed=0)
    write_run(tmp_path, "b", [0.0, 0.7], seed=0)
    (group,) = group_runs(load_finished([tmp_path])[0])
    row = group_row(group, gain=0.3)
    assert (row.n_seeds, row.n_distinct_seeds) == (2, 1)


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
