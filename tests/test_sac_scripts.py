"""scripts/utd_curve.py and scripts/ablation_table.py on hand-made runs: which groups make the curve or a
variant, and their gold and queries within K; the length probe's fit and bins on numbers with a known
answer."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
from test_compare import write_run

from align_cli import compare

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import ablation_table  # noqa: E402
import final_answer  # noqa: E402
import frontier_table  # noqa: E402
import kl_peak  # noqa: E402
import length_probe  # noqa: E402
import utd_curve  # noqa: E402

FIXED = {"autotune_alpha": False, "alpha": 1.0}


def test_utd_curve_keeps_the_fixed_alpha_groups_that_differ_only_in_learner_and_utd(tmp_path, capsys):
    # Evals at 0, 100, 200 queries; KL climbs linearly to final_kl (half of it at the middle eval).
    for seed in (0, 1):
        write_run(tmp_path, f"sac_utd2_s{seed}", [0.0, 0.1, 0.4], seed=seed, algo_params={**FIXED, "utd": 2},
                  final_kl=1.0)  # (recorded before algo.learner existed: read as learner=sac)
        write_run(tmp_path, f"pcl_utd8_s{seed}", [0.0, 0.35, 0.5], seed=seed,
                  algo_params={**FIXED, "utd": 8, "learner": "pcl"}, final_kl=1.0)
        # over the budget at the middle eval (2.5 nats) and at the end: never within K = 2
        write_run(tmp_path, f"pcl_utd4_s{seed}", [0.0, 0.5, 0.6], seed=seed,
                  algo_params={**FIXED, "utd": 4, "learner": "pcl"}, final_kl=5.0)
        # the retrace curve: named by the correction, or left at None (SAC's default, retrace)
        write_run(tmp_path, f"retrace_utd4_s{seed}", [0.0, 0.2, 0.45], seed=seed,
                  algo_params={**FIXED, "utd": 4, "n_step_correction": "retrace"}, final_kl=1.0)
        write_run(tmp_path, f"default_utd8_s{seed}", [0.0, 0.4, 0.45], seed=seed,
                  algo_params={**FIXED, "utd": 8, "n_step_correction": None}, final_kl=1.0)
        # not on the curve: another alpha, another setting, the learned temperature
        write_run(tmp_path, f"alpha_s{seed}", [0.0, 0.5, 0.5], seed=seed, algo_params={"autotune_alpha": False,
                                                                                         "alpha": 1.5, "utd": 2})
        write_run(tmp_path, f"buffer_s{seed}", [0.0, 0.5, 0.5], seed=seed, algo_params={**FIXED, "utd": 2,
                                                                                          "buffer_size": 1024})
    assert utd_curve.main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    with (tmp_path / "out" / "utd_curve.csv").open() as f:
        rows = {(row["learner"], row["utd"]): row for row in csv.DictReader(f)}
    assert set(rows) == {("sac", "2"), ("pcl", "4"), ("pcl", "8"), ("sac+retrace", "4"), ("sac+retrace", "8")}
    assert float(rows[("sac+retrace", "8")]["queries"]) == 100 and float(rows[("sac+retrace", "4")]["queries"]) == 200
    assert float(rows[("sac", "2")]["queries"]) == 200 and rows[("sac", "2")]["reached"] == "2"
    assert float(rows[("pcl", "8")]["queries"]) == 100
    assert rows[("pcl", "4")]["reached"] == "0" and rows[("pcl", "4")]["queries"] == ""
    assert (tmp_path / "out" / "utd_curve.png").stat().st_size > 0
    assert "| 1 | pcl | 8 | 2/2 | 100 [100, 100] |" in capsys.readouterr().out


def test_utd_curve_without_matching_runs_is_one_error_line(tmp_path, capsys):
    write_run(tmp_path, "ppo", [0.0, 0.5], algo="ppo")
    assert utd_curve.main([str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("utd_curve: no sentiment sac group at fixed alpha 0.5,1 in ")


def test_ablation_table_reads_each_variants_frontier_at_k_against_plain_sac(tmp_path, capsys):
    # Evals at 0, 100, 200 queries; KL climbs linearly to final_kl. Seeds differ by 0.02 in final gold.
    for seed in (0, 1):
        d = 0.02 * seed
        fixed = {"autotune_alpha": False, "diagnose_every": 4}
        # plain SAC: alpha 1 ends at 0.9 nats with 0.51 gold (seed mean), alpha 0.5 at 2.4 with 0.71
        write_run(tmp_path, f"plain1_s{seed}", [0.0, 0.2, 0.5 + d], seed=seed, algo_params={**fixed, "alpha": 1.0},
                  final_kl=0.9)
        write_run(tmp_path, f"plain05_s{seed}", [0.0, 0.3, 0.7 + d], seed=seed,
                  algo_params={**fixed, "alpha": 0.5}, final_kl=2.4)
        # buffer 1024: alpha 1 ends at 1.35 nats with 0.66 (plain's line there: 0.57), alpha 0.5 at 2.5 with 0.91
        write_run(tmp_path, f"buf1_s{seed}", [0.0, 0.31, 0.65 + d], seed=seed,
                  algo_params={**fixed, "alpha": 1.0, "buffer_size": 1024}, final_kl=1.35)
        write_run(tmp_path, f"buf05_s{seed}", [0.0, 0.5, 0.9 + d], seed=seed,
                  algo_params={**fixed, "alpha": 0.5, "buffer_size": 1024}, final_kl=2.5)
        # the learned temperature, plain and with fresh KL, in their own family (one point each: no line)
        write_run(tmp_path, f"target_s{seed}", [0.0, 0.1, 0.4 + d], seed=seed, algo_params={"target_kl": 0.1},
                  final_kl=0.8)
        write_run(tmp_path, f"fresh_s{seed}", [0.0, 0.1, 0.25 + d], seed=seed,
                  algo_params={"target_kl": 0.1, "alpha_kl_source": "fresh"}, final_kl=0.6)
        write_run(tmp_path, f"ppo_s{seed}", [0.0, 0.9, 0.9], seed=seed, algo="ppo", final_kl=0.1)  # not SAC
    assert ablation_table.main([str(tmp_path), "--out", str(tmp_path / "out"), "--kl-budgets", "1,2,2.5,3"]) == 0
    with (tmp_path / "out" / "ablation.csv").open() as f:
        rows = {(row["family"], row["variant"]): row for row in csv.DictReader(f)}
    assert set(rows) == {("fixed alpha", "plain SAC"), ("fixed alpha", "buffer_size=1024"),
                         ("learned alpha", "plain SAC"), ("learned alpha", "alpha_kl_source=fresh")}
    plain, buffer = rows[("fixed alpha", "plain SAC")], rows[("fixed alpha", "buffer_size=1024")]
    # plain's line from (0.9, 0.51) to (2.4, 0.71); buffer's from (1.35, 0.66) to (2.5, 0.91)
    assert float(plain["gold_at_1"]) == pytest.approx(0.51 + 0.2 * 0.1 / 1.5)
    assert float(plain["gold_at_2"]) == pytest.approx(0.51 + 0.2 * 1.1 / 1.5)
    assert buffer["gold_at_1"] == "" and buffer["delta_at_1"] == ""  # K = 1 below its points' KL
    assert float(buffer["gold_at_2"]) == pytest.approx(0.66 + 0.25 * 0.65 / 1.15)
    assert float(buffer["delta_at_2"]) == pytest.approx(0.66 + 0.25 * 0.65 / 1.15 - 0.51 - 0.2 * 1.1 / 1.5)
    assert float(buffer["delta_at_2_lo"]) <= float(buffer["delta_at_2"]) <= float(buffer["delta_at_2_hi"])
    # best <= K as align compare: plain's alpha 0.5 ended past K = 2, so its alpha 1 point
    assert float(plain["best_within_2"]) == pytest.approx(0.51) and plain["best_temperature_2"] == "alpha 1"
    assert float(buffer["best_within_2"]) == pytest.approx(0.66) and buffer["best_kl_2"] == "1.35"
    assert float(buffer["queries_within_1"]) == 100 and buffer["reached_within_1"] == "2"  # at 0.675 nats
    assert float(buffer["frontier_shift"]) == pytest.approx(0.66 - 0.57)  # its alpha 0.5 point: past plain's
    fresh = rows[("learned alpha", "alpha_kl_source=fresh")]
    assert fresh["gold_at_1"] == "" and fresh["reached_within_2"] == "0"
    assert float(fresh["best_within_1"]) == pytest.approx(0.26)
    # a top point just under K (>= 0.9 K) is read at K; further below, K is off the frontier
    assert float(plain["gold_at_2.5"]) == pytest.approx(0.71) and buffer["gold_at_3"] == ""
    out = capsys.readouterr().out
    assert "| fixed alpha | buffer_size=1024 | 2 | +0.090 | (none) | - | (none) | 100 q (2/2) | 0.80 [" in out
    assert (tmp_path / "out" / "ablation.md").read_text().startswith("# SAC options against plain SAC")


def test_sac_diagnostics_averages_each_half_then_the_seeds(tmp_path, capsys):
    import json

    import sac_diagnostics

    for seed, (early, late) in enumerate([(-0.2, 0.0), (-0.4, -0.2)]):
        run = write_run(tmp_path, f"sac_s{seed}", [0.0, 0.2, 0.4], seed=seed)
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        rows += [{"step": 100 + q, "progress/rm_queries": q, "diag/q_minus_mc_return": v,
                  "diag/q_eos_minus_v": 0.1} for q, v in ((50, early), (100, early), (150, late), (200, late))]
        (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    write_run(tmp_path, "ppo", [0.0, 0.5], algo="ppo")  # no diagnostics: left out
    assert sac_diagnostics.main([str(tmp_path), "--out", str(tmp_path / "d.md")]) == 0
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| sac")]
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells[1] == "2" and cells[2] == "-0.300 / -0.100" and cells[3] == "0.100 / 0.100"
    assert cells[5] == "20.0 / 20.0 / 20.0" and cells[6] == "0.400"
    assert (tmp_path / "d.md").read_text().startswith("Means over seeds")


def test_length_probe_fits_the_reward_models_slope_per_token_at_fixed_gold():
    rng = np.random.default_rng(0)
    gold = rng.uniform(-1, 1, 500)
    length = rng.integers(0, 33, 500).astype(float)
    rm = 0.3 + 2.0 * gold + 0.05 * length  # exact: the fit must return 0.05, not the raw correlation
    assert length_probe.length_slope(rm, gold, length) == pytest.approx(0.05)
    assert length_probe.length_slope(rm - 0.05 * length, gold, length) == pytest.approx(0.0, abs=1e-9)


def test_length_probe_bins_by_content_tokens_and_skips_empty_bins_and_missing_shares():
    length = np.array([0.0, 4.0, 5.0, 30.0])
    rm, gold = np.array([1.0, 3.0, 5.0, 7.0]), np.array([0.1, 0.3, 0.5, 0.7])
    rows = length_probe.by_length(length, rm, gold, [float("nan"), 1.0, 0.5, None])
    assert [row["tokens"] for row in rows] == ["0-4", "5-8", "25-32"]  # 9-24: no response
    assert rows[0] == {"tokens": "0-4", "n": 2, "rm": 2.0, "gold": pytest.approx(0.2), "grammatical": 1.0}
    assert rows[2]["grammatical"] is None  # no share measured in the bin


def test_final_answer_judges_sac_against_each_baseline_at_matched_kl(tmp_path, capsys):
    # Evals at 0, 100, 200 queries (or pairs), wall 0, 2, 4 s; KL climbs linearly to final_kl. Seeds differ
    # by 0.02 in final gold.
    for seed in (0, 1):
        d = 0.02 * seed
        # SAC: alpha 1 ends at 0.9 nats with 0.51 (seed mean) and crosses +0.3 at 100 queries; alpha 0.5 at 1.8
        write_run(tmp_path, f"sac1_s{seed}", [0.0, 0.35, 0.5 + d], seed=seed, algo_params={"alpha": 1.0},
                  final_kl=0.9)
        write_run(tmp_path, f"sac05_s{seed}", [0.0, 0.2, 0.7 + d], seed=seed, algo_params={"alpha": 0.5},
                  final_kl=1.8)
        # PPO: 0.41 within 1 nat, 0.91 within 2; both cross at 200 queries
        write_run(tmp_path, f"ppo1_s{seed}", [0.0, 0.1, 0.4 + d], seed=seed, algo="ppo",
                  algo_params={"kl_coef": 1.0}, final_kl=0.8)
        write_run(tmp_path, f"ppo05_s{seed}", [0.0, 0.25, 0.9 + d], seed=seed, algo="ppo",
                  algo_params={"kl_coef": 0.5}, final_kl=1.9)
        # DPO: SAC's gold within 1 nat (level); counted in preference pairs, so no ratio
        write_run(tmp_path, f"dpo_s{seed}", [0.0, 0.31, 0.5 + d], seed=seed, algo="dpo",
                  algo_params={"beta": 1.0}, final_kl=0.9)
        # best-of-N: its queries are spent at inference, so its ratio is shown but not judged
        write_run(tmp_path, f"bon_s{seed}", [0.0, 0.5], seed=seed, algo="bon", algo_params={"n": 4},
                  spent_per_eval=400, final_kl=0.6)
    assert final_answer.main([str(tmp_path), "--out", str(tmp_path / "out"), "--min-seeds", "2"]) == 0
    with (tmp_path / "out" / "answer.csv").open() as f:
        rows = {(row["kl_budget"], row["baseline"]): row for row in csv.DictReader(f)}
    assert set(rows) == {(k, b) for k in ("1.0", "2.0", "4.0") for b in ("bon", "dpo", "ppo")}
    at1, at2 = rows[("1.0", "ppo")], rows[("2.0", "ppo")]
    assert at1["sac_group"] == "sac alpha=1" and at1["baseline_group"] == "ppo kl_coef=1"
    assert float(at1["gold_delta"]) == pytest.approx(0.10) and at1["gold_verdict"] == "beats"
    assert float(at1["gold_delta_lo"]) > 0
    assert at2["baseline_group"] == "ppo kl_coef=0.5" and at2["sac_group"] == "sac alpha=0.5"
    assert float(at2["gold_delta"]) == pytest.approx(-0.20) and at2["gold_verdict"] == "trails"
    # SAC crosses at 100 queries, PPO at 200: half the queries (and half the wall time to get there)
    assert float(at1["budget_ratio"]) == pytest.approx(0.5) and at1["budget_verdict"] == "fewer"
    assert float(at1["wall_ratio"]) == pytest.approx(0.5) and at1["compute_ratio"] == ""
    dpo = rows[("1.0", "dpo")]
    assert dpo["gold_verdict"] == "level" and float(dpo["gold_delta_lo"]) <= 0 <= float(dpo["gold_delta_hi"])
    assert dpo["budget_ratio"] == "" and dpo["budget_verdict"] == "- (pairs)"
    bon = rows[("1.0", "bon")]  # 100 queries against its 400: a ratio of 0.25, not called fewer
    assert float(bon["budget_ratio"]) == pytest.approx(0.25) and bon["budget_verdict"] == "- (queries at inference)"
    out = capsys.readouterr().out
    assert "| 1 | ppo | 0.51 [0.50, 0.52] (sac alpha=1; 0.90 nats) |" in out
    # the summary matrix: baselines in the question's order (ppo first), one cell per K with both verdicts
    matrix = out[out.index("## sentiment: sac against each baseline, per K"):].splitlines()
    assert matrix[2] == "| baseline | KL <= 1 | KL <= 2 | KL <= 4 |"
    assert matrix[4].startswith("| ppo | gold +0.10 [+0.08, +0.12] beats; 0.50x [0.50, 0.50] q fewer (wall 0.5x) | "
                                "gold -0.20 [")
    assert matrix[5].startswith("| dpo | gold +0.00 [") and "to +gain: - (pairs)" in matrix[5]
    assert matrix[6].startswith("| bon | ") and "q - (queries at inference)" in matrix[6]


def test_final_answer_with_kl_stat_peak_holds_every_eval_to_the_budget(tmp_path, capsys):
    # SAC ends within 1 nat but passed 3 on the way; PPO stays under 1 throughout.
    for seed in (0, 1):
        write_run(tmp_path, f"sac_s{seed}", [0.0, 0.5, 0.6], seed=seed, algo_params={"alpha": 1.0}, kls=[0, 3, 0.9])
        write_run(tmp_path, f"ppo_s{seed}", [0.0, 0.35, 0.4], seed=seed, algo="ppo", algo_params={"kl_coef": 1.0},
                  kls=[0, 0.5, 0.8])

    def at1(*flags: str) -> dict:
        out = tmp_path / ("out" + "".join(flags))
        assert final_answer.main([str(tmp_path), "--out", str(out), "--min-seeds", "2", *flags]) == 0
        with (out / "answer.csv").open() as f:
            return {row["kl_budget"]: row for row in csv.DictReader(f)}["1.0"]

    final = at1()  # SAC's crossing at 3 nats does not count, its next one (200 queries) does; PPO's at 100
    assert float(final["gold_delta"]) == pytest.approx(0.2) and float(final["budget_ratio"]) == pytest.approx(2.0)
    peak = at1("--kl-stat", "peak")  # SAC has nothing within 1 nat all along: no gold@1, no crossing
    assert peak["sac_group"] == "" and peak["gold_verdict"] != "beats" and peak["budget_ratio"] == ""
    assert "KL held at every eval" in (tmp_path / "out--kl-statpeak" / "answer.md").read_text()


def test_final_answer_without_sac_is_one_error_line(tmp_path, capsys):
    write_run(tmp_path, "ppo", [0.0, 0.5], algo="ppo")
    assert final_answer.main([str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("final_answer: no task with sac and another algorithm")


def test_frontier_table_lays_out_align_compares_picks_by_algorithm_and_kl_budget(tmp_path, capsys):
    # SAC: alpha 1 ends at 0.9 nats and crosses +0.3 at 100 queries, alpha 0.5 ends at 1.8 and crosses at 200. PPO ends at
    # 0.8 nats and crosses at 200. The DPO point ends at 5 nats: over every budget, never reaches +0.3 within one.
    for seed in (0, 1):
        d = 0.02 * seed
        write_run(tmp_path, f"sac1_s{seed}", [0.0, 0.35, 0.5 + d], seed=seed, algo_params={"alpha": 1.0},
                  final_kl=0.9, eval_metrics={"eval/grammatical": 0.9})
        write_run(tmp_path, f"sac05_s{seed}", [0.0, 0.2, 0.7 + d], seed=seed, algo_params={"alpha": 0.5},
                  final_kl=1.8, eval_metrics={"eval/grammatical": 0.8})
        write_run(tmp_path, f"ppo_s{seed}", [0.0, 0.1, 0.4 + d], seed=seed, algo="ppo",
                  algo_params={"kl_coef": 1.0}, final_kl=0.8, eval_metrics={"eval/grammatical": 0.95})
        write_run(tmp_path, f"dpo_s{seed}", [0.0, 0.2, 0.9], seed=seed, algo="dpo", algo_params={"beta": 0.1},
                  final_kl=5.0)
    # the tree, one seed: 7.8 gold at 0.9 nats (x* 0.3), +2 from its step-0 5.5 at 200 queries
    write_run(tmp_path, "sac_tree", [5.5, 7.0, 7.8], task="tree", algo_params={"alpha": 1.0}, final_kl=0.9,
              eval_metrics={"eval/kl_to_optimal": 0.3})
    out = tmp_path / "out"
    assert compare.main([str(tmp_path), "--out", str(out), "--min-seeds", "1"]) == 0
    capsys.readouterr()
    assert frontier_table.main([str(out), "--task", "tree"]) == 0
    tree = capsys.readouterr().out.splitlines()
    assert tree[0] == "### tree: gold@K" and tree[2] == "| algo | KL <= 0.5 | KL <= 1 | KL <= 2 |"
    # one run: no CI; x* beside it; no `task=tree` in the knob though compare's label has it (two tasks)
    assert tree[4] == "| sac | none within K | 7.80 (alpha 1; KL 0.90; 1 runs; x* 0.30) | 7.80 (alpha 1; KL 0.90; " \
                      "1 runs; x* 0.30) |"
    assert "| sac | never | 200 q (1/1; alpha 1) | 200 q (1/1; alpha 1) |" in tree
    assert frontier_table.main([str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "### sentiment: gold@K" and lines[2] == "| algo | KL <= 1 | KL <= 2 | KL <= 4 |"
    # rows in the question's order, each K's pick: SAC alpha 0.5 once the budget admits 1.8 nats; PPO's one
    # configuration has no knob to name
    assert lines[4] == ("| sac | 0.51 [0.50, 0.52] (alpha 1; KL 0.90; 2 runs; gram 0.90) | 0.71 [0.70, 0.72] "
                        "(alpha 0.5; KL 1.80; 2 runs; gram 0.80) | 0.71 [0.70, 0.72] (alpha 0.5; KL 1.80; 2 runs; "
                        "gram 0.80) |")
    assert lines[5].startswith("| ppo | 0.41 [0.40, 0.42] (KL 0.80; 2 runs; gram 0.95) |")
    assert lines[6] == "| dpo | none within K | none within K | none within K |"
    assert "### sentiment: budget to step-0 gold + 0.3 within K" in lines
    spent = lines[lines.index("### sentiment: budget to step-0 gold + 0.3 within K") + 4:]
    assert spent[0].startswith("| sac | 100 [100, 100] q (2/2; alpha 1) |")
    assert spent[1].startswith("| ppo | 200 [200, 200] q (2/2) |")
    assert spent[2] == "| dpo | never | never | never |"


def test_frontier_table_without_compare_outputs_or_the_task_is_one_error_line(tmp_path, capsys):
    assert frontier_table.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("frontier_table: no ")
    write_run(tmp_path / "runs", "ppo", [0.0, 0.5], algo="ppo")
    assert compare.main([str(tmp_path / "runs"), "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert frontier_table.main([str(tmp_path), "--task", "tree"]) == 2
    assert capsys.readouterr().err.startswith("frontier_table: no task tree in ")


def test_frontier_table_of_a_task_with_no_pick_yet_names_its_default_gain():
    # every point of the task ended past every K: empty cells, and the gain from compare's defaults
    row = dict.fromkeys(compare.FRONTIER_CSV_COLUMNS, "") | {"algo": "ppo", "task": "tree", "kl_budget": "0.5"}
    text = frontier_table.tables([row], [], "tree")
    assert "| ppo | none within K |" in text and "### tree: budget to step-0 gold + 2 within K" in text


def test_kl_peak_reports_each_configurations_largest_eval_kl_over_its_final(tmp_path, capsys):
    # PPO overshoots: KL 0, 1.5, 1.0 (seed 0) and 0, 2.0, 1.0 (seed 1): peak/final 1.5 and 2.0, peak at 100 q.
    # SAC climbs straight to 1.0 (ratio 1, peak at the last eval, 200 q). A one-seed config is left out.
    for seed, middle in ((0, 1.5), (1, 2.0)):
        write_run(tmp_path, f"ppo_s{seed}", [0.0, 0.2, 0.3], seed=seed, algo="ppo", algo_params={"kl_coef": 1.0},
                  kls=[0.0, middle, 1.0])
        write_run(tmp_path, f"sac_s{seed}", [0.0, 0.2, 0.3], seed=seed, algo_params={"alpha": 1.0},
                  kls=[0.0, 0.5, 1.0])
        write_run(tmp_path, f"dpo_s{seed}", [0.0, 0.2, 0.3], seed=seed, algo="dpo", algo_params={"beta": 0.1},
                  kls=[0.0, 0.25, 0.5])
    write_run(tmp_path, "sac_alone", [0.0, 0.2, 0.3], algo_params={"alpha": 0.5}, kls=[0.0, 3.0, 2.0])
    out = tmp_path / "out"
    assert kl_peak.main([str(tmp_path), "--min-seeds", "2", "--out", str(out)]) == 0
    with (out / "kl_peak.csv").open() as f:
        rows = {row["algo"]: row for row in csv.DictReader(f)}
    assert set(rows) == {"sac", "ppo", "dpo"}  # alpha 0.5 has one seed
    assert float(rows["ppo"]["final_kl"]) == pytest.approx(1.0) and float(rows["ppo"]["peak_kl"]) == pytest.approx(1.75)
    assert float(rows["ppo"]["peak_over_final"]) == pytest.approx(1.75)
    assert float(rows["ppo"]["peak_over_final_lo"]) == pytest.approx(1.5)
    assert float(rows["ppo"]["peak_over_final_hi"]) == pytest.approx(2.0)
    assert float(rows["ppo"]["spent_at_peak"]) == 100 and rows["ppo"]["unit"] == "q"
    assert float(rows["sac"]["peak_over_final"]) == 1.0 and float(rows["sac"]["spent_at_peak"]) == 200
    assert rows["dpo"]["unit"] == "pairs" and float(rows["dpo"]["spent_at_peak"]) == 200
    text = capsys.readouterr().out
    assert text.index("| sac ") < text.index("| ppo ") < text.index("| dpo ")  # the question's order
    assert "- ppo: 1.75-1.75x (median 1.75x) over 1 configuration" in text
    assert (out / "kl_peak.md").read_text().startswith("# KL to the reference: peak along the run")


def test_kl_peak_without_a_configuration_at_enough_seeds_is_one_error_line(tmp_path, capsys):
    write_run(tmp_path, "ppo", [0.0, 0.5], algo="ppo")
    assert kl_peak.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("kl_peak: no configuration with >= 3 seeds")
