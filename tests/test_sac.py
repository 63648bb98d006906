"""SAC-discrete: losses against hand-computed values on a 2-position, 3-token example, and a one-step
bandit through the real CLI whose trained policy must match pi_ref * exp(r / alpha) / Z."""

import json
import math

import pytest
import torch
from conftest import only_run_dir, read_jsonl

from align_cli.algos.sac import (
    ReplayBuffer,
    Sequence,
    actor_loss,
    alpha_loss,
    critic_loss,
    critic_targets,
    expected_kl,
    micro_batches,
    path_consistency,
    path_returns,
    reduce_twins,
    soft_mc_returns,
    soft_values,
    terminal_rewards,
    trace_coefficients,
    trace_targets,
)

# One sequence, two response positions (t = 0, 1; the episode ends at t = 1), three actions.
PI = torch.tensor([[[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]]])
PRIOR = torch.tensor([[[0.25, 0.25, 0.5], [0.5, 0.25, 0.25]]])
LOG_RATIO = PI.log() - PRIOR.log()
QT1 = torch.tensor([[[1.0, 2.0, 0.0], [0.5, -1.0, 2.0]]])
QT2 = torch.tensor([[[0.0, 3.0, 1.0], [1.0, -2.0, 1.0]]])
MASK = torch.tensor([[True, True]])
ALPHA, REWARD = 0.5, 2.0


def hand_value(t: int) -> float:
    """V_bar(s_t) = sum_a pi(a) [min(Qt1, Qt2)(a) - alpha log(pi / prior)(a)], written out."""
    total = 0.0
    for a in range(3):
        q_min = min(QT1[0, t, a].item(), QT2[0, t, a].item())
        total += PI[0, t, a].item() * (q_min - ALPHA * math.log(PI[0, t, a].item() / PRIOR[0, t, a].item()))
    return total


def test_soft_values_and_expected_kl_match_hand_sums():
    values = soft_values(PI, LOG_RATIO, torch.minimum(QT1, QT2), ALPHA)
    # t = 0: min Q = [0, 2, 0]; log ratios = [ln 2, 0, ln 0.5] -> 0.5*(0 - 0.5 ln2) + 0.25*2 + 0.25*(0 + 0.5 ln2)
    assert values[0, 0].item() == pytest.approx(0.5 - 0.125 * math.log(2))
    assert values[0, 1].item() == pytest.approx(hand_value(1))
    kl0 = 0.5 * math.log(2) + 0.25 * math.log(0.5)
    assert expected_kl(PI, LOG_RATIO)[0, 0].item() == pytest.approx(kl0)


def test_one_step_critic_target_uses_min_over_twins_and_masks_done():
    token_rewards = terminal_rewards(torch.tensor([REWARD]), MASK)
    assert token_rewards.tolist() == [[0.0, REWARD]]
    values = soft_values(PI, LOG_RATIO, torch.minimum(QT1, QT2), ALPHA)
    kl = expected_kl(PI, LOG_RATIO)
    y = critic_targets(token_rewards, values, kl, MASK, ALPHA, gamma=0.9, n_step=1)
    # t = 0: r_0 + gamma V_bar(s_1); t = 1 is terminal: r_1 only (no bootstrap past the end).
    assert y[0, 0].item() == pytest.approx(0.0 + 0.9 * hand_value(1))
    assert y[0, 1].item() == pytest.approx(REWARD)


def test_n_step_target_charges_intermediate_kl_and_stops_at_the_end():
    token_rewards = terminal_rewards(torch.tensor([REWARD]), MASK)
    values = soft_values(PI, LOG_RATIO, torch.minimum(QT1, QT2), ALPHA)
    kl = expected_kl(PI, LOG_RATIO)
    y = critic_targets(token_rewards, values, kl, MASK, ALPHA, gamma=0.9, n_step=3)
    kl1 = sum(PI[0, 1, a].item() * math.log(PI[0, 1, a].item() / PRIOR[0, 1, a].item()) for a in range(3))
    # t = 0: r_0 + gamma (r_1 - alpha KL(s_1)); the episode ends before any bootstrap.
    assert y[0, 0].item() == pytest.approx(0.9 * (REWARD - ALPHA * kl1))
    # A padded third position (mask 0) must change nothing.
    padded = critic_targets(torch.cat([token_rewards, torch.zeros(1, 1)], 1), torch.cat([values, torch.ones(1, 1)], 1),
                            torch.cat([kl, torch.ones(1, 1)], 1), torch.tensor([[True, True, False]]), ALPHA, 0.9, 3)
    assert padded[0, :2].tolist() == pytest.approx(y[0].tolist()) and padded[0, 2].item() == 0.0


