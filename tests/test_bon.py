"""Best-of-N: the KL bound, the exact distribution against brute-force enumeration of every N-tuple, and
runs through the CLI (sentiment: bound, counting, `align eval`; tree: N = 1 is the SFT eval, exact KL)."""

import itertools
import json
import math

import pytest
import torch
from conftest import only_run_dir, read_jsonl

from align_cli.algos.bon import best_of_n_log_probs, kl_bound, select_best_of
from align_cli.tasks.tree import kl_divergence


def test_kl_bound_by_hand():
    assert kl_bound(1) == 0.0
    assert kl_bound(4) == pytest.approx(1.3862944 - 0.75)  # log 4 - 3/4
    assert kl_bound(16) == pytest.approx(2.7725887 - 0.9375)  # log 16 - 15/16


def test_select_best_of_keeps_each_prompts_best_draw_the_first_on_ties():
    scores = torch.tensor([[0.1, 5.0, 2.0], [0.7, 5.0, -1.0], [0.7, 1.0, 3.0]])  # [draws, prompts]
    assert select_best_of(scores).tolist() == [1, 0, 2]


def brute_force(p: list[float], scores: list[float], n: int) -> list[float]:
    """P(best-of-n keeps y) by enumerating every n-tuple of draws; the first draw with the top score wins."""
    out = [0.0] * len(p)
    for draws in itertools.product(range(len(p)), repeat=n):
        best = max(draws, key=lambda y: scores[y])  # max() returns the first maximal element
        out[best] += math.prod(p[y] for y in draws)
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_exact_distribution_matches_brute_force_with_ties(n):
    p = [0.1, 0.2, 0.3, 0.15, 0.25]
    scores = [1.0, 3.0, 3.0, 0.0, 1.0]  # two ties: items 1 and 2 at the top, 0 and 4 in the middle
    got = best_of_n_log_probs(torch.tensor([p], dtype=torch.float64).log(), torch.tensor([scores]), n).exp()[0]
    assert got.tolist() == pytest.approx(brute_force(p, scores, n), abs=1e-12)


def test_exact_kl_is_below_the_bound_and_reaches_it_as_responses_get_rare():
    torch.manual_seed(0)
    for size, gap in [(8, 0.01), (20000, 1e-5)]:
        logp = torch.distributions.Dirichlet(torch.ones(size)).sample((2,)).double().log()
        bon = best_of_n_log_probs(logp, torch.randn(2, size), 16)
        kl = kl_divergence(bon, logp)
        assert (kl < kl_bound(16)).all()
        if size > 1000:  # the bound is the continuous limit: no response has noticeable mass
            assert kl.tolist() == pytest.approx([kl_bound(16)] * 2, abs=gap)
        else:
            assert (kl < kl_bound(16) - gap).all()


def evals_of(run_dir):
    return [r for r in read_jsonl(run_dir / "metrics.jsonl") if "eval/kl_ref" in r]


@pytest.mark.xdist_group("sentiment")
def test_train_bon_smoke_selects_by_the_reward_counts_its_queries_and_eval_reproduces_it(run_align, tmp_path):
    run_align("train", "algo=bon", "debug=smoke", "logger=none", "paths.runs_dir=runs")
    run_dir = only_run_dir(tmp_path / "runs")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["algo"] == "bon"
    sft, best = evals_of(run_dir)
    assert (sft["step"], best["step"]) == (0, 1) and best["progress/optimizer_steps"] == 0
    final = summary["final"]
    assert final["eval/kl_ref"] == final["eval/kl_ref_bound"] == pytest.approx(kl_bound(16))
    assert final["eval/entropy"] is None  # best-of-N has no per-token distribution
    # 16 draws of the 32 smoke eval prompts, every one scored by the reward model.
    assert final["progress/rm_queries"] == final["progress/samples_generated"] == 16 * 32
    # Draw 0 is the step-0 sample, so the kept response never scores lower under the selecting reward.
    assert final["eval/rm_reward"] > sft["eval/rm_reward"]
    assert len(read_jsonl(run_dir / "samples.jsonl")) == 32
    run_align("eval", f"run={run_dir}")
    rerun = json.loads((run_dir / "eval_rerun.json").read_text())["metrics"]
    for key in ["eval/gold_reward", "eval/rm_reward", "eval/win_rate_ref", "eval/kl_ref"]:
        assert rerun[key] == pytest.approx(final[key], abs=1e-6), key


@pytest.mark.xdist_group("tree")
def test_train_bon_on_tree_n1_is_the_sft_eval_and_the_kl_is_exact(run_align, tmp_path):
    results = {}
    for n in (1, 4):
        run_align("train", "algo=bon", "task=tree", f"algo.n={n}", "debug=smoke", "logger=none",
                  f"paths.runs_dir=runs{n}")
        results[n] = evals_of(only_run_dir(tmp_path / f"runs{n}"))
    sft, one = results[1]
    for key in ["eval/gold_reward", "eval/win_rate_ref", "eval/kl_to_optimal"]:
        assert one[key] == pytest.approx(sft[key], abs=1e-6), key
    assert one["eval/kl_ref"] == pytest.approx(0.0, abs=1e-6)  # float32 log-probs, renormalised
    _, four = results[4]
    # Exact by enumeration: positive, below the no-ties bound, and best-of-4 on the gold table nears pi*.
    assert 0.0 < four["eval/kl_ref"] < four["eval/kl_ref_bound"] == pytest.approx(kl_bound(4))
    assert four["eval/kl_to_optimal"] < 0.5 * sft["eval/kl_to_optimal"]
    assert four["eval/gold_reward"] > sft["eval/gold_reward"]
