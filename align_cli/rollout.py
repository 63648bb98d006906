"""The shared online engine: batched sampling (KV cache, left padding, stop at EOS), per-token
log-probs under the policy and the reference (the same model with its LoRA adapter disabled), entropy,
and the counters every comparison uses as x-axes.

PPO, SAC, rejection sampling, preference-pair generation and the eval harness all sample through
`sample` and score through `score`, so the same logits mask and sampling flags apply everywhere.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList


@dataclass
class Counters:
    """Cumulative progress counters (`progress/*`): the x-axes of every comparison."""

    optimizer_steps: int = 0
    samples_generated: int = 0
    rm_queries: int = 0
    pref_pairs: int = 0  # distinct preference pairs trained on (a second epoch adds none)
    pref_pairs_trained: int = 0  # pairs trained on, repeats included: the eval cadence of offline algorithms
    data_passes: float = 0.0  # passes over the offline data (epochs)
    tokens_generated: int = 0
    forward_tokens: int = 0  # token positions through any network (policy, reference, critics, reward model)
    counting_forward: bool = True  # off while the eval harness runs: evaluation is not training compute
    started_at: float = field(default_factory=time.perf_counter)

    def budget_trained(self) -> int:
        """Budget the policy has trained on so far, repeats included (the eval cadence): pairs or RM queries."""
        return self.pref_pairs_trained or self.rm_queries

    def as_metrics(self) -> dict[str, float]:
        return {
            "progress/optimizer_steps": self.optimizer_steps,
            "progress/samples_generated": self.samples_generated,
            "progress/rm_queries": self.rm_queries,
            "progress/pref_pairs": self.pref_pairs,
            "progress/data_passes": round(self.data_passes, 4),
            "progress/tokens_generated": self.tokens_generated,
            "progress/forward_tokens": self.forward_tokens,
            "progress/wall_s": round(time.perf_counter() - self.started_at, 3),
        }


    def count_forward_tokens(self, module: torch.nn.Module) -> None:
        """Add the token positions of every forward pass of `module` to `forward_tokens` (padding included:
        it is computed too). Hook a model's decoder and every pass counts, whichever adapter is active; with
        a KV cache, generation counts each token once."""

        def hook(_module, args, kwargs) -> None:
            if not self.counting_forward:
                return
            ids = kwargs.get("input_ids", args[0] if args else None)
            embeds = kwargs.get("inputs_embeds")
            shape = ids.shape if ids is not None else embeds.shape[:2] if embeds is not None else None
            if shape is not None:
                self.forward_tokens += int(shape[0] * shape[1])

        module.register_forward_pre_hook(hook, with_kwargs=True)

    @contextlib.contextmanager
    def forward_counting_paused(self):
        was, self.counting_forward = self.counting_forward, False
        try:
            yield
        finally:
            self.counting_forward = was


@dataclass
class Batch:
    """Prompts + sampled responses as one left-padded prompt block followed by a right-padded response block."""

    prompts: list[str]
    responses: list[str]
    input_ids: torch.Tensor  # [B, P + T]
    attention_mask: torch.Tensor  # [B, P + T]; 0 on left padding and after the response ends
    prompt_width: int  # P: response token t sits at column P + t
    response_mask: torch.Tensor  # [B, T] bool: response tokens, EOS included
    eos_found: torch.Tensor  # [B] bool

    @property
    def response_ids(self) -> torch.Tensor:
        return self.input_ids[:, self.prompt_width :]

    @property
    def response_lengths(self) -> torch.Tensor:
        return self.response_mask.sum(-1)


class AllowedTokens(LogitsProcessor):
    """Restricts sampling to a fixed token set (task=tree: the response tokens only)."""

    def __init__(self, token_ids: list[int]):
        self.token_ids = torch.tensor(token_ids)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return mask_logits(scores, self.token_ids)


def mask_logits(logits: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    if allowed is None:
        return logits
    masked = torch.full_like(logits, float("-inf"))
    index = allowed.to(logits.device)
    masked[..., index] = logits[..., index]
    return masked


def encode_prompts(tokenizer, prompts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt ids (with the tokenizer's BOS, as TRL's trainers encode prompts)."""
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    width = max(len(e) for e in encoded)
    pad = tokenizer.pad_token_id
    ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for i, e in enumerate(encoded):
        ids[i, width - len(e) :] = torch.tensor(e)
        mask[i, width - len(e) :] = 1
    return ids.to(device), mask.to(device)


def decode_response(tokenizer, ids: list[int]) -> str:
    """Response text starts with the word separator: prompt + response is the full text (TRL joins them as is)."""
    return " " + tokenizer.decode(ids, skip_special_tokens=True).strip()