def test_critic_loss_sums_twin_mean_squared_errors_over_real_tokens():
    q1 = torch.tensor([[1.0, 2.0, 9.0]])
    q2 = torch.tensor([[0.0, 4.0, 9.0]])
    y = torch.tensor([[0.5, 3.0, 0.0]])
    mask = torch.tensor([[True, True, False]])
    expected = ((0.5**2 + 1.0**2) / 2) + ((0.5**2 + 1.0**2) / 2)
    assert critic_loss(q1, q2, y, mask).item() == pytest.approx(expected)


def test_actor_loss_sums_over_actions_and_averages_over_positions():
    q_min = torch.minimum(QT1, QT2)
    got = actor_loss(PI, LOG_RATIO, q_min, ALPHA, MASK).item()
    per_position = []
    for t in range(2):
        per_position.append(sum(
            PI[0, t, a].item() * (ALPHA * math.log(PI[0, t, a].item() / PRIOR[0, t, a].item()) - q_min[0, t, a].item())
            for a in range(3)))
    assert got == pytest.approx(sum(per_position) / 2)
    # The optimum pi ∝ prior exp(Q / alpha) has a lower loss than pi itself.
    best = torch.softmax(PRIOR.log() + q_min / ALPHA, -1)
    assert actor_loss(best, best.log() - PRIOR.log(), q_min, ALPHA, MASK).item() < got


def test_alpha_loss_raises_alpha_when_kl_exceeds_its_target():
    log_alpha = torch.tensor(math.log(0.5), requires_grad=True)
    loss = alpha_loss(log_alpha, mean_kl=0.3, target_kl=0.1)
    assert loss.item() == pytest.approx(0.5 * (0.1 - 0.3))
    loss.backward()
    assert log_alpha.grad.item() == pytest.approx(0.5 * (0.1 - 0.3))  # negative: a descent step raises alpha


# ------------------------------------------------------------------------------------------- options
# One sequence of three response positions (the episode ends after t = 2), for the off-policy targets.
MASK3 = torch.tensor([[True, True, True]])
R3 = torch.tensor([[0.0, 0.0, 1.0]])
V3 = torch.tensor([[0.5, 0.25, 0.75]])  # V_bar(s_0..s_2)
QT3 = torch.tensor([[0.25, 0.5, 1.25]])  # Qtarg(s_t, a_t)


def test_trace_targets_by_hand():
    gamma, c = 0.9, torch.tensor([[0.3, 0.5, 0.2]])
    # deltas: d0 = 0 + 0.9 * 0.25 - 0.25 = -0.025; d1 = 0 + 0.9 * 0.75 - 0.5 = 0.175; d2 = 1 - 1.25 = -0.25
    y = trace_targets(R3, V3, QT3, c, MASK3, gamma, n_step=3)
    assert y[0, 0].item() == pytest.approx(0.9 * 0.25 + 0.9 * 0.5 * 0.175 + 0.81 * 0.5 * 0.2 * -0.25)
    assert y[0, 1].item() == pytest.approx(0.9 * 0.75 + 0.9 * 0.2 * -0.25)
    assert y[0, 2].item() == pytest.approx(1.0)  # terminal: no bootstrap, no trace
    # c = 0 cuts every trace: the one-step soft target; n_step = 2 stops after one correction
    assert trace_targets(R3, V3, QT3, torch.zeros(1, 3), MASK3, gamma, 3)[0].tolist() == pytest.approx(
        [0.9 * 0.25, 0.9 * 0.75, 1.0])
    y2 = trace_targets(R3, V3, QT3, c, MASK3, gamma, n_step=2)
    assert y2[0, 0].item() == pytest.approx(0.9 * 0.25 + 0.9 * 0.5 * 0.175)


