"""Rewards. One interface (`RewardFn`) over three sources: a learned Bradley-Terry reward model (TRL
RewardTrainer on the task's preference pairs), the task's gold reward, and any sequence-classification
reward model from a path. Every call is counted (`progress/rm_queries`)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from align_cli.errors import UserError
from align_cli.models import console_progress
from align_cli.rollout import Counters


class RewardModelScorer:
    """Scores prompt + response (+ EOS, as RewardTrainer saw its pairs) with a sequence classifier."""

    def __init__(self, path: str | Path, device: torch.device, batch_size: int = 256):
        from transformers import AutoModelForSequenceClassification

        from align_cli.models import load_tokenizer

        self.tokenizer = load_tokenizer(path)
        try:
            self.model = AutoModelForSequenceClassification.from_pretrained(str(path), dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load a reward model from {str(path)!r}: {str(exc).splitlines()[0]}") from exc
        if self.model.config.num_labels != 1:
            raise UserError(f"reward model {str(path)!r} has num_labels={self.model.config.num_labels}; need 1")
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.to(device).eval()
        self.device, self.batch_size = device, batch_size

    @torch.no_grad()
    def __call__(self, prompts: list[str], responses: list[str]) -> list[float]:
        eos = self.tokenizer.eos_token
        texts = [p + r + eos for p, r in zip(prompts, responses, strict=True)]
        out: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[start : start + self.batch_size], return_tensors="pt", padding=True)
            enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            out.extend(self.model(**enc).logits[:, 0].float().tolist())
        return out


class RewardFn:
    """The online reward: counts queries, applies the missing-EOS penalty, optional whitening and clipping."""

    def __init__(self, name: str, score_fn, cfg, counters: Counters | None = None):
        self.name, self.score_fn, self.cfg = name, score_fn, cfg
        self.counters = counters or Counters()
        self._count, self._mean, self._m2 = 0, 0.0, 0.0

    def __call__(self, prompts: list[str], responses: list[str], eos_found: list[bool] | None = None) -> list[float]:
        rewards = self.preference(prompts, responses, eos_found)
        if self.cfg.whiten:
            rewards = self._whiten(rewards)
        if self.cfg.clip is not None:
            rewards = [max(-self.cfg.clip, min(self.cfg.clip, r)) for r in rewards]
        return rewards

    def preference(self, prompts: list[str], responses: list[str], eos_found: list[bool] | None = None,
                   count: bool = True) -> list[float]:
        """The reward's ranking of responses: the score minus the missing-EOS penalty, before whitening and
        clipping (which only rescale it or create ties). `count=False` is for analysis, not for queries an
        algorithm makes (best-of-N's exact distribution on task=tree)."""
        rewards = list(self.score_fn(prompts, responses))
        if count:
            self.counters.rm_queries += len(rewards)
        if self.cfg.missing_eos_penalty is not None and eos_found is not None:
            rewards = [r - self.cfg.missing_eos_penalty * (not e) for r, e in zip(rewards, eos_found, strict=True)]
        return rewards

    def _whiten(self, rewards: list[float]) -> list[float]:
        for r in rewards:  # Welford running moments
            self._count += 1
            delta = r - self._mean
            self._mean += delta / self._count
            self._m2 += delta * (r - self._mean)
        std = math.sqrt(self._m2 / max(1, self._count - 1)) if self._count > 1 else 1.0
        return [(r - self._mean) / (std + 1e-8) for r in rewards]


def pair_accuracy(chosen: list[float], rejected: list[float]) -> float:
    """Share of pairs where the chosen response scores higher (ties count half)."""
    wins = sum(1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected, strict=True))
    return wins / max(1, len(chosen))


def train_reward_model(base_dir: Path, train_pairs: list[dict], cfg, out_dir: Path, seed: int,
                       device: torch.device) -> None:
    """Bradley-Terry reward model initialised from the base policy, trained with TRL's RewardTrainer."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    from align_cli.models import load_tokenizer

    tokenizer = load_tokenizer(base_dir)
    model = AutoModelForSequenceClassification.from_pretrained(str(base_dir), num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    args = RewardConfig(
        output_dir=str(out_dir / "rm_trainer"),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.lr,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        max_length=128,
        logging_steps=25,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        seed=seed,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        use_cpu=device.type == "cpu",
        dataloader_num_workers=0,
    )
    data = Dataset.from_list([{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]}
                              for p in train_pairs])
    trainer = RewardTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    console_progress(trainer).train()
    trainer.model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))


def make_reward(cfg, task, rm_dir: Path | None, device: torch.device, counters: Counters) -> RewardFn:
    """The reward algorithms optimise (`reward=learned|gold|hf`)."""
    if cfg.name == "gold":
        if not task.has_gold:
            raise UserError(f"reward=gold needs a task with a gold reward; task={task.name} has none "
                            "(use reward=learned or reward=hf)")
        return RewardFn("gold", task.gold_reward, cfg, counters)
    if cfg.name in ("learned", "hf"):
        scorer = RewardModelScorer(rm_dir if cfg.name == "learned" else cfg.path, device)
        counters.count_forward_tokens(scorer.model)
        return RewardFn(cfg.name, scorer, cfg, counters)
    raise UserError(f"reward={cfg.name!r} is not one of: learned, gold, hf")
