"""RLOO (Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for RLHF").

k responses per prompt (onpolicy.py samples and scores them). Each response's reward is its score minus
kl_coef times its sequence KL to the reference (k1: the sum over its tokens of log pi - log pi_ref under
the sampling policy, the paper's and TRL's RLOOTrainer's choice), and its advantage is that reward minus
the mean reward of the other k - 1 responses to the same prompt (the leave-one-out baseline, unbiased
because it does not depend on the response itself). The loss is REINFORCE on whole sequences: -A times
the sequence's importance ratio pi / pi_old (its log-probs summed), PPO-clipped when `clip_ratio` (as
TRL's RLOOTrainer); at the first step on a batch the ratio is 1 and this is plain REINFORCE.

Sections: config, losses, update (in onpolicy.py: the shared loop), train loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from align_cli.algos.onpolicy import GroupBatch, GroupConfig, group_view, train_groups
from align_cli.config import opt

ONLINE = True  # samples from the policy and queries the reward during training


# ------------------------------------------------------------------------------------------- config
@dataclass
class Config(GroupConfig):
    name: str = opt("rloo", "algorithm name")
    clip_ratio: bool = opt(True, "clip the sequence ratio pi / pi_old to 1 +- cliprange (TRL's RLOOTrainer); false: importance-weighted REINFORCE")
    normalize_advantages: bool = opt(False, "whiten the advantages over the batch (TRL's option, off by default there too)")


# ------------------------------------------------------------------------------------------- losses
# Shapes: n responses in groups of k consecutive rows, T response positions; `mask` [n, T].
def kl_shaped_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor,
                      kl_coef: float) -> torch.Tensor:
    """score - kl_coef * sum_t (log pi - log pi_ref)(y_t): [n]."""
    return scores - kl_coef * ((logprobs - ref_logprobs) * mask).sum(-1)


def leave_one_out_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """r_i - mean_{j != i in i's group} r_j: [n]."""
    grouped = group_view(rewards, group_size)
    baselines = (grouped.sum(1, keepdim=True) - grouped) / (group_size - 1)
    return (grouped - baselines).reshape(-1)


def rloo_loss(logprobs, old_logprobs, advantages, mask, cliprange: float | None) -> tuple[torch.Tensor, dict]:
    """mean_i -min(rho_i A_i, clip(rho_i, 1 +- eps) A_i), rho_i = exp(sum_t log pi - log pi_old) over
    sequence i's tokens; cliprange None: mean_i -rho_i A_i. Returns (loss, stats)."""
    m = mask.to(logprobs.dtype)
    ratio = torch.exp(((logprobs - old_logprobs) * m).sum(-1))
    if cliprange is None:
        return -(ratio * advantages).mean(), {"clipfrac": torch.zeros(())}
    clipped_ratio = ratio.clamp(1.0 - cliprange, 1.0 + cliprange)
    loss = -torch.minimum(ratio * advantages, clipped_ratio * advantages).mean()
    clipped = ((ratio < 1.0 - cliprange) & (advantages < 0)) | ((ratio > 1.0 + cliprange) & (advantages > 0))
    return loss, {"clipfrac": clipped.float().mean()}


# ------------------------------------------------------------------------------------------- train loop
def train(ctx) -> None:
    algo = ctx.cfg.algo

    def advantages_of(data: GroupBatch, kl_coef: float):
        rewards = kl_shaped_rewards(data.scores, data.logprobs, data.ref_logprobs, data.mask, kl_coef)
        advantages = leave_one_out_advantages(rewards, data.group_size)
        if algo.normalize_advantages and advantages.numel() > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-4)
        return advantages, {"advantage_abs": float(advantages.abs().mean()), "reward_mean": float(rewards.mean())}

    def loss_of(logprobs, data: GroupBatch, rows, advantages, kl_coef: float):
        loss, stats = rloo_loss(logprobs, data.logprobs[rows], advantages, data.mask[rows],
                                algo.cliprange if algo.clip_ratio else None)
        return loss, {k: float(v) for k, v in stats.items()}

    train_groups(ctx, algo, "rloo", advantages_of, loss_of)