def test_trace_coefficients_by_hand():
    logp, mu = torch.tensor([math.log(0.2), math.log(0.6)]), torch.tensor([math.log(0.4), math.log(0.3)])
    assert trace_coefficients(logp, mu, "retrace", 0.9).tolist() == pytest.approx([0.9 * 0.5, 0.9 * 1.0])
    assert trace_coefficients(logp, mu, "tree_backup", 0.9).tolist() == pytest.approx([0.9 * 0.2, 0.9 * 0.6])


def test_twin_reduce_min_and_mean():
    q1, q2 = torch.tensor([1.0, -2.0]), torch.tensor([3.0, -1.0])
    assert reduce_twins(q1, q2, "min").tolist() == [1.0, -2.0]
    assert reduce_twins(q1, q2, "mean").tolist() == [2.0, -1.5]


def test_path_returns_and_soft_mc_returns_by_hand():
    log_ratio = torch.tensor([[0.2, -0.4, 0.6]])
    g = path_returns(R3, log_ratio, V3, MASK3, alpha=0.5, gamma=1.0, n_step=2)
    # G_0 = (0 - 0.1) + (0 + 0.2) + V(s_2); G_1 = 0.2 + (1 - 0.3) + 0 (past the end); G_2 = 1 - 0.3
    assert g[0].tolist() == pytest.approx([0.1 + 0.75, 0.9, 0.7])
    kl = torch.tensor([[0.2, 0.4, 0.1]])
    # r_t + sum_{k > t} (r_k - alpha KL_k)
    assert soft_mc_returns(R3, kl, MASK3, alpha=0.5)[0].tolist() == pytest.approx([-0.2 + 0.95, 0.95, 1.0])


def test_path_consistency_losses_and_their_gradients_by_hand():
    values = torch.tensor([[1.0, 2.0]], requires_grad=True)
    log_ratio = torch.tensor([[0.5, -0.5]], requires_grad=True)
    returns = torch.tensor([[3.0, 0.0]]) - 0.5 * log_ratio  # alpha 0.5, a return linear in the log-ratio
    value_loss, policy_loss = path_consistency(values, returns, MASK, alpha=0.5)
    # residuals V - G: 1 - 2.75 = -1.75 and 2 - 0.25 = 1.75
    assert value_loss.item() == pytest.approx(1.75**2)
    assert policy_loss.item() == pytest.approx(1.75**2 / (2 * 0.5))
    (dv,) = torch.autograd.grad(value_loss, values, retain_graph=True)
    (dr,) = torch.autograd.grad(policy_loss, log_ratio)
    assert dv[0].tolist() == pytest.approx([2 * -1.75 / 2, 2 * 1.75 / 2])  # d/dV mean (V - G)^2
    # d/d rho of (V - G)^2 / (2 alpha) / 2 positions = (V - G) * alpha / alpha / 2: no alpha left
    assert dr[0].tolist() == pytest.approx([-1.75 / 2, 1.75 / 2])


def test_path_consistency_holds_on_every_path_at_the_soft_optimum():
    """A two-step tree (2 actions per step, terminal rewards, alpha 0.5, a non-uniform pi_ref): with pi* and
    V* solved backward, every one of the 4 paths has zero residual at every position, n_step 1 and 2."""
    alpha = 0.5
    ref = {(): [0.7, 0.3], (0,): [0.4, 0.6], (1,): [0.9, 0.1]}
    reward = {(0, 0): 1.0, (0, 1): -0.5, (1, 0): 2.0, (1, 1): 0.0}
    v_star, log_ratio = {}, {}
    for state in [(0,), (1,), ()]:  # leaves' parents first
        q = [reward[(*state, a)] if len(state) == 1 else v_star[(a,)] for a in (0, 1)]
        v_star[state] = alpha * math.log(sum(p * math.exp(qa / alpha) for p, qa in zip(ref[state], q, strict=True)))
        for a in (0, 1):  # alpha log(pi* / pi_ref)(a|s) = Q*(s, a) - V*(s)
            log_ratio[(*state, a)] = (q[a] - v_star[state]) / alpha
    for path in reward:
        rho = torch.tensor([[log_ratio[path[:1]], log_ratio[path]]])
        token_rewards = torch.tensor([[0.0, reward[path]]])
        values = torch.tensor([[v_star[()], v_star[path[:1]]]])
        for n in (1, 2):
            g = path_returns(token_rewards, rho, values, MASK, alpha, gamma=1.0, n_step=n)
            torch.testing.assert_close(g, values, atol=1e-6, rtol=0)


