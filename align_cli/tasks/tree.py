"""task=tree: an exact-oracle task.

A handful of prompts, a tiny response vocabulary, fixed-length responses and a seeded reward table
r(x, y). The KL-regularised optimum pi*(y|x) = pi_ref(y|x) exp(r(x, y) / beta) / Z(x) is computed by
enumerating every response, and the harness reports the exact KL(pi || pi*). The reference is a tiny
model fitted to a random teacher LM (a Dirichlet draw over the next token at every node of every
prompt's tree), so pi_ref is a real, prompt-dependent, non-uniform LM distribution.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from align_cli import rollout
from align_cli.tasks.base import Task, cycle


def optimal_log_probs(ref_logp: torch.Tensor, rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """log pi*(y|x) for every enumerated response: [P, N] -> [P, N], normalised per prompt."""
    unnorm = ref_logp + rewards / beta
    return unnorm - torch.logsumexp(unnorm, -1, keepdim=True)


def kl_divergence(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row from full log-probability tables [P, N] -> [P]."""
    p = logp.exp()
    return torch.where(p > 0, p * (logp - logq), torch.zeros_like(p)).sum(-1)  # 0 log 0 = 0


class TreeTask(Task):
    name = "tree"
    has_gold = True
    stop_at_eos = False

    def __init__(self, cfg):
        super().__init__(cfg)
        self.prompt_words = [f"q{i}" for i in range(cfg.num_prompts)]
        self.response_words = [f"t{i}" for i in range(cfg.num_response_tokens)]
        self.length = cfg.max_new_tokens
        self.responses = [" " + " ".join(r) for r in itertools.product(self.response_words, repeat=self.length)]
        self.response_index = {r: i for i, r in enumerate(self.responses)}
        rng = np.random.default_rng(cfg.data_seed)
        n = len(self.responses)
        if cfg.reward_dist == "uniform":
            table = rng.uniform(0.0, cfg.reward_scale, size=(cfg.num_prompts, n))
        elif cfg.reward_dist == "normal":
            table = rng.normal(0.0, cfg.reward_scale, size=(cfg.num_prompts, n))
        else:
            from align_cli.errors import UserError

            raise UserError(f"task.reward_dist={cfg.reward_dist!r} is not one of: uniform, normal")
        self.rewards = torch.tensor(table, dtype=torch.float32)
        self.teacher = self._teacher(rng)

    def _teacher(self, rng) -> np.ndarray:
        """[P, N] response probabilities of the teacher the reference is fitted to. One Dirichlet draw over
        the next token at every node: a Dirichlet over whole responses would make each token's
        conditional nearly uniform (sums of many draws), too weak a signal for SFT to pick up the prompt."""
        v = len(self.response_words)
        probs = np.ones((self.cfg.num_prompts, v**self.length))
        for p in range(self.cfg.num_prompts):
            for depth in range(self.length):
                # One next-token distribution per prefix of this depth; broadcast over its subtree.
                nodes = rng.dirichlet([self.cfg.ref_concentration] * v, size=v**depth)  # [prefixes, v]
                per_response = np.repeat(nodes.reshape(-1), v ** (self.length - depth - 1))
                probs[p] *= per_response
        return probs / probs.sum(-1, keepdims=True)

    def extra_tokens(self) -> list[str]:
        return self.prompt_words + self.response_words

    def bind_tokenizer(self, tokenizer) -> None:
        self.allowed_token_ids = tokenizer.convert_tokens_to_ids(self.response_words)

    def sft_texts(self) -> list[str]:
        rng = np.random.default_rng(self.cfg.data_seed + 1)
        texts = []
        for _ in range(self.cfg.num_sft_examples):
            p = int(rng.integers(self.cfg.num_prompts))
            y = int(rng.choice(len(self.responses), p=self.teacher[p]))
            texts.append(self.prompt_words[p] + self.responses[y])
        return texts

    def tokenizer_texts(self) -> list[str]:
        return [" ".join(self.prompt_words + self.response_words)]

    def train_prompts(self) -> list[str]:
        return list(self.prompt_words)

    def eval_prompts(self) -> list[str]:
        return cycle(self.prompt_words, self.cfg.num_eval_prompts)

    def pair_prompts(self) -> list[str]:
        rng = random.Random(self.cfg.data_seed + 2)
        return [rng.choice(self.prompt_words) for _ in range(math.ceil(self.cfg.num_pairs * 1.1))]

    def gold_reward(self, prompts: list[str], responses: list[str]) -> list[float]:
        out = []
        for prompt, response in zip(prompts, responses, strict=True):
            p = self.prompt_words.index(prompt.strip())
            y = self.response_index[" " + response.strip()]
            out.append(float(self.rewards[p, y]))
        return out

    # --- exact oracle -----------------------------------------------------------------------------
    @torch.no_grad()
    def enumerate_log_probs(self, model, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
        """log pi(y|x) and log pi_ref(y|x) of every response y of every prompt: two [P, N] tables."""
        prompts = [p for p in self.prompt_words for _ in self.responses]
        device = next(model.parameters()).device
        prompt_ids, prompt_mask = rollout.encode_prompts(tokenizer, prompts, device)
        response_ids = torch.tensor(
            [tokenizer.convert_tokens_to_ids(r.split()) for r in self.responses] * len(self.prompt_words),
            device=device,
        )
        batch = rollout.Batch(
            prompts=prompts,
            responses=self.responses * len(self.prompt_words),
            input_ids=torch.cat([prompt_ids, response_ids], 1),
            attention_mask=torch.cat([prompt_mask, torch.ones_like(response_ids)], 1),
            prompt_width=prompt_ids.shape[1],
            response_mask=torch.ones_like(response_ids, dtype=torch.bool),
            eos_found=torch.zeros(len(prompts), dtype=torch.bool, device=device),
        )
        scores = rollout.score(model, batch, self.allowed_token_ids, batch_size=1024)
        shape = (len(self.prompt_words), len(self.responses))
        return scores.logprobs.sum(-1).view(shape).cpu(), scores.ref_logprobs.sum(-1).view(shape).cpu()

    def enumerated_texts(self, tokenizer) -> tuple[list[str], list[str]]:
        """(prompts, responses) of every [P, N] table entry, as the sampler writes them (prompt-major)."""
        responses = [rollout.decode_response(tokenizer, tokenizer.convert_tokens_to_ids(r.split()))
                     for r in self.responses]
        return [p for p in self.prompt_words for _ in responses], responses * len(self.prompt_words)

    def log_optimal(self, ref_logp: torch.Tensor) -> torch.Tensor:
        """log pi*(y|x) [P, N] of this task's reward table and beta, given log pi_ref."""
        return optimal_log_probs(ref_logp, self.rewards.to(ref_logp.dtype), self.cfg.kl_coef)

    def kl_to_optimal(self, model, tokenizer) -> float:
        logp, ref_logp = self.enumerate_log_probs(model, tokenizer)
        return float(kl_divergence(logp, self.log_optimal(ref_logp)).mean())

    def extra_eval(self, policy, tokenizer, prompts, responses) -> dict[str, float]:
        return {"eval/kl_to_optimal": self.kl_to_optimal(policy, tokenizer)}

    def save_run_files(self, run_dir, base_dir, tokenizer) -> None:
        """tree_task.json + reference/: everything needed to recompute pi* and the KL independently."""
        run_dir = Path(run_dir)
        spec = {
            "beta": self.cfg.kl_coef,
            "response_length": self.length,
            "response_token_ids": list(self.allowed_token_ids),
            "prompts": [
                {"text": p, "input_ids": tokenizer(p)["input_ids"], "rewards": self.rewards[i].tolist()}
                for i, p in enumerate(self.prompt_words)
            ],
        }
        (run_dir / "tree_task.json").write_text(json.dumps(spec, indent=1))
        # The reference is the cached base policy (model + tokenizer) on which checkpoints/final loads.
        shutil.copytree(base_dir, run_dir / "reference", dirs_exist_ok=True)
