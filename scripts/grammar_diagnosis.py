"""Where do the sentiment SFT policy's ungrammatical sentences come from?

    python scripts/grammar_diagnosis.py [hydra overrides of the base stage, e.g. model.sft_epochs=6] \
        [--temperatures 1.0,0.7] [--max-new-tokens 24,64] [--seeds 1234,1235]

Builds (or reuses from the cache) the base policy of the given config, then reports:
1. the checker on the grammar's own text: held-out reviews cut into prompt + true continuation, scored by
   `grammatical_share` exactly as the eval scores a response (must be 1.0, else the checker is wrong);
2. the SFT policy's samples on the eval prompts, for each sampling setting: the share of grammatical
   sentences, and each ungrammatical sentence put in one bin: `truncated` (the response hit max_new_tokens
   with no EOS and the sentence is unfinished), `eos_mid_sentence` (EOS before the terminator),
   `polarity_disagreement` (a finished sentence the grammar's structure allows, with sentiment words of
   the wrong polarity, e.g. "great but good") or `out_of_structure` (not even that), with examples;
3. an agreement probe: after contexts such as "it was great and", the share of the next-token mass on
   opinion adjectives that lies on the sentiment side the grammar requires (0.5: sentiment ignored);
4. the base stage's SFT train and held-out loss.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="hydra overrides (align train's config)")
    parser.add_argument("--temperatures", default="1.0", help="comma-separated sampling temperatures")
    parser.add_argument("--max-new-tokens", default="24", help="comma-separated response length limits")
    parser.add_argument("--seeds", default="1234", help="comma-separated sampling seeds (1234: the eval's)")
    parser.add_argument("--examples", type=int, default=8, help="ungrammatical examples printed per bin")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return parser.parse_args()


def checker_on_true_continuations(n: int = 2000) -> float:
    """grammatical_share of (prompt, rest of the review) for held-out reviews: 1.0 if the checker is right."""
    from align_cli.tasks import sentiment_grammar as grammar

    rng = random.Random("diagnosis")
    prompts, responses = [], []
    for review in grammar.make_reviews(n, seed=987654):
        tokens = review.split()
        cut = rng.randint(1, len(tokens) - 1)
        prompts.append(" ".join(tokens[:cut]))
        responses.append(" " + " ".join(tokens[cut:]))
    return grammar.grammatical_share(prompts, responses)


def polarity_free_recognizer():
    """The grammar's recognizer with polarity ignored: every polar word class offers both sides and every
    alternative is usable. A sentence it accepts but the real one rejects breaks only sentiment agreement
    ("great but good", "awesome and stupid"); one it rejects too is out of the grammar's structure."""
    import re

    from align_cli.tasks import sentiment_grammar as grammar

    def entries(name: str) -> list[str]:
        words = grammar.WORD_CLASSES[name]
        return sorted({e for side in words.values() for e in side}) if isinstance(words, dict) else list(words)

    def pattern(symbol) -> str:
        if symbol.kind == "word":
            return re.escape(symbol.name) + " "
        if symbol.kind == "class":
            return "(?:" + "|".join(re.escape(e) + " " for e in entries(symbol.name)) + ")"
        return "(?:" + "|".join("".join(pattern(s) for s in body) for _, body in grammar._RULES[symbol.name]) + ")"

    starts = [grammar._Symbol("nonterminal", name, False) for name in ("<POLAR_SENTENCE>", "<NEUTRAL_SENTENCE>")]
    regex = re.compile("(?:" + "|".join(pattern(s) for s in starts) + ")")
    return lambda sentence: regex.fullmatch(sentence + " ") is not None


def classify(prompts, responses, eos_found) -> tuple[collections.Counter, dict[str, list[str]]]:
    """Count every response sentence as grammatical or as one of the three failure bins."""
    from align_cli.tasks import sentiment_grammar as grammar

    structural = polarity_free_recognizer()
    counts: collections.Counter = collections.Counter()
    examples: dict[str, list[str]] = collections.defaultdict(list)
    for prompt, response, eos in zip(prompts, responses, eos_found, strict=True):
        prompt_tokens, response_tokens = prompt.split(), response.split()
        if not response_tokens:
            counts["empty_response"] += 1
            continue
        tokens = prompt_tokens + response_tokens
        spans = grammar._sentence_spans(tokens)
        for start, end in spans:
            if end <= len(prompt_tokens):
                continue
            sentence = " ".join(tokens[start:end])
            counts["sentences"] += 1
            if grammar.is_grammatical(sentence):
                counts["grammatical"] += 1
                continue
            finished = tokens[end - 1] in grammar.TERMINATORS
            if finished:
                kind = "polarity_disagreement" if structural(sentence) else "out_of_structure"
            else:
                kind = "eos_mid_sentence" if eos else "truncated"
            counts[kind] += 1
            examples[kind].append(sentence)
    return counts, examples