def test_replay_batches_are_sized_in_response_tokens():
    buffer = ReplayBuffer(capacity=3, pad_id=0, seed=0)
    buffer.add([Sequence([1], [5] * n, 0.0) for n in (1, 2, 3, 4)])  # FIFO: the 1-token sequence is evicted
    assert sorted(len(s.response_ids) for s in buffer.items) == [2, 3, 4]
    for _ in range(20):
        batch = buffer.sample(10)
        lengths = [len(s.response_ids) for s in batch]
        assert sum(lengths) >= 10 and sum(lengths[:-1]) < 10  # stops at the first draw that reaches 10


def test_micro_batches_bound_the_padded_size_and_keep_every_sequence():
    batch = [Sequence([1], [5] * n, 0.0) for n in (2, 2, 5, 1, 1, 1, 6)]
    parts = micro_batches(batch, max_tokens=8)
    assert [[len(s.response_ids) for s in part] for part in parts] == [[2, 2], [5], [1, 1, 1], [6]]
    assert all(len(p) * max(len(s.response_ids) for s in p) <= 8 for p in parts)
    assert micro_batches([Sequence([1], [5] * 9, 0.0)], max_tokens=4)[0][0].response_ids == [5] * 9  # never empty


@pytest.mark.xdist_group("tree")
@pytest.mark.parametrize("learner", ["sac", "pcl"])
def test_one_step_bandit_reaches_the_kl_regularised_optimum(run_align, tmp_path, learner):
    """Response length 1, 6 actions, gold rewards: pi must be within KL 0.01 of pi_ref exp(r / alpha) / Z,
    with twin-Q soft actor-critic and with path consistency."""
    # The smoke model's rank-4 adapter moves slowly at the default actor lr (3e-4: KL 0.33 after these 12.8k
    # queries, 0.09 after 25.6k); this test checks where SAC converges, so it takes a faster actor (3e-3).
    run_align("train", "algo=sac", "task=tree", "task.max_new_tokens=1", "reward=gold", "debug=smoke",
              "budget.max_steps=null", "budget.rm_queries=12800", "algo.actor_lr=3e-3", "eval.every=200",
              f"algo.learner={learner}", "logger=none", "paths.runs_dir=runs")
    summary = json.loads((only_run_dir(tmp_path / "runs") / "summary.json").read_text())
    assert summary["initial"]["eval/kl_to_optimal"] > 1.0
    assert summary["final"]["eval/kl_to_optimal"] < 0.01


@pytest.mark.xdist_group("sentiment")
def test_micro_batching_changes_memory_not_the_update(run_align, tmp_path):
    """One forward over the whole update batch and forwards of at most 16 padded tokens accumulate the same
    gradient: the first update (same weights, same replay draw) logs the same loss and gradient norm.
    (Later updates drift apart: Adam turns float-rounding differences of near-zero gradients into steps.)"""
    first = []
    for micro in (100000, 16):
        runs = tmp_path / f"runs{micro}"
        run_align("train", "algo=sac", "debug=smoke", "logger=none", f"algo.micro_batch_tokens={micro}",
                  "algo.log_every=1", "budget.max_steps=1", f"paths.runs_dir={runs}")  # the first update is compared
        rows = [r for r in read_jsonl(only_run_dir(runs) / "metrics.jsonl") if "train/critic_loss" in r]
        first.append([rows[0]["train/critic_loss"], rows[0]["train/critic_grad_norm"], rows[0]["train/target_mean"]])
    assert first[0][1] > 0
    assert first[0] == pytest.approx(first[1], rel=1e-5)


