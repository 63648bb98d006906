"""SAC-discrete for language models: token-level soft actor-critic with a KL-to-reference prior.

Token-level MDP: state s_t = prompt + response tokens so far, action a_t = next token, deterministic
transitions; an episode ends at EOS or at the response length limit; the reward is 0 on every token but
the last, which gets the sequence reward R(x, y). Objective: E[R] - alpha * sum_t KL(pi(.|s_t) || prior(.|s_t)),
optimum pi*(a|s) proportional to prior(a|s) exp(Q*(s, a) / alpha). `prior=reference` (default) is pi_ref
(the base with the LoRA adapter disabled); `prior=uniform` turns the KL into the classic entropy bonus.

Discrete SAC (Christodoulou 2019, "Soft Actor-Critic for Discrete Action Settings") takes full
expectations over the action set instead of samples. A causal LM gives every position's distribution in
one forward pass, so one pass per network over a batch of whole sequences yields pi(.|s_t), Q(s_t, .)
and V_bar(s_{t+1}) for every t at once.

Design choices (defaults measured here, README "SAC"):
- Critic: twin zero-initialised Q-heads over the vocabulary, so Q = 0 and the soft-optimal policy is
  pi_ref at the start. `critic=heads` puts them on the policy's detached last hidden states (no extra
  forward pass); `critic=lora` puts them on their own trunk: a LoRA adapter on the policy's frozen base
  weights (shared, not copied), with a target adapter + target heads updated by Polyak averaging.
- Sparse terminal reward: `n_step` targets, soft along the sampled path (the expected KL of each
  intermediate state is charged, as V_bar does), so the terminal reward reaches early tokens in one
  update instead of one token per target-network lag.
- Reward scale: Adam moves a zero-initialised Q-head by about lr per step, so Q-values of a large
  reward scale are slow to fit. The critic learns (R - m) / s with alpha / s, where m and s are the mean
  and std of the first `learning_starts` rewards: every episode gets exactly one terminal reward, so
  the shift and the joint rescaling leave pi* unchanged.
- Replay buffer of whole sequences (FIFO), `learning_starts`, and `utd` gradient updates per batch of
  new rollouts (the sample-efficiency lever).
- Memory: every vocabulary-wide tensor is [micro-batch, length, |V|]; `micro_batch_tokens` bounds
  B x length and gradients accumulate over micro-batches (4096 x 150k-token vocabulary x fp32 = 2.5 GB
  per tensor).

Sections: config, losses, update, train loop.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from align_cli.config import AlgoConfig, opt
from align_cli.errors import UserError
from align_cli.models import adapters_on_shared_base, disable_dropout, load_causal_lm
from align_cli.rollout import decoder_of, hidden_states, masked_mean, reference, sample, score

ONLINE = True  # samples from the policy and queries the reward during training


# ------------------------------------------------------------------------------------------- config
@dataclass
class Config(AlgoConfig):
    name: str = opt("sac", "algorithm name")
    prior: str = opt("reference", "KL prior: reference (pi_ref, KL-regularised RLHF) | uniform (entropy bonus)")
    alpha: float | None = opt(None, "KL knob with autotune_alpha=false: the fixed temperature, objective E[R] - alpha KL(pi || pi_ref) (larger: closer to pi_ref; None: task.kl_coef, the task's beta); with autotune, its starting value")
    autotune_alpha: bool = opt(False, "learn log-alpha so the mean per-token KL (entropy) tracks its target (algo.target_kl, else task.target_kl); off by default: on sentiment the learned temperature ends below the fixed one's frontier (README \"SAC at its best\")")
    target_kl: float | None = opt(None, "KL knob with the learned temperature (autotune, prior=reference): target mean per-token KL(pi || pi_ref) in nats (None: task.target_kl)")
    target_entropy: float = opt(1.0, "autotune, prior=uniform: target mean per-token entropy in nats")
    alpha_lr: float = opt(1e-2, "autotune: learning rate of log-alpha (Adam; 3e-2 oscillated, 3e-3 lagged the KL)")
    standardize_rewards: bool = opt(True, "learn on (R - mean) / std of the first learning_starts rewards, with alpha / std: same optimum, Q near unit scale")
    gamma: float = opt(1.0, "discount (1: finite horizon, the sequence reward is undiscounted)")
    n_step: int = opt(8, "n-step soft targets: how far the sparse terminal reward travels per update")
    tau: float = opt(0.05, "Polyak averaging rate of the target critic (the early tree-task prototype's value)")
    critic: str = opt("lora", "critic trunk: heads (on the policy's detached hidden states) | lora | trunk (full copy)")
    critic_lora_r: int = opt(16, "critic=lora: rank of the critic's LoRA adapter on the frozen base")
    actor_lr: float = opt(3e-4, "policy (LoRA + trainable modules) learning rate (Adam; SAC papers use 3e-4)")
    critic_lr: float = opt(3e-3, "critic (Q-heads, critic adapter) learning rate (Adam; 1e-2 destabilised sentiment)")
    rollout_batch: int = opt(64, "new sequences sampled (and rewarded) per iteration")
    batch_tokens: int = opt(768, "response tokens per gradient update: whole sequences are drawn uniformly from the replay buffer until they hold this many")
    micro_batch_tokens: int = opt(4096, "padded response tokens per forward pass: bounds the [batch, length, |V|] tensors")
    utd: int = opt(4, "gradient updates per batch of new rollouts (update-to-data ratio; 4: fewer queries to a gain than 2 at about the same compute to get there, UTD 8 fewer still at twice the compute, README \"SAC at its best\")")
    buffer_size: int = opt(4096, "replay buffer capacity in whole sequences (FIFO)")
    learning_starts: int = opt(128, "sequences collected before the first update")
    critic_warmup_updates: int = opt(0, "critic-only updates before the actor (and a learned temperature) starts moving")
    learner: str = opt("sac", "sac: twin Q-heads fitted by soft Bellman targets, the actor by the soft policy loss | pcl: the policy is its own Q (Q = V + alpha log pi/pi_ref, Guo et al. 2021 / Nachum et al. 2017): a value head and the policy fitted together by n-step path consistency, which holds on any replayed path, so old replay needs no correction")
    twin_reduce: str = opt("min", "learner=sac: how the twin Q-heads combine in targets and actor loss: min (clipped double Q) | mean; the zero-initialised twins get identical gradients and never differ, so both give the same run")
    n_step_correction: str | None = opt(None, "learner=sac: off-policy correction of the n-step targets, from the behaviour log-probs stored in the replay buffer: none | retrace (c = lambda min(1, pi/mu), Munos et al. 2016) | tree_backup (c = lambda pi); None: retrace for learner=sac (measured best, README \"SAC at its best\"), none for learner=pcl")
    trace_lambda: float = opt(1.0, "n_step_correction: the lambda of the trace coefficients")
    alpha_kl_source: str = opt("replay", "autotune: the per-token KL the temperature tracks: replay (the update batch's states, old policies' paths) | fresh (the newest rollout batch, sampled by the current policy; one-sample log pi - log pi_ref of its tokens, noisier than replay's exact per-state KL)")
    diagnose_every: int = opt(0, "log diag/* every N updates (0: never): Q(s, EOS) - V(s), Q against the soft Monte-Carlo return of the replayed path, on the update batch")
    anneal_lr: bool = opt(True, "decay the actor and critic learning rates linearly to 0 over budget.rm_queries (CleanRL's anneal_lr): the last policy stops chasing critic noise")
    max_grad_norm: float = opt(1.0, "gradient clipping (actor and critic separately)")
    log_every: int = opt(4, "log train/* every N updates")


# ------------------------------------------------------------------------------------------- losses
# Shapes: B sequences, T response positions, A actions. `pi` and `log_ratio` = log pi - log prior are
# [B, T, A]; `mask` [B, T] marks real response tokens; q tensors are [B, T, A] or, taken, [B, T].
def expected_kl(pi: torch.Tensor, log_ratio: torch.Tensor) -> torch.Tensor:
    """KL(pi(.|s_t) || prior(.|s_t)) per position: [B, T]."""
    return (pi * log_ratio).sum(-1)


def soft_values(pi: torch.Tensor, log_ratio: torch.Tensor, q_target_min: torch.Tensor, alpha: float) -> torch.Tensor:
    """V_bar(s_t) = sum_a pi(a|s_t) [min_i Qtarg_i(s_t, a) - alpha log(pi / prior)(a|s_t)]: [B, T]."""
    return (pi * (q_target_min - alpha * log_ratio)).sum(-1)


def terminal_rewards(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token rewards [B, T]: the sequence reward on each sequence's last token, 0 elsewhere."""
    last = mask.long().sum(-1) - 1
    out = torch.zeros(mask.shape, dtype=rewards.dtype, device=rewards.device)
    out[torch.arange(mask.shape[0], device=mask.device), last] = rewards
    return out