# (context, the side its next opinion adjective must take): "and" joins two adjectives of one side, "but" a
# clause of the other side, and a review mostly keeps one side.
AGREEMENT_PROBES = [("it was great and", 1), ("it was awful and", -1), ("the acting was great but the plot was", -1),
                    ("the acting was awful but the plot was", 1), ("i loved it . the plot was", 1),
                    ("i hated it . the plot was", -1)]


def agreement_probe(policy, tokenizer) -> dict[str, float]:
    """For each probe context: the share of the next-token mass on opinion adjectives that lies on the side
    the grammar requires (0.5: the model ignores sentiment; 1: it always agrees)."""
    import torch

    from align_cli.tasks import sentiment_grammar as grammar

    sides = {side: tokenizer.convert_tokens_to_ids(grammar.WORD_CLASSES["OPINION_ADJECTIVE"][side]) for side in (1, -1)}
    shares = {}
    for context, side in AGREEMENT_PROBES:
        ids = tokenizer(context, return_tensors="pt")["input_ids"].to(policy.device)
        with torch.no_grad():
            probs = torch.softmax(policy(input_ids=ids).logits[0, -1].float(), -1)
        right, wrong = float(probs[sides[side]].sum()), float(probs[sides[-side]].sum())
        shares[context] = right / (right + wrong)
    return shares


def main() -> None:
    args = parse_args()
    from hydra import compose, initialize_config_module

    from align_cli import models, pipeline, rollout
    from align_cli.config import register_configs
    from align_cli.tasks import make_task

    register_configs()
    with initialize_config_module(config_module="align_cli.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=["reward=gold", *args.overrides])
    device = models.pick_device(cfg.device)
    pipeline.setup_torch(cfg.threads)
    artefacts = pipeline.prepare(cfg, device, until="base")
    task = make_task(cfg.task)
    tokenizer = models.load_tokenizer(artefacts.base_dir)
    policy = models.load_causal_lm(artefacts.base_dir, device)
    report = {"overrides": args.overrides, "base": pipeline._public(artefacts.info["base"]),
              "checker_on_true_continuations": checker_on_true_continuations(), "settings": []}
    print(f"base stage: {json.dumps(report['base'], default=str)}")
    print(f"checker on the grammar's own prompt + continuation splits: {report['checker_on_true_continuations']:.4f}")
    report["agreement_probe"] = agreement_probe(policy, tokenizer)
    for context, share in report["agreement_probe"].items():
        print(f"agreement probe: {context!r}: {share:.3f} of the opinion-adjective mass on the required side")
    prompts = task.eval_prompts()
    for temperature in [float(t) for t in args.temperatures.split(",")]:
        for max_new in [int(m) for m in args.max_new_tokens.split(",")]:
            for seed in [int(s) for s in args.seeds.split(",")]:
                batch = rollout.sample(policy, tokenizer, prompts, max_new, seed=seed, temperature=temperature)
                counts, examples = classify(batch.prompts, batch.responses, batch.eos_found.tolist())
                gold = sum(task.gold_reward(batch.prompts, batch.responses)) / len(prompts)
                share = counts["grammatical"] / max(1, counts["sentences"])
                row = {"temperature": temperature, "max_new_tokens": max_new, "seed": seed, "grammatical": share,
                       "gold": gold, "no_eos": int((~batch.eos_found).sum()), **counts}
                report["settings"].append(row)
                bins = ", ".join(f"{k} {counts[k]}" for k in ("truncated", "eos_mid_sentence", "polarity_disagreement",
                                                              "out_of_structure", "empty_response"))
                print(f"T={temperature} max_new_tokens={max_new} seed={seed}: grammatical {share:.3f} of "
                      f"{counts['sentences']} sentences, gold {gold:+.3f}, responses without EOS "
                      f"{row['no_eos']}/{len(prompts)}; ungrammatical: {bins}")
                for kind, sentences in examples.items():
                    for sentence in sentences[: args.examples]:
                        print(f"    {kind}: {sentence}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
