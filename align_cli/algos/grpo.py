"""GRPO (Shao et al. 2024, "DeepSeekMath"): group-relative advantages and a clipped surrogate, no value model.

k responses per prompt (onpolicy.py samples and scores them); each response's advantage is its reward
minus its group's mean (`scale_rewards=none`, Dr. GRPO's choice, the default here), or that divided by the
group's std (`group`, the paper's and TRL's default) or the batch's (`batch`); every token of the response
gets it. The std division rescales each prompt's rewards against the KL term, so kl_coef stops being the
task's beta (on the tree it ends at 0.40x of the step-0 KL(pi || pi*), unscaled at 0.11x: README). The loss per token is the clipped surrogate of PPO plus, with `kl_in=loss`
(GRPO's and TRL's choice), kl_coef times the k3 estimate of KL(pi || pi_ref) at the current policy;
`kl_in=reward` instead subtracts kl_coef times the sequence's k1 KL from its reward before the group
statistics (as RLOO and PPO do here). Per-token losses are averaged over all tokens of the minibatch
(`loss_aggregation=token`: TRL's `bnpo`, which its default `dapo` equals with one minibatch per batch of
generations, as here) or per sequence first (`sequence`, the paper's).

Sections: config, losses, update (in onpolicy.py: the shared loop), train loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from align_cli.algos.onpolicy import GroupBatch, GroupConfig, group_view, train_groups
from align_cli.config import opt
from align_cli.errors import UserError
from align_cli.rollout import masked_mean

ONLINE = True  # samples from the policy and queries the reward during training


# ------------------------------------------------------------------------------------------- config
@dataclass
class Config(GroupConfig):
    name: str = opt("grpo", "algorithm name")
    kl_in: str = opt("loss", "where the KL to pi_ref goes: loss (k3 per token, GRPO / TRL) | reward (k1 per sequence, subtracted before the group statistics)")
    scale_rewards: str = opt("none", "divide advantages by the std of: none (Dr. GRPO: kl_coef stays the task's beta) | group (the GRPO paper, TRL's default) | batch")
    kl_importance_weight: bool = opt(True, "kl_in=loss: weight each token's k3 by pi / pi_old, unbiased for tokens sampled from pi_old (TRL's use_bias_correction_kl, on by default)")
    loss_aggregation: str = opt("token", "average per-token losses over: token (all tokens of the minibatch: TRL's bnpo, = its default dapo with one minibatch) | sequence (each sequence first: the GRPO paper)")


# ------------------------------------------------------------------------------------------- losses
# Shapes: n responses in groups of k consecutive rows, T response positions; `mask` [n, T].
def group_advantages(rewards: torch.Tensor, group_size: int, scale: str) -> torch.Tensor:
    """(r - group mean) / (std + 1e-4), std over the group or the batch (Bessel-corrected, as TRL): [n]."""
    grouped = group_view(rewards, group_size)
    centred = (grouped - grouped.mean(1, keepdim=True)).reshape(-1)
    if scale == "none":
        return centred
    std = grouped.std(1, keepdim=True).expand_as(grouped).reshape(-1) if scale == "group" else rewards.std()
    return centred / (std + 1e-4)


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-token k3 = pi_ref / pi - log(pi_ref / pi) - 1 >= 0, an unbiased estimate of KL(pi || pi_ref); 0
    outside `mask` (padding holds no reference log-prob: exp of -log pi there could overflow into NaN)."""
    delta = ref_logprobs - logprobs
    if mask is not None:
        delta = torch.where(mask.bool(), delta, torch.zeros_like(delta))
    return torch.exp(delta) - delta - 1.0


def grpo_loss(logprobs, old_logprobs, ref_logprobs, advantages, mask, cliprange: float, kl_coef: float,
              aggregation: str, kl_importance_weight: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per token: -min(r A, clip(r, 1 +- eps) A) + kl_coef k3 (times r with kl_importance_weight),
    r = pi / pi_old; aggregated over tokens or sequences. kl_coef = 0 drops the KL term (kl_in=reward).
    Returns (loss, stats)."""
    ratio = torch.exp(logprobs - old_logprobs)
    adv = advantages[:, None]
    surrogate = -torch.minimum(ratio * adv, ratio.clamp(1.0 - cliprange, 1.0 + cliprange) * adv)
    kl = k3_kl(logprobs, ref_logprobs, mask)
    per_token = surrogate + kl_coef * (kl * ratio if kl_importance_weight else kl)
    m = mask.to(per_token.dtype)
    if aggregation == "token":
        loss = (per_token * m).sum() / m.sum().clamp(min=1.0)
    elif aggregation == "sequence":
        loss = ((per_token * m).sum(-1) / m.sum(-1).clamp(min=1.0)).mean()
    else:
        raise UserError(f"algo.loss_aggregation={aggregation!r} is not one of: token, sequence")
    clipped = ((ratio < 1.0 - cliprange) & (adv < 0)) | ((ratio > 1.0 + cliprange) & (adv > 0))
    return loss, {"clipfrac": masked_mean(clipped.float(), mask), "k3_kl": masked_mean(kl.detach(), mask)}


# ------------------------------------------------------------------------------------------- train loop
def train(ctx) -> None:
    algo = ctx.cfg.algo
    for field_, value, choices in (("kl_in", algo.kl_in, ("loss", "reward")),
                                   ("scale_rewards", algo.scale_rewards, ("group", "batch", "none")),
                                   ("loss_aggregation", algo.loss_aggregation, ("token", "sequence"))):
        if value not in choices:
            raise UserError(f"algo.{field_}={value!r} is not one of: {', '.join(choices)}")

    def advantages_of(data: GroupBatch, kl_coef: float):
        rewards = data.scores
        if algo.kl_in == "reward":
            rewards = rewards - kl_coef * ((data.logprobs - data.ref_logprobs) * data.mask).sum(-1)
        advantages = group_advantages(rewards, data.group_size, algo.scale_rewards)
        return advantages, {"advantage_abs": float(advantages.abs().mean()),
                            "group_reward_std": float(group_view(rewards, data.group_size).std(1).mean())}

    def loss_of(logprobs, data: GroupBatch, rows, advantages, kl_coef: float):
        loss, stats = grpo_loss(logprobs, data.logprobs[rows], data.ref_logprobs[rows], advantages, data.mask[rows],
                                algo.cliprange, kl_coef if algo.kl_in == "loss" else 0.0, algo.loss_aggregation,
                                algo.kl_importance_weight)
        return loss, {k: float(v) for k, v in stats.items()}

    train_groups(ctx, algo, "grpo", advantages_of, loss_of)
