"""task=sentiment: synthetic movie reviews, VADER gold reward (the DPO paper's IMDb experiment in small).

The grammar and the reward live in `sentiment_grammar`; this file adapts them to the Task interface.
Prompts are the first 2-8 tokens of reviews drawn with seeds the SFT corpus never uses (held out).
"""

from __future__ import annotations

import math

from align_cli.tasks import sentiment_grammar as grammar
from align_cli.tasks.base import Task

# Distinct seed offsets keep the SFT corpus, eval, train and pair prompts disjoint draws.
_EVAL_SEED, _TRAIN_SEED, _PAIR_SEED = 101, 202, 303


class SentimentTask(Task):
    name = "sentiment"
    has_gold = True

    def extra_tokens(self) -> list[str]:
        return list(grammar.VOCABULARY)

    def word_prior(self) -> dict[str, float]:
        """Each sentiment word's VADER valence / 3 (the strongest words near +-1, the size of the largest
        trained embedding entries): the model starts knowing which words are positive, as a pretrained LM does."""
        return {word: grammar.valence(word) / 3 for word in grammar.SENTIMENT_WORDS}

    def sft_texts(self) -> list[str]:
        return grammar.make_reviews(self.cfg.num_sft_examples, seed=self.cfg.data_seed)

    def _prompts(self, n: int, offset: int) -> list[str]:
        return grammar.make_prompts(n, seed=self.cfg.data_seed + offset, min_tokens=self.cfg.prompt_min_tokens,
                                    max_tokens=self.cfg.prompt_max_tokens)

    def eval_prompts(self) -> list[str]:
        return self._prompts(self.cfg.num_eval_prompts, _EVAL_SEED)

    def train_prompts(self) -> list[str]:
        return self._prompts(self.cfg.num_train_prompts, _TRAIN_SEED)

    def pair_prompts(self) -> list[str]:
        pairs_per_prompt = max(1, self.cfg.samples_per_prompt // 2)
        # A few extra prompts replace pairs dropped because both samples were identical.
        return self._prompts(math.ceil(self.cfg.num_pairs * 1.05 / pairs_per_prompt), _PAIR_SEED)

    def gold_reward(self, prompts: list[str], responses: list[str]) -> list[float]:
        return grammar.gold_reward(prompts, responses)

    def extra_eval(self, policy, tokenizer, prompts, responses) -> dict[str, float]:
        return {"eval/grammatical": grammar.grammatical_share(prompts, responses)}
