"""CPL: the loss against a hand-computed value, and CPL-KL with lambda = 1 and alpha = beta equal to TRL's DPO
loss and gradient on the same batch (the CPL trainer's own log-probs against TRL's)."""

import math

import pytest
import torch
from conftest import PAIRS, tiny_pair_policy
from omegaconf import OmegaConf

from align_cli.algos import cpl, dpo


def test_cpl_loss_by_hand():
    chosen, rejected = torch.tensor([-2.0, -6.0]), torch.tensor([-4.0, -1.0])
    # alpha 0.5, lambda 0.5: logits 0.5 * -2 - 0.25 * -4 = 0 and 0.5 * -6 - 0.25 * -1 = -2.75
    want = (math.log(2) + math.log1p(math.exp(2.75))) / 2
    assert cpl.cpl_loss(chosen, rejected, alpha=0.5, lam=0.5).item() == pytest.approx(want)


def move_adapter(policy):
    """A train-like move of the adapter (after the trainer is built: TRL snapshots the adapter as its
    reference), the same for every policy built by tiny_pair_policy."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in policy.parameters():
            if p.requires_grad:
                p.add_(0.2 * torch.randn(p.shape, generator=generator))
    policy.eval()


def test_cpl_kl_with_lambda_one_is_dpo(tmp_path):
    # Two identical policies: TRL's DPOTrainer adds a "ref" adapter to the peft model it is given.
    tok, policy = tiny_pair_policy()
    _, dpo_policy = tiny_pair_policy()
    beta = 0.7
    dpo_trainer = dpo.build_trainer(dpo_policy, tok, PAIRS, OmegaConf.structured(dpo.Config(batch_size=2)), beta,
                                    tmp_path / "dpo", seed=0, use_cpu=True)
    cpl_algo = OmegaConf.structured(cpl.Config(batch_size=2, alpha=beta, lam=1.0, kl=True))
    cpl_trainer = dpo.build_trainer(policy, tok, PAIRS, cpl_algo, beta, tmp_path / "cpl", seed=0, use_cpu=True,
                                    trainer_class=cpl.CPLTrainer,
                                    trainer_kwargs={"cpl": cpl_algo, "allowed_token_ids": None})
    move_adapter(policy)
    move_adapter(dpo_policy)
    batch = next(iter(dpo_trainer.get_train_dataloader()))
    with torch.no_grad():
        want = dpo_trainer.compute_loss(dpo_policy, batch).item()
        got = cpl_trainer.compute_loss(policy, batch).item()
    assert abs(want - math.log(2)) > 1e-3  # not the trivial zero-margin value
    assert got == pytest.approx(want, rel=1e-5)
    # and the same gradient: the loss value alone would pass with the policy's log-probs detached
    def adapter_grads(trainer, model) -> dict[str, torch.Tensor]:
        model.zero_grad()
        trainer.compute_loss(model, batch).backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()
                if p.requires_grad and ".default." in name}

    want_grads, got_grads = adapter_grads(dpo_trainer, dpo_policy), adapter_grads(cpl_trainer, policy)
    assert want_grads.keys() == got_grads.keys() and want_grads
    assert any(grad.abs().max() > 1e-6 for grad in got_grads.values())
    for name, grad in got_grads.items():
        torch.testing.assert_close(grad, want_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    cpl_trainer.cpl = OmegaConf.structured(cpl.Config(alpha=beta, lam=1.0, kl=False))
    with torch.no_grad():
        assert cpl_trainer.compute_loss(policy, batch).item() != pytest.approx(want, rel=1e-3)  # kl matters