def critic_targets(token_rewards: torch.Tensor, values: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor,
                   alpha: float, gamma: float, n_step: int) -> torch.Tensor:
    """n-step soft targets y_t = r_t + sum_{k=1}^{n-1} gamma^k (r_{t+k} - alpha KL_{t+k}) + gamma^n V_bar_{t+n}.

    Everything past a sequence's last token is 0 (done masking: the episode ends there). With n_step=1
    this is the discrete-SAC target r_t + gamma (1 - done_t) V_bar(s_{t+1})."""
    m = mask.to(values.dtype)
    length = mask.shape[1]

    def shifted(x: torch.Tensor, k: int) -> torch.Tensor:  # x_{t+k}, zero past the end
        return F.pad(x[:, k:], (0, k)) if k < length else torch.zeros_like(x)

    soft_rewards = (token_rewards - alpha * kl) * m
    y = token_rewards * m
    for k in range(1, n_step):
        y = y + gamma**k * shifted(soft_rewards, k)
    return (y + gamma**n_step * shifted(values * m, n_step)) * m


def trace_targets(token_rewards: torch.Tensor, values: torch.Tensor, q_target_taken: torch.Tensor,
                  traces: torch.Tensor, mask: torch.Tensor, gamma: float, n_step: int) -> torch.Tensor:
    """n-step off-policy targets (Retrace, Munos et al. 2016; tree backup, Precup et al. 2000) in soft form:
    y_t = r_t + gamma V_bar_{t+1} + sum_{j=1}^{n-1} gamma^j (prod_{i=1}^{j} c_{t+i}) delta_{t+j},
    delta_k = r_k + gamma V_bar_{k+1} - Qtarg(s_k, a_k), with `traces` c_k of the action taken at s_k.
    V_bar holds each state's expected KL charge, so no alpha appears here. c = 1 everywhere gives the
    uncorrected n-step soft target with the sampled Q(s_k, a_k) swapped for its expectation."""
    m = mask.to(values.dtype)
    length = mask.shape[1]

    def shifted(x: torch.Tensor, k: int) -> torch.Tensor:
        return F.pad(x[:, k:], (0, k)) if k < length else torch.zeros_like(x)

    next_values = shifted(values * m, 1)
    deltas = (token_rewards + gamma * next_values - q_target_taken) * m
    y = (token_rewards + gamma * next_values) * m
    product = torch.ones_like(y)
    for j in range(1, n_step):
        product = product * shifted(traces * m, j)
        y = y + gamma**j * product * shifted(deltas, j)
    return y * m


