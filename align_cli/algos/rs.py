"""Rejection-sampling fine-tuning (Llama 2's rejection sampling, RAFT, ReST): sample, keep the best, imitate.

For `rounds` rounds: sample `k` responses per prompt from the policy as it was at the round's start with
the shared sampler, score them with the reward (`reward=learned` by default), keep the best response per
prompt (`select=best`) or the top fraction (`select=top_frac`), and fine-tune the LoRA policy on the kept
responses with the NLL of their response tokens (a plain loop: the kept set is a handful of batches).
`accumulate` keeps every earlier round's selections in the training set, as Llama 2 did. The reward
budget `budget.rm_queries` is split evenly over the rounds.

A round is streamed in chunks of `chunk_queries` samples: each chunk is sampled from a copy of the
round-start weights, scored, selected and trained on before the next, so a round trains on the data one
round-sized batch would give (the same policy, prompts and selection rule) while the budget-driven evals
(`eval.every_budget`) land on the same grid as the other algorithms' instead of only at round ends.

Sections: config, losses (selection, NLL), update, train loop.
"""

from __future__ import annotations

import math
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from align_cli.config import AlgoConfig, opt
from align_cli.errors import UserError
from align_cli.rollout import masked_mean, response_logits, sample, token_logprobs

ONLINE = True  # samples from the policy and queries the reward during training


# ------------------------------------------------------------------------------------------- config
@dataclass
class Config(AlgoConfig):
    name: str = opt("rs", "algorithm name")
    rounds: int = opt(4, "KL knob: sample-select-fine-tune rounds (more rounds compound and move further from pi_ref); each uses budget.rm_queries / rounds reward queries")
    k: int = opt(4, "responses sampled per prompt")
    select: str = opt("best", "best (the top response per prompt) | top_frac (the global top share of all samples)")
    top_frac: float = opt(0.25, "KL knob with select=top_frac: share of each chunk's samples kept (smaller: more selective, further from pi_ref)")
    chunk_queries: int = opt(256, "samples (reward queries) per chunk of a round: each is sampled from the round-start policy, selected and trained on in turn, so evals fall on the shared budget grid")
    temperature: float = opt(1.0, "sampling temperature of the rounds' samples")
    accumulate: bool = opt(False, "fine-tune on every round's selections so far (Llama 2), not only this round's")
    lr: float = opt(3e-4, "Adam learning rate of the NLL fine-tune (LoRA + trainable modules)")
    epochs: int = opt(1, "passes over the kept responses per round")
    batch_size: int = opt(64, "kept responses per optimizer step")
    max_grad_norm: float = opt(1.0, "gradient clipping")


# ------------------------------------------------------------------------------------------- losses
def select_best(rewards: torch.Tensor) -> list[int]:
    """rewards [P, k] (prompt-major): the flat index of each prompt's best sample (the first on ties)."""
    best = rewards.argmax(-1)
    return (torch.arange(rewards.shape[0]) * rewards.shape[1] + best).tolist()


def select_top_frac(rewards: torch.Tensor, frac: float) -> list[int]:
    """Flat indices of the ceil(frac * N) highest rewards over every sample, highest first."""
    flat = rewards.flatten()
    keep = max(1, math.ceil(frac * flat.numel()))
    return torch.argsort(flat, descending=True, stable=True)[:keep].tolist()


