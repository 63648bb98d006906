"""Stage orchestration with caching: base policy -> preference pairs -> reward model -> algorithm -> eval.

Cached artefacts live in `$ALIGN_CACHE/<stage>/<key>/`, where the key hashes exactly the config fields
that feed the stage and the stages before it (`metadata["stage"]` in config.py). A stage is built in a
temporary sibling dir and renamed into place only once complete, so an interrupted build is never reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from align_cli import models, rollout
from align_cli.config import STAGES, TASKS, ModelConfig, PrepareConfig, RewardConfig
from align_cli.errors import UserError
from align_cli.evaluate import Evaluator
from align_cli.reward import RewardModelScorer, make_reward, pair_accuracy, train_reward_model
from align_cli.tasks import make_task
from align_cli.tracking import Tracker

log = logging.getLogger("align")
CACHE_VERSION = 1  # bump when a stage's code changes what it builds
COMPLETE = "COMPLETE"
HELDOUT_FRACTION = 0.1  # synthetic pairs held out to measure the reward model's accuracy


# ------------------------------------------------------------------------------------------- cache
def stage_fields(cfg, stage: str) -> dict[str, Any]:
    """The config values that feed `stage` (and every stage before it)."""
    wanted = set(STAGES[: STAGES.index(stage) + 1])
    out: dict[str, Any] = {"cache_version": CACHE_VERSION}
    # Schemas are looked up by name, so a plain config (a run's .hydra/config.yaml) gives the same key.
    schemas = {"task": TASKS[cfg.task.name], "model": ModelConfig, "reward": RewardConfig, "prepare": PrepareConfig}
    for group, schema in schemas.items():
        node = cfg[group]
        for f in dataclasses.fields(schema):
            if f.metadata.get("stage") in wanted:
                value = node[f.name]
                out[f"{group}.{f.name}"] = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    return out


def stage_key(cfg, stage: str) -> str:
    blob = json.dumps(stage_fields(cfg, stage), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_root(cfg) -> Path:
    return Path(os.path.expanduser(str(cfg.paths.cache_dir)))


def cached_stage(root: Path, stage: str, key: str, build, meta: dict) -> tuple[Path, bool]:
    """Return (dir, reused). `build(tmp_dir) -> dict` fills a temporary dir that is renamed when complete."""
    final = root / stage / key
    if (final / COMPLETE).is_file():
        return final, True
    if final.exists():  # a dir without its completion marker is a broken entry: never reused
        shutil.rmtree(final, ignore_errors=True)
    tmp = root / stage / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        info = build(tmp) or {}
        (tmp / "info.json").write_text(json.dumps({**meta, **info}, indent=2, default=str))
        (tmp / COMPLETE).write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished the same entry first: use theirs
            if not (final / COMPLETE).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final, False


def read_info(stage_dir: Path) -> dict:
    path = Path(stage_dir) / "info.json"
    return json.loads(path.read_text()) if path.is_file() else {}


# ------------------------------------------------------------------------------------------- prepare
@dataclass
class Artefacts:
    base_dir: str  # model + tokenizer of the base policy (a local dir, or a hub id for model=hf without SFT)
    pairs_path: Path | None
    rm_dir: Path | None
    info: dict

    def pairs(self, split: str | None = None) -> list[dict]:
        if self.pairs_path is None:
            return []
        rows = [json.loads(line) for line in self.pairs_path.read_text().splitlines() if line.strip()]
        return [r for r in rows if split is None or r["split"] == split]


def setup_torch(threads: int, seed: int | None = None) -> None:
    if threads and threads > 0:
        torch.set_num_threads(threads)
    if seed is not None:
        from transformers import set_seed

        set_seed(seed)


def prepare(cfg, device: torch.device, until: str = "rm") -> Artefacts:
    """Build (or reuse) the tokenizer + SFT policy, the preference pairs and the reward model; `until` stops
    after that stage ("base", "pairs" or "rm")."""
    root = cache_root(cfg)
    task = make_task(cfg.task)
    seed = cfg.prepare.seed
    info: dict[str, Any] = {}

    # 1. base policy (tokenizer + SFT model)
    if cfg.model.name == "hf" and not cfg.model.sft:
        if not cfg.model.path:
            raise UserError("model=hf needs model.path=<hub id or local dir>")
        base_dir = str(cfg.model.path)
        models.load_tokenizer(base_dir)  # fail early, with a clear message, on a bad path
        info["base"] = {"path": base_dir, "reused": True}
    else:
        def build_base(out: Path) -> dict:
            setup_torch(0, seed)
            if cfg.model.name == "tiny":
                tokenizer = models.build_word_tokenizer(task.tokenizer_texts(), task.extra_tokens())
                prior = task.word_prior() if cfg.model.word_prior else None
                model = models.build_tiny_model(cfg.model, tokenizer, seed, word_prior=prior)
            else:
                tokenizer = models.load_tokenizer(cfg.model.path)
                model = models.load_causal_lm(cfg.model.path)
            model.to(device)
            n_params = sum(p.numel() for p in model.parameters())
            log.info("SFT of the base policy (%.2fM params) on %d texts", n_params / 1e6, len(task.sft_texts()))
            started = time.perf_counter()
            epochs = cfg.model.sft_epochs if cfg.model.sft_epochs is not None else cfg.task.sft_epochs
            metrics = models.sft(model, tokenizer, task.sft_texts(), cfg.model, out, seed, device, epochs)
            shutil.rmtree(out / "sft_trainer", ignore_errors=True)
            model.save_pretrained(str(out), safe_serialization=True)
            tokenizer.save_pretrained(str(out))
            return {**metrics, "params": n_params, "vocab": len(tokenizer), "sft_s": time.perf_counter() - started}

        key = stage_key(cfg, "base")
        path, reused = cached_stage(root, "base", key, build_base, {"fields": stage_fields(cfg, "base")})
        base_dir = str(path)
        info["base"] = {"path": base_dir, "reused": reused, **_public(read_info(path))}
    _report("base policy", info["base"])
    if until == "base":
        return Artefacts(base_dir, None, None, info)

    # 2. preference pairs
    pairs_path = None
    if task.has_gold or cfg.task.name == "hf_prefs":
        def build_pairs(out: Path) -> dict:
            tokenizer = models.load_tokenizer(base_dir)
            task.bind_tokenizer(tokenizer)
            policy = models.load_causal_lm(base_dir, device)
            started = time.perf_counter()
            pairs = task.make_pairs(policy, tokenizer, seed=seed + 17)
            if not pairs:
                raise UserError(f"task={cfg.task.name} produced no preference pairs")
            held = task.held_out_pairs() if hasattr(task, "held_out_pairs") else max(1, int(len(pairs) * HELDOUT_FRACTION))
            with (out / "pairs.jsonl").open("w") as f:
                for i, pair in enumerate(pairs):
                    f.write(json.dumps({**pair, "split": "heldout" if i >= len(pairs) - held else "train"}) + "\n")
            out_info = {"pairs": len(pairs), "heldout": held, "build_s": time.perf_counter() - started}
            if task.has_gold:
                out_info["label_gold_agreement"] = pair_accuracy([p["chosen_gold"] for p in pairs],
                                                                 [p["rejected_gold"] for p in pairs])
            return out_info

        key = stage_key(cfg, "pairs")
        path, reused = cached_stage(root, "pairs", key, build_pairs, {"fields": stage_fields(cfg, "pairs")})
        pairs_path = path / "pairs.jsonl"
        info["pairs"] = {"path": str(path), "reused": reused, **_public(read_info(path))}
        _report("preference pairs", info["pairs"])
    if until == "pairs":
        return Artefacts(base_dir, pairs_path, None, info)

    # 3. reward model
    rm_dir = None
    if cfg.reward.name == "learned":
        if pairs_path is None:
            raise UserError(f"reward=learned needs preference pairs; task={cfg.task.name} has none")
        artefacts = Artefacts(base_dir, pairs_path, None, info)

        def build_rm(out: Path) -> dict:
            setup_torch(0, seed)
            started = time.perf_counter()
            train_reward_model(Path(base_dir), artefacts.pairs("train"), cfg.reward, out, seed, device)
            shutil.rmtree(out / "rm_trainer", ignore_errors=True)
            held = artefacts.pairs("heldout")
            scorer = RewardModelScorer(out, device)
            chosen = scorer([p["prompt"] for p in held], [p["chosen"] for p in held])
            rejected = scorer([p["prompt"] for p in held], [p["rejected"] for p in held])
            out_info = {"heldout_pairs": len(held), "rm_accuracy": pair_accuracy(chosen, rejected),
                        "train_s": time.perf_counter() - started}
            if task.has_gold:
                # The ceiling under label noise: how often the gold reward itself agrees with the labels.
                out_info["gold_accuracy"] = pair_accuracy([p["chosen_gold"] for p in held],
                                                          [p["rejected_gold"] for p in held])
            return out_info

        key = stage_key(cfg, "rm")
        path, reused = cached_stage(root, "rm", key, build_rm, {"fields": stage_fields(cfg, "rm")})
        rm_dir = path
        info["rm"] = {"path": str(path), "reused": reused, **_public(read_info(path))}
        _report("reward model", info["rm"])
    return Artefacts(base_dir, pairs_path, rm_dir, info)


def _public(info: dict) -> dict:
    return {k: v for k, v in info.items() if k != "fields"}


def _report(what: str, info: dict) -> None:
    shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
    log.info("%s: %s", what, shown)


# ------------------------------------------------------------------------------------------- runs
@dataclass
class RunContext:
    """Everything an algorithm's train loop needs, built the same way for every algorithm."""

    cfg: Any
    run_dir: Path
    device: torch.device
    task: Any
    tokenizer: Any
    policy: Any  # peft model: LoRA adapter on the base; reference = adapter disabled
    artefacts: Artefacts
    reward: Any  # RewardFn (counts queries) or None
    evaluator: Evaluator
    tracker: Tracker
    counters: rollout.Counters
    last_eval_step: int = -1
    last_eval_trained: int = 0  # budget trained on (pairs offline, repeats included; RM queries online) at the last eval
    last_eval_rows: list = field(default_factory=list)  # completions of the latest eval (samples.jsonl)

    def log(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log with the progress counters, at the current optimizer step unless `step` is given."""
        step = self.counters.optimizer_steps if step is None else step
        self.tracker.log({**metrics, **self.counters.as_metrics()}, step=step)

    def evaluate(self) -> dict[str, float]:
        """Run the harness on the current policy and log it at the current optimizer step."""
        with self.counters.forward_counting_paused():
            metrics, rows = self.evaluator(self.policy)
        self.record_eval(metrics, rows)
        return metrics

    def record_eval(self, metrics: dict[str, float], rows: list[dict], step: int | None = None) -> None:
        """Log an eval's metrics and keep its completions for samples.jsonl."""
        self.last_eval_step = self.counters.optimizer_steps
        self.last_eval_trained = self.counters.budget_trained()
        self.last_eval_rows = rows
        self.log(metrics, step)
        shown = {k.split("/")[-1]: round(v, 3) for k, v in metrics.items() if v is not None}
        log.info("eval @ step %d: %s", self.counters.optimizer_steps if step is None else step, shown)

    def peak_mem_mb(self) -> float:
        """Peak memory since the run started: CUDA allocator peak on GPU, else peak resident set size."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return peak_rss_mb()

    def out_of_steps(self) -> bool:
        """budget.max_steps (the hard cap on optimizer steps for any algorithm) is reached."""
        cap = self.cfg.budget.max_steps
        return cap is not None and self.counters.optimizer_steps >= cap

    def maybe_evaluate(self, batch_done: bool = True) -> None:
        """Evaluate on the configured cadence: eval.every_budget (budget spent) if set, else optimizer steps.
        `batch_done=False`: the algorithm is still training on data it has paid for (PPO's epochs over a
        batch, a rejection-sampling round), so the budget cadence waits for the end of that batch."""
        if self.counters.optimizer_steps == self.last_eval_step:
            return
        per_budget = self.cfg.eval.every_budget
        if per_budget:
            if batch_done and self.counters.budget_trained() // per_budget > self.last_eval_trained // per_budget:
                self.evaluate()
            return
        every = self.cfg.eval.every or self.cfg.algo.eval_every
        # "passed a multiple", not "is a multiple": an algorithm that takes several steps per batch (SAC's
        # utd updates) evaluates once the batch is done.
        if every and batch_done and self.counters.optimizer_steps // every > max(self.last_eval_step, 0) // every:
            self.evaluate()


def reset_peak_memory(device: torch.device) -> None:
    """Start the peak-memory counters at this run: a sweep launcher (joblib) reuses worker processes,
    whose lifetime peak would otherwise include earlier jobs."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux: writing 5 to clear_refs resets the process's peak RSS (VmHWM)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """Peak resident set size of this process (since the last reset where Linux allows one), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # lifetime peak; Linux reports KiB


def build_policy(cfg, artefacts: Artefacts, device: torch.device, adapter_dir: Path | None = None):
    tokenizer = models.load_tokenizer(artefacts.base_dir)
    base = models.load_causal_lm(artefacts.base_dir, device)
    models.disable_dropout(base)
    policy = models.load_adapter(base, adapter_dir) if adapter_dir else models.lora_policy(base, cfg.model.lora)
    policy.to(device)
    return tokenizer, policy


def build_evaluator(cfg, task, tokenizer, artefacts: Artefacts, device: torch.device) -> Evaluator:
    rm_scorer = None
    if cfg.reward.name == "learned":
        rm_scorer = RewardModelScorer(artefacts.rm_dir, device)
    elif cfg.reward.name == "hf":
        rm_scorer = RewardModelScorer(cfg.reward.path, device)
    return Evaluator(task, tokenizer, cfg.eval, rm_scorer)


def run_name(cfg) -> str:
    return f"{cfg.algo.name}-{cfg.task.name}-s{cfg.seed}"


def train(cfg, run_dir: Path, group: str | None = None, overrides: list[str] | None = None) -> dict:
    """One `align train` run: returns its summary (final metrics included). `group` and the command-line
    `overrides` go to W&B (group, config["overrides"])."""
    from align_cli import registry

    algo = registry.get(cfg.algo.name)
    device = models.pick_device(cfg.device)
    setup_torch(cfg.threads or cfg.prepare.threads)
    tags = [cfg.algo.name, cfg.task.name, cfg.model.name, cfg.reward.name, *cfg.logger.tags]
    tracker = Tracker(run_dir, cfg, run_name(cfg), group or cfg.logger.group or cfg.experiment,
                      cfg.algo.name, tags, overrides or [])
    info = {"algo": cfg.algo.name, "task": cfg.task.name, "model": cfg.model.name, "reward": cfg.reward.name,
            "seed": cfg.seed, "run_name": run_name(cfg)}
    try:
        reset_peak_memory(device)
        artefacts = prepare(cfg, device)
        setup_torch(0, cfg.seed)
        task = make_task(cfg.task)
        tokenizer, policy = build_policy(cfg, artefacts, device)
        task.bind_tokenizer(tokenizer)
        counters = rollout.Counters()
        counters.count_forward_tokens(rollout.decoder_of(policy))  # policy and reference (adapter off)
        reward = make_reward(cfg.reward, task, artefacts.rm_dir, device, counters) if algo.ONLINE else None
        ctx = RunContext(cfg, Path(run_dir), device, task, tokenizer, policy, artefacts, reward,
                         build_evaluator(cfg, task, tokenizer, artefacts, device), tracker, counters)
        task.save_run_files(run_dir, artefacts.base_dir, tokenizer)
        initial = ctx.evaluate()
        algo.train(ctx)
        final = ctx.evaluate() if ctx.last_eval_step != counters.optimizer_steps else dict(tracker.last)
        checkpoint = Path(run_dir) / "checkpoints" / "final"
        policy.save_pretrained(str(checkpoint), selected_adapters=["default"])
        tokenizer.save_pretrained(str(checkpoint))
        tracker.write_samples(ctx.last_eval_rows[: cfg.eval.num_samples_logged])
        final_metrics = {**tracker.last, **final}
        info["initial"] = dict(initial)
        info["artefacts"] = artefacts.info
        return tracker.finish("completed", info, final_metrics)
    except BaseException as exc:
        info["error"] = f"{type(exc).__name__}: {exc}"
        tracker.finish("failed", info)
        raise


def sweep_objective(final: dict, kl_cap: float | None = None) -> float | None:
    """What `align train` returns to a sweeper (Optuna maximises it): the final gold reward where the task
    has one, else the reward model's; with a KL cap, minus the final eval/kl_ref in excess of the cap."""
    value = final.get("eval/gold_reward", final.get("eval/rm_reward"))
    kl = final.get("eval/kl_ref")
    if value is None or kl_cap is None or kl is None:
        return value
    return value - max(0.0, kl - kl_cap)


def seeds_objective(finals: list[dict], kl_cap: float | None = None) -> float | None:
    """What a job of `objective_seeds` runs returns to a sweeper: the mean of each run's sweep_objective
    (None when any run has none)."""
    values = [sweep_objective(final, kl_cap) for final in finals]
    if not values or any(value is None for value in values):
        return None
    return sum(values) / len(values)


def evaluate_run(run_dir: Path, checkpoint: str = "final") -> tuple[dict, dict]:
    """`align eval`: re-run the harness on a finished run's checkpoint; returns (metrics, summary.final)."""
    run_dir = Path(run_dir)
    config_path = run_dir / ".hydra" / "config.yaml"
    if not config_path.is_file():
        raise UserError(f"run={str(run_dir)!r} is not an align run dir (no .hydra/config.yaml)")
    adapter = run_dir / "checkpoints" / checkpoint
    if not (adapter / "adapter_config.json").is_file():
        raise UserError(f"run={str(run_dir)!r} has no checkpoint {checkpoint!r} (looked in {adapter})")
    cfg = OmegaConf.load(config_path)
    device = models.pick_device(cfg.device)
    setup_torch(cfg.threads or cfg.prepare.threads)
    artefacts = prepare(cfg, device)
    task = make_task(cfg.task)
    tokenizer, policy = build_policy(cfg, artefacts, device, adapter_dir=adapter)
    task.bind_tokenizer(tokenizer)
    evaluator = build_evaluator(cfg, task, tokenizer, artefacts, device)
    from align_cli import registry

    algo = registry.get(cfg.algo.name)
    if hasattr(algo, "evaluate"):  # the policy is more than the checkpoint (bon: SFT + reward selection)
        reward = make_reward(cfg.reward, task, artefacts.rm_dir, device, rollout.Counters())
        metrics, _ = algo.evaluate(evaluator, policy, reward, cfg.algo, cfg.seed)
    else:
        metrics, _ = evaluator(policy)
    summary_path = run_dir / "summary.json"
    recorded = json.loads(summary_path.read_text()).get("final", {}) if summary_path.is_file() else {}
    return metrics, recorded
