"""PPO for language models, following the conventions of TRL's former PPOTrainer and "The N Implementation
Details of RLHF with PPO" (Huang et al. 2024).

Per iteration: sample `rollout_batch` responses from the policy (the shared rollout engine: stop at the
first EOS), score them with the reward (optional missing-EOS penalty in `reward.missing_eos_penalty`), and
build per-token rewards: -kl_coef * KL_t (k1 = log pi - log pi_ref by default, k3 optional) on every
response token plus the sequence score on the last one. Advantages by GAE (gamma 1, lambda 0.95),
whitened; then `num_ppo_epochs` passes over the batch in `num_mini_batches` minibatches with the clipped
policy loss and the clipped value loss (weight `vf_coef`), gradient clipping, and one Adam optimizer over
policy and value parameters (as TRL's PolicyAndValueWrapper). Dropout is off in policy, reference and
value model. An optional adaptive KL controller (Ziegler et al. 2019, TRL's AdaptiveKLController) moves
kl_coef toward a per-token KL target.

Value model: a scalar head (zero-initialised, so V = 0 at the start) on its own rank-`value_lora_r` LoRA
adapter over the policy's frozen base weights (shared, not copied): separate from the policy as the
convention asks, at the price of one more forward pass per minibatch. A head on the reward model would
need the reward model on every task (the tree has a gold table, hf runs may have none).

Sections: config, losses, update, train loop.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from align_cli.config import AlgoConfig, opt
from align_cli.errors import UserError
from align_cli.models import adapters_on_shared_base, disable_dropout
from align_cli.rollout import (
    decoder_of,
    hidden_states,
    masked_mean,
    response_logits,
    sample,
    score,
    token_entropy,
    token_logprobs,
)

ONLINE = True  # samples from the policy and queries the reward during training


# ------------------------------------------------------------------------------------------- config
@dataclass
class Config(AlgoConfig):
    name: str = opt("ppo", "algorithm name")
    kl_coef: float | None = opt(None, "KL knob: per-token KL penalty coefficient in the reward, larger stays closer to pi_ref (None: task.kl_coef); with adaptive_kl, its starting value")
    kl_estimator: str = opt("k1", "per-token KL estimator in the reward: k1 (log pi - log pi_ref, TRL's default) | k3")
    adaptive_kl: bool = opt(False, "adapt kl_coef toward target_kl (Ziegler et al. 2019; TRL's AdaptiveKLController)")
    target_kl: float | None = opt(None, "adaptive_kl: target mean per-token KL in nats (None: task.target_kl)")
    kl_horizon: int = opt(128, "adaptive_kl: horizon in sequences; kl_coef moves by at most x(1 + 0.2 n / horizon) per batch of n. Sentiment, target 0.1 nats/token (11 tokens): final eval/kl_ref 4.8 nats at TRL's 10000 (made for millions of samples), 1.62 at 512, 1.05 at 128")
    normalize_scores: bool = opt(True, "learn on (score - mean) / std of the first batch's scores (the SFT policy's samples, as Huang et al. 2024 normalise the RM), with kl_coef / std: same optimum, unit-scale values")
    whiten_rewards: bool = opt(False, "whiten the per-token rewards of each batch before GAE (TRL's default: off)")
    gamma: float = opt(1.0, "discount (1: the sequence reward is undiscounted)")
    lam: float = opt(0.95, "GAE lambda")
    cliprange: float = opt(0.2, "policy ratio clipping")
    cliprange_value: float = opt(0.2, "value clipping around the rollout's values")
    vf_coef: float = opt(0.1, "value loss weight")
    lr: float = opt(3e-4, "Adam learning rate of policy (LoRA) and value model (1e-3 oscillated in an early tree-task prototype)")
    anneal_lr: bool = opt(True, "decay the learning rate linearly to 0 over budget.rm_queries (CleanRL's anneal_lr)")
    rollout_batch: int = opt(64, "responses sampled (and rewarded) per PPO iteration")
    num_mini_batches: int = opt(1, "minibatches per epoch over the rollout batch")
    num_ppo_epochs: int = opt(4, "passes over each rollout batch")
    max_grad_norm: float = opt(1.0, "gradient clipping (TRL's default)")
    value_lora_r: int = opt(16, "rank of the value model's LoRA adapter on the frozen base")
    log_every: int = opt(1, "log train/* every N optimizer steps")


# ------------------------------------------------------------------------------------------- losses
# Shapes: B sequences, T response positions; `mask` [B, T] marks real response tokens (EOS included).
def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(x - mean) / std over the real tokens; shift_mean=False keeps the mean (TRL's reward whitening)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    return (out if shift_mean else out + mean) * mask


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str) -> torch.Tensor:
    """Per-token KL estimate from sampled tokens: k1 = log(pi / pi_ref); k3 = r - 1 - log r with r = pi_ref / pi."""
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise UserError(f"algo.kl_estimator={estimator!r} is not one of: k1, k3")


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """-kl_coef * KL_t on every response token, plus the sequence score on the last one."""
    rewards = -kl_coef * kl * mask
    last = mask.long().sum(-1) - 1
    rewards[torch.arange(mask.shape[0], device=mask.device), last] += scores
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """Generalised advantage estimation; the episode ends after each sequence's last token (V = 0 there).
    Returns (advantages, returns = advantages + values), zero outside the response."""
    m = mask.to(values.dtype)
    values, rewards = values * m, rewards * m
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        next_value = values[:, t + 1] if t + 1 < values.shape[1] else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * m[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * m


def policy_loss(logprobs, old_logprobs, advantages, mask, cliprange: float):
    """Clipped surrogate: mean_t max(-A r, -A clip(r, 1 - eps, 1 + eps)), r = pi / pi_old.
    Returns (loss, clip fraction, approx KL(pi_old || pi) = mean 0.5 (log r)^2)."""
    log_ratio = logprobs - old_logprobs
    ratio = log_ratio.exp()
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).float(), mask)
    approx_kl = masked_mean(0.5 * log_ratio**2, mask)
    return loss, clipfrac, approx_kl


def value_loss(values, old_values, returns, mask, cliprange_value: float):
    """0.5 mean_t max((V - R)^2, (clip(V, V_old +- eps) - R)^2). Returns (loss, clip fraction)."""
    clipped = old_values + (values - old_values).clamp(-cliprange_value, cliprange_value)
    unclipped_sq, clipped_sq = (values - returns) ** 2, (clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_sq, clipped_sq), mask)
    return loss, masked_mean((clipped_sq > unclipped_sq).float(), mask)


def adapt_kl_coef(kl_coef: float, mean_kl: float, target_kl: float, n_sequences: int, horizon: int) -> float:
    """Proportional controller: kl_coef * (1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon)."""
    error = max(-0.2, min(0.2, mean_kl / target_kl - 1.0))
    return kl_coef * (1.0 + error * n_sequences / horizon)


# ------------------------------------------------------------------------------------------- networks
class ValueModel(torch.nn.Module):
    """V(s_t) for every response position: a zero-initialised scalar head on a LoRA adapter ("value") over
    the policy's frozen base weights."""

    def __init__(self, policy, base_dir: str, rank: int, device: torch.device):
        super().__init__()
        self.trunk = adapters_on_shared_base(policy, base_dir, rank, ["value"], device)
        disable_dropout(self.trunk)
        self.head = torch.nn.Linear(self.trunk.get_base_model().config.hidden_size, 1).to(device)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, ids, attention, prompt_width) -> torch.Tensor:
        return self.head(hidden_states(self.trunk, ids, attention, prompt_width)).squeeze(-1).float()


