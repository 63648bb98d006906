"""GRPO and RLOO: advantages and losses against hand-computed values, the same losses against TRL 1.16's
GRPOTrainer / RLOOTrainer `compute_loss` on one batch (values and adapter gradients), and short runs on the
tree that move toward the analytic optimum; the CLI smoke runs are in test_cli."""

import json
import math

import pytest
import torch
from conftest import only_run_dir, read_jsonl, tiny_pair_policy

from align_cli.algos.grpo import group_advantages, grpo_loss, k3_kl
from align_cli.algos.rloo import kl_shaped_rewards, leave_one_out_advantages, rloo_loss
from align_cli.rollout import response_logits, token_logprobs


def close(actual: torch.Tensor, expected: list) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------- by hand
def test_group_advantages_by_hand():
    rewards = torch.tensor([1.0, 3.0, 0.0, 0.0, 2.0, 4.0])  # groups of 2: (1, 3), (0, 0), (2, 4)
    close(group_advantages(rewards, 2, "none"), [-1.0, 1.0, 0.0, 0.0, -1.0, 1.0])
    s = math.sqrt(2.0)  # Bessel-corrected std of (1, 3) and of (2, 4); (0, 0) has std 0 and stays 0
    close(group_advantages(rewards, 2, "group"), [-1 / (s + 1e-4), 1 / (s + 1e-4), 0.0, 0.0, -1 / (s + 1e-4),
                                                  1 / (s + 1e-4)])
    batch_std = float(torch.tensor([1.0, 3.0, 0.0, 0.0, 2.0, 4.0]).std())
    close(group_advantages(rewards, 2, "batch"), [x / (batch_std + 1e-4) for x in (-1, 1, 0, 0, -1, 1)])


def test_k3_by_hand_and_never_negative():
    logp, ref = torch.tensor([-1.0, -2.0, -0.5]), torch.tensor([-1.3, -1.5, -0.5])
    close(k3_kl(logp, ref), [math.exp(-0.3) + 0.3 - 1, math.exp(0.5) - 0.5 - 1, 0.0])


def test_grpo_loss_by_hand_token_and_sequence_aggregation():
    # Two responses: three tokens, and two (the third position is padding).
    mask = torch.tensor([[True, True, True], [True, True, False]])
    old = torch.zeros(2, 3)
    logp = torch.tensor([[math.log(1.5), math.log(0.5), math.log(1.1)], [math.log(0.7), math.log(1.3), 9.0]])
    ref = logp.clone()  # k3 = 0 where ref = logp
    ref[0, 0] = 0.0
    adv = torch.tensor([1.0, -2.0])
    # seq 0, A = 1: t0 max(-1.5, -1.2) = -1.2; t1 max(-0.5, -0.8) = -0.5; t2 -1.1
    # seq 1, A = -2: t0 ratio 0.7, max(1.4, 1.6) = 1.6 (clipped); t1 ratio 1.3, max(2.6, 2.4) = 2.6
    k3_00 = math.exp(-math.log(1.5)) + math.log(1.5) - 1  # ref = 0 at (0, 0): pi_ref / pi = 1 / 1.5
    per_token = [[-1.2 + 0.5 * k3_00, -0.5, -1.1], [1.6, 2.6]]
    token, stats = grpo_loss(logp, old, ref, adv, mask, cliprange=0.2, kl_coef=0.5, aggregation="token",
                             kl_importance_weight=False)
    assert token.item() == pytest.approx((sum(per_token[0]) + sum(per_token[1])) / 5)
    sequence, _ = grpo_loss(logp, old, ref, adv, mask, cliprange=0.2, kl_coef=0.5, aggregation="sequence",
                            kl_importance_weight=False)
    assert sequence.item() == pytest.approx((sum(per_token[0]) / 3 + sum(per_token[1]) / 2) / 2)
    # Clipped where the clipped term was the larger: (0, 0) and (1, 0) of five real tokens.
    assert stats["clipfrac"].item() == pytest.approx(2 / 5)
    # Importance-weighted KL: k3 at (0, 0) times its ratio 1.5.
    weighted, _ = grpo_loss(logp, old, ref, adv, mask, cliprange=0.2, kl_coef=0.5, aggregation="token")
    assert weighted.item() == pytest.approx(token.item() + 0.5 * k3_00 * 0.5 / 5)


