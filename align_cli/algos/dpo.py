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

from transformers import TrainerCallback

from align_cli.config import AlgoConfig, opt

ONLINE = False  # consumes the task's preference pairs, never queries the reward during training


# ------------------------------------------------------------------------------------------- config
@dataclass
class Config(AlgoConfig):
    name: str = opt("dpo", "algorithm name")
    beta: float | None = opt(None, "DPO beta (None: task.kl_coef, the task's shared KL coefficient)")
    loss_type: str = opt("sigmoid", "TRL DPO loss type (sigmoid = the DPO paper's loss)")
    lr: float = opt(1e-3, "learning rate (LoRA + lm_head; tuned here on the tiny model)")
    epochs: float = opt(2.0, "passes over the preference pairs")
    batch_size: int = opt(64, "pairs per optimizer step")
    warmup_ratio: float = opt(0.1, "linear warm-up share of the steps")
    lr_scheduler: str = opt("cosine", "learning-rate schedule (transformers name)")
    weight_decay: float = opt(0.0, "AdamW weight decay")
    max_grad_norm: float = opt(1.0, "gradient clipping")
    logging_steps: int = opt(5, "forward TRL's logs to the tracker every N steps")


# ------------------------------------------------------------------------------------------- loss
# DPO's loss is TRL's: -log sigmoid(beta * [(log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))]),
# with sequence log-probs summed over completion tokens (tests/test_dpo.py checks it against that formula).


# ------------------------------------------------------------------------------------------- update
class TrackerCallback(TrainerCallback):
    """Forwards TRL's logs as train/* with the shared progress counters, and runs the eval harness."""

    def __init__(self, ctx, pairs_per_step: int, tokens_per_pair: float):
        self.ctx, self.pairs_per_step, self.tokens_per_pair = ctx, pairs_per_step, tokens_per_pair
        self.train_s = 0.0
        self._step_started = None

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.train_s += time.perf_counter() - self._step_started
        self.ctx.counters.optimizer_steps = state.global_step
        self.ctx.counters.pref_pairs += self.pairs_per_step
        self.ctx.maybe_evaluate()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs:
            return
        metrics = {"train/" + k.replace("/", "_"): v for k, v in logs.items()
                   if isinstance(v, (int, float)) and not k.startswith(("train_", "total_flos"))}
        if self.train_s > 0:
            metrics["perf/tokens_per_s"] = self.ctx.counters.pref_pairs * self.tokens_per_pair / self.train_s
        metrics["perf/peak_mem_mb"] = self.ctx.peak_mem_mb()
        self.ctx.log(metrics)


# ------------------------------------------------------------------------------------------- train loop
def build_trainer(policy, tokenizer, pairs: list[dict], algo: Config, beta: float, output_dir, seed: int,
                  use_cpu: bool, max_steps: int | None = None, callbacks=()):
    """TRL's DPOTrainer on the LoRA policy; no ref_model: the reference is the adapter disabled."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    data = Dataset.from_list([{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]}
                              for p in pairs])
    args = DPOConfig(
        output_dir=str(output_dir),
        beta=beta,
        loss_type=[algo.loss_type],
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
    return DPOTrainer(model=policy, args=args, train_dataset=data, processing_class=tokenizer,
                      callbacks=list(callbacks))


def train(ctx) -> None:
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
        beta=algo.beta if algo.beta is not None else cfg.task.kl_coef,
        output_dir=ctx.run_dir / "trainer", seed=cfg.seed, use_cpu=ctx.device.type == "cpu",
        max_steps=cfg.budget.max_steps, callbacks=[TrackerCallback(ctx, algo.batch_size, tokens_per_pair)],
    )
    trainer.train()
    shutil.rmtree(ctx.run_dir / "trainer", ignore_errors=True)  # save_strategy="no": only empty scaffolding
