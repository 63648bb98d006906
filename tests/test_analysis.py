"""Reading run dirs back: the sample-efficiency figure the benchmark scripts report."""

import json

from align_cli.analysis import find_runs, first_reaching, record_rows

EVALS = [
    {"step": 0, "eval/gold_reward": 0.1, "progress/rm_queries": 0},
    {"step": 10, "eval/gold_reward": 0.35, "progress/rm_queries": 640},
    {"step": 20, "eval/gold_reward": 0.45, "progress/rm_queries": 1280},  # first >= 0.1 + 0.3
    {"step": 30, "eval/gold_reward": 0.2, "progress/rm_queries": 1920},  # a later dip does not undo it
]


def test_first_reaching_reports_the_first_eval_over_step_zero_plus_gain():
    assert first_reaching(EVALS, 0.3) == 1280
    assert first_reaching(EVALS, 0.3, counter="step") == 20
    assert first_reaching(EVALS, 0.25) == 640
    assert first_reaching(EVALS, 0.5) is None
    assert first_reaching([], 0.3) is None


def test_first_reaching_within_a_kl_budget_skips_crossings_with_more_kl():
    evals = [{**row, "eval/kl_ref": kl} for row, kl in zip(EVALS, (0.0, 0.5, 3.0, 1.0), strict=True)]
    assert first_reaching(evals, 0.25, max_kl=1.0) == 640
    assert first_reaching(evals, 0.3, max_kl=4.0) == 1280
    assert first_reaching(evals, 0.3, max_kl=2.0) is None  # over 0.4 only at 1280 queries, with 3 nats
    assert first_reaching(EVALS, 0.3, max_kl=2.0) is None  # no KL logged: nothing is known to be within


def test_first_reaching_within_a_peak_kl_budget_counts_no_crossing_after_the_kl_passed_it():
    evals = [{**row, "eval/kl_ref": kl} for row, kl in zip(EVALS, (0.0, 2.5, 1.0, 1.0), strict=True)]
    assert first_reaching(evals, 0.3, max_kl=2.0) == 1280  # final-KL budget: 1 nat at the crossing will do
    assert first_reaching(evals, 0.3, max_kl=2.0, peak=True) is None  # it had been at 2.5 nats on the way
    assert first_reaching(evals, 0.3, max_kl=2.5, peak=True) == 1280
    assert first_reaching(evals, 0.2, max_kl=2.0, peak=True) is None  # 0.35 at 640 queries, at 2.5 nats


def test_a_runs_peak_is_its_largest_value_over_the_evals(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    kls = (0.0, 2.5, 1.0, 1.0)
    rows = [{**row, "eval/kl_ref": kl} for row, kl in zip(EVALS, kls, strict=True)]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in [*rows, {"step": 31, "train/kl": 9.0}]))
    (loaded,) = find_runs([tmp_path])
    assert loaded.peak("eval/kl_ref") == 2.5 and loaded.final("eval/kl_ref") == 1.0
    assert loaded.peak("train/kl") is None  # a training row is not an eval


def test_find_runs_reads_metrics_and_summary(tmp_path):
    run = tmp_path / "sweep" / "0_sac"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in [*EVALS, {"step": 30, "train/x": 1.0}]))
    (run / "summary.json").write_text(json.dumps({"wall_s": 12.5}))
    (loaded,) = find_runs([tmp_path])
    assert loaded.summary["wall_s"] == 12.5
    assert len(loaded.evals) == 4 and loaded.last("train/x") == 1.0 and loaded.last("nope") is None


def test_records_keep_diagnostics_rows_trimmed_to_their_diagnostics():
    metrics = [{"step": 0, "eval/gold_reward": 0.0, "progress/rm_queries": 0},
               {"step": 1, "train/loss": 1.0, "progress/rm_queries": 64},
               {"step": 2, "train/loss": 0.9, "diag/q_eos_minus_v": 0.05, "progress/rm_queries": 64},
               {"step": 3, "train/loss": 0.8, "progress/rm_queries": 64},
               {"step": 4, "eval/gold_reward": 0.3, "progress/rm_queries": 128}]
    kept = record_rows(metrics)
    assert {"step": 2, "diag/q_eos_minus_v": 0.05, "progress/rm_queries": 64} in kept
    assert all(row["step"] != 3 for row in kept)  # a plain training row with no change: left out
