"""The evaluation harness: one function used by every algorithm and by `align eval`.

On a fixed held-out prompt set with a fixed sampling seed it reports every shared `eval/*` metric that
applies (README "Metrics"). The reference policy's samples for `eval/win_rate_ref` are drawn once per
run, with their own seed, so the policy is compared against independent reference samples.
"""

from __future__ import annotations

import math

import torch

from align_cli import rollout


# --------------------------------------------------------------------------------- metric formulas
def sequence_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence KL(pi || pi_ref) estimate from the policy's own samples: sum_t log pi - log pi_ref
    (the unbiased k1 estimator)."""
    return ((logprobs - ref_logprobs) * mask).sum(-1)


def mean_token_entropy(entropy: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean over all response tokens of the policy's full-distribution entropy at that position."""
    return float((entropy * mask).sum() / mask.sum().clamp(min=1))


def distinct_n(texts: list[str], n: int = 2) -> float:
    """Distinct n-grams / all n-grams over a set of texts (word tokens)."""
    grams = []
    for text in texts:
        words = text.split()
        grams.extend(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return len(set(grams)) / len(grams) if grams else 0.0


def win_rate(policy_scores: list[float], ref_scores: list[float]) -> float:
    """Share of prompts where the policy's sample scores higher than the reference's; ties count half."""
    wins = [1.0 if p > r else 0.5 if p == r else 0.0 for p, r in zip(policy_scores, ref_scores, strict=True)]
    return sum(wins) / len(wins)


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


# ------------------------------------------------------------------------------------------- harness
class Evaluator:
    def __init__(self, task, tokenizer, eval_cfg, rm_scorer=None):
        self.task, self.tokenizer, self.cfg, self.rm_scorer = task, tokenizer, eval_cfg, rm_scorer
        self.prompts = task.eval_prompts()
        self._ref: dict | None = None

    def sample(self, model, seed: int, counters: rollout.Counters | None = None) -> rollout.Batch:
        """One response per eval prompt from `model`, with this sampling seed (counted only if `counters`)."""
        return rollout.sample(
            model, self.tokenizer, self.prompts, self.task.cfg.max_new_tokens, seed=seed,
            batch_size=self.cfg.batch_size, temperature=self.cfg.temperature,
            allowed_token_ids=self.task.allowed_token_ids, stop_at_eos=self.task.stop_at_eos, counters=counters,
        )

    def _judge(self, prompts, responses) -> dict[str, list[float]]:
        out = {}
        if self.task.has_gold:
            out["gold"] = self.task.gold_reward(prompts, responses)
        if self.rm_scorer is not None:
            out["rm"] = self.rm_scorer(prompts, responses)
        return out

    def reference_scores(self, policy) -> dict[str, list[float]]:
        """Scores of the reference's own samples (drawn once per run)."""
        if self._ref is None:
            with rollout.reference(policy):
                batch = self.sample(policy, self.cfg.ref_seed)
            self._ref = self._judge(batch.prompts, batch.responses)
        return self._ref

    def response_metrics(self, policy, prompts, responses, content_tokens) -> tuple[dict[str, float], list[dict]]:
        """The metrics that need only the responses (one per eval prompt): gold, rm, win rate against the
        reference's samples, length, distinct-2; and the completion rows (prompt, response, rewards)."""
        judged = self._judge(prompts, responses)
        metrics = {"eval/response_len": mean([float(n) for n in content_tokens]),
                   "eval/distinct_2": distinct_n(responses, 2)}
        if "gold" in judged:
            metrics["eval/gold_reward"] = mean(judged["gold"])
        if "rm" in judged:
            metrics["eval/rm_reward"] = mean(judged["rm"])
        judge = "gold" if "gold" in judged else "rm" if "rm" in judged else None
        if judge is not None:
            metrics["eval/win_rate_ref"] = win_rate(judged[judge], self.reference_scores(policy)[judge])
        rows = [
            {
                "prompt": p,
                "response": r,
                "gold_reward": judged["gold"][i] if "gold" in judged else None,
                "rm_reward": judged["rm"][i] if "rm" in judged else None,
            }
            for i, (p, r) in enumerate(zip(prompts, responses, strict=True))
        ]
        return metrics, rows

    @torch.no_grad()
    def __call__(self, policy) -> tuple[dict[str, float], list[dict]]:
        """Eval metrics of `policy` and its completions (prompt, response, gold_reward, rm_reward)."""
        batch = self.sample(policy, self.cfg.seed)
        scores = rollout.score(policy, batch, self.task.allowed_token_ids, batch_size=self.cfg.batch_size)
        mask = batch.response_mask.float()
        content_tokens = mask.sum(-1) - batch.eos_found.float()
        metrics, rows = self.response_metrics(policy, batch.prompts, batch.responses, content_tokens.tolist())
        metrics["eval/kl_ref"] = float(sequence_kl(scores.logprobs, scores.ref_logprobs, mask).mean())
        metrics["eval/entropy"] = mean_token_entropy(scores.entropy, mask)
        metrics.update(self.task.extra_eval(policy, self.tokenizer, batch.prompts, batch.responses))
        return metrics, rows
