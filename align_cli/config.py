"""Structured configs for every config group, registered in Hydra's ConfigStore.

Every field carries a one-line help (``metadata["help"]``), as TRL's config dataclasses do. Fields that
change a cached artefact also carry ``metadata["stage"]``: the artefact they feed ("base" = tokenizer +
SFT policy, "pairs" = preference pairs, "rm" = reward model). The cache key of a stage hashes exactly
the fields of that stage and of the stages before it (see ``pipeline.stage_key``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

STAGES = ("base", "pairs", "rm")


def opt(default: Any, help: str, stage: str | None = None, **kwargs: Any) -> Any:
    """A dataclass field with a help string (and the cached stage it feeds, if any)."""
    metadata = {"help": help}
    if stage is not None:
        assert stage in STAGES, stage
        metadata["stage"] = stage
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata, **kwargs)
    return field(default=default, metadata=metadata, **kwargs)


# ----------------------------------------------------------------------------------------------- tasks
@dataclass
class TaskConfig:
    name: str = opt(MISSING, "task name (config group option)", stage="base")
    kl_coef: float = opt(0.1, "KL coefficient of the task's KL-regularised objective; algorithms default to it")
    rm_queries: int = opt(8000, "the task's online budget: default of budget.rm_queries, shared by every online algorithm")
    target_kl: float | None = opt(None, "per-token KL(pi || pi_ref) budget in nats for algorithms that adapt their KL coefficient (SAC with algo.autotune_alpha=true, PPO with algo.adaptive_kl=true); None: they need their own algo.target_kl")
    max_new_tokens: int = opt(24, "response length limit in tokens (sampling, pairs and eval)", stage="pairs")
    num_eval_prompts: int = opt(512, "held-out eval prompts (one sample each per eval)")
    data_seed: int = opt(0, "seed of the synthetic data (corpus, prompts, pairs)", stage="base")
    num_sft_examples: int = opt(20000, "SFT corpus size (synthetic tasks)", stage="base")
    sft_epochs: float = opt(3.0, "SFT epochs over the corpus unless model.sft_epochs is set", stage="base")
    num_pairs: int = opt(2000, "preference pairs built for offline algorithms and the reward model", stage="pairs")


@dataclass
class SentimentTaskConfig(TaskConfig):
    name: str = opt("sentiment", "task name", stage="base")
    prompt_min_tokens: int = opt(2, "shortest prompt (first tokens of a held-out review)", stage="pairs")
    prompt_max_tokens: int = opt(8, "longest prompt", stage="pairs")
    samples_per_prompt: int = opt(2, "SFT samples per pair prompt; disjoint adjacent samples form pairs",
                                  stage="pairs")
    label_temperature: float = opt(
        0.15, "Bradley-Terry temperature of the gold-reward labels (about 85-89% of labels agree with the gold order; README)", stage="pairs"
    )
    num_train_prompts: int = opt(4096, "prompts online algorithms sample from")
    max_new_tokens: int = opt(32, "response length limit in tokens (24 cut 2.4% of the SFT policy's sentences short)",
                              stage="pairs")
    sft_epochs: float = opt(10.0, "SFT epochs (with the word prior, step-0 eval/grammatical 0.889 at 3 epochs, 0.959 at 6, 0.973 at 10; README)", stage="base")
    num_pairs: int = opt(8000, "preference pairs (RM held-out accuracy: 0.64 on 2000, 0.75 on 8000; gold 0.87-0.89)",
                         stage="pairs")
    target_kl: float | None = opt(0.1, "per-token KL budget for adaptive KL coefficients (SAC's learned alpha, PPO's adaptive_kl; both off by default): the learned reward is trusted only near pi_ref")


@dataclass
class TreeTaskConfig(TaskConfig):
    name: str = opt("tree", "task name", stage="base")
    kl_coef: float = opt(1.0, "beta of pi* = pi_ref exp(r / beta) / Z; every algorithm's KL coefficient here")
    max_new_tokens: int = opt(3, "response length L (fixed; no EOS)", stage="base")
    num_eval_prompts: int = opt(512, "eval samples, spread over the tree prompts")
    num_prompts: int = opt(4, "prompts of the tree", stage="base")
    num_response_tokens: int = opt(6, "distinct response tokens (the action set at every position)", stage="base")
    reward_dist: str = opt("uniform", "reward table distribution: uniform(0, reward_scale) | normal(0, reward_scale)",
                           stage="base")
    reward_scale: float = opt(10.0, "reward table scale (uniform width or normal std)", stage="base")
    ref_concentration: float = opt(
        0.5, "Dirichlet concentration of the teacher's next-token draws at each node (smaller = more peaked)",
        stage="base")
    num_sft_examples: int = opt(24000, "teacher samples the reference model is fitted on", stage="base")
    num_pairs: int = opt(8000, "preference pairs (reference samples, Bradley-Terry labels)", stage="pairs")
    label_temperature: float = opt(1.0, "Bradley-Terry temperature; DPO's optimum is pi* when T * beta_dpo = beta",
                                   stage="pairs")
    num_train_prompts: int = opt(4, "prompts online algorithms sample from (the tree prompts)")
    rm_queries: int = opt(24000, "online budget: 3-token responses are cheap, and SAC needs ~700 updates to reach 0.1x")


@dataclass
class HFPrefsTaskConfig(TaskConfig):
    name: str = opt("hf_prefs", "task name", stage="base")
    dataset: str = opt(MISSING, "hub id or local .json/.jsonl/.parquet file in TRL's preference format",
                       stage="base")
    split: str = opt("train", "dataset split", stage="base")
    eval_fraction: float = opt(0.1, "share of rows held out for eval prompts and RM accuracy", stage="base")
    max_rows: int | None = opt(None, "use at most this many rows (None: all)", stage="base")
    num_eval_prompts: int = opt(256, "held-out eval prompts")
    num_train_prompts: int = opt(4096, "prompts online algorithms sample from")


# ----------------------------------------------------------------------------------------------- model
@dataclass
class LoraConfig:
    r: int = opt(64, "LoRA rank (tiny model: measured, see conf/model/tiny.yaml)")
    alpha: int = opt(128, "LoRA alpha (scale = alpha / r)")
    dropout: float = opt(0.0, "LoRA dropout (0: RL needs deterministic log-probs)")
    target_modules: list[str] = opt(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                                    "modules that get LoRA adapters")
    modules_to_save: list[str] = opt([], "modules trained in full beside the adapter (e.g. lm_head)")


@dataclass
class ModelConfig:
    name: str = opt(MISSING, "model config option (tiny | hf)", stage="base")
    path: str | None = opt(None, "hf: hub id or local path of a causal LM", stage="base")
    sft: bool = opt(True, "fine-tune the base on the task's SFT corpus with TRL SFTTrainer", stage="base")
    hidden_size: int = opt(128, "tiny: width", stage="base")
    num_layers: int = opt(4, "tiny: decoder layers", stage="base")
    num_heads: int = opt(4, "tiny: attention heads", stage="base")
    intermediate_size: int = opt(512, "tiny: MLP width", stage="base")
    tie_embeddings: bool = opt(False, "tiny: tie input and output embeddings", stage="base")
    word_prior: bool = opt(True, "tiny: start embedding dimension 0 (input and output) at the task's prior feature per word (sentiment: VADER valence), as a pretrained LM knows word sentiment; from random embeddings the SFT model never learned sentiment agreement (step-0 eval/grammatical 0.83, README)", stage="base")
    sft_epochs: float | None = opt(None, "SFT epochs (None: the task's task.sft_epochs)", stage="base")
    sft_lr: float = opt(2e-3, "SFT learning rate", stage="base")
    sft_batch_size: int = opt(64, "SFT batch size", stage="base")
    lora: LoraConfig = field(default_factory=LoraConfig, metadata={"help": "LoRA adapter trained by alignment"})


# ---------------------------------------------------------------------------------------------- reward
@dataclass
class RewardConfig:
    name: str = opt(MISSING, "reward option (learned | gold | hf)", stage="rm")
    path: str | None = opt(None, "hf: path or hub id of a sequence-classification reward model", stage="rm")
    epochs: float = opt(2.0, "learned: RewardTrainer epochs", stage="rm")
    lr: float = opt(1e-3, "learned: learning rate", stage="rm")
    batch_size: int = opt(64, "learned: batch size (pairs)", stage="rm")
    whiten: bool = opt(False, "whiten online rewards with running mean/std")
    clip: float | None = opt(None, "clip rewards to [-clip, clip] (None: no clipping)")
    missing_eos_penalty: float | None = opt(None, "subtract this from responses that never emit EOS")


# ------------------------------------------------------------------------------------------------ eval
@dataclass
class EvalConfig:
    every: int | None = opt(None, "evaluate every N optimizer steps, also at step 0 and at the end (None: algo.eval_every)")
    every_budget: int | None = opt(None, "evaluate each time the budget spent (RM queries online, preference pairs offline) passes a multiple of N, at the next optimizer step; replaces `every` (equal resolution for every algorithm)")
    seed: int = opt(1234, "sampling seed of the eval samples (fixed: step-0 evals agree across algorithms)")
    ref_seed: int = opt(4321, "sampling seed of the reference samples for eval/win_rate_ref")
    batch_size: int = opt(256, "sampling batch size")
    temperature: float = opt(1.0, "sampling temperature (1.0: KL estimates are of the true policy)")
    num_samples_logged: int = opt(512, "eval completions written to samples.jsonl at the end")


# ---------------------------------------------------------------------------------------------- logger
@dataclass
class LoggerConfig:
    name: str = opt(MISSING, "logger option (wandb | none)")
    project: str = opt("align", "W&B project")
    entity: str | None = opt(None, "W&B entity (None: your default)")
    mode: str | None = opt(None, "W&B mode: online | offline | disabled (None: online if logged in, else offline)")
    group: str | None = opt(None, "W&B group (None: experiment name or multirun sweep dir)")
    tags: list[str] = opt([], "extra W&B tags")


# ------------------------------------------------------------------------------------------ algorithms
@dataclass
class AlgoConfig:
    """Base of every algorithm's config; each algorithm file defines its own subclass (config first)."""

    name: str = opt(MISSING, "algorithm name (config group option)")
    eval_every: int = opt(20, "this algorithm's eval cadence in optimizer steps when eval.every is null")


