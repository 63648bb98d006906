"""CPL (Hejna et al. 2023, "Contrastive Preference Learning: Learning from Human Feedback without RL").

With A(x, y) = alpha * sum_t log pi(y_t | x, y_<t) (no discount, no length normalisation, as in the
official code) the loss on a preference pair is

    -log sigmoid(A(x, y_w) - lambda * A(x, y_l)) + bc_coeff * NLL(y_w)

Reference-free by default; `kl=true` uses log pi - log pi_ref in A (the paper's CPL-KL), which with
lambda = 1 and alpha = beta is DPO's loss exactly (tests/test_cpl.py checks it against TRL's DPO).
`lambda` < 1 is the conservative bias; `bc_coeff` 1 with lambda 1 is the paper's CPL(BC). NLL(y_w) is the
summed negative log-likelihood of the chosen completion, averaged over pairs.

Built on TRL's DPOTrainer (its data pipeline, batching and logging): `compute_loss` is replaced, and the
DPO train loop (dpo.train_on_pairs) runs it. Summed log-probabilities favour short responses: watch
eval/response_len.

Sections: config, loss, update, train loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from trl import DPOTrainer

from align_cli.algos.dpo import PreferenceConfig, masked_completion_logps, train_on_pairs
from align_cli.config import opt
from align_cli.errors import UserError
from align_cli.rollout import reference

ONLINE = False  # consumes the task's preference pairs, never queries the reward during training


# ------------------------------------------------------------------------------------------- config
@dataclass
class Config(PreferenceConfig):
    name: str = opt("cpl", "algorithm name")
    alpha: float = opt(0.1, "KL knob with kl=true: temperature of A(x, y) = alpha * sum_t log pi / pi_ref (larger stays closer to pi_ref); reference-free (kl=false), A = alpha * sum_t log pi and alpha barely moves KL (0.01-1 measured at 1.3-1.8 nats on sentiment); the paper's default 0.1")
    lam: float = opt(0.5, "conservative bias lambda in (0, 1] on the rejected advantage (0.5: the paper's CPL)")
    bc_coeff: float = opt(0.0, "weight of the chosen responses' NLL (CPL(BC): 1 with lam 1)")
    kl: bool = opt(False, "CPL-KL: A uses log pi - log pi_ref, so the implicit prior is the reference policy instead of uniform (lam 1 and alpha = beta give DPO's loss)")


# ------------------------------------------------------------------------------------------- loss
def cpl_loss(chosen: torch.Tensor, rejected: torch.Tensor, alpha: float, lam: float) -> torch.Tensor:
    """mean over pairs of -log sigmoid(alpha * chosen - lam * alpha * rejected), on summed log-probs (or
    log-ratios, for CPL-KL)."""
    return -F.logsigmoid(alpha * chosen - lam * alpha * rejected).mean()


# ------------------------------------------------------------------------------------------- update
class CPLTrainer(DPOTrainer):
    """DPOTrainer whose loss is CPL's. TRL's collator stacks chosen then rejected completions in one batch."""

    def __init__(self, *args, cpl: Config, allowed_token_ids: list[int] | None, **kwargs):
        super().__init__(*args, **kwargs)
        self.cpl = cpl
        self.allowed = torch.tensor(allowed_token_ids) if allowed_token_ids is not None else None

    def _logps(self, model, inputs) -> torch.Tensor:
        # Fixed-length tasks (an allowed-token set) never emit EOS: TRL's appended EOS is not scored there.
        return masked_completion_logps(model, inputs, self.allowed, self.processing_class.eos_token_id,
                                       skip_eos=self.allowed is not None)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        logps = self._logps(model, inputs)
        logp_chosen, logp_rejected = logps.chunk(2)
        scores = logps
        if self.cpl.kl:
            with torch.no_grad(), reference(model):
                ref_logps = self._logps(model, inputs)
            scores = logps - ref_logps  # outside no_grad: the policy's log-probs keep their gradient
        chosen, rejected = scores.chunk(2)
        loss_cpl = cpl_loss(chosen, rejected, self.cpl.alpha, self.cpl.lam)
        loss = loss_cpl + self.cpl.bc_coeff * (-logp_chosen).mean()
        mode = "train" if model.training else "eval"
        metrics = self._metrics[mode]
        metrics["cpl_loss"].append(float(loss_cpl))
        metrics["cpl_accuracy"].append(float((chosen > self.cpl.lam * rejected).float().mean()))
        metrics["logp_chosen"].append(float(logp_chosen.mean()))
        metrics["logp_rejected"].append(float(logp_rejected.mean()))
        return (loss, {}) if return_outputs else loss


# ------------------------------------------------------------------------------------------- train loop
def train(ctx) -> None:
    algo = ctx.cfg.algo
    if not 0.0 < algo.lam <= 1.0:
        raise UserError(f"algo.lam={algo.lam} must be in (0, 1]")
    train_on_pairs(ctx, beta=algo.alpha, trainer_class=CPLTrainer,
                   trainer_kwargs={"cpl": algo, "allowed_token_ids": ctx.task.allowed_token_ids})