@torch.no_grad()
def sample(
    model,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int,
    seed: int,
    batch_size: int = 256,
    temperature: float = 1.0,
    allowed_token_ids: list[int] | None = None,
    stop_at_eos: bool = True,
    counters: Counters | None = None,
) -> Batch:
    """Sample one response per prompt. Deterministic for a seed (its own RNG stream, the global one is left alone)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    # Explicit flags: a model's generation config may carry top-k/top-p defaults that bias every KL estimate.
    gen_config = GenerationConfig(
        do_sample=True,
        temperature=temperature,
        top_k=0,
        top_p=1.0,
        max_new_tokens=max_new_tokens,
        eos_token_id=tokenizer.eos_token_id if stop_at_eos else None,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        use_cache=True,
    )
    processors = LogitsProcessorList([AllowedTokens(allowed_token_ids)] if allowed_token_ids is not None else [])
    chunks = []
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for start in range(0, len(prompts), batch_size):
            part = prompts[start : start + batch_size]
            ids, mask = encode_prompts(tokenizer, part, device)
            out = model.generate(
                input_ids=ids, attention_mask=mask, generation_config=gen_config, logits_processor=processors
            )
            chunks.append((part, ids, mask, out[:, ids.shape[1] :]))
    model.train(was_training)
    batch = _assemble(tokenizer, chunks, max_new_tokens, stop_at_eos, device)
    if counters is not None:
        counters.samples_generated += len(prompts)
        counters.tokens_generated += int(batch.response_mask.sum())
    return batch


def _assemble(tokenizer, chunks, max_new_tokens: int, stop_at_eos: bool, device) -> Batch:
    """Stitch generate() outputs into one Batch with a common prompt width and response masks."""
    width = max(c[1].shape[1] for c in chunks)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    prompts, rows_ids, rows_mask, responses, resp_masks, eos_found = [], [], [], [], [], []
    for part, ids, mask, resp in chunks:
        left = width - ids.shape[1]
        ids = F.pad(ids, (left, 0), value=pad)
        mask = F.pad(mask, (left, 0), value=0)
        resp = F.pad(resp, (0, max_new_tokens - resp.shape[1]), value=pad)
        if stop_at_eos:
            is_eos = resp == eos
            found = is_eos.any(-1)
            # Everything up to and including the first EOS belongs to the response.
            first_eos = torch.where(found, is_eos.float().argmax(-1), torch.full_like(found, max_new_tokens - 1,
                                                                                   dtype=torch.long))
            positions = torch.arange(max_new_tokens, device=resp.device)
            rmask = positions[None, :] <= first_eos[:, None]
        else:
            found = torch.zeros(resp.shape[0], dtype=torch.bool, device=resp.device)
            rmask = torch.ones_like(resp, dtype=torch.bool)
        resp = resp.masked_fill(~rmask, pad)
        prompts.extend(part)
        rows_ids.append(torch.cat([ids, resp], 1))
        rows_mask.append(torch.cat([mask, rmask.long()], 1))
        resp_masks.append(rmask)
        eos_found.append(found)
        for row, row_mask in zip(resp.tolist(), rmask.tolist(), strict=True):
            kept = [t for t, m in zip(row, row_mask, strict=True) if m and t != eos]
            responses.append(decode_response(tokenizer, kept))
    return Batch(
        prompts=prompts,
        responses=responses,
        input_ids=torch.cat(rows_ids).to(device),
        attention_mask=torch.cat(rows_mask).to(device),
        prompt_width=width,
        response_mask=torch.cat(resp_masks).to(device),
        eos_found=torch.cat(eos_found).to(device),
    )


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def response_logits(model, batch_ids, attention_mask, prompt_width: int, allowed=None) -> torch.Tensor:
    """Logits that predict each response token: [B, T, V] (masked like sampling when `allowed` is given)."""
    out = model(input_ids=batch_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask),
                use_cache=False)
    logits = out.logits[:, prompt_width - 1 : -1].float()
    return mask_logits(logits, allowed)


def decoder_of(model):
    """The transformer trunk (hidden states, no LM head) of a causal LM or peft model."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder()


def hidden_states(model, ids: torch.Tensor, attention: torch.Tensor, prompt_width: int) -> torch.Tensor:
    """Last hidden state at the positions that predict each response token: [B, T, d]."""
    out = decoder_of(model)(input_ids=ids, attention_mask=attention, position_ids=position_ids(attention),
                            use_cache=False)
    return out.last_hidden_state[:, prompt_width - 1 : -1]


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over the positions where mask is true (0 if there are none)."""
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp(min=1)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits, -1)
    # exp(-inf) * -inf is nan: masked tokens contribute 0.
    return -(logp.exp() * logp.nan_to_num(neginf=0.0)).sum(-1)


@contextlib.contextmanager
def reference(model):
    """The reference policy: the base with the LoRA adapter (and modules_to_save) disabled."""
    if hasattr(model, "disable_adapter"):
        with model.disable_adapter():
            yield model
    else:
        yield model


@dataclass
class Scores:
    logprobs: torch.Tensor  # [B, T] policy, zero outside the response
    ref_logprobs: torch.Tensor  # [B, T] reference
    entropy: torch.Tensor  # [B, T] policy entropy per position


@torch.no_grad()
def score(model, batch: Batch, allowed_token_ids: list[int] | None = None, batch_size: int = 256) -> Scores:
    """Per-token log-probs of the sampled responses under the policy and the reference, and policy entropy."""
    allowed = torch.tensor(allowed_token_ids) if allowed_token_ids is not None else None
    was_training = model.training
    model.eval()
    parts = []
    for start in range(0, batch.input_ids.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        ids, mask = batch.input_ids[sl], batch.attention_mask[sl]
        tokens = ids[:, batch.prompt_width :]
        logits = response_logits(model, ids, mask, batch.prompt_width, allowed)
        logp, ent = token_logprobs(logits, tokens), token_entropy(logits)
        with reference(model):
            ref_logp = token_logprobs(response_logits(model, ids, mask, batch.prompt_width, allowed), tokens)
        rmask = batch.response_mask[sl]
        parts.append((logp * rmask, ref_logp * rmask, ent * rmask))
    model.train(was_training)
    return Scores(*(torch.cat(p) for p in zip(*parts, strict=True)))