# ------------------------------------------------------------------------------------------ run level
@dataclass
class BudgetConfig:
    rm_queries: int = opt("${task.rm_queries}", "online algorithms stop after this many reward queries (default: the task's)")
    pref_pairs: int | None = opt(None, "offline algorithms use at most this many preference pairs (None: all)")
    max_steps: int | None = opt(None, "hard cap on optimizer steps for any algorithm (None: none)")


@dataclass
class PathsConfig:
    cache_dir: str = opt("${oc.env:ALIGN_CACHE,'~/.cache/align'}", "artefact cache ($ALIGN_CACHE)")
    runs_dir: str = opt("runs", "parent of run dirs")


@dataclass
class PrepareConfig:
    seed: int = opt(0, "seed of the shared artefacts (SFT, pairs, RM): independent of the run seed", stage="base")
    threads: int = opt(0, "torch threads (0: torch default / OMP_NUM_THREADS)")


@dataclass
class TrainConfig:
    algo: Any = MISSING
    task: Any = MISSING
    model: Any = MISSING
    reward: Any = MISSING
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: Any = MISSING
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    seed: int = opt(0, "run seed (algorithm randomness; shared artefacts use prepare.seed)")
    experiment: str | None = opt(None, "experiment name (set by conf/experiment files; W&B group)")
    threads: int = opt(0, "torch threads for the run (0: torch default / OMP_NUM_THREADS)")
    device: str = opt("auto", "auto | cpu | cuda")
    objective_kl_cap: float | None = opt(None, "value returned to a sweeper: final gold reward, minus the final eval/kl_ref in excess of this cap (None: no cap)")
    objective_seeds: int = opt(1, "seeds behind the value returned to a sweeper: N > 1 trains seed, seed+1, ..., seed+N-1 one after another, each its own run dir <run dir>/seed<k>/, and returns the mean of their values")
    resume: str | None = opt(None, "auto: skip a run (or sweep job) whose run dir holds a completed summary.json and re-run a failed or unfinished one from scratch; None: always run (resume=<run dir>, continuing from a checkpoint, is planned)")


@dataclass
class EvalCommandConfig:
    run: str = opt(MISSING, "run dir of a finished `align train` run")
    checkpoint: str = opt("final", "checkpoint under <run>/checkpoints/")
    out: str | None = opt(None, "write the metrics as JSON here (None: <run>/eval_rerun.json)")


TASKS = {"sentiment": SentimentTaskConfig, "tree": TreeTaskConfig, "hf_prefs": HFPrefsTaskConfig}


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="eval_schema", node=EvalCommandConfig)
    for name, node in TASKS.items():
        cs.store(group="task", name=f"{name}_schema", node=node)
    from align_cli import registry

    for name, module in registry.ALGORITHMS.items():
        cs.store(group="algo", name=f"{name}_schema", node=module.Config)
    cs.store(group="model", name="model_schema", node=ModelConfig)
    cs.store(group="reward", name="reward_schema", node=RewardConfig)
    cs.store(group="logger", name="logger_schema", node=LoggerConfig)


def field_help(node_type: type) -> dict[str, str]:
    """name -> help for every field of a config dataclass (used by `align <cmd> --help` listings)."""
    assert is_dataclass(node_type)
    return {f.name: f.metadata.get("help", "") for f in fields(node_type)}
