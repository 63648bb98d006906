"""Rejection sampling: selection on a fixed scored batch, and the NLL step raising the kept responses'
log-probability."""

import torch
from omegaconf import OmegaConf

from align_cli.algos.rs import nll_step, response_nll, select_best, select_top_frac
from align_cli.config import LoraConfig, ModelConfig
from align_cli.models import build_tiny_model, build_word_tokenizer, lora_policy
from align_cli.rollout import response_logits, token_logprobs

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