# ------------------------------------------------------------------------------------------- update
@dataclass
class Rollout:
    """One iteration's experience: the sampled batch and, per response token, everything PPO keeps fixed."""

    ids: torch.Tensor
    attention: torch.Tensor
    prompt_width: int
    mask: torch.Tensor
    logprobs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor


def ppo_step(policy, value_model, optimizer, params, data: Rollout, rows: torch.Tensor, algo: Config,
             allowed: torch.Tensor | None) -> dict[str, float]:
    """One clipped-PPO gradient step on the minibatch `rows` of a rollout."""
    ids, attention, mask = data.ids[rows], data.attention[rows], data.mask[rows]
    tokens = ids[:, data.prompt_width :]
    logits = response_logits(policy, ids, attention, data.prompt_width, allowed)
    logprobs = token_logprobs(logits, tokens)
    values = value_model(ids, attention, data.prompt_width)
    loss_pg, clipfrac, approx_kl = policy_loss(logprobs, data.logprobs[rows], data.advantages[rows], mask,
                                               algo.cliprange)
    loss_vf, vf_clipfrac = value_loss(values, data.values[rows], data.returns[rows], mask, algo.cliprange_value)
    optimizer.zero_grad(set_to_none=True)
    (loss_pg + algo.vf_coef * loss_vf).backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(params, algo.max_grad_norm)
    optimizer.step()
    with torch.no_grad():
        entropy = masked_mean(token_entropy(logits), mask)
    return {"policy_loss": loss_pg.item(), "value_loss": loss_vf.item(), "clipfrac": clipfrac.item(),
            "vf_clipfrac": vf_clipfrac.item(), "approx_kl": approx_kl.item(), "entropy": entropy.item(),
            "grad_norm": float(grad_norm), "tokens": float(mask.sum())}


