"""The shared loop of the group-sampled on-policy algorithms (GRPO, RLOO): only their update rule differs.

Per iteration: draw `prompts_per_batch` prompts, sample `num_generations` responses to each from the policy
(the shared rollout engine), query the reward once per response, score every response token under the
policy (the behaviour log-probs) and the reference; the algorithm turns the scores into advantages, then
`num_epochs` passes over the batch in `num_mini_batches` shuffled minibatches take one Adam step each on
the algorithm's loss. No value model: the group is the baseline. Dropout is off in policy and reference.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from align_cli.config import AlgoConfig, opt
from align_cli.errors import UserError
from align_cli.models import disable_dropout
from align_cli.rollout import masked_mean, response_logits, sample, score, token_entropy, token_logprobs


@dataclass
class GroupConfig(AlgoConfig):
    """Fields every group-sampled algorithm has; grpo.Config and rloo.Config add their own."""

    kl_coef: float | None = opt(None, "KL knob: coefficient of the KL to pi_ref, larger stays closer to pi_ref (None: task.kl_coef)")
    num_generations: int = opt(4, "responses sampled per prompt (the group; k >= 2: the group is the baseline)")
    prompts_per_batch: int = opt(16, "prompts per iteration: num_generations x this many reward queries per batch")
    num_epochs: int = opt(4, "passes over each batch (TRL's num_iterations; 4 as PPO's num_ppo_epochs here: as many optimizer steps per query as PPO)")
    num_mini_batches: int = opt(1, "minibatches per epoch (whole groups stay together)")
    cliprange: float = opt(0.2, "ratio clipping epsilon (with one minibatch, active from the second epoch on: the first step is on-policy)")
    lr: float = opt(3e-4, "Adam learning rate of the policy's LoRA adapter (PPO's here)")
    anneal_lr: bool = opt(True, "decay the learning rate linearly to 0 over budget.rm_queries (as PPO and SAC here)")
    max_grad_norm: float = opt(1.0, "gradient clipping (TRL's default)")
    log_every: int = opt(1, "log train/* every N optimizer steps")


def group_view(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """[n] -> [n / k, k]: responses to one prompt are consecutive rows."""
    return x.view(-1, group_size)


@dataclass
class GroupBatch:
    """One iteration's experience: the sampled batch and what stays fixed while the algorithm learns on it."""

    ids: torch.Tensor  # [n, P + T]
    attention: torch.Tensor  # [n, P + T]
    prompt_width: int
    mask: torch.Tensor  # [n, T] response tokens (EOS included)
    scores: torch.Tensor  # [n] the reward of each response
    logprobs: torch.Tensor  # [n, T] behaviour policy log-probs of the sampled tokens (0 outside the response)
    ref_logprobs: torch.Tensor  # [n, T] reference log-probs (0 outside the response)
    group_size: int


# The algorithm's part: advantages from a batch, and a loss on a minibatch given the current log-probs.
Advantages = Callable[[GroupBatch, float], tuple[torch.Tensor, dict[str, float]]]
Loss = Callable[[torch.Tensor, GroupBatch, torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, dict[str, float]]]


def collect(ctx, algo: GroupConfig, prompt_rng: random.Random, iteration: int, n_prompts: int) -> GroupBatch:
    """Sample k responses to each of n_prompts prompts, reward them, score them (no gradients)."""
    cfg, policy = ctx.cfg, ctx.policy
    prompts = ctx.task.train_prompts()
    drawn = [prompt_rng.choice(prompts) for _ in range(n_prompts)]
    batch = sample(policy, ctx.tokenizer, [p for p in drawn for _ in range(algo.num_generations)],
                   cfg.task.max_new_tokens, seed=cfg.seed * 1_000_003 + iteration, batch_size=cfg.eval.batch_size,
                   allowed_token_ids=ctx.task.allowed_token_ids, stop_at_eos=ctx.task.stop_at_eos,
                   counters=ctx.counters)
    scores = torch.tensor(ctx.reward(batch.prompts, batch.responses, batch.eos_found.tolist()),
                          dtype=torch.float32, device=ctx.device)
    logp = score(policy, batch, ctx.task.allowed_token_ids, batch_size=cfg.eval.batch_size)
    return GroupBatch(batch.input_ids, batch.attention_mask, batch.prompt_width, batch.response_mask, scores,
                      logp.logprobs, logp.ref_logprobs, algo.num_generations)