def trace_coefficients(logp_taken: torch.Tensor, behaviour_logp: torch.Tensor, kind: str, lam: float) -> torch.Tensor:
    """c_k per taken action: retrace lambda min(1, pi / mu); tree_backup lambda pi."""
    if kind == "retrace":
        return lam * torch.exp(torch.clamp(logp_taken - behaviour_logp, max=0.0))
    if kind == "tree_backup":
        return lam * logp_taken.exp()
    raise UserError(f"algo.n_step_correction={kind!r} is not one of: none, retrace, tree_backup")


def reduce_twins(q1: torch.Tensor, q2: torch.Tensor, how: str) -> torch.Tensor:
    """min (clipped double Q) or mean of the twin Q-values."""
    if how == "min":
        return torch.minimum(q1, q2)
    if how == "mean":
        return 0.5 * (q1 + q2)
    raise UserError(f"algo.twin_reduce={how!r} is not one of: min, mean")


def path_returns(token_rewards: torch.Tensor, log_ratio_taken: torch.Tensor, target_values: torch.Tensor,
                 mask: torch.Tensor, alpha: float, gamma: float, n_step: int) -> torch.Tensor:
    """Soft n-step path returns G_t = sum_{k<n} gamma^k (r_{t+k} - alpha log(pi/prior)(a_{t+k}|s_{t+k}))
    + gamma^n V_targ(s_{t+n}), zero past each sequence's end. Path consistency: V*(s_t) = G_t on every path
    (any behaviour policy) when pi and V are the soft optimum."""
    m = mask.to(target_values.dtype)
    length = mask.shape[1]

    def shifted(x: torch.Tensor, k: int) -> torch.Tensor:
        return F.pad(x[:, k:], (0, k)) if k < length else torch.zeros_like(x)

    soft = (token_rewards - alpha * log_ratio_taken) * m
    g = soft
    for k in range(1, n_step):
        g = g + gamma**k * shifted(soft, k)
    return (g + gamma**n_step * shifted(target_values * m, n_step)) * m


