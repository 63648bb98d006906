"""The task interface: prompts, an SFT corpus, an optional gold reward and preference pairs."""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from typing import Any

import torch

from align_cli import rollout


class Task(ABC):
    """A task supplies the data every algorithm shares. Synthetic tasks build pairs by sampling the SFT
    policy and labelling pairs with a Bradley-Terry draw on the gold reward (as the DPO paper did)."""

    name: str = "base"
    has_gold: bool = False
    # Tokens a response may use (None: any). Applied to policy and reference, in sampling and scoring.
    allowed_token_ids: list[int] | None = None
    # Fixed-length responses never stop at EOS (task=tree).
    stop_at_eos: bool = True

    def __init__(self, cfg: Any):
        self.cfg = cfg

    # --- data -----------------------------------------------------------------------------------
    def tokenizer_texts(self) -> list[str]:
        """Texts the word-level tokenizer is trained on (model=tiny)."""
        return self.sft_texts()

    def extra_tokens(self) -> list[str]:
        """Tokens the tokenizer must know even if the corpus lacks them."""
        return []

    def word_prior(self) -> dict[str, float]:
        """model=tiny: a prior feature per word for the first embedding dimension, standing in for what a
        pretrained LM knows about words (empty: none)."""
        return {}

    @abstractmethod
    def sft_texts(self) -> list[str]:
        """Full texts (prompt + response) the base policy is fine-tuned on."""

    @abstractmethod
    def eval_prompts(self) -> list[str]:
        """Fixed held-out prompts of the eval harness."""

    @abstractmethod
    def train_prompts(self) -> list[str]:
        """Prompts online algorithms sample from."""

    def pair_prompts(self) -> list[str]:
        """Prompts of the synthetic preference pairs (tasks with a gold reward)."""
        return []

    def gold_reward(self, prompts: list[str], responses: list[str]) -> list[float]:
        """Gold reward of each response (only tasks with `has_gold`)."""
        raise LookupError(f"task {self.name} has no gold reward")

    def bind_tokenizer(self, tokenizer) -> None:
        """Called once the tokenizer exists (tasks that need token ids override it)."""
        return None

    # --- preference pairs -------------------------------------------------------------------------
    def make_pairs(self, policy, tokenizer, seed: int, progress=None) -> list[dict]:
        """Sample `samples_per_prompt` responses per prompt from the SFT policy; disjoint adjacent samples
        form a pair labelled by P(a > b) = sigmoid((r_a - r_b) / T) on the gold reward."""
        k = max(2, int(getattr(self.cfg, "samples_per_prompt", 2)))
        per_prompt = k // 2
        prompts = self.pair_prompts()
        repeated = [p for p in prompts for _ in range(k)]
        batch = rollout.sample(
            policy, tokenizer, repeated, self.cfg.max_new_tokens, seed=seed, batch_size=512,
            allowed_token_ids=self.allowed_token_ids, stop_at_eos=self.stop_at_eos,
        )
        rewards = self.gold_reward(batch.prompts, batch.responses)
        rng = random.Random(seed)
        pairs = []
        for i, prompt in enumerate(prompts):
            for j in range(per_prompt):
                a, b = i * k + 2 * j, i * k + 2 * j + 1
                ra, rb = rewards[a], rewards[b]
                if batch.responses[a] == batch.responses[b]:
                    continue  # identical responses carry no preference
                p_a = bradley_terry(ra, rb, self.cfg.label_temperature)
                first = rng.random() < p_a
                win, lose = (a, b) if first else (b, a)
                pairs.append({
                    "prompt": prompt,
                    "chosen": batch.responses[win],
                    "rejected": batch.responses[lose],
                    "chosen_gold": rewards[win],
                    "rejected_gold": rewards[lose],
                })
                if len(pairs) >= self.cfg.num_pairs:
                    return pairs
        return pairs

    # --- evaluation extras ------------------------------------------------------------------------
    def extra_eval(self, policy, tokenizer, prompts, responses) -> dict[str, float]:
        """Task-specific eval metrics (eval/grammatical, eval/kl_to_optimal)."""
        return {}

    def save_run_files(self, run_dir, base_dir, tokenizer) -> None:
        """Files a run dir must carry for this task (task=tree: the reward table and the reference)."""
        return None


def bradley_terry(r_a: float, r_b: float, temperature: float) -> float:
    """P(a preferred over b) under Bradley-Terry with the given temperature."""
    z = (r_a - r_b) / temperature
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    ez = math.exp(z)
    return ez / (1.0 + ez)


def cycle(items: list[str], n: int) -> list[str]:
    return [items[i % len(items)] for i in range(n)]


def as_tensor(values) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.float32)
