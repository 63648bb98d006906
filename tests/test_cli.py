"""The real `align` console script, end to end on debug=smoke budgets."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from conftest import only_run_dir, read_jsonl

RUN_FILES = [".hydra/config.yaml", ".hydra/overrides.yaml", "metrics.jsonl", "summary.json", "samples.jsonl",
             "checkpoints/final/adapter_model.safetensors", "checkpoints/final/adapter_config.json",
             "checkpoints/final/tokenizer.json"]
SHARED_EVAL = ["eval/gold_reward", "eval/rm_reward", "eval/kl_ref", "eval/entropy", "eval/response_len",
               "eval/distinct_2", "eval/win_rate_ref", "eval/grammatical"]
PROGRESS = ["progress/optimizer_steps", "progress/samples_generated", "progress/rm_queries", "progress/pref_pairs",
            "progress/tokens_generated", "progress/forward_tokens", "progress/data_passes", "progress/wall_s"]


def smoke_run(run_align, tmp_path, algo: str, logger: str) -> tuple:
    """`align train algo=<algo> debug=smoke` through the console script: its run dir holds every file,
    and summary.json says completed. Returns (run_dir, summary)."""
    run_align("train", f"algo={algo}", "debug=smoke", f"logger={logger}", "paths.runs_dir=runs")
    run_dir = only_run_dir(tmp_path / "runs")
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["algo"] == algo and summary["seed"] == 0
    return run_dir, summary


@pytest.mark.xdist_group("sentiment")
def test_train_dpo_smoke_writes_a_complete_run_dir_and_eval_reproduces_it(run_align, tmp_path):
    run_dir, summary = smoke_run(run_align, tmp_path, "dpo", logger="wandb")
    assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb")), "W&B offline run missing"
    records = read_jsonl(run_dir / "metrics.jsonl")
    evals = [r for r in records if "eval/kl_ref" in r]
    assert evals[0]["step"] == 0 and evals[0]["eval/kl_ref"] == pytest.approx(0.0, abs=1e-6)
    assert evals[-1]["step"] == summary["final"]["progress/optimizer_steps"] == 8  # budget.max_steps
    assert len(evals) >= 3  # step 0, every eval.every=4, end
    for key in SHARED_EVAL + PROGRESS:
        assert key in summary["final"], key
    # budget.pref_pairs = 64 pairs, one step each pass: 8 steps are 8 passes over the same 64 distinct pairs.
    assert summary["final"]["progress/pref_pairs"] == 64 and summary["final"]["progress/data_passes"] == 8
    assert summary["final"]["progress/forward_tokens"] > 0
    assert any(k.startswith("train/") for r in records for k in r)
    samples = read_jsonl(run_dir / "samples.jsonl")
    assert len(samples) == 32 and set(samples[0]) == {"prompt", "response", "gold_reward", "rm_reward"}

    proc = run_align("eval", f"run={run_dir}")
    rerun = json.loads((run_dir / "eval_rerun.json").read_text())["metrics"]
    for key in SHARED_EVAL:
        assert rerun[key] == pytest.approx(summary["final"][key], abs=1e-4), key
    assert "eval/gold_reward" in proc.stdout


SAC_TRAIN = ["train/critic_loss", "train/actor_loss", "train/alpha", "train/q_mean", "train/entropy",
             "train/kl_ref_token", "train/replay_size", "perf/tokens_per_s", "perf/peak_mem_mb"]


@pytest.mark.xdist_group("sentiment")
def test_train_sac_smoke_writes_a_complete_run_dir(run_align, tmp_path):
    run_dir, summary = smoke_run(run_align, tmp_path, "sac", logger="none")
    final = summary["final"]
    for key in SHARED_EVAL + PROGRESS + SAC_TRAIN:
        assert key in final, key
    # Online: stops at the shared budget (256 reward queries) or at budget.max_steps = 8 updates.
    assert final["progress/optimizer_steps"] == 8 or final["progress/rm_queries"] >= 256
    assert final["progress/rm_queries"] <= 256 and final["progress/pref_pairs"] == 0
    assert final["progress/samples_generated"] == final["progress/rm_queries"]
    assert final["eval/kl_ref"] != 0.0  # the policy moved
    assert len(read_jsonl(run_dir / "samples.jsonl")) == 32


PPO_TRAIN = ["train/policy_loss", "train/value_loss", "train/clipfrac", "train/approx_kl", "train/kl_coef",
             "train/entropy", "train/non_score_reward", "perf/tokens_per_s", "perf/peak_mem_mb"]


@pytest.mark.xdist_group("sentiment")
def test_train_ppo_smoke_writes_a_complete_run_dir(run_align, tmp_path):
    run_dir, summary = smoke_run(run_align, tmp_path, "ppo", logger="none")
    final = summary["final"]
    for key in SHARED_EVAL + PROGRESS + PPO_TRAIN:
        assert key in final, key
    # 4 PPO epochs over each batch of 64: budget.max_steps = 8 updates end it after 128 queries.
    assert final["progress/optimizer_steps"] == 8 and final["progress/rm_queries"] == 128
    assert final["progress/pref_pairs"] == 0 and final["train/kl_coef"] == 0.1  # sentiment's kl_coef
    assert final["eval/kl_ref"] != 0.0  # the policy moved
    assert len(read_jsonl(run_dir / "samples.jsonl")) == 32


@pytest.mark.xdist_group("sentiment")
def test_train_cpl_smoke_writes_a_complete_run_dir(run_align, tmp_path):
    run_dir, summary = smoke_run(run_align, tmp_path, "cpl", logger="none")
    final = summary["final"]
    for key in SHARED_EVAL + PROGRESS + ["train/cpl_loss", "train/cpl_accuracy", "train/logp_chosen",
                                         "train/logp_rejected"]:
        assert key in final, key
    assert final["progress/rm_queries"] == 0 and final["progress/pref_pairs"] > 0  # offline: pairs only
    assert final["eval/kl_ref"] != 0.0


@pytest.mark.xdist_group("sentiment")
def test_train_rs_smoke_writes_a_complete_run_dir(run_align, tmp_path):
    run_dir, summary = smoke_run(run_align, tmp_path, "rs", logger="none")
    final = summary["final"]
    for key in SHARED_EVAL + PROGRESS + ["train/selected_reward", "train/sampled_reward_mean", "train/round",
                                         "train/nll", "perf/tokens_per_s"]:
        assert key in final, key
    # 4 rounds of 256 / (4 x 4) = 16 prompts x 4 samples: the whole budget, the best of 4 kept per prompt.
    assert final["progress/rm_queries"] == 256 and final["train/round"] == 4
    assert final["train/selected_reward"] >= final["train/sampled_reward_mean"]
    assert final["eval/kl_ref"] != 0.0


@pytest.mark.xdist_group("sentiment")
def test_prepare_reports_rm_accuracy_next_to_gold_and_reuses_cache(run_align):
    first = run_align("prepare", "debug=smoke", "logger=none")
    assert "held-out accuracy" in first.stderr and "gold reward on the same pairs" in first.stderr
    info = last_json(first.stdout)
    second = run_align("prepare", "debug=smoke", "logger=none")
    info2 = last_json(second.stdout)
    assert all(info2[stage]["reused"] for stage in ("base", "pairs", "rm"))
    assert info2["rm"]["path"] == info["rm"]["path"]
    changed = run_align("prepare", "debug=smoke", "logger=none", "reward.lr=0.01")
    info3 = last_json(changed.stdout)
    assert info3["base"]["reused"] and info3["pairs"]["reused"] and not info3["rm"]["reused"]


def last_json(stdout: str) -> dict:
    """`align prepare` prints exactly one JSON document on stdout (logs and bars go to stderr)."""
    return json.loads(stdout)


USER_ERRORS = [
    (["train", "algo=nope"], "unknown algo 'nope'; valid choices: bon, cpl, dpo, grpo, ppo, rloo, rs, sac"),
    (["train", "task=nope"], "valid choices: hf_prefs, sentiment, tree"),
    (["train", "algo.lrr=1"], "unknown key 'algo.lrr'; valid keys in algo:"),
    (["train", "seed=abc"], "bad value for 'seed'"),
    (["train", "task=hf_prefs"], "task.dataset is required"),
    (["eval", "run=/nonexistent"], "is not an align run dir"),
    (["frobnicate"], "unknown command 'frobnicate'"),
]


def assert_one_error_line(stderr: str, stdout: str, expected: str) -> None:
    assert "Traceback" not in stderr + stdout
    assert expected in stderr
    assert len([line for line in stderr.splitlines() if "error" in line]) == 1


def test_a_user_error_through_the_console_script_exits_2_with_one_line_and_no_traceback(run_align):
    args, expected = USER_ERRORS[0]
    proc = run_align(*args, check=False)
    assert proc.returncode == 2
    assert_one_error_line(proc.stderr, proc.stdout, expected)


def test_user_errors_exit_2_with_one_line_and_no_traceback(cache_dir, tmp_path, monkeypatch, capsys):
    """Every case through align's main in this process (the console script adds nothing but the import)."""
    from align_cli import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ALIGN_CACHE", str(cache_dir))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # main hands Hydra its arguments through sys.argv
    for args, expected in USER_ERRORS:
        with pytest.raises(SystemExit) as exited:
            cli.main(args)
        assert exited.value.code == 2, args
        out = capsys.readouterr()
        assert_one_error_line(out.err, out.out, expected)