def path_consistency(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                     alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(value loss, policy loss) of path consistency: the value fits the path return (returns detached),
    the policy moves its log-ratios to close the residual (values detached); the policy loss is divided by
    2 alpha so its gradient, (V - G) grad sum log pi (descent moves against it), does not scale with alpha."""
    value_loss = masked_mean((values - returns.detach()) ** 2, mask)
    policy_loss = masked_mean((values.detach() - returns) ** 2, mask) / (2.0 * alpha)
    return value_loss, policy_loss


def soft_mc_returns(token_rewards: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, alpha: float) -> torch.Tensor:
    """Diagnostics: the soft return of the replayed path from (s_t, a_t), r_t + sum_{k>t} (r_k - alpha KL_k),
    the KL charged at the current policy: what Q(s_t, a_t) of that policy estimates, gamma = 1."""
    m = mask.to(kl.dtype)
    soft = (token_rewards - alpha * kl) * m
    after = soft.flip(-1).cumsum(-1).flip(-1) - soft  # sum over k > t
    return (token_rewards + after) * m


def critic_loss(q1_taken: torch.Tensor, q2_taken: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum_i mean_t (Q_i(s_t, a_t) - y_t)^2 over real response tokens."""
    return masked_mean((q1_taken - targets) ** 2, mask) + masked_mean((q2_taken - targets) ** 2, mask)


def actor_loss(pi: torch.Tensor, log_ratio: torch.Tensor, q_min: torch.Tensor, alpha: float,
               mask: torch.Tensor) -> torch.Tensor:
    """mean_t sum_a pi(a|s_t) [alpha log(pi / prior)(a|s_t) - min_i Q_i(s_t, a)]: a sum over the
    vocabulary (averaging over it would shrink the gradient by |V|), a mean over positions."""
    return masked_mean((pi * (alpha * log_ratio - q_min)).sum(-1), mask)


def alpha_loss(log_alpha: torch.Tensor, mean_kl: float, target_kl: float) -> torch.Tensor:
    """alpha (target - KL): descending it raises alpha while the per-token KL exceeds its target."""
    return log_alpha.exp() * (target_kl - mean_kl)


# ------------------------------------------------------------------------------------------- networks
class TwinQHeads(torch.nn.Module):
    """Two linear Q-heads over the action set, zero-initialised: Q = 0, so pi* = prior at the start."""

    def __init__(self, hidden: int, actions: int):
        super().__init__()
        self.q1, self.q2 = torch.nn.Linear(hidden, actions), torch.nn.Linear(hidden, actions)
        for head in (self.q1, self.q2):
            torch.nn.init.zeros_(head.weight)
            torch.nn.init.zeros_(head.bias)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.q1(h), self.q2(h)


class ValueHead(torch.nn.Module):
    """learner=pcl: a linear soft-value head V(s), zero-initialised (V = 0: pi* = prior at the start)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.v = torch.nn.Linear(hidden, 1)
        torch.nn.init.zeros_(self.v.weight)
        torch.nn.init.zeros_(self.v.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.v(h).squeeze(-1).float()


class LoraTrunk:
    """critic=lora: a LoRA adapter ("critic") and its Polyak target ("target") on the policy's frozen base
    weights. The base is reloaded and its parameters are replaced by the policy's, so nothing is copied."""

    def __init__(self, policy, base_dir: str, rank: int, device: torch.device):
        self.model = adapters_on_shared_base(policy, base_dir, rank, ["critic", "target"], device)
        self.online_params = {n: p for n, p in self.model.named_parameters() if ".critic." in n}
        self.target_params = {n: p for n, p in self.model.named_parameters() if ".target." in n}
        self.pairs = [(p, self.target_params[n.replace(".critic.", ".target.")]) for n, p in self.online_params.items()]
        # LoRA's B starts at 0 in both adapters; copy A so the target trunk equals the online one.
        polyak(self.pairs, tau=1.0)

    def parameters(self) -> list[torch.Tensor]:
        return list(self.online_params.values())

    def models(self) -> list:
        return [self.model]

    def online(self, ids, attention, prompt_width) -> torch.Tensor:
        # "critic" is active except inside `target`, which switches back when it is done.
        return hidden_states(self.model, ids, attention, prompt_width)

    @torch.no_grad()
    def target(self, ids, attention, prompt_width) -> torch.Tensor:
        self.model.set_adapter("target")
        try:
            return hidden_states(self.model, ids, attention, prompt_width)
        finally:
            self.model.set_adapter("critic")


class CopiedTrunk:
    """critic=trunk: a full copy of the reference trunk, trained, with a Polyak target copy (the early
    prototype). Most capacity, but two extra copies of the base: for small models."""

    def __init__(self, base_dir: str, device: torch.device):
        self.model = load_causal_lm(base_dir, device)
        self.target_model = load_causal_lm(base_dir, device).requires_grad_(False)
        for m in (self.model, self.target_model):
            disable_dropout(m)
        self.pairs = list(zip(decoder_of(self.model).parameters(), decoder_of(self.target_model).parameters(),
                              strict=True))

    def parameters(self) -> list[torch.Tensor]:
        return list(decoder_of(self.model).parameters())

    def models(self) -> list:
        return [self.model, self.target_model]

    def online(self, ids, attention, prompt_width) -> torch.Tensor:
        return hidden_states(self.model, ids, attention, prompt_width)

    @torch.no_grad()
    def target(self, ids, attention, prompt_width) -> torch.Tensor:
        return hidden_states(self.target_model, ids, attention, prompt_width)


@torch.no_grad()
def polyak(pairs, tau: float) -> None:
    """target <- (1 - tau) target + tau online, for each (online, target) tensor pair."""
    for online, target in pairs:
        target.lerp_(online, tau)


# ------------------------------------------------------------------------------------------- update
@dataclass
class Sequence:
    prompt_ids: list[int]
    response_ids: list[int]  # EOS included when emitted
    reward: float
    behaviour_logprobs: list[float] | None = None  # log mu(a_t|s_t) of the sampling policy (n_step_correction)


class ReplayBuffer:
    """FIFO buffer of whole sequences; minibatches are re-padded (prompts left, responses right)."""

    def __init__(self, capacity: int, pad_id: int, seed: int):
        self.items: deque[Sequence] = deque(maxlen=capacity)
        self.pad_id, self.rng = pad_id, random.Random(seed)

    def __len__(self) -> int:
        return len(self.items)

    def add(self, seqs: list[Sequence]) -> None:
        self.items.extend(seqs)

    def sample(self, tokens: int) -> list[Sequence]:
        """Sequences drawn uniformly (with replacement) until their responses hold `tokens` tokens."""
        out, total = [], 0
        while total < tokens:
            out.append(self.items[self.rng.randrange(len(self.items))])
            total += max(1, len(out[-1].response_ids))
        return out

    def collate(self, seqs: list[Sequence], device) -> dict:
        width = max(len(s.prompt_ids) for s in seqs)
        length = max(len(s.response_ids) for s in seqs)
        ids = torch.full((len(seqs), width + length), self.pad_id, dtype=torch.long)
        attention = torch.zeros_like(ids)
        behaviour = torch.zeros(len(seqs), length)
        for i, s in enumerate(seqs):
            ids[i, width - len(s.prompt_ids) : width] = torch.tensor(s.prompt_ids)
            ids[i, width : width + len(s.response_ids)] = torch.tensor(s.response_ids)
            attention[i, width - len(s.prompt_ids) : width + len(s.response_ids)] = 1
            if s.behaviour_logprobs is not None:
                behaviour[i, : len(s.behaviour_logprobs)] = torch.tensor(s.behaviour_logprobs)
        return {"ids": ids.to(device), "attention": attention.to(device), "prompt_width": width,
                "mask": attention[:, width:].bool().to(device), "behaviour_logprobs": behaviour.to(device),
                "rewards": torch.tensor([s.reward for s in seqs], dtype=torch.float32, device=device)}


def micro_batches(batch: list[Sequence], max_tokens: int) -> list[list[Sequence]]:
    """Consecutive parts whose padded response size (sequences x longest response) fits `max_tokens`."""
    parts: list[list[Sequence]] = []
    current: list[Sequence] = []
    longest = 0
    for seq in batch:
        grown = max(longest, len(seq.response_ids))
        if current and (len(current) + 1) * grown > max_tokens:
            parts.append(current)
            current, grown = [], len(seq.response_ids)
        current.append(seq)
        longest = grown
    return parts + [current] if current else parts


@dataclass
class Forward:
    """What both learners compute on a micro-batch before their losses: policy and prior log-probs over the
    action set, the critic's target-trunk features, and the KL statistics (alpha and rewards rescaled)."""

    mask: torch.Tensor  # [B, T]
    taken: torch.Tensor  # [B, T] action index of each response token
    alpha: float  # alpha / reward_scale
    token_rewards: torch.Tensor  # [B, T] the standardised reward on each sequence's last token
    logp: torch.Tensor  # [B, T, A] policy log-probs, with gradient
    pi: torch.Tensor  # [B, T, A] policy probabilities, with gradient
    prior_logp: torch.Tensor  # [B, T, A]
    log_ratio: torch.Tensor  # [B, T, A] log pi - log prior, detached
    kl: torch.Tensor  # [B, T] expected KL(pi || prior) per state, detached
    h_policy: torch.Tensor  # [B, T, H]
    h_target: torch.Tensor  # [B, T, H] the target critic trunk's features
    behaviour_logprobs: torch.Tensor  # [B, T] log mu of the taken tokens (0 when not stored)
    ids: torch.Tensor
    attention: torch.Tensor
    prompt_width: int

    def taken_of(self, x: torch.Tensor) -> torch.Tensor:
        """x[b, t, taken[b, t]]: [B, T]."""
        return x.gather(-1, self.taken[..., None]).squeeze(-1)


class SAC:
    """Actor (the LoRA policy), critics (twin Q-heads, or a value head with learner=pcl) + targets,
    temperature, and the update on a minibatch."""

    def __init__(self, ctx, algo: Config):
        self.ctx, self.algo, self.policy = ctx, algo, ctx.policy
        vocab = self.policy.get_base_model().get_output_embeddings().weight.shape[0]
        allowed = ctx.task.allowed_token_ids
        self.actions = torch.tensor(allowed if allowed is not None else range(vocab), device=ctx.device)
        # token id -> index in the action set (the tree task allows only its response tokens)
        self.action_index = torch.full((vocab,), -1, dtype=torch.long, device=ctx.device)
        self.action_index[self.actions] = torch.arange(len(self.actions), device=ctx.device)
        self.restricted = allowed is not None
        eos = ctx.tokenizer.eos_token_id
        self.eos_action = int(self.action_index[eos]) if eos is not None and int(self.action_index[eos]) >= 0 else None
        for field_, value, choices in (("prior", algo.prior, ("reference", "uniform")),
                                       ("critic", algo.critic, ("heads", "lora", "trunk")),
                                       ("learner", algo.learner, ("sac", "pcl")),
                                       ("twin_reduce", algo.twin_reduce, ("min", "mean")),
                                       ("n_step_correction", algo.n_step_correction, (None, "none", "retrace", "tree_backup")),
                                       ("alpha_kl_source", algo.alpha_kl_source, ("replay", "fresh"))):
            if value not in choices:
                raise UserError(f"algo.{field_}={value!r} is not one of: {', '.join(c for c in choices if c is not None)}")
        if algo.learner == "pcl" and algo.n_step_correction not in (None, "none"):
            raise UserError("algo.n_step_correction applies to learner=sac: path consistency (learner=pcl) holds on "
                            "any replayed path and needs no correction")
        self.n_step_correction = algo.n_step_correction or ("retrace" if algo.learner == "sac" else "none")
        if algo.learner == "pcl" and algo.twin_reduce != "min":
            raise UserError("algo.twin_reduce applies to learner=sac: learner=pcl has one value head, no twins")
        if algo.alpha_kl_source == "fresh" and algo.prior != "reference":
            raise UserError("algo.alpha_kl_source=fresh tracks the sampled tokens' KL to pi_ref: it needs "
                            "prior=reference (with prior=uniform the temperature tracks the entropy)")
        if min(algo.n_step, algo.utd, algo.batch_tokens, algo.micro_batch_tokens) < 1:
            raise UserError("algo.n_step, algo.utd, algo.batch_tokens and algo.micro_batch_tokens must be >= 1")
        hidden = self.policy.get_base_model().config.hidden_size
        if algo.learner == "pcl":
            self.heads, self.target_heads = ValueHead(hidden), ValueHead(hidden)
        else:
            self.heads, self.target_heads = TwinQHeads(hidden, len(self.actions)), TwinQHeads(hidden, len(self.actions))
        self.heads.to(ctx.device)
        self.target_heads.to(ctx.device).requires_grad_(False)
        self.trunk = None
        if algo.critic == "lora":
            self.trunk = LoraTrunk(self.policy, ctx.artefacts.base_dir, algo.critic_lora_r, ctx.device)
        elif algo.critic == "trunk":
            self.trunk = CopiedTrunk(ctx.artefacts.base_dir, ctx.device)
        for model in self.trunk.models() if self.trunk else []:
            ctx.counters.count_forward_tokens(decoder_of(model))
        self.critic_params = list(self.heads.parameters()) + (self.trunk.parameters() if self.trunk else [])
        self.actor_params = [p for p in self.policy.parameters() if p.requires_grad]
        self.actor_opt = torch.optim.Adam(self.actor_params, lr=algo.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic_params, lr=algo.critic_lr)
        task = ctx.cfg.task
        alpha = algo.alpha if algo.alpha is not None else task.kl_coef
        # One KL target for both priors: KL to uniform = log|A| - entropy.
        if algo.prior == "uniform":
            self.target_kl = math.log(len(self.actions)) - algo.target_entropy
        else:
            self.target_kl = algo.target_kl if algo.target_kl is not None else task.target_kl
        autotune = algo.autotune_alpha
        if autotune and self.target_kl is None:
            raise UserError(f"algo.autotune_alpha=true needs a KL target: set algo.target_kl (task {task.name} has none)")
        self.log_alpha = torch.tensor(math.log(alpha), device=ctx.device, requires_grad=autotune)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=algo.alpha_lr) if autotune else None
        self.updates = 0
        self.reward_shift, self.reward_scale = 0.0, 1.0  # set once by `calibrate`

    @property
    def needs_behaviour_logprobs(self) -> bool:
        return self.n_step_correction != "none"

    def calibrate(self, rewards: list[float]) -> None:
        """Fix the reward standardisation from the first rewards (once: the objective stays stationary)."""
        if self.algo.standardize_rewards and len(rewards) > 1:
            mean = sum(rewards) / len(rewards)
            std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / (len(rewards) - 1))
            self.reward_shift, self.reward_scale = mean, (std if std > 1e-6 else 1.0)

    def set_lr_scale(self, scale: float) -> None:
        for opt_, lr in ((self.actor_opt, self.algo.actor_lr), (self.critic_opt, self.algo.critic_lr)):
            for group in opt_.param_groups:
                group["lr"] = lr * scale

    @property
    def alpha(self) -> float:
        return float(self.log_alpha.detach().exp())

    def _log_probs(self, h: torch.Tensor) -> torch.Tensor:
        logits = self.policy.get_base_model().get_output_embeddings()(h).float()
        return torch.log_softmax(logits[..., self.actions] if self.restricted else logits, -1)

    def _forward(self, mb: dict) -> Forward:
        """The passes both learners share: policy (with gradient), prior and target critic trunk (without)."""
        ids, attention, width, mask = mb["ids"], mb["attention"], mb["prompt_width"], mb["mask"]
        h_policy = hidden_states(self.policy, ids, attention, width)
        logp = self._log_probs(h_policy)
        with torch.no_grad():
            if self.algo.prior == "reference":
                with reference(self.policy):
                    prior_logp = self._log_probs(hidden_states(self.policy, ids, attention, width))
            else:
                prior_logp = torch.full_like(logp, -math.log(len(self.actions)))
            h_target = self.trunk.target(ids, attention, width) if self.trunk else h_policy.detach()
            log_ratio = logp.detach() - prior_logp
        pi = logp.exp()
        rewards = (mb["rewards"] - self.reward_shift) / self.reward_scale
        return Forward(mask, self.action_index[ids[:, width:]].clamp(min=0),  # padding -> 0 (masked out)
                       self.alpha / self.reward_scale, terminal_rewards(rewards, mask), logp, pi, prior_logp,
                       log_ratio, expected_kl(pi.detach(), log_ratio), h_policy, h_target,
                       mb["behaviour_logprobs"], ids, attention, width)

    def _critic_features(self, fw: Forward) -> torch.Tensor:
        return self.trunk.online(fw.ids, fw.attention, fw.prompt_width) if self.trunk else fw.h_policy.detach()

    def _sac_losses(self, fw: Forward, train_actor: bool) -> tuple[torch.Tensor, torch.Tensor, dict, torch.Tensor]:
        """Twin-Q soft Bellman critic and the soft policy loss. Returns (critic, actor, stats, Q(s, .))."""
        algo = self.algo
        stats = {}
        with torch.no_grad():
            qt1, qt2 = self.target_heads(fw.h_target)
            q_target = reduce_twins(qt1, qt2, algo.twin_reduce).float()
            values = soft_values(fw.pi.detach(), fw.log_ratio, q_target, fw.alpha)
            if self.n_step_correction == "none":
                targets = critic_targets(fw.token_rewards, values, fw.kl, fw.mask, fw.alpha, algo.gamma, algo.n_step)
            else:
                traces = trace_coefficients(fw.taken_of(fw.logp.detach()), fw.behaviour_logprobs,
                                            self.n_step_correction, algo.trace_lambda)
                targets = trace_targets(fw.token_rewards, values, fw.taken_of(q_target), traces, fw.mask,
                                        algo.gamma, algo.n_step)
                # how far the corrected targets reach: c near 1 keeps the n-step return, near 0 cuts it to one step
                stats["trace_mean"] = float(masked_mean(traces, fw.mask))
        q1, q2 = self.heads(self._critic_features(fw))
        q1_taken, q2_taken = fw.taken_of(q1), fw.taken_of(q2)
        loss_critic = critic_loss(q1_taken, q2_taken, targets, fw.mask)
        q = reduce_twins(q1, q2, algo.twin_reduce).detach().float()
        loss_actor = actor_loss(fw.pi, fw.logp - fw.prior_logp, q, fw.alpha, fw.mask) if train_actor else torch.zeros(())
        stats |= {"q_mean": float(masked_mean(fw.taken_of(q), fw.mask)),
                  "target_mean": float(masked_mean(targets, fw.mask))}
        return loss_critic, loss_actor, stats, q

    def _pcl_losses(self, fw: Forward, train_actor: bool) -> tuple[torch.Tensor, torch.Tensor, dict, torch.Tensor]:
        """Path consistency of the value head and the policy. Returns (value, policy, stats, Q(s, .)) with
        Q = V + alpha log(pi / prior), the policy's own Q."""
        algo = self.algo
        with torch.no_grad():
            target_values = self.target_heads(fw.h_target)
        values = self.heads(self._critic_features(fw))
        log_ratio_taken = fw.taken_of(fw.logp - fw.prior_logp)
        returns = path_returns(fw.token_rewards, log_ratio_taken, target_values, fw.mask, fw.alpha, algo.gamma,
                               algo.n_step)
        loss_value, loss_policy = path_consistency(values, returns, fw.mask, fw.alpha)
        if not train_actor:
            loss_policy = torch.zeros(())
        q = (values.detach()[..., None] + fw.alpha * fw.log_ratio).float()
        stats = {"q_mean": float(masked_mean(fw.taken_of(q), fw.mask)),
                 "target_mean": float(masked_mean(returns.detach(), fw.mask)),
                 "value_mean": float(masked_mean(values.detach(), fw.mask))}
        return loss_value, loss_policy, stats, q

    def _diagnostics(self, fw: Forward, q: torch.Tensor) -> dict[str, float]:
        """diag/*: where the critic stands against the replayed paths' soft returns, and Q(s, EOS) - V(s)."""
        with torch.no_grad():
            values = soft_values(fw.pi.detach(), fw.log_ratio, q, fw.alpha)
            returns = soft_mc_returns(fw.token_rewards, fw.kl, fw.mask, fw.alpha)
            scale = self.reward_scale  # report Q-values in reward units: one reward per path, so V = scale V' + shift
            out = {"diag/q_minus_mc_return": scale * float(masked_mean(fw.taken_of(q) - returns, fw.mask)),
                   "diag/v_mean": scale * float(masked_mean(values, fw.mask)) + self.reward_shift}
            if self.eos_action is not None:
                out["diag/q_eos_minus_v"] = scale * float(masked_mean(q[..., self.eos_action] - values, fw.mask))
                out["diag/pi_eos"] = float(masked_mean(fw.pi.detach()[..., self.eos_action], fw.mask))
        return out

    def _micro_step(self, mb: dict, weight: float, train_actor: bool, diagnose: bool) -> dict[str, float]:
        fw = self._forward(mb)
        losses = self._pcl_losses if self.algo.learner == "pcl" else self._sac_losses
        loss_critic, loss_actor, stats, q = losses(fw, train_actor)
        (weight * (loss_critic + loss_actor)).backward()
        entropy = -(fw.pi.detach() * fw.logp.detach()).sum(-1)
        stats |= {"critic_loss": loss_critic.item(), "actor_loss": loss_actor.item(),
                  "entropy": float(masked_mean(entropy, fw.mask)), "kl_ref_token": float(masked_mean(fw.kl, fw.mask)),
                  "tokens": float(fw.mask.sum())}
        return stats | (self._diagnostics(fw, q) if diagnose else {})

    def update(self, batch: list[Sequence], buffer: ReplayBuffer, fresh_kl: float | None = None) -> dict[str, float]:
        """One gradient step of critic, actor (after the critic warm-up) and temperature; Polyak targets.
        `fresh_kl`: the newest rollout's per-token KL, which the temperature tracks with alpha_kl_source=fresh."""
        algo = self.algo
        train_actor = self.updates >= algo.critic_warmup_updates
        diagnose = algo.diagnose_every > 0 and self.updates % algo.diagnose_every == 0
        self.policy.train()
        self.actor_opt.zero_grad(set_to_none=True)
        self.critic_opt.zero_grad(set_to_none=True)
        stats: dict[str, float] = {}
        total = max(1, sum(len(s.response_ids) for s in batch))
        for part in micro_batches(batch, algo.micro_batch_tokens):
            # Each part's losses are token means: weighting by its token share makes the accumulated
            # gradient the mean over every token of the batch.
            share = sum(len(s.response_ids) for s in part) / total
            out = self._micro_step(buffer.collate(part, self.ctx.device), share, train_actor, diagnose)
            for k, v in out.items():
                stats[k] = stats.get(k, 0.0) + v * (1.0 if k == "tokens" else share)
        stats["critic_grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.critic_params, algo.max_grad_norm))
        self.critic_opt.step()
        if train_actor:
            stats["actor_grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.actor_params, algo.max_grad_norm))
            self.actor_opt.step()
        if self.alpha_opt is not None and train_actor:
            tracked = fresh_kl if algo.alpha_kl_source == "fresh" and fresh_kl is not None else stats["kl_ref_token"]
            stats["kl_tracked"] = tracked  # what the temperature moved on (train/kl_tracked)
            self.alpha_opt.zero_grad(set_to_none=True)
            alpha_loss(self.log_alpha, tracked, self.target_kl).backward()
            self.alpha_opt.step()
        polyak(zip(self.heads.parameters(), self.target_heads.parameters(), strict=True), algo.tau)
        if self.trunk is not None:
            polyak(self.trunk.pairs, algo.tau)
        self.updates += 1
        return stats


# ------------------------------------------------------------------------------------------- train loop
def train(ctx) -> None:
    cfg, algo = ctx.cfg, ctx.cfg.algo
    if ctx.reward is None:
        raise UserError("algo=sac needs an online reward (reward=learned, gold or hf)")
    sac = SAC(ctx, algo)
    buffer = ReplayBuffer(algo.buffer_size, ctx.tokenizer.pad_token_id, seed=cfg.seed + 1)
    prompts = ctx.task.train_prompts()
    prompt_rng = random.Random(cfg.seed)
    budget = cfg.budget.rm_queries
    update_s = tokens_trained = 0.0
    stats: dict[str, float] = {}
    iteration = 0
    bar = tqdm(total=budget, desc="sac: reward queries", unit="q", dynamic_ncols=True)
    while ctx.counters.rm_queries < budget and not ctx.out_of_steps():
        # 1. collect: sample the current policy, score with the reward, store whole sequences.
        if algo.anneal_lr:
            sac.set_lr_scale(1.0 - ctx.counters.rm_queries / budget)
        n = min(algo.rollout_batch, budget - ctx.counters.rm_queries)
        batch_prompts = [prompt_rng.choice(prompts) for _ in range(n)]
        rollout = sample(ctx.policy, ctx.tokenizer, batch_prompts, cfg.task.max_new_tokens,
                         seed=cfg.seed * 1_000_003 + iteration, batch_size=cfg.eval.batch_size,
                         allowed_token_ids=ctx.task.allowed_token_ids, stop_at_eos=ctx.task.stop_at_eos,
                         counters=ctx.counters)
        rewards = ctx.reward(rollout.prompts, rollout.responses, rollout.eos_found.tolist())
        bar.update(n)
        width = rollout.prompt_width
        behaviour, fresh_kl = None, None
        if sac.needs_behaviour_logprobs or (algo.alpha_kl_source == "fresh" and sac.alpha_opt is not None):
            # The sampling policy's log-probs of its own tokens (and the reference's): one scoring pass.
            scored = score(ctx.policy, rollout, ctx.task.allowed_token_ids, batch_size=cfg.eval.batch_size)
            behaviour = scored.logprobs.tolist()
            fresh_kl = float(masked_mean(scored.logprobs - scored.ref_logprobs, rollout.response_mask))
        for i, (row, attn, rmask, reward) in enumerate(zip(rollout.input_ids.tolist(), rollout.attention_mask.tolist(),
                                                           rollout.response_mask.tolist(), rewards, strict=True)):
            prompt_ids = [t for t, a in zip(row[:width], attn[:width], strict=True) if a]
            response_ids = [t for t, m in zip(row[width:], rmask, strict=True) if m]
            logprobs = behaviour[i][: len(response_ids)] if behaviour is not None else None
            buffer.add([Sequence(prompt_ids, response_ids, float(reward), logprobs)])
        iteration += 1
        if len(buffer) < algo.learning_starts:
            continue
        if sac.updates == 0:
            sac.calibrate([s.reward for s in buffer.items])
        # 2. learn: `utd` gradient updates on minibatches from the replay buffer.
        for _ in range(algo.utd):
            started = time.perf_counter()
            stats = sac.update(buffer.sample(algo.batch_tokens), buffer, fresh_kl)
            update_s += time.perf_counter() - started
            tokens_trained += stats.pop("tokens")
            ctx.counters.optimizer_steps += 1
            diagnosed = any(k.startswith("diag/") for k in stats)
            if sac.updates % algo.log_every == 0 or diagnosed:
                fresh = {"train/kl_ref_token_fresh": fresh_kl} if fresh_kl is not None else {}
                ctx.log({**{(k if k.startswith("diag/") else f"train/{k}"): v for k, v in stats.items()},
                         "train/alpha": sac.alpha, **fresh,
                         "train/replay_size": len(buffer), "train/reward_mean": sum(rewards) / len(rewards),
                         "perf/tokens_per_s": tokens_trained / max(update_s, 1e-9),
                         "perf/peak_mem_mb": ctx.peak_mem_mb()})
            if ctx.out_of_steps():
                break
        # Evaluate after all `utd` updates of a batch, as PPO evaluates after all its epochs.
        ctx.maybe_evaluate()
    bar.close()
