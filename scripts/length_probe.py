"""Does the reward favour length? The learned reward model's and the gold judge's scores of the SFT policy's
own samples, by response length.

    python scripts/length_probe.py [hydra overrides of align train, e.g. task=sentiment] \
        [--adapter <run dir>/checkpoints/final] [--seeds 1234,1235,1236,1237] [--json FILE]

Builds (or reuses from the cache) the shared artefacts of the given config, samples one response per eval
prompt from the SFT policy (or, with --adapter, the policy a run trained) at each seed, scores every response with the reward model (as the online
algorithms query it) and the gold judge, and reports per length bin (content tokens, EOS excluded): the
count, the mean reward-model score, the mean gold and the grammatical share; then the correlation of
length with each score, and the reward model's slope per token at fixed gold (least squares of the RM
score on gold and length): how much the reward an online algorithm maximises pays for length alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BINS = ((0, 4), (5, 8), (9, 12), (13, 16), (17, 24), (25, 32))  # content tokens, inclusive


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="hydra overrides (align train's config)")
    parser.add_argument("--seeds", default="1234,1235,1236,1237", help="comma-separated sampling seeds")
    parser.add_argument("--adapter", type=Path, default=None, help="a run's LoRA adapter dir: probe that policy")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return parser.parse_args()


def length_slope(rm: np.ndarray, gold: np.ndarray, length: np.ndarray) -> float:
    """The coefficient of length in the least-squares fit rm ~ a + b gold + c length: RM per token at fixed gold."""
    design = np.column_stack([np.ones_like(rm), gold, length])
    coefficients, *_ = np.linalg.lstsq(design, rm, rcond=None)
    return float(coefficients[2])


def by_length(length: np.ndarray, rm: np.ndarray, gold: np.ndarray, grammatical: list[float | None]) -> list[dict]:
    rows = []
    for low, high in BINS:
        chosen = np.flatnonzero((length >= low) & (length <= high))
        if chosen.size == 0:
            continue
        shares = [grammatical[i] for i in chosen if grammatical[i] is not None and not np.isnan(grammatical[i])]
        rows.append({"tokens": f"{low}-{high}", "n": int(chosen.size), "rm": float(rm[chosen].mean()),
                     "gold": float(gold[chosen].mean()),
                     "grammatical": float(np.mean(shares)) if shares else None})
    return rows


def main() -> None:
    args = parse_args()
    from hydra import compose, initialize_config_module

    from align_cli import models, pipeline, rollout
    from align_cli.config import register_configs
    from align_cli.reward import RewardModelScorer
    from align_cli.tasks import make_task

    register_configs()
    with initialize_config_module(config_module="align_cli.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(args.overrides))
    device = models.pick_device(cfg.device)
    pipeline.setup_torch(cfg.threads)
    artefacts = pipeline.prepare(cfg, device)
    task = make_task(cfg.task)
    if not task.has_gold or artefacts.rm_dir is None:
        sys.exit("length_probe: needs a task with a gold judge and a learned reward model (reward=learned)")
    tokenizer = models.load_tokenizer(artefacts.base_dir)
    policy = models.load_causal_lm(artefacts.base_dir, device)
    if args.adapter is not None:
        policy = models.load_adapter(policy, args.adapter)
    scorer = RewardModelScorer(artefacts.rm_dir, device)
    prompts, responses, lengths = [], [], []
    for seed in [int(s) for s in args.seeds.split(",")]:
        batch = rollout.sample(policy, tokenizer, task.eval_prompts(), task.cfg.max_new_tokens, seed=seed,
                               allowed_token_ids=task.allowed_token_ids, stop_at_eos=task.stop_at_eos)
        prompts += batch.prompts
        responses += batch.responses
        lengths += (batch.response_lengths - batch.eos_found.long()).tolist()
    length = np.asarray(lengths, dtype=float)
    rm = np.asarray(scorer(prompts, responses))
    gold = np.asarray(task.gold_reward(prompts, responses))
    # per response, as the eval scores a batch (eval/grammatical; None on a task without the metric)
    grammatical = [task.extra_eval(policy, tokenizer, [p], [r]).get("eval/grammatical")
                   for p, r in zip(prompts, responses, strict=True)]
    report = {
        "overrides": args.overrides, "adapter": str(args.adapter) if args.adapter else None, "responses": len(responses), "mean_length": float(length.mean()),
        "bins": by_length(length, rm, gold, grammatical),
        "corr_length_rm": float(np.corrcoef(length, rm)[0, 1]),
        "corr_length_gold": float(np.corrcoef(length, gold)[0, 1]),
        "rm_per_token_at_fixed_gold": length_slope(rm, gold, length),
        "rm_std": float(rm.std()),
    }
    source = f"samples of {args.adapter}" if args.adapter else "SFT samples"
    print(f"{len(responses)} {source} ({args.seeds}), mean length {report['mean_length']:.1f} tokens")
    print("| tokens | n | mean RM score | mean gold | grammatical |")
    print("| --- | --- | --- | --- | --- |")
    for row in report["bins"]:
        share = "-" if row["grammatical"] is None else f"{row['grammatical']:.3f}"
        print(f"| {row['tokens']} | {row['n']} | {row['rm']:+.3f} | {row['gold']:+.3f} | {share} |")
    print(f"corr(length, RM) {report['corr_length_rm']:+.3f}; corr(length, gold) {report['corr_length_gold']:+.3f}; "
          f"RM per token at fixed gold {report['rm_per_token_at_fixed_gold']:+.4f} "
          f"(RM std {report['rm_std']:.3f})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
