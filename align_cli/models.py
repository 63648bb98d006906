"""Tokenizer + causal LM loading, the tiny-model builder, SFT, and the LoRA policy.

The reference policy is never a second copy: it is the base with the LoRA adapter disabled
(`rollout.reference`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from align_cli.errors import UserError

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
# Plain chat template: role markers are words of the tiny vocabulary; no special formatting tokens.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ message['role'] }} : {{ message['content'] }} "
    "{% endfor %}{% if add_generation_prompt %}assistant :{% endif %}"
)
log = logging.getLogger(__name__)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA device is available; use device=cpu or device=auto")
    return torch.device(name)


# ------------------------------------------------------------------------------------------- tokenizer
def build_word_tokenizer(texts: list[str], extra_tokens: list[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer trained here (tokenizers library) with bos/eos/pad/unk and a chat template.
    Words are split on whitespace; the tokenizer prepends BOS, as Llama's does."""
    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    specials = [PAD, BOS, EOS, UNK]
    trainer = trainers.WordLevelTrainer(special_tokens=specials, min_frequency=1)
    role_words = ["system", "user", "assistant", ":"]
    tok.train_from_iterator(list(texts) + [" ".join(extra_tokens + role_words)], trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK, padding_side="left"
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def load_tokenizer(path: str | Path):
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load a tokenizer from {str(path)!r}: {str(exc).splitlines()[0]}") from exc
    if tok.eos_token is None:
        raise UserError(f"the tokenizer at {str(path)!r} has no eos token; TRL's trainers need one")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


# ------------------------------------------------------------------------------------------- models
def build_tiny_model(cfg, tokenizer, seed: int, word_prior: dict[str, float] | None = None) -> LlamaForCausalLM:
    """A small Llama with random weights; `word_prior` (word -> value) sets embedding dimension 0, input and
    output, to each word's value (0 for the other words)."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=256,
        tie_word_embeddings=cfg.tie_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        attention_dropout=0.0,
    )
    model = LlamaForCausalLM(config)
    if word_prior:
        # A direction shared by the words of one sentiment breaks the symmetry between the sides, which
        # training from random embeddings did not break (see ModelConfig.word_prior).
        prior = torch.zeros(len(tokenizer))
        prior[tokenizer.convert_tokens_to_ids(list(word_prior))] = torch.tensor(list(word_prior.values()))
        with torch.no_grad():
            for embedding in (model.get_input_embeddings(), model.get_output_embeddings()):
                embedding.weight[:, 0] = prior
    return model


def load_causal_lm(path: str | Path, device: torch.device | None = None):
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load a causal LM from {str(path)!r}: {str(exc).splitlines()[0]}") from exc
    if device is not None:
        model.to(device)
    return model


def sft(model, tokenizer, texts: list[str], cfg, out_dir: Path, seed: int, device: torch.device,
        epochs: float) -> dict:
    """Fine-tune on the task's SFT corpus with TRL's SFTTrainer for `epochs`; returns its final metrics."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    split = max(1, len(texts) // 50)
    train, held_out = texts[split:], texts[:split]
    args = SFTConfig(
        output_dir=str(out_dir / "sft_trainer"),
        num_train_epochs=epochs,
        per_device_train_batch_size=cfg.sft_batch_size,
        per_device_eval_batch_size=256,
        learning_rate=cfg.sft_lr,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        weight_decay=0.0,
        max_length=128,
        logging_steps=50,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        seed=seed,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        use_cpu=device.type == "cpu",
        dataloader_num_workers=0,
        dataset_num_proc=None,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict({"text": train}),
        eval_dataset=Dataset.from_dict({"text": held_out}),
        processing_class=tokenizer,
    )
    result = console_progress(trainer).train()
    metrics = trainer.evaluate()
    return {"sft_train_loss": result.training_loss, "sft_heldout_loss": metrics.get("eval_loss")}


def console_progress(trainer):
    """A tqdm bar on stderr and the trainer's log dicts in the debug log. Both of the trainer's own
    console callbacks print those dicts to stdout, which carries `align prepare`'s JSON."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class BarOnly(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            log.debug("trainer: %s", logs)

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(BarOnly())
    return trainer


# ------------------------------------------------------------------------------------------- LoRA
def lora_policy(base_model, lora_cfg):
    """Wrap the base in a fresh LoRA adapter (peft). B = 0 at init, so the policy starts equal to the base."""
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in base_model.named_modules()}
    targets = [m for m in lora_cfg.target_modules if m in present]
    if not targets:
        raise UserError(
            f"model.lora.target_modules={list(lora_cfg.target_modules)} matches no module of the model; "
            f"some of its modules: {', '.join(sorted(present)[:12])}"
        )
    config = LoraConfig(
        r=lora_cfg.r,
        lora_alpha=lora_cfg.alpha,
        lora_dropout=lora_cfg.dropout,
        target_modules=targets,
        modules_to_save=list(lora_cfg.modules_to_save) or None,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(base_model, config)


def share_frozen_weights(model, policy) -> None:
    """Point every parameter of `model` (a fresh load of the base) at the policy's frozen base tensor."""
    shared = {}
    for name, param in policy.get_base_model().named_parameters():
        if "lora_" in name or "modules_to_save" in name:
            continue
        shared[name.replace(".base_layer", "").replace(".original_module", "")] = param
    for name, _ in list(model.named_parameters()):
        owner, leaf = name.rsplit(".", 1) if "." in name else ("", name)
        if name not in shared:
            raise UserError(f"cannot map base parameter {name!r} onto the policy's weights")
        model.get_submodule(owner)._parameters[leaf] = shared[name]
    for param in model.parameters():
        param.requires_grad_(False)


def adapters_on_shared_base(policy, base_dir: str | Path, rank: int, names: list[str], device: torch.device):
    """A peft model over the policy's frozen base weights (shared, not copied: the base is reloaded and its
    tensors replaced) with one LoRA adapter per name (rank `rank`, alpha 2 rank, no dropout, on every linear
    layer but the LM head). The first adapter is active. Critics and value models live here."""
    from peft import LoraConfig, get_peft_model

    base = load_causal_lm(base_dir, device)
    share_frozen_weights(base, policy)
    disable_dropout(base)
    targets = sorted({n.rsplit(".", 1)[-1] for n, m in base.named_modules() if isinstance(m, torch.nn.Linear)}
                     - {"lm_head"})
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=targets)
    model = get_peft_model(base, config, adapter_name=names[0])
    for name in names[1:]:
        model.add_adapter(name, config)
    model.set_adapter(names[0])
    return model


def load_adapter(base_model, adapter_dir: str | Path):
    from peft import PeftModel

    return PeftModel.from_pretrained(base_model, str(adapter_dir))


def disable_dropout(model) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
