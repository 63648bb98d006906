"""Best-of-N (no training): the cheap baseline every comparison should show.

For every eval prompt, N responses are sampled from the SFT policy and the one the reward prefers is kept
(reward=learned: the reward model; reward=gold: the oracle). The run logs the SFT eval at step 0, as every
algorithm does, then the best-of-N eval as its final point at W&B step 1 (progress/optimizer_steps stays 0).

Best-of-N has no per-token log-probabilities, so its eval/kl_ref is the analytic value
log N - (N - 1) / N (Stiennon et al. 2020), an upper bound on the true KL (Beirami et al. 2024). On tasks
whose responses can be enumerated (task=tree), eval/kl_ref is the exact KL of the best-of-N distribution

    P(y) = p(y) / p(level of y) * (F(r_y)^N - F_<(r_y)^N),   F(r) = p(r_y' <= r), F_<(r) = p(r_y' < r),

where responses with equal reward share their level's probability in proportion to p (the first sample
reaching the maximum wins), and eval/kl_to_optimal is its exact KL to pi*. eval/kl_ref_bound is always
logged.

Draw i uses sampling seed eval.seed + i + 100003 * seed: the run seed picks the candidates (best-of-N's
only randomness), and with seed 0 draw 0 is the step-0 eval's own sample, so N = 1 reproduces the SFT eval. progress/rm_queries and progress/samples_generated count the selection's samples, N per eval
prompt: an inference-time cost, not training data.

Sections: config, formulas (selection, exact distribution, KL bound), evaluation, train loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from align_cli.config import AlgoConfig, opt
from align_cli.errors import UserError
from align_cli.tasks.tree import kl_divergence

ONLINE = True  # queries the reward (to select), though it never trains
DRAW_SEED_STRIDE = 100_003  # run seeds s and s + 1 draw from disjoint sampling seeds for any N below this


# ------------------------------------------------------------------------------------------- config
@dataclass
class Config(AlgoConfig):
    name: str = opt("bon", "algorithm name")
    n: int = opt(16, "KL knob: responses sampled per eval prompt from the SFT policy, the reward keeps the best; KL <= log n - (n-1)/n")


# ------------------------------------------------------------------------------------------- formulas
def kl_bound(n: int) -> float:
    """log N - (N - 1) / N: KL(best-of-N || pi_ref) when no two responses tie (an upper bound otherwise)."""
    return math.log(n) - (n - 1) / n


def select_best_of(scores: torch.Tensor) -> torch.Tensor:
    """scores [N draws, P prompts] -> [P]: the draw each prompt keeps (the first on ties)."""
    return scores.argmax(0)


def best_of_n_log_probs(base_logp: torch.Tensor, scores: torch.Tensor, n: int) -> torch.Tensor:
    """log P(best-of-n returns y) for every enumerated response: [P, M] base log-probs and scores -> [P, M].

    The kept response's reward level v has probability F(v)^n - F_<(v)^n; within a level, the response
    is the first sample that reached it, distributed as p restricted to the level."""
    p = base_logp.double().exp()
    p = p / p.sum(-1, keepdim=True)
    scores = scores.double()
    order = scores.argsort(-1)
    sorted_scores = scores.gather(-1, order)
    cdf_sorted = torch.cat([torch.zeros_like(p[:, :1]), p.gather(-1, order).cumsum(-1)], -1)
    at_or_below = cdf_sorted.gather(-1, torch.searchsorted(sorted_scores, scores, right=True))  # F(r_y)
    below = cdf_sorted.gather(-1, torch.searchsorted(sorted_scores, scores, right=False))  # F_<(r_y)
    level = at_or_below - below
    level_prob = at_or_below.clamp(max=1.0) ** n - below.clamp(max=1.0) ** n
    prob = torch.where(level > 0, p / level.clamp(min=1e-300) * level_prob, torch.zeros_like(p))
    return prob.log()


# ------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(evaluator, policy, reward, algo, seed: int = 0) -> tuple[dict[str, float], list[dict]]:
    """The eval harness's metrics for best-of-`algo.n` over `policy` (the SFT policy in a bon run); `seed`
    (the run seed) picks the candidate draws."""
    n, prompts = algo.n, evaluator.prompts
    drawn = []  # per draw: (responses, eos_found, content tokens)
    for draw in tqdm(range(n), desc=f"bon: best of {n}", unit="draw", dynamic_ncols=True):
        draw_seed = evaluator.cfg.seed + draw + DRAW_SEED_STRIDE * seed
        batch = evaluator.sample(policy, draw_seed, counters=reward.counters)
        content = (batch.response_mask.sum(-1) - batch.eos_found.long()).tolist()
        drawn.append((batch.responses, batch.eos_found.tolist(), content))
    # One reward call over every draw: any whitening in the reward is then one transform for all of them.
    scores = reward.preference([p for _ in drawn for p in prompts], [r for d in drawn for r in d[0]],
                               [e for d in drawn for e in d[1]])
    keep = select_best_of(torch.tensor(scores).view(n, len(prompts))).tolist()
    responses = [drawn[d][0][i] for i, d in enumerate(keep)]
    content = [drawn[d][2][i] for i, d in enumerate(keep)]
    metrics, rows = evaluator.response_metrics(policy, prompts, responses, content)
    metrics["eval/kl_ref_bound"] = kl_bound(n)
    metrics["eval/kl_ref"] = kl_bound(n)
    metrics["eval/entropy"] = math.nan  # no per-token distribution (NaN, so the SFT's value is not carried over)
    task = evaluator.task
    if hasattr(task, "enumerate_log_probs"):  # exact: every response of every prompt is enumerable
        with reward.counters.forward_counting_paused():  # analysis, not the selection's compute
            metrics.update(exact_metrics(task, evaluator.tokenizer, policy, reward, n))
    else:
        metrics.update(task.extra_eval(policy, evaluator.tokenizer, prompts, responses))
    return metrics, rows


def exact_metrics(task, tokenizer, policy, reward, n: int) -> dict[str, float]:
    """Exact KL(best-of-n || pi_ref) and KL(best-of-n || pi*) by enumeration (task=tree). The enumeration's
    reward calls are analysis, not queries, and are not counted."""
    logp, ref_logp = task.enumerate_log_probs(policy, tokenizer)
    prompts, responses = task.enumerated_texts(tokenizer)
    eos_found = [False] * len(prompts)  # enumerable responses have a fixed length and no EOS
    scores = torch.tensor(reward.preference(prompts, responses, eos_found, count=False)).view(logp.shape)
    bon_logp = best_of_n_log_probs(logp, scores, n)
    return {"eval/kl_ref": float(kl_divergence(bon_logp, ref_logp.double()).mean()),
            "eval/kl_to_optimal": float(kl_divergence(bon_logp, task.log_optimal(ref_logp.double())).mean())}


# ------------------------------------------------------------------------------------------- train loop
def train(ctx) -> None:
    """No training: evaluate best-of-N over the SFT policy once and log it as the run's final eval."""
    if ctx.cfg.algo.n < 1:
        raise UserError(f"algo.n={ctx.cfg.algo.n} must be >= 1")
    if ctx.reward is None:
        raise UserError("algo=bon needs a reward to select with (reward=learned, gold or hf)")
    metrics, rows = evaluate(ctx.evaluator, ctx.policy, ctx.reward, ctx.cfg.algo, ctx.cfg.seed)
    ctx.record_eval(metrics, rows, step=1)