# ------------------------------------------------------------------------------------------- train loop
def train(ctx) -> None:
    cfg, algo, policy = ctx.cfg, ctx.cfg.algo, ctx.policy
    if ctx.reward is None:
        raise UserError("algo=ppo needs an online reward (reward=learned, gold or hf)")
    if algo.rollout_batch % algo.num_mini_batches:
        raise UserError(f"algo.rollout_batch={algo.rollout_batch} must be divisible by "
                        f"algo.num_mini_batches={algo.num_mini_batches}")
    if algo.kl_estimator not in ("k1", "k3"):
        raise UserError(f"algo.kl_estimator={algo.kl_estimator!r} is not one of: k1, k3")
    kl_coef = algo.kl_coef if algo.kl_coef is not None else cfg.task.kl_coef
    target_kl = algo.target_kl if algo.target_kl is not None else cfg.task.target_kl
    if algo.adaptive_kl and target_kl is None:
        raise UserError(f"algo.adaptive_kl=true needs a KL target: set algo.target_kl (task {cfg.task.name} has none)")
    disable_dropout(policy)
    value_model = ValueModel(policy, ctx.artefacts.base_dir, algo.value_lora_r, ctx.device)
    ctx.counters.count_forward_tokens(decoder_of(value_model.trunk))
    params = [p for p in policy.parameters() if p.requires_grad] + [p for p in value_model.parameters()
                                                                     if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=algo.lr, eps=1e-5)  # eps: CleanRL / TRL PPO
    allowed = ctx.task.allowed_token_ids
    allowed_t = torch.tensor(allowed, device=ctx.device) if allowed is not None else None
    prompts = ctx.task.train_prompts()
    prompt_rng, minibatch_rng = random.Random(cfg.seed), torch.Generator().manual_seed(cfg.seed)
    budget = cfg.budget.rm_queries
    update_s = tokens_trained = 0.0
    iteration = 0
    score_shift, score_scale = 0.0, 1.0  # set from the first batch by normalize_scores
    bar = tqdm(total=budget, desc="ppo: reward queries", unit="q", dynamic_ncols=True)
    while ctx.counters.rm_queries < budget and not ctx.out_of_steps():
        if algo.anneal_lr:
            for group in optimizer.param_groups:
                group["lr"] = algo.lr * (1.0 - ctx.counters.rm_queries / budget)
        # 1. collect: sample, reward, and score under policy, reference and value model (no gradients).
        n = min(algo.rollout_batch, budget - ctx.counters.rm_queries)
        batch = sample(policy, ctx.tokenizer, [prompt_rng.choice(prompts) for _ in range(n)],
                       cfg.task.max_new_tokens, seed=cfg.seed * 1_000_003 + iteration, batch_size=cfg.eval.batch_size,
                       allowed_token_ids=allowed, stop_at_eos=ctx.task.stop_at_eos, counters=ctx.counters)
        scores = torch.tensor(ctx.reward(batch.prompts, batch.responses, batch.eos_found.tolist()),
                              dtype=torch.float32, device=ctx.device)
        bar.update(n)
        if iteration == 0 and algo.normalize_scores and n > 1 and float(scores.std()) > 1e-6:
            score_shift, score_scale = float(scores.mean()), float(scores.std())
        iteration += 1
        mask = batch.response_mask
        logp = score(policy, batch, allowed, batch_size=cfg.eval.batch_size)
        with torch.no_grad():
            values = value_model(batch.input_ids, batch.attention_mask, batch.prompt_width) * mask
            kl = kl_penalty(logp.logprobs, logp.ref_logprobs, algo.kl_estimator) * mask
            # Every sequence gets exactly one score: the shift and the joint rescaling keep the optimum.
            rewards = token_rewards((scores - score_shift) / score_scale, kl, mask, kl_coef / score_scale)
            if algo.whiten_rewards:
                rewards = masked_whiten(rewards, mask, shift_mean=False)
            advantages, returns = gae(rewards, values, mask, algo.gamma, algo.lam)
            advantages = masked_whiten(advantages, mask)
        data = Rollout(batch.input_ids, batch.attention_mask, batch.prompt_width, mask, logp.logprobs, values,
                       advantages, returns)
        # 2. learn: num_ppo_epochs passes over the batch in shuffled minibatches.
        mean_kl_token = float(masked_mean(logp.logprobs - logp.ref_logprobs, mask))
        rollout_stats = {"train/kl_coef": kl_coef, "train/kl_ref_token": mean_kl_token,
                         "train/kl_ref": float((logp.logprobs - logp.ref_logprobs).sum(-1).mean()),
                         "train/non_score_reward": float((-kl_coef * kl).sum(-1).mean()),
                         "train/score_mean": float(scores.mean()), "train/response_len": float(mask.sum(-1).float().mean())}
        size = n // algo.num_mini_batches if n >= algo.num_mini_batches else n
        policy.train()
        for epoch in range(algo.num_ppo_epochs):
            order = torch.randperm(n, generator=minibatch_rng).to(ctx.device)
            starts = range(0, n - size + 1, size)
            for start in starts:
                started = time.perf_counter()
                stats = ppo_step(policy, value_model, optimizer, params, data, order[start : start + size], algo,
                                 allowed_t)
                update_s += time.perf_counter() - started
                tokens_trained += stats.pop("tokens")
                ctx.counters.optimizer_steps += 1
                if ctx.counters.optimizer_steps % algo.log_every == 0:
                    ctx.log({**{f"train/{k}": v for k, v in stats.items()}, **rollout_stats,
                             "perf/tokens_per_s": tokens_trained / max(update_s, 1e-9),
                             "perf/peak_mem_mb": ctx.peak_mem_mb()})
                ctx.maybe_evaluate(batch_done=epoch == algo.num_ppo_epochs - 1 and start == starts[-1])
                if ctx.out_of_steps():
                    break
            if ctx.out_of_steps():
                break
        if algo.adaptive_kl:
            kl_coef = adapt_kl_coef(kl_coef, mean_kl_token, target_kl, n, algo.kl_horizon)
    bar.close()