def response_nll(logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood per response token (EOS included) over the batch."""
    return -masked_mean(logprobs, mask)


# ------------------------------------------------------------------------------------------- update
def nll_step(policy, optimizer, params, kept, allowed, max_grad_norm: float) -> tuple[float, float]:
    """One NLL step on a kept batch (ids, attention, prompt width, response mask). Returns (nll, tokens)."""
    ids, attention, width, mask = kept
    logits = response_logits(policy, ids, attention, width, allowed)
    loss = response_nll(token_logprobs(logits, ids[:, width:]), mask)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    return loss.item(), float(mask.sum())


def rows(batch, index: list[int]):
    """The selected rows of a sampled Batch, trimmed to their own prompt and response widths."""
    sel = torch.tensor(index, device=batch.input_ids.device)
    attention = batch.attention_mask[sel]
    prompt_cols = attention[:, : batch.prompt_width].any(0).nonzero()
    start = int(prompt_cols[0]) if len(prompt_cols) else batch.prompt_width
    mask = batch.response_mask[sel]
    end = batch.prompt_width + max(1, int(mask.sum(-1).max()))
    return (batch.input_ids[sel, start:end], attention[:, start:end], batch.prompt_width - start,
            mask[:, : end - batch.prompt_width])


# ------------------------------------------------------------------------------------------- train loop
@contextmanager
def weights_swapped(params: list[torch.nn.Parameter], saved: list[torch.Tensor]):
    """Run the body with `params` holding `saved` (the round-start policy), then put the current values back
    (the optimizer's state belongs to the current values and is left alone)."""
    current = [p.detach().clone() for p in params]
    with torch.no_grad():
        for param, value in zip(params, saved, strict=True):
            param.copy_(value)
    try:
        yield
    finally:
        with torch.no_grad():
            for param, value in zip(params, current, strict=True):
                param.copy_(value)


def chunked(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def dealt(pieces: list, hands: int, rng: random.Random) -> list[list]:
    """`pieces` shuffled and dealt round-robin into `hands` lists (earlier rounds' data spread over a round)."""
    pieces = list(pieces)
    rng.shuffle(pieces)
    return [pieces[hand::hands] for hand in range(hands)]


def train(ctx) -> None:
    cfg, algo, policy = ctx.cfg, ctx.cfg.algo, ctx.policy
    if ctx.reward is None:
        raise UserError("algo=rs needs an online reward (reward=learned, gold or hf)")
    if algo.select not in ("best", "top_frac"):
        raise UserError(f"algo.select={algo.select!r} is not one of: best, top_frac")
    if algo.rounds < 1 or algo.k < 1 or algo.chunk_queries < 1 or not 0.0 < algo.top_frac <= 1.0:
        raise UserError("algo.rounds, algo.k and algo.chunk_queries must be >= 1 and algo.top_frac in (0, 1]")
    prompts_per_round = cfg.budget.rm_queries // (algo.rounds * algo.k)
    if prompts_per_round < 1:
        raise UserError(f"budget.rm_queries={cfg.budget.rm_queries} is too small for "
                        f"algo.rounds={algo.rounds} x algo.k={algo.k} samples")
    prompts_per_chunk = max(1, algo.chunk_queries // algo.k)
    chunks_per_round = math.ceil(prompts_per_round / prompts_per_chunk)
    allowed = ctx.task.allowed_token_ids
    allowed_t = torch.tensor(allowed, device=ctx.device) if allowed is not None else None
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=algo.lr)
    prompts = ctx.task.train_prompts()
    rng = random.Random(cfg.seed)
    earlier_kept: list = []  # with accumulate: (sampled batch, kept rows) pieces of every finished round
    train_s = tokens_trained = 0.0
    progress = tqdm(total=algo.rounds * chunks_per_round, desc="rs: chunks", unit="chunk", dynamic_ncols=True)
    for round_index in range(algo.rounds):
        if ctx.out_of_steps():
            break
        # A round samples from the policy as it was at the round's start (as one big batch would), in chunks,
        # and fine-tunes on each chunk's selections as they come, so the evals fall on the shared budget grid.
        round_start = [p.detach().clone() for p in params]
        round_prompts = chunked([rng.choice(prompts) for _ in range(prompts_per_round)], prompts_per_chunk)
        earlier_by_chunk = dealt(earlier_kept, len(round_prompts), rng) if algo.accumulate else None
        this_round_kept: list = []
        for chunk_index, chunk_prompts in enumerate(round_prompts):
            # 1. sample k responses per prompt (prompt-major: prompt i owns samples i*k .. i*k + k - 1), score.
            with weights_swapped(params, round_start):
                batch = sample(policy, ctx.tokenizer, [p for p in chunk_prompts for _ in range(algo.k)],
                               cfg.task.max_new_tokens, seed=cfg.seed * 1_000_003 + round_index * 10_007 + chunk_index,
                               batch_size=cfg.eval.batch_size, temperature=algo.temperature,
                               allowed_token_ids=allowed, stop_at_eos=ctx.task.stop_at_eos, counters=ctx.counters)
            rewards = torch.tensor(ctx.reward(batch.prompts, batch.responses, batch.eos_found.tolist()))
            # 2. select.
            by_prompt = rewards.view(len(chunk_prompts), algo.k)
            index = select_best(by_prompt) if algo.select == "best" else select_top_frac(by_prompt, algo.top_frac)
            chunk_stats = {"train/round": round_index + 1, "train/sampled_reward_mean": float(rewards.mean()),
                           "train/selected_reward": float(rewards[index].mean()), "train/kept": len(index)}
            # 3. fine-tune on the kept responses (with accumulate, plus this chunk's share of earlier rounds').
            pieces = [(batch, part) for part in chunked(index, algo.batch_size)]
            this_round_kept += pieces
            pieces += earlier_by_chunk[chunk_index] if earlier_by_chunk is not None else []
            policy.train()
            for epoch in range(algo.epochs):
                rng.shuffle(pieces)
                for piece_index, (source, part) in enumerate(pieces):
                    started = time.perf_counter()
                    nll, tokens = nll_step(policy, optimizer, params, rows(source, part), allowed_t,
                                           algo.max_grad_norm)
                    train_s += time.perf_counter() - started
                    tokens_trained += tokens
                    ctx.counters.optimizer_steps += 1
                    ctx.log({**chunk_stats, "train/nll": nll,
                             "perf/tokens_per_s": tokens_trained / max(train_s, 1e-9),
                             "perf/peak_mem_mb": ctx.peak_mem_mb()})
                    ctx.maybe_evaluate(batch_done=epoch == algo.epochs - 1 and piece_index == len(pieces) - 1)
                    if ctx.out_of_steps():
                        break
                if ctx.out_of_steps():
                    break
            progress.update()
            if ctx.out_of_steps():
                break
        earlier_kept += this_round_kept
    progress.close()
