"""The rollout engine: determinism, EOS masks, log-probs that match an independent forward pass, and the
reference = adapter disabled."""

import pytest
import torch
from omegaconf import OmegaConf

from align_cli import rollout
from align_cli.config import LoraConfig, ModelConfig
from align_cli.models import build_tiny_model, build_word_tokenizer, lora_policy

WORDS = "the movie was good bad great awful and plot acting ."


@pytest.fixture(scope="module")
def tiny():
    tok = build_word_tokenizer([WORDS], [])
    cfg = OmegaConf.structured(ModelConfig(name="tiny", hidden_size=32, num_layers=2, num_heads=2,
                                           intermediate_size=64))
    base = build_tiny_model(cfg, tok, seed=0)
    policy = lora_policy(base, LoraConfig(r=4, alpha=8, modules_to_save=["lm_head"]))
    return tok, policy


def test_sampling_is_deterministic_per_seed_and_leaves_global_rng(tiny):
    tok, policy = tiny
    prompts = ["the movie", "the plot was", "acting"]
    state = torch.random.get_rng_state()
    a = rollout.sample(policy, tok, prompts, 8, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())
    b = rollout.sample(policy, tok, prompts, 8, seed=3)
    c = rollout.sample(policy, tok, prompts, 8, seed=4)
    assert a.responses == b.responses and torch.equal(a.input_ids, b.input_ids)
    assert a.responses != c.responses


def test_response_mask_stops_at_first_eos_and_counters_count(tiny):
    tok, policy = tiny
    counters = rollout.Counters()
    batch = rollout.sample(policy, tok, ["the movie"] * 64, 12, seed=0, counters=counters)
    eos = tok.eos_token_id
    for row, mask, found in zip(batch.response_ids.tolist(), batch.response_mask.tolist(),
                                batch.eos_found.tolist(), strict=True):
        n = sum(mask)
        assert mask == [True] * n + [False] * (len(mask) - n)
        if found:
            assert row[n - 1] == eos and eos not in row[: n - 1]
        else:
            assert n == 12 and eos not in row
    assert counters.samples_generated == 64
    assert counters.tokens_generated == int(batch.response_mask.sum())
    assert all(r.startswith(" ") for r in batch.responses)  # word separator first: prompt + response is the text


def test_scores_match_an_independent_forward_and_reference_is_the_base(tiny):
    tok, policy = tiny
    batch = rollout.sample(policy, tok, ["the movie was", "plot"], 6, seed=1)
    scores = rollout.score(policy, batch)
    # At init (LoRA B = 0, lm_head copy unchanged) the policy is the reference.
    assert torch.allclose(scores.logprobs, scores.ref_logprobs, atol=1e-6)
    # Perturb the adapter and the trained lm_head copy: the policy moves, the reference must not.
    with torch.no_grad():
        for p in policy.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn_like(p))
    moved = rollout.score(policy, batch)
    assert torch.allclose(moved.ref_logprobs, scores.ref_logprobs, atol=1e-5)
    assert not torch.allclose(moved.logprobs, scores.logprobs, atol=1e-3)
    # Independent check, one sequence at a time without padding.
    for i in range(2):
        mask = batch.attention_mask[i].bool()
        ids = batch.input_ids[i][mask].unsqueeze(0)
        n_resp = int(batch.response_mask[i].sum())
        with torch.no_grad():
            logits = policy(input_ids=ids).logits[0].float()
        logp = torch.log_softmax(logits, -1)
        want = [logp[ids.shape[1] - n_resp - 1 + t, ids[0, ids.shape[1] - n_resp + t]].item() for t in range(n_resp)]
        assert moved.logprobs[i, :n_resp].tolist() == pytest.approx(want, abs=1e-4)


def test_allowed_tokens_restrict_sampling_and_scoring(tiny):
    tok, policy = tiny
    allowed = tok.convert_tokens_to_ids(["good", "bad"])
    batch = rollout.sample(policy, tok, ["the movie"] * 16, 3, seed=0, allowed_token_ids=allowed,
                           stop_at_eos=False)
    assert set(batch.response_ids.flatten().tolist()) <= set(allowed)
    assert batch.response_mask.all()
    scores = rollout.score(policy, batch, allowed)
    # With two allowed tokens the entropy is at most log 2.
    assert float(scores.entropy.max()) <= torch.log(torch.tensor(2.0)).item() + 1e-5


def test_forward_tokens_count_every_pass_of_a_hooked_decoder_and_pause(tiny):
    tok, policy = tiny
    counters = rollout.Counters()
    batch = rollout.sample(policy, tok, ["the movie", "the plot was"], 5, seed=0)
    counters.count_forward_tokens(rollout.decoder_of(policy))
    ids, mask = batch.input_ids, batch.attention_mask
    rollout.response_logits(policy, ids, mask, batch.prompt_width)  # policy: B x (P + T) positions
    assert counters.forward_tokens == ids.numel()
    rollout.score(policy, batch)  # policy and reference (adapter off): both through the same decoder
    assert counters.forward_tokens == 3 * ids.numel()
    with counters.forward_counting_paused():
        rollout.score(policy, batch)
    assert counters.forward_tokens == 3 * ids.numel()
    assert counters.as_metrics()["progress/forward_tokens"] == 3 * ids.numel()


def test_generation_counts_prompt_then_one_position_per_new_token(tiny):
    tok, policy = tiny
    counters = rollout.Counters()
    counters.count_forward_tokens(rollout.decoder_of(policy))
    prompts = ["the movie", "the plot was", "acting"]
    batch = rollout.sample(policy, tok, prompts, 6, seed=2, stop_at_eos=False)
    prompt_width = batch.prompt_width
    # With a KV cache: one pass over the left-padded prompts, then one position per sequence per new token.
    assert counters.forward_tokens == len(prompts) * prompt_width + len(prompts) * (6 - 1)