@pytest.mark.xdist_group("sentiment")
@pytest.mark.parametrize(("options", "logged"), [
    (("algo.learner=pcl",), "train/value_mean"),  # n_step_correction None: none for pcl
    (("algo.twin_reduce=mean", "algo.autotune_alpha=true", "algo.alpha_kl_source=fresh"),  # None: retrace
     "train/kl_ref_token_fresh"),
    (("algo.n_step_correction=none",), "train/critic_loss"),
])
def test_sac_options_train_and_log_their_diagnostics(run_align, tmp_path, options, logged):
    run_align("train", "algo=sac", "debug=smoke", "logger=none", "algo.diagnose_every=1", "algo.log_every=1",
              *options, "paths.runs_dir=runs")
    rows = read_jsonl(only_run_dir(tmp_path / "runs") / "metrics.jsonl")
    diag = [r for r in rows if "diag/q_eos_minus_v" in r]
    assert diag and all(math.isfinite(r["diag/q_minus_mc_return"]) for r in diag)
    assert any(logged in r for r in rows)
    traces = [r["train/trace_mean"] for r in rows if "train/trace_mean" in r]
    if not {"algo.learner=pcl", "algo.n_step_correction=none"} & set(options):  # the default: retrace
        # The first update replays only the untrained policy's own samples: pi = mu, every c = lambda min(1, 1)
        # = 1; behaviour log-probs misaligned with their tokens (or left at 0) would not give 1.
        assert traces[0] == pytest.approx(1.0, abs=1e-4)
        assert all(0.0 < c <= 1.0 + 1e-6 for c in traces)
    else:
        assert not traces


@pytest.mark.xdist_group("sentiment")
@pytest.mark.parametrize("source", ["replay", "fresh"])
def test_the_learned_temperature_tracks_the_kl_of_its_source(run_align, tmp_path, source):
    run_align("train", "algo=sac", "debug=smoke", "logger=none", "algo.log_every=1", "algo.autotune_alpha=true",
              "algo.target_kl=0.1", f"algo.alpha_kl_source={source}", "paths.runs_dir=runs")
    rows = [r for r in read_jsonl(only_run_dir(tmp_path / "runs") / "metrics.jsonl") if "train/kl_tracked" in r]
    assert rows
    for row in rows:  # the replayed states' exact KL, or the newest rollout's sampled-token KL
        expected = row["train/kl_ref_token_fresh"] if source == "fresh" else row["train/kl_ref_token"]
        assert row["train/kl_tracked"] == pytest.approx(expected)
    if source == "fresh":  # the two differ, so the check above can tell them apart
        assert any(abs(r["train/kl_ref_token_fresh"] - r["train/kl_ref_token"]) > 1e-6 for r in rows)


@pytest.mark.xdist_group("sentiment")
def test_critic_warmup_trains_the_critic_and_leaves_the_policy_where_it_started(run_align, tmp_path):
    from safetensors.torch import load_file

    run_align("train", "algo=sac", "debug=smoke", "logger=none", "algo.log_every=1",
              "algo.critic_warmup_updates=100000", "paths.runs_dir=runs")  # longer than the whole run
    run = only_run_dir(tmp_path / "runs")
    rows = [r for r in read_jsonl(run / "metrics.jsonl") if "train/critic_grad_norm" in r]
    assert rows and any(r["train/critic_grad_norm"] > 0 for r in rows)
    assert not any("train/actor_grad_norm" in r for r in rows)  # the actor never stepped
    weights = load_file(str(run / "checkpoints" / "final" / "adapter_model.safetensors"))
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and all(float(w.abs().max()) == 0.0 for w in lora_b)  # still peft's zero init: pi = pi_ref


@pytest.mark.parametrize(("options", "message"), [
    (("algo.learner=pcl", "algo.n_step_correction=retrace"), "n_step_correction applies to learner=sac"),
    (("algo.learner=pcl", "algo.twin_reduce=mean"), "twin_reduce applies to learner=sac"),
    (("algo.alpha_kl_source=fresh", "algo.prior=uniform"), "alpha_kl_source=fresh tracks"),
])
def test_options_that_do_not_combine_are_user_errors(run_align, options, message):
    proc = run_align("train", "algo=sac", *options, "debug=smoke", "logger=none", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert message in proc.stderr
