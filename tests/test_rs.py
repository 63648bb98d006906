"""Rejection sampling: selection on a fixed scored batch, the NLL step raising the kept responses'
log-probability, and a round's chunks all sampling from the round-start policy."""

import random
from types import SimpleNamespace

import pytest
import torch
from conftest import PAIRS, tiny_pair_policy
from omegaconf import OmegaConf

from align_cli.algos import rs
from align_cli.algos.rs import dealt, nll_step, response_nll, select_best, select_top_frac, weights_swapped
from align_cli.config import LoraConfig, ModelConfig
from align_cli.models import build_tiny_model, build_word_tokenizer, lora_policy
from align_cli.rollout import Counters, response_logits, token_logprobs

# 3 prompts x 4 samples, prompt-major
REWARDS = torch.tensor([[0.1, 0.9, 0.3, 0.9], [-1.0, -2.0, -0.5, -3.0], [2.0, 0.0, 1.0, 1.5]])


def test_select_best_keeps_exactly_each_prompts_best():
    assert select_best(REWARDS) == [1, 4 + 2, 8 + 0]  # ties: the first


def test_select_top_frac_keeps_the_global_top_share():
    assert select_top_frac(REWARDS, 0.25) == [8, 11, 10]  # ceil(0.25 * 12) = 3: rewards 2.0, 1.5, 1.0
    assert select_top_frac(REWARDS, 0.4) == [8, 11, 10, 1, 3]  # ceil(4.8) = 5; the 0.9 tie in sample order
    assert select_top_frac(REWARDS, 0.01) == [8]  # at least one
    assert sorted(select_top_frac(REWARDS, 1.0)) == list(range(12))


def test_response_nll_is_the_mean_over_real_tokens():
    logprobs = torch.tensor([[-1.0, -3.0, -100.0]])
    assert response_nll(logprobs, torch.tensor([[True, True, False]])).item() == 2.0


def test_nll_step_raises_the_log_probability_of_the_kept_responses():
    tok = build_word_tokenizer(["the movie was great", "the plot was awful"], [])
    cfg = OmegaConf.structured(ModelConfig(name="tiny", hidden_size=32, num_layers=1, num_heads=2,
                                           intermediate_size=64))
    torch.manual_seed(0)
    policy = lora_policy(build_tiny_model(cfg, tok, seed=0), LoraConfig(r=4, alpha=8))
    prompt, response = tok("the movie")["input_ids"], tok(" was great", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt + response + [tok.eos_token_id]])
    kept = (ids, torch.ones_like(ids), len(prompt), torch.ones(1, len(response) + 1, dtype=torch.bool))

    def kept_logp():
        with torch.no_grad():
            return token_logprobs(response_logits(policy, ids, kept[1], kept[2]), ids[:, kept[2]:]).sum().item()

    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    before = kept_logp()
    for _ in range(3):
        nll_step(policy, optimizer, params, kept, None, max_grad_norm=1.0)
    assert kept_logp() > before + 0.1


def test_weights_swapped_holds_the_saved_values_inside_and_restores_the_current_ones_even_on_error():
    params = [torch.nn.Parameter(torch.tensor([1.0, 2.0])), torch.nn.Parameter(torch.tensor([3.0]))]
    saved = [torch.tensor([-1.0, -2.0]), torch.tensor([-3.0])]
    with pytest.raises(RuntimeError), weights_swapped(params, saved):
        assert [p.tolist() for p in params] == [[-1.0, -2.0], [-3.0]]
        raise RuntimeError("sampling failed")
    assert [p.tolist() for p in params] == [[1.0, 2.0], [3.0]]


def test_dealt_spreads_every_piece_once_over_the_hands():
    hands = dealt(list(range(7)), 3, random.Random(0))
    assert [len(hand) for hand in hands] == [3, 2, 2]
    assert sorted(piece for hand in hands for piece in hand) == list(range(7))


def test_every_chunk_of_a_round_samples_from_the_round_start_policy(monkeypatch):
    """2 rounds x 3 chunks: the weights each chunk samples with are the round's start weights (they changed
    in between, since every chunk trains), and the second round starts from the first round's end."""
    tok, policy = tiny_pair_policy()
    params = [p for p in policy.parameters() if p.requires_grad]
    fingerprint = lambda: round(sum(float(p.detach().double().sum()) for p in params), 9)  # noqa: E731
    seen_at_sampling, seen_after_chunk = [], []
    real_sample = rs.sample

    def recording_sample(*args, **kwargs):
        seen_at_sampling.append(fingerprint())
        return real_sample(*args, **kwargs)

    monkeypatch.setattr(rs, "sample", recording_sample)
    algo = dict(name="rs", rounds=2, k=2, select="best", top_frac=0.25, temperature=1.0, accumulate=True,
                lr=1e-2, epochs=1, batch_size=2, max_grad_norm=1.0, chunk_queries=4)
    cfg = OmegaConf.create({"algo": algo, "seed": 0, "budget": {"rm_queries": 24, "max_steps": None},
                            "task": {"max_new_tokens": 4}, "eval": {"batch_size": 8}})
    counters = Counters()

    def reward(prompts, responses, eos_found):  # longer is better; counted as the real reward is
        counters.rm_queries += len(responses)
        return [float(len(response)) for response in responses]

    ctx = SimpleNamespace(
        cfg=cfg, policy=policy, tokenizer=tok, device=torch.device("cpu"), counters=counters, reward=reward,
        task=SimpleNamespace(allowed_token_ids=None, stop_at_eos=True, train_prompts=lambda: [p["prompt"] for p in PAIRS]),
        log=lambda metrics: None, peak_mem_mb=lambda: 0.0, out_of_steps=lambda: False,
        maybe_evaluate=lambda batch_done=True: seen_after_chunk.append(fingerprint()) if batch_done else None)
    start = fingerprint()
    rs.train(ctx)
    # 24 queries / (2 rounds x 2 samples) = 6 prompts a round, 2 prompts (4 queries) a chunk: 3 chunks a round.
    assert len(seen_at_sampling) == 6 and len(seen_after_chunk) == 6
    assert seen_at_sampling[:3] == [start] * 3
    assert seen_at_sampling[3:] == [seen_after_chunk[2]] * 3  # round 2 samples from round 1's end
    assert len(set(seen_after_chunk)) == 6  # every chunk trained, so the weights moved between samplings
    assert counters.rm_queries == 24