def test_hf_prefs_missing_column_is_a_clear_error(run_align, tmp_path):
    data = tmp_path / "prefs.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": "a", "chosen": " b"}) for _ in range(4)))
    proc = run_align("train", "task=hf_prefs", f"task.dataset={data}", "debug=smoke", "logger=none",
                     "paths.runs_dir=runs", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "lacks column(s) rejected" in proc.stderr


@pytest.mark.xdist_group("tree")
def test_tree_run_dir_lets_anyone_recompute_the_exact_kl(run_align, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run_align("train", "task=tree", "debug=smoke", "logger=none", "paths.runs_dir=runs")
    run_dir = only_run_dir(tmp_path / "runs")
    spec = json.loads((run_dir / "tree_task.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    policy = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(run_dir / "reference"),
                                       run_dir / "checkpoints" / "final").eval()
    allowed = torch.tensor(spec["response_token_ids"])
    import itertools

    kls = []
    for prompt in spec["prompts"]:
        responses = list(itertools.product(spec["response_token_ids"], repeat=spec["response_length"]))
        ids = torch.tensor([prompt["input_ids"] + list(r) for r in responses])
        n = len(prompt["input_ids"])

        def seq_logp(model, ids=ids, n=n):
            with torch.no_grad():
                logits = model(input_ids=ids).logits[:, n - 1 : -1]
            masked = torch.full_like(logits, float("-inf"))
            masked[..., allowed] = logits[..., allowed]
            return torch.log_softmax(masked, -1).gather(-1, ids[:, n:, None]).squeeze(-1).sum(-1)

        logp = seq_logp(policy)
        with policy.disable_adapter():
            ref = seq_logp(policy)
        unnorm = ref + torch.tensor(prompt["rewards"]) / spec["beta"]
        log_opt = unnorm - torch.logsumexp(unnorm, 0)
        kls.append(float((logp.exp() * (logp - log_opt)).sum()))
    assert sum(kls) / len(kls) == pytest.approx(summary["final"]["eval/kl_to_optimal"], rel=1e-3, abs=1e-4)


@pytest.mark.xdist_group("sentiment")
def test_eval_every_budget_evaluates_when_a_batch_paid_for_is_trained_on(run_align, tmp_path):
    # PPO smoke: 64 queries per batch, 4 epochs = 4 optimizer steps per batch. Every 128 queries means
    # after the 2nd and 4th batches' last epoch (steps 8 and 16), not at the first step past the crossing.
    run_align("train", "algo=ppo", "debug=smoke", "budget.max_steps=null", "eval.every_budget=128", "logger=none",
              "paths.runs_dir=runs")
    evals = [r for r in read_jsonl(only_run_dir(tmp_path / "runs") / "metrics.jsonl") if "eval/kl_ref" in r]
    assert [(r["step"], r["progress/rm_queries"]) for r in evals] == [(0, 0), (8, 128), (16, 256)]


@pytest.mark.xdist_group("sentiment")
def test_rs_evaluates_on_the_shared_budget_grid_inside_its_rounds(run_align, tmp_path):
    # 2 rounds of 128 queries, streamed in chunks of 32: every 64 queries is an eval, mid-round included
    # (before chunks, evals came only at the round ends: 128 and 256).
    run_align("train", "algo=rs", "debug=smoke", "algo.rounds=2", "algo.chunk_queries=32", "budget.max_steps=null",
              "eval.every_budget=64", "logger=none", "paths.runs_dir=runs")
    evals = [r for r in read_jsonl(only_run_dir(tmp_path / "runs") / "metrics.jsonl") if "eval/kl_ref" in r]
    assert [r["progress/rm_queries"] for r in evals] == [0, 64, 128, 192, 256]


@pytest.mark.xdist_group("sentiment")
def test_sac_evaluates_after_all_utd_updates_of_a_batch(run_align, tmp_path):
    # utd 2, learning_starts 128, 64 queries a batch: updates come in pairs (steps 2, 4, 6) until the 256
    # queries are spent. eval.every=3 is passed at step 3, in the middle of the second batch's updates: the
    # eval waits for step 4; step 6 passes 6 and is also the end.
    run_align("train", "algo=sac", "debug=smoke", "algo.utd=2", "eval.every=3", "logger=none", "paths.runs_dir=runs")
    evals = [r for r in read_jsonl(only_run_dir(tmp_path / "runs") / "metrics.jsonl") if "eval/kl_ref" in r]
    assert [r["step"] for r in evals] == [0, 4, 6]
