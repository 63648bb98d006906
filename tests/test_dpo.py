"""DPO as configured here (TRL DPOTrainer, LoRA policy, reference = adapter disabled, beta) computes the
DPO paper's loss: checked against the formula on sequence log-probs computed independently."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import PAIRS, tiny_pair_policy
from omegaconf import OmegaConf

from align_cli.algos.dpo import Config, build_trainer
from align_cli.config import ModelConfig
from align_cli.models import build_tiny_model, build_word_tokenizer


def completion_logp(model, tok, prompt, completion):
    prompt_ids = tok(prompt)["input_ids"]
    ids = tok(prompt + completion + tok.eos_token)["input_ids"]
    x = torch.tensor([ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=x).logits[0].float(), -1)
    return sum(logp[t - 1, ids[t]].item() for t in range(len(prompt_ids), len(ids)))


def test_dpo_loss_matches_the_formula(tmp_path):
    tok, policy = tiny_pair_policy()
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


def test_masked_dpo_loss_scores_only_allowed_tokens_and_skips_eos():
    from align_cli.algos.dpo import dpo_loss, masked_completion_logps

    tok = build_word_tokenizer(["q0 t0 t1 t2"], [])
    model_cfg = OmegaConf.structured(ModelConfig(name="tiny", hidden_size=16, num_layers=1, num_heads=2,
                                                 intermediate_size=32))
    model = build_tiny_model(model_cfg, tok, seed=1).eval()
    allowed = tok.convert_tokens_to_ids(["t0", "t1", "t2"])
    eos = tok.eos_token_id
    seq = tok("q0 t2 t0")["input_ids"] + [eos]  # bos q0 | t2 t0 eos
    inputs = {"input_ids": torch.tensor([seq]), "attention_mask": torch.ones(1, len(seq), dtype=torch.long),
              "completion_mask": torch.tensor([[0, 0, 1, 1, 1]])}
    got = masked_completion_logps(model, inputs, torch.tensor(allowed), eos).item()
    with torch.no_grad():
        logits = model(input_ids=inputs["input_ids"]).logits[0]
    want = 0.0
    for pos in (2, 3):  # t2 and t0; EOS (pos 4) is not scored
        sub = logits[pos - 1, allowed]
        want += (sub[allowed.index(seq[pos])] - torch.logsumexp(sub, 0)).item()
    assert got == pytest.approx(want, abs=1e-5)
    # dpo_loss: -log sigmoid(beta * (a - b)) averaged
    a, b = torch.tensor([0.3, -0.2]), torch.tensor([0.1, 0.4])
    want_loss = sum(-math.log(1 / (1 + math.exp(-2.0 * (x - y)))) for x, y in zip([0.3, -0.2], [0.1, 0.4], strict=True)) / 2
    assert dpo_loss(a, b, 2.0).item() == pytest.approx(want_loss, rel=1e-6)