def train_groups(ctx, algo: GroupConfig, tag: str, advantages_of: Advantages, loss_of: Loss) -> None:
    """The loop: collect a batch of groups, compute advantages, num_epochs x num_mini_batches Adam steps."""
    cfg, policy = ctx.cfg, ctx.policy
    if ctx.reward is None:
        raise UserError(f"algo={tag} needs an online reward (reward=learned, gold or hf)")
    if algo.num_generations < 2:
        raise UserError(f"algo.num_generations={algo.num_generations} must be >= 2: the group is the baseline")
    if min(algo.prompts_per_batch, algo.num_epochs, algo.num_mini_batches) < 1:
        raise UserError("algo.prompts_per_batch, algo.num_epochs and algo.num_mini_batches must be >= 1")
    if algo.prompts_per_batch % algo.num_mini_batches:
        raise UserError(f"algo.prompts_per_batch={algo.prompts_per_batch} must be divisible by "
                        f"algo.num_mini_batches={algo.num_mini_batches} (whole groups per minibatch)")
    kl_coef = algo.kl_coef if algo.kl_coef is not None else cfg.task.kl_coef
    disable_dropout(policy)
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=algo.lr)
    allowed = ctx.task.allowed_token_ids
    allowed_t = torch.tensor(allowed, device=ctx.device) if allowed is not None else None
    prompt_rng, minibatch_rng = random.Random(cfg.seed), torch.Generator().manual_seed(cfg.seed)
    budget, k = cfg.budget.rm_queries, algo.num_generations
    update_s = tokens_trained = 0.0
    iteration = 0
    bar = tqdm(total=budget, desc=f"{tag}: reward queries", unit="q", dynamic_ncols=True)
    # A last batch smaller than one group would have no baseline: the loop stops when fewer than k queries remain.
    while budget - ctx.counters.rm_queries >= k and not ctx.out_of_steps():
        if algo.anneal_lr:
            for group in optimizer.param_groups:
                group["lr"] = algo.lr * (1.0 - ctx.counters.rm_queries / budget)
        n_prompts = min(algo.prompts_per_batch, (budget - ctx.counters.rm_queries) // k)
        data = collect(ctx, algo, prompt_rng, iteration, n_prompts)
        bar.update(n_prompts * k)
        iteration += 1
        advantages, batch_stats = advantages_of(data, kl_coef)
        log_ratio_ref = (data.logprobs - data.ref_logprobs) * data.mask
        batch_stats |= {"kl_coef": kl_coef, "kl_ref": float(log_ratio_ref.sum(-1).mean()),
                        "kl_ref_token": float(masked_mean(log_ratio_ref, data.mask)),
                        "score_mean": float(data.scores.mean()),
                        "response_len": float(data.mask.sum(-1).float().mean())}
        groups_per_step = max(1, n_prompts // algo.num_mini_batches)
        policy.train()
        for epoch in range(algo.num_epochs):
            order = torch.randperm(n_prompts, generator=minibatch_rng)
            starts = range(0, n_prompts - groups_per_step + 1, groups_per_step)
            for start in starts:
                groups = order[start : start + groups_per_step]
                rows = (groups[:, None] * k + torch.arange(k)).reshape(-1).to(ctx.device)
                started = time.perf_counter()
                ids, attention, mask = data.ids[rows], data.attention[rows], data.mask[rows]
                logits = response_logits(policy, ids, attention, data.prompt_width, allowed_t)
                logprobs = token_logprobs(logits, ids[:, data.prompt_width :])
                loss, stats = loss_of(logprobs, data, rows, advantages[rows], kl_coef)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(params, algo.max_grad_norm)
                optimizer.step()
                update_s += time.perf_counter() - started
                tokens_trained += float(mask.sum())
                ctx.counters.optimizer_steps += 1
                if ctx.counters.optimizer_steps % algo.log_every == 0:
                    with torch.no_grad():
                        entropy = float(masked_mean(token_entropy(logits), mask))
                    ctx.log({**{f"train/{k_}": v for k_, v in {**batch_stats, **stats}.items()},
                             "train/loss": loss.item(), "train/entropy": entropy, "train/grad_norm": float(grad_norm),
                             "perf/tokens_per_s": tokens_trained / max(update_s, 1e-9),
                             "perf/peak_mem_mb": ctx.peak_mem_mb()})
                ctx.maybe_evaluate(batch_done=epoch == algo.num_epochs - 1 and start == starts[-1])
                if ctx.out_of_steps():
                    break
            if ctx.out_of_steps():
                break
    bar.close()
