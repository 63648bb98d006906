"""DPO (Rafailov et al. 2023, "Direct Preference Optimization") through TRL's DPOTrainer.

The policy is the LoRA-wrapped base; with a peft model and no ref_model, DPOTrainer computes the
reference log-probs with the adapter disabled, so no second copy of the model is held. TRL runs with
report_to="none"; a TrainerCallback forwards its logs into the project's tracker (`train/*`) and calls
the shared eval harness every `eval.every` optimizer steps.

Sections: config, loss (TRL's), update (TRL's trainer step), train loop.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import TrainerCallback
from trl import DPOTrainer

from align_cli.config import AlgoConfig, opt
from align_cli.models import console_progress
from align_cli.rollout import mask_logits, reference

ONLINE = False  # consumes the task's preference pairs, never queries the reward during training


# ------------------------------------------------------------------------------------------- config
@dataclass
class PreferenceConfig(AlgoConfig):
    """Training fields shared by the algorithms built on TRL's DPOTrainer (dpo, cpl)."""

    lr: float = opt(3e-4, "learning rate (LoRA + lm_head; measured here: 1e-3 broke the text with 8000 sentiment pairs)")
    epochs: float = opt(2.0, "passes over the preference pairs")
    batch_size: int = opt(64, "pairs per optimizer step")
    warmup_ratio: float = opt(0.1, "linear warm-up share of the steps")
    lr_scheduler: str = opt("cosine", "learning-rate schedule (transformers name)")
    weight_decay: float = opt(0.0, "AdamW weight decay")
    max_grad_norm: float = opt(1.0, "gradient clipping")
    logging_steps: int = opt(5, "forward TRL's logs to the tracker every N steps")


@dataclass
class Config(PreferenceConfig):
    name: str = opt("dpo", "algorithm name")
    beta: float | None = opt(None, "KL knob: DPO beta, the KL coefficient of the implicit objective; larger stays closer to pi_ref (None: task.kl_coef)")
    loss_type: str = opt("sigmoid", "TRL DPO loss type (sigmoid = the DPO paper's loss)")


# ------------------------------------------------------------------------------------------- loss
# DPO's loss: -log sigmoid(beta * [(log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))]) with
# sequence log-probs summed over completion tokens. TRL computes it; tests/test_dpo.py checks it against
# that formula. Tasks that restrict responses to a token set (task=tree) need the same logits mask in
# training as in sampling and eval, or DPO moves mass onto tokens the policy can never emit: there the
# loss below replaces TRL's, on masked log-probs (fixed-length responses: TRL's appended EOS is not scored).
def dpo_loss(chosen_logratio: torch.Tensor, rejected_logratio: torch.Tensor, beta: float) -> torch.Tensor:
    return -F.logsigmoid(beta * (chosen_logratio - rejected_logratio)).mean()


def masked_completion_logps(model, inputs: dict, allowed: torch.Tensor | None, eos_token_id: int,
                            skip_eos: bool = True) -> torch.Tensor:
    """Sequence log-probs of the completions under `model`, with logits restricted to `allowed` (None: all
    tokens); `skip_eos` leaves TRL's appended EOS unscored (fixed-length tasks never emit it)."""
    ids, attention = inputs["input_ids"], inputs["attention_mask"]
    logits = model(input_ids=ids, attention_mask=attention, use_cache=False).logits[:, :-1].float()
    logp = torch.log_softmax(mask_logits(logits, allowed), -1)
    targets = ids[:, 1:]
    scored = inputs["completion_mask"][:, 1:].bool()
    if skip_eos:
        scored = scored & (targets != eos_token_id)
    token_logp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return torch.where(scored, token_logp, torch.zeros_like(token_logp)).sum(-1)


# ------------------------------------------------------------------------------------------- update
class MaskedDPOTrainer(DPOTrainer):
    """DPOTrainer whose loss uses log-probs under the task's allowed-token mask (see dpo_loss above)."""

    def __init__(self, *args, allowed_token_ids: list[int], **kwargs):
        super().__init__(*args, **kwargs)
        self.allowed = torch.tensor(allowed_token_ids)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        eos = self.processing_class.eos_token_id
        logps = masked_completion_logps(model, inputs, self.allowed, eos)
        with torch.no_grad(), reference(model):
            ref_logps = masked_completion_logps(model, inputs, self.allowed, eos)
        chosen, rejected = (logps - ref_logps).chunk(2)
        loss = dpo_loss(chosen, rejected, self.beta)
        mode = "train" if model.training else "eval"
        self._metrics[mode]["rewards/margins"].append(float(self.beta * (chosen - rejected).mean()))
        self._metrics[mode]["rewards/accuracies"].append(float((chosen > rejected).float().mean()))
        return (loss, {}) if return_outputs else loss


