"""Eval metrics against values computed by hand on fixed tiny inputs."""

import math

import pytest
import torch

from align_cli.evaluate import distinct_n, mean_token_entropy, sequence_kl, win_rate
from align_cli.rollout import token_entropy


def test_sequence_kl_sums_log_ratios_over_response_tokens_only():
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.1, -0.2, -9.0]])
    ref = torch.tensor([[-1.5, -1.0, -0.5], [-0.3, -0.2, -1.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    # row 0: 0.5 - 1.0 + 0 = -0.5 ; row 1: 0.2 + 0 (third token masked) = 0.2
    assert sequence_kl(logp, ref, mask).tolist() == pytest.approx([-0.5, 0.2])


def test_token_entropy_and_masked_mean():
    probs = torch.tensor([[[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]], [[0.25, 0.25, 0.5], [1 / 3, 1 / 3, 1 / 3]]])
    logits = probs.log()  # zero-probability tokens become -inf, as masked logits do
    ent = token_entropy(logits)
    expected = [[math.log(2), 0.0], [1.5 * math.log(2), math.log(3)]]
    assert ent.flatten().tolist() == pytest.approx([v for row in expected for v in row])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    assert mean_token_entropy(ent, mask) == pytest.approx((math.log(2) + 0 + 1.5 * math.log(2)) / 3)


def test_distinct_2_counts_unique_bigrams_over_all_texts():
    texts = ["a b c", "a b d", "x"]
    # bigrams: (a,b) (b,c) (a,b) (b,d) -> 3 distinct of 4
    assert distinct_n(texts, 2) == pytest.approx(0.75)
    assert distinct_n(["one"], 2) == 0.0


def test_win_rate_counts_ties_as_half():
    assert win_rate([1.0, 0.0, 0.5, 2.0], [0.0, 0.0, 1.0, 1.0]) == pytest.approx((1 + 0.5 + 0 + 1) / 4)
