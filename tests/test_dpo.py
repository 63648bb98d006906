"""DPO as configured here (TRL DPOTrainer, LoRA policy, reference = adapter disabled, beta) computes the
DPO paper's loss: checked against the formula on sequence log-probs computed independently."""

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from align_cli.algos.dpo import Config, build_trainer
from align_cli.config import LoraConfig, ModelConfig
from align_cli.models import build_tiny_model, build_word_tokenizer, lora_policy

PAIRS = [
    {"prompt": "the movie", "chosen": " was great .", "rejected": " was awful ."},
    {"prompt": "the plot was", "chosen": " good .", "rejected": " not good at all ."},
]


def completion_logp(model, tok, prompt, completion):
    prompt_ids = tok(prompt)["input_ids"]
    ids = tok(prompt + completion + tok.eos_token)["input_ids"]
    x = torch.tensor([ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=x).logits[0].float(), -1)
    return sum(logp[t - 1, ids[t]].item() for t in range(len(prompt_ids), len(ids)))


def test_dpo_loss_matches_the_formula(tmp_path):
    tok = build_word_tokenizer([p[k] for p in PAIRS for k in ("prompt", "chosen", "rejected")] + ["at all"], [])
    model_cfg = OmegaConf.structured(ModelConfig(name="tiny", hidden_size=32, num_layers=1, num_heads=2,
                                                 intermediate_size=64))
    torch.manual_seed(0)
    policy = lora_policy(build_tiny_model(model_cfg, tok, seed=0), LoraConfig(r=4, alpha=8,
                                                                            modules_to_save=["lm_head"]))
    beta = 0.7
    algo = OmegaConf.structured(Config(batch_size=2))
    trainer = build_trainer(policy, tok, PAIRS, algo, beta, tmp_path, seed=0, use_cpu=True)
    # Given a peft model, TRL keeps a frozen copy of the adapter as it was ("ref"); a fresh adapter is the
    # identity, so that reference must equal the base with the adapter disabled, which we compute below.
    with torch.no_grad():  # train-like move of the policy so the log-ratios are not zero
        for p in policy.parameters():
            if p.requires_grad:
                p.add_(0.2 * torch.randn_like(p))
    batch = next(iter(trainer.get_train_dataloader()))
    policy.eval()
    with torch.no_grad():
        got = trainer.compute_loss(policy, batch).item()

    margins = []
    for pair in PAIRS:
        ratio = {}
        for k in ("chosen", "rejected"):
            pi = completion_logp(policy, tok, pair["prompt"], pair[k])
            with policy.disable_adapter():
                ref = completion_logp(policy, tok, pair["prompt"], pair[k])
            ratio[k] = pi - ref
        margins.append(ratio["chosen"] - ratio["rejected"])
    want = float(-F.logsigmoid(beta * torch.tensor(margins)).mean())
    assert abs(margins[0]) > 1e-3  # the check is not vacuous
    assert got == pytest.approx(want, rel=1e-4, abs=1e-5)