class TrackerCallback(TrainerCallback):
    """Forwards TRL's logs as train/* with the shared progress counters, and runs the eval harness."""

    def __init__(self, ctx, tokens_per_pair: float, num_pairs: int):
        self.ctx, self.tokens_per_pair, self.num_pairs = ctx, tokens_per_pair, num_pairs
        self.train_s = 0.0
        self._step_started = None

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.train_s += time.perf_counter() - self._step_started
        counters = self.ctx.counters
        counters.optimizer_steps = state.global_step
        # state.epoch (fractional, set before this callback) counts passes; a second pass adds no new pairs.
        counters.data_passes = float(state.epoch)
        counters.pref_pairs_trained = round(state.epoch * self.num_pairs)
        counters.pref_pairs = min(counters.pref_pairs_trained, self.num_pairs)
        self.ctx.maybe_evaluate()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs:
            return
        metrics = {"train/" + k.replace("/", "_"): v for k, v in logs.items()
                   if isinstance(v, (int, float)) and not k.startswith(("train_", "total_flos"))}
        if self.train_s > 0:
            metrics["perf/tokens_per_s"] = self.ctx.counters.pref_pairs_trained * self.tokens_per_pair / self.train_s
        metrics["perf/peak_mem_mb"] = self.ctx.peak_mem_mb()
        self.ctx.log(metrics)


# ------------------------------------------------------------------------------------------- train loop
def build_trainer(policy, tokenizer, pairs: list[dict], algo: PreferenceConfig, beta: float, output_dir, seed: int,
                  use_cpu: bool, max_steps: int | None = None, callbacks=(), allowed_token_ids=None,
                  trainer_class=None, trainer_kwargs=None):
    """TRL's DPOTrainer (or `trainer_class`, a subclass) on the LoRA policy; no ref_model: the reference is
    the adapter disabled."""
    from datasets import Dataset
    from trl import DPOConfig

    data = Dataset.from_list([{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]}
                              for p in pairs])
    args = DPOConfig(
        output_dir=str(output_dir),
        beta=beta,
        loss_type=[getattr(algo, "loss_type", "sigmoid")],
        learning_rate=algo.lr,
        num_train_epochs=algo.epochs,
        max_steps=max_steps or -1,
        per_device_train_batch_size=algo.batch_size,
        warmup_steps=algo.warmup_ratio,  # a float < 1 is a share of the steps
        lr_scheduler_type=algo.lr_scheduler,
        weight_decay=algo.weight_decay,
        max_grad_norm=algo.max_grad_norm,
        logging_steps=algo.logging_steps,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        seed=seed,
        data_seed=seed,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        use_cpu=use_cpu,
        dataloader_num_workers=0,
        max_length=256,
        precompute_ref_log_probs=False,
    )
    kwargs = dict(model=policy, args=args, train_dataset=data, processing_class=tokenizer, callbacks=list(callbacks))
    if trainer_class is None:
        trainer_class = DPOTrainer if allowed_token_ids is None else MaskedDPOTrainer
        trainer_kwargs = {} if allowed_token_ids is None else {"allowed_token_ids": allowed_token_ids}
    return console_progress(trainer_class(**kwargs, **(trainer_kwargs or {})))


def train(ctx) -> None:
    algo = ctx.cfg.algo
    train_on_pairs(ctx, beta=algo.beta if algo.beta is not None else ctx.cfg.task.kl_coef)


def train_on_pairs(ctx, beta: float, trainer_class=None, trainer_kwargs=None) -> None:
    """The offline loop shared with cpl: the task's training pairs (capped at budget.pref_pairs) through a
    DPOTrainer (sub)class, logs forwarded to the tracker, evals every eval.every steps."""
    cfg, algo = ctx.cfg, ctx.cfg.algo
    pairs = ctx.artefacts.pairs("train")
    if cfg.budget.pref_pairs is not None:
        pairs = pairs[: cfg.budget.pref_pairs]
    sample = pairs[:256]
    tokens_per_pair = sum(
        2 * len(ctx.tokenizer(p["prompt"])["input_ids"]) + len(ctx.tokenizer(p["chosen"] + p["rejected"])["input_ids"])
        for p in sample
    ) / max(1, len(sample))
    trainer = build_trainer(
        ctx.policy, ctx.tokenizer, pairs, algo,
        beta=beta, output_dir=ctx.run_dir / "trainer", seed=cfg.seed, use_cpu=ctx.device.type == "cpu",
        max_steps=cfg.budget.max_steps, callbacks=[TrackerCallback(ctx, tokens_per_pair, len(pairs))],
        allowed_token_ids=ctx.task.allowed_token_ids, trainer_class=trainer_class, trainer_kwargs=trainer_kwargs,
    )
    trainer.train()
    shutil.rmtree(ctx.run_dir / "trainer", ignore_errors=True)  # save_strategy="no": only empty scaffolding