def test_grpo_loss_ignores_padding_however_unlikely_the_padded_token():
    # score() leaves behaviour and reference log-probs at 0 on padding; a padded position whose current
    # log-prob is -200 would make k3 = exp(200) = inf there, and inf x mask 0 = NaN in the loss and gradients
    mask = torch.tensor([[True, True, False]])
    old, ref = torch.zeros(1, 3), torch.tensor([[-0.2, -0.1, 0.0]])
    logp = torch.tensor([[-0.1, -0.3, -200.0]], requires_grad=True)
    loss, stats = grpo_loss(logp, old, ref, torch.tensor([1.0]), mask, cliprange=0.2, kl_coef=0.5,
                            aggregation="token")
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logp.grad).all() and logp.grad[0, 2] == 0
    kept, _ = grpo_loss(logp.detach()[:, :2], old[:, :2], ref[:, :2], torch.tensor([1.0]), mask[:, :2],
                        cliprange=0.2, kl_coef=0.5, aggregation="token")
    assert loss.item() == pytest.approx(kept.item())  # the same loss as without the padded column
    assert torch.isfinite(stats["k3_kl"])


def test_leave_one_out_and_kl_shaped_rewards_by_hand():
    mask = torch.tensor([[True, True], [True, False], [True, True]])
    logp = torch.tensor([[-1.0, -1.0], [-0.5, 7.0], [-2.0, -1.0]])
    ref = torch.tensor([[-1.5, -1.0], [-0.5, 0.0], [-1.0, -1.0]])
    rewards = kl_shaped_rewards(torch.tensor([1.0, 2.0, 3.0]), logp, ref, mask, kl_coef=0.2)
    close(rewards, [1.0 - 0.2 * 0.5, 2.0, 3.0 + 0.2 * 1.0])  # the padded 7.0 does not count
    close(leave_one_out_advantages(rewards, 3), [0.9 - (2.0 + 3.2) / 2, 2.0 - (0.9 + 3.2) / 2, 3.2 - (0.9 + 2.0) / 2])


def test_rloo_loss_by_hand_with_and_without_clipping():
    mask = torch.tensor([[True, True], [True, False]])
    old = torch.zeros(2, 2)
    logp = torch.tensor([[math.log(1.5), math.log(1.0)], [math.log(0.5), 3.0]])  # sequence ratios 1.5 and 0.5
    adv = torch.tensor([2.0, 1.0])
    clipped, stats = rloo_loss(logp, old, adv, mask, cliprange=0.2)
    assert clipped.item() == pytest.approx(-(min(1.5 * 2, 1.2 * 2) + min(0.5 * 1, 0.8 * 1)) / 2)
    assert stats["clipfrac"].item() == pytest.approx(0.5)  # seq 0 (ratio above 1.2, A > 0)
    plain, _ = rloo_loss(logp, old, adv, mask, cliprange=None)
    assert plain.item() == pytest.approx(-(1.5 * 2 + 0.5 * 1) / 2)


def test_rloo_gradient_at_ratio_one_is_reinforce():
    """At the first step on a batch (pi = pi_old) the gradient is -mean_i A_i grad sum_t log pi(y_it)."""
    logits = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0), requires_grad=True)
    tokens = torch.tensor([[1, 2, 3], [4, 0, 0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    logp = token_logprobs(logits, tokens)
    adv = torch.tensor([0.7, -1.3])
    loss, _ = rloo_loss(logp, logp.detach(), adv, mask, cliprange=0.2)
    (grad,) = torch.autograd.grad(loss, logits, retain_graph=True)
    (expected,) = torch.autograd.grad(-(adv * (logp * mask).sum(-1)).mean(), logits)
    torch.testing.assert_close(grad, expected)


# ------------------------------------------------------------------------------------------- against TRL
def trl_batch():
    """A policy, its tokenizer and one batch of four completions (one padded) to one prompt, with behaviour
    and reference log-probs that differ from the policy's, so clipping and the KL term are exercised."""
    tok, policy = tiny_pair_policy()
    prompt = tok(["the movie"] * 4, return_tensors="pt")
    completions = [" was great .", " was awful .", " good .", " not good at all ."]
    width = max(len(tok(c, add_special_tokens=False)["input_ids"]) for c in completions)
    completion_ids = torch.full((4, width), tok.pad_token_id)
    completion_mask = torch.zeros(4, width, dtype=torch.long)
    for i, c in enumerate(completions):
        ids = tok(c, add_special_tokens=False)["input_ids"]
        completion_ids[i, : len(ids)], completion_mask[i, : len(ids)] = torch.tensor(ids), 1
    ids = torch.cat([prompt["input_ids"], completion_ids], 1)
    attention = torch.cat([prompt["attention_mask"], completion_mask], 1)
    with torch.no_grad():
        logp = token_logprobs(response_logits(policy, ids, attention, prompt["input_ids"].shape[1]), completion_ids)
    noise = torch.Generator().manual_seed(1)
    old = (logp + 0.3 * torch.randn(logp.shape, generator=noise)) * completion_mask
    ref = (logp + 0.5 * torch.randn(logp.shape, generator=noise)) * completion_mask
    inputs = {"prompt_ids": prompt["input_ids"], "prompt_mask": prompt["attention_mask"],
              "completion_ids": completion_ids, "completion_mask": completion_mask}
    return tok, policy, inputs, ids, attention, old, ref


def adapter_grads(policy) -> list[torch.Tensor]:
    grads = [p.grad.clone() for p in policy.parameters() if p.requires_grad and p.grad is not None]
    policy.zero_grad(set_to_none=True)
    return grads


def ours_and_trl(trainer, policy, inputs, our_loss) -> None:
    """Our loss on our log-probs and TRL's compute_loss on the same batch: equal values and gradients."""
    policy.zero_grad(set_to_none=True)
    ours = our_loss()
    ours.backward()
    ours_grads = adapter_grads(policy)
    theirs = trainer.compute_loss(trainer.model, inputs)
    theirs.backward()
    theirs_grads = adapter_grads(policy)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5, abs=1e-6)
    assert len(ours_grads) == len(theirs_grads) > 0
    for a, b in zip(ours_grads, theirs_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


TRL_ARGS = dict(output_dir="trl_out", bf16=False, gradient_checkpointing=False, use_cpu=True, report_to=[],
                per_device_train_batch_size=4, num_generations=4, max_completion_length=8)


@pytest.mark.parametrize(("loss_type", "aggregation", "weighted"),
                         [("bnpo", "token", True), ("grpo", "sequence", True), ("bnpo", "token", False)])
def test_grpo_loss_equals_trl_grpo_trainer(tmp_path, monkeypatch, loss_type, aggregation, weighted):
    """Compared: TRL's GRPOTrainer.compute_loss (beta 0.1, epsilon 0.2, its loss_type "bnpo" = our token mean
    in one process, "grpo" = our per-sequence mean, use_bias_correction_kl = our kl_importance_weight) on a batch with given advantages, behaviour and reference
    log-probs, against grpo_loss on our own log-probs of the same policy. Not compared: group advantages
    (computed inside TRL's generation step; tested by hand above)."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    monkeypatch.chdir(tmp_path)
    tok, policy, inputs, ids, attention, old, ref = trl_batch()
    advantages = torch.tensor([1.0, -0.5, 0.25, -0.75])
    trainer = GRPOTrainer(model=policy, reward_funcs=lambda completions, **_: [0.0] * len(completions),
                          args=GRPOConfig(beta=0.1, epsilon=0.2, loss_type=loss_type,
                                          use_bias_correction_kl=weighted, **TRL_ARGS),
                          train_dataset=Dataset.from_list([{"prompt": "the movie"}] * 4), processing_class=tok)
    trainer.model.eval()  # "eval" mode: no division by gradient-accumulation steps; dropout is 0 anyway
    width = inputs["prompt_ids"].shape[1]
    mask = inputs["completion_mask"].bool()

    def our_loss():
        logp = token_logprobs(response_logits(policy, ids, attention, width), inputs["completion_ids"])
        return grpo_loss(logp, old, ref, advantages, mask, 0.2, 0.1, aggregation, weighted)[0]

    ours_and_trl(trainer, policy, {**inputs, "advantages": advantages, "old_per_token_logps": old,
                                   "ref_per_token_logps": ref}, our_loss)


def test_rloo_loss_equals_trl_rloo_trainer(tmp_path, monkeypatch):
    """Compared: TRL's RLOOTrainer.compute_loss (epsilon 0.2, sequence-level ratio) on a batch with given
    advantages and behaviour sequence log-probs, against rloo_loss on our log-probs. Not compared: the
    leave-one-out advantages and KL-shaped rewards (inside TRL's generation step; tested by hand above)."""
    from datasets import Dataset
    from trl import RLOOConfig, RLOOTrainer

    monkeypatch.chdir(tmp_path)
    tok, policy, inputs, ids, attention, old, _ = trl_batch()
    advantages = torch.tensor([0.5, -1.0, 1.5, -0.25])
    trainer = RLOOTrainer(model=policy, reward_funcs=lambda completions, **_: [0.0] * len(completions),
                          args=RLOOConfig(beta=0.1, epsilon=0.2, **TRL_ARGS),
                          train_dataset=Dataset.from_list([{"prompt": "the movie"}] * 4), processing_class=tok)
    trainer.model.eval()
    width = inputs["prompt_ids"].shape[1]
    mask = inputs["completion_mask"].bool()

    def our_loss():
        logp = token_logprobs(response_logits(policy, ids, attention, width), inputs["completion_ids"])
        return rloo_loss(logp, old, advantages, mask, 0.2)[0]

    ours_and_trl(trainer, policy, {**inputs, "advantages": advantages, "old_logps": (old * mask).sum(-1)},
                 our_loss)


# ------------------------------------------------------------------------------------------- on the tree
@pytest.mark.xdist_group("tree")
@pytest.mark.parametrize("algo", ["grpo", "rloo"])
def test_group_algos_on_the_tree_move_toward_the_analytic_optimum(run_align, tmp_path, algo):
    """kl_coef = beta and reward = gold: KL(pi || pi*) falls by at least 40% on a short run. GRPO runs with
    the KL in the reward and unscaled advantages here, the objective whose optimum is pi*: dividing by the
    group's std rescales the reward against the KL, and a per-token k3 term in the loss charges each token
    its own KL only, not the KL its choice causes later (README "GRPO and RLOO" measures the defaults)."""
    extra = ["algo.scale_rewards=none", "algo.kl_in=reward"] if algo == "grpo" else []
    run_align("train", f"algo={algo}", "task=tree", "reward=gold", "debug=smoke", "budget.max_steps=null",
              "budget.rm_queries=12800", "algo.lr=3e-3", "eval.every=100", "logger=none", "paths.runs_dir=runs",
              *extra)
    run_dir = only_run_dir(tmp_path / "runs")
    kls = [r["eval/kl_to_optimal"] for r in read_jsonl(run_dir / "metrics.jsonl") if "eval/kl_to_optimal" in r]
    assert len(kls) >= 3
    assert kls[-1] < 0.6 * kls[0]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["final"]["train/kl_coef"] == 1.0  # the tree's beta
