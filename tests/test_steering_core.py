"""LP-DS and the baselines on toys: the dual step, step-0 equality, chunk TD, distillation, mode shifting."""
import numpy as np
import pytest
import torch

from lpds_ros.errors import LpdsError
from lpds_ros.steering.buffer import ReplayBuffer, transition_fields
from lpds_ros.steering.config import DSRLConfig, LPDSConfig, ResidualConfig
from lpds_ros.steering.entropy import knn_entropy
from lpds_ros.steering.registry import METHODS, make_agent
from lpds_ros.steering.toy import BimodalDecoder

torch.set_num_threads(1)
SMALL = dict(hidden_dims=(64, 64), batch_size=128)


def _batch(agent, n=32, seed=0, reward=None, done=None, discount=None):
    g = torch.Generator().manual_seed(seed)
    batch = {name: torch.randn((n, *shape), generator=g)
             for name, shape in transition_fields(agent.obs_dim, agent.exec_horizon, agent.action_dim,
                                                  agent.extra_fields).items()}
    batch["action"] = batch["action"].clamp(-1, 1)
    batch["reward"] = torch.zeros(n) if reward is None else reward
    batch["done"] = torch.zeros(n) if done is None else done
    batch["discount"] = torch.full((n,), 0.99 ** agent.exec_horizon) if discount is None else discount
    return batch


def test_registry_lists_every_method_and_rejects_unknown_names():
    assert set(METHODS) == {"base", "lpds", "lpds-nolagrange", "lpds-gauss", "dsrl", "dsrl-sac", "residual"}
    with pytest.raises(LpdsError, match="valid methods: base, lpds"):
        make_agent("lpds-typo", BimodalDecoder())
    assert make_agent("lpds", BimodalDecoder(), task="franka-lift").config.delta == 3.0
    assert make_agent("lpds-nolagrange", BimodalDecoder(), LPDSConfig(delta=0.2)).config.lagrange is False
    assert make_agent("lpds-gauss", BimodalDecoder(), LPDSConfig(delta=0.2)).config.learn_scale is True
    with pytest.raises(LpdsError, match="learn_scale"):  # the variant is its own method, not an lpds setting
        make_agent("lpds", BimodalDecoder(), LPDSConfig(delta=0.2, learn_scale=True))
    with pytest.raises(ValueError, match="learn_scale"):
        LPDSConfig(learn_scale=True, lagrange=False)


def test_configs_reject_bad_values_naming_the_field():
    with pytest.raises(ValueError, match="LPDSConfig.delta"):
        LPDSConfig(delta=-1.0)
    with pytest.raises(ValueError, match="AgentConfig.gamma|LPDSConfig.gamma"):
        LPDSConfig(gamma=1.5)
    with pytest.raises(ValueError, match="activation"):
        DSRLConfig(activation="swish-typo")
    with pytest.raises(ValueError, match="LPDSConfig.actor_gradient.*noise_critic, decoder"):
        LPDSConfig(actor_gradient="q_a")
    with pytest.raises(ValueError, match="LPDSConfig.distill_executed.*noise critic"):
        LPDSConfig(distill_executed=True, actor_gradient="decoder")
    for scale in (0.0, float("inf")):
        with pytest.raises(ValueError, match="ResidualConfig.reward_scale.*positive"):
            ResidualConfig(reward_scale=scale)
    with pytest.raises(ValueError, match="DSRLConfig.n_step.*positive"):
        DSRLConfig(n_step=0)
    with pytest.raises(ValueError, match="LPDSConfig.n_step.*integer"):
        LPDSConfig(n_step=2.5)


def test_dual_ascent_raises_alpha_when_violated_and_returns_to_zero_when_slack():
    decoder = BimodalDecoder(obs_dim=3, action_dim=2, horizon=4, exec_horizon=2)
    agent = make_agent("lpds", decoder, LPDSConfig(delta=0.1, dual_lr=0.5, dual_kp=0.0, **SMALL), seed=0)
    batch = _batch(agent)
    with torch.no_grad():  # force a shift with E‖Δ‖² = 8 · 0.2² = 0.32 > δ
        agent.nets["delta"][-1].bias.fill_(0.2)
    alphas = [agent.update(batch)["dual/alpha"] for _ in range(5)]
    assert alphas[0] > 0 and all(b > a for a, b in zip(alphas, alphas[1:]))
    with torch.no_grad():  # now a slack constraint: Δ = 0
        agent.nets["delta"][-1].weight.zero_()
        agent.nets["delta"][-1].bias.zero_()
    agent.optimizers["delta"] = torch.optim.SGD(agent.nets["delta"].parameters(), lr=0.0)  # hold Δ at 0
    for _ in range(100):
        metrics = agent.update(batch)
        if metrics["dual/alpha"] == 0.0:
            break
    assert metrics["dual/alpha"] == 0.0 and metrics["dual/violation"] == pytest.approx(-0.1)


def test_no_lagrange_ablation_keeps_alpha_at_zero():
    decoder = BimodalDecoder(obs_dim=3, action_dim=2, horizon=4, exec_horizon=2)
    agent = make_agent("lpds-nolagrange", decoder, LPDSConfig(delta=0.1, **SMALL))
    with torch.no_grad():
        agent.nets["delta"][-1].bias.fill_(1.0)
    metrics = agent.update(_batch(agent))
    assert metrics["dual/alpha"] == 0.0 and metrics["dual/alpha_effective"] == 0.0


def test_actor_delay_trains_only_the_critics_until_it_ends():
    decoder = BimodalDecoder(obs_dim=3, action_dim=2, horizon=4, exec_horizon=2)
    agent = make_agent("lpds", decoder, LPDSConfig(delta=0.1, actor_delay=3, **SMALL), seed=0)
    batch = _batch(agent, reward=torch.ones(32))
    with torch.no_grad():  # a violated bound, so a dual step would raise α
        agent.nets["delta"][-1].bias.fill_(0.2)
    frozen = [p.clone() for p in agent.nets["delta"].parameters()]
    q_w_before = [p.clone() for p in agent.nets["q_w"].parameters()]
    for _ in range(3):
        metrics = agent.update(batch)
        assert metrics["dual/alpha"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(frozen, agent.nets["delta"].parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(q_w_before, agent.nets["q_w"].parameters()))
    metrics = agent.update(batch)  # the fourth update is the first actor and dual step
    assert metrics["dual/alpha"] > 0.0
    assert not all(torch.equal(a, b) for a, b in zip(frozen, agent.nets["delta"].parameters()))
    with pytest.raises(ValueError, match="LPDSConfig.actor_delay"):
        LPDSConfig(actor_delay=-1)


@pytest.mark.parametrize("method", ["lpds", "lpds-gauss"])
def test_step_zero_steered_decode_equals_base_decode(method):
    decoder = BimodalDecoder(obs_dim=3, action_dim=2, horizon=4, exec_horizon=2)
    agent = make_agent(method, decoder, LPDSConfig(delta=0.3), seed=0)
    obs, eps = torch.randn(16, 3), torch.randn(16, 4, 2)
    assert torch.equal(agent.policy_chunk(obs, eps), decoder.decode(obs, eps))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    chunk, extras = agent.act(obs, g1)
    assert torch.equal(chunk, decoder.decode(obs, torch.randn((16, 4, 2), generator=g2)))
    assert torch.equal(extras["latent"], extras["latent"]) and agent.deviation(obs) == 0.0


@pytest.mark.parametrize("reward_scale", [1.0, 0.01])
def test_chunk_td_target_on_a_hand_computed_mdp(reward_scale):
    """Q^A_target ≡ c: y = s·r + γ^k (1 − done) c, with r, k, done as the loop stores them (s: reward_scale)."""
    decoder = BimodalDecoder(obs_dim=2, action_dim=1, horizon=4, exec_horizon=2)
    agent = make_agent("lpds", decoder, LPDSConfig(delta=0.3, reward_scale=reward_scale, **SMALL))
    c, gamma = 2.0, 0.9
    for q in agent.nets["q_a_target"].qs:
        with torch.no_grad():
            q[-1].weight.zero_()
            q[-1].bias.fill_(c)
    # three transitions: a full chunk (k = 2, rewards 0 then 1), a chunk cut by termination after its first
    # step (reward 1), a chunk cut by a time limit after one step (reward 0, still bootstraps).
    reward = torch.tensor([0 + gamma * 1.0, 1.0, 0.0])
    discount = torch.tensor([gamma**2, gamma, gamma])
    done = torch.tensor([0.0, 1.0, 0.0])
    batch = _batch(agent, n=3, reward=reward, done=done, discount=discount)
    expected = torch.tensor([reward_scale * 0.9 + 0.81 * 2.0, reward_scale * 1.0, 0.9 * 2.0])
    assert agent.update(batch)["critic/q_mean"] == pytest.approx(expected.mean().item(), abs=1e-5)


def test_loop_chunk_rewards_discounts_and_done_flags():
    """ChunkEnvs sums γ^i r_i over the executed steps and stops an env whose episode ends mid-chunk."""
    import gymnasium as gym

    from lpds_ros.steering.loop import ChunkEnvs

    class Chain(gym.Env):  # reward 1 per step; terminates after 3 steps (or truncates, if asked)
        observation_space = gym.spaces.Box(-10, 10, (1,), np.float32)
        action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

        def __init__(self, truncate):
            self.truncate = truncate

        def reset(self, *, seed=None, options=None):
            self.t = 0
            return np.zeros(1, np.float32), {}

        def step(self, action):
            self.t += 1
            end = self.t >= 3
            return np.full(1, self.t, np.float32), 1.0, end and not self.truncate, end and self.truncate, {}

    envs = ChunkEnvs([Chain(False), Chain(True)], seed=0, gamma=0.5)
    actions = np.zeros((2, 2, 1), np.float32)
    fields, finished, steps = envs.step(actions)
    assert steps == 4 and finished == []
    np.testing.assert_allclose(fields["reward"], [1.5, 1.5])
    np.testing.assert_allclose(fields["discount"], [0.25, 0.25])
    fields, finished, steps = envs.step(actions)  # each env ends after one step of this chunk
    assert steps == 2 and len(finished) == 2 and finished[0]["return"] == 3.0
    np.testing.assert_allclose(fields["reward"], [1.0, 1.0])
    np.testing.assert_allclose(fields["discount"], [0.5, 0.5])
    np.testing.assert_allclose(fields["done"], [1.0, 0.0])  # termination only, not truncation
    np.testing.assert_allclose(fields["next_obs"], [[3.0], [3.0]])  # the final obs, not the reset one
    np.testing.assert_allclose(envs.obs, [[0.0], [0.0]])  # both reset for the next decision


def _train_one_step_toy(method, config, iters, seed=0, reward=lambda a: (a > 0).float()):
    """Online on the one-step toy: ``reward(first action)``, by default 1 in the positive mode."""
    torch.manual_seed(seed)
    agent = make_agent(method, BimodalDecoder(), config, seed=seed)
    buffer = ReplayBuffer(iters * 4 + 8, transition_fields(1, 1, 1, agent.extra_fields))
    gen, rng = torch.Generator().manual_seed(seed + 1), np.random.default_rng(seed)
    obs = torch.zeros(4, 1)
    deviations = []
    for it in range(iters):
        chunk, extras = agent.act(obs, gen, warmup=it < 20)
        action = chunk[:, :1]
        rows = {"obs": obs.numpy(), "action": action.numpy(), "reward": reward(action[:, 0, 0]).numpy(),
                "next_obs": obs.numpy(), "done": np.ones(4), "discount": np.full(4, 0.99)}
        buffer.add(rows | {k: v.numpy() for k, v in extras.items()})
        if it >= 20:
            deviations.append(agent.update(buffer.sample(128, rng))["actor/deviation"])
    return agent, deviations


def _mass_and_entropy(agent, n=1024):
    eps = torch.randn((n, 2, 1), generator=torch.Generator().manual_seed(99))
    chunk = agent.policy_chunk(torch.zeros(n, 1), eps)
    return (chunk[:, 0, 0] > 0).float().mean().item(), knn_entropy(chunk[:, 0, :], k=3).item()


@pytest.mark.parametrize("actor_gradient", ["noise_critic", "decoder"])
def test_lpds_moves_mass_to_the_rewarded_mode_within_the_trust_region_and_dsrl_loses_more_entropy(actor_gradient):
    delta = 0.25
    config = LPDSConfig(delta=delta, lr=3e-3, actor_gradient=actor_gradient, **SMALL)
    lpds, deviations = _train_one_step_toy("lpds", config, 420)
    base_mass, base_entropy = _mass_and_entropy(make_agent("base", BimodalDecoder()))
    mass, entropy = _mass_and_entropy(lpds)
    assert base_mass == pytest.approx(0.5, abs=0.05)
    assert mass > base_mass + 0.1
    assert np.mean(deviations[-100:]) <= delta * 1.2 and max(deviations[-100:]) <= delta * 1.5

    dsrl, _ = _train_one_step_toy("dsrl", DSRLConfig(lr=3e-3, init_temperature=0.05, **SMALL), 420)
    dsrl_mass, dsrl_entropy = _mass_and_entropy(dsrl)
    assert dsrl_mass > mass  # unconstrained: it collapses onto the rewarded mode ...
    assert dsrl_entropy < entropy  # ... and loses action entropy doing it


def test_lpds_gauss_divergence_is_twice_the_gaussian_kl():
    agent = make_agent("lpds-gauss", BimodalDecoder(obs_dim=3, action_dim=2, horizon=4, exec_horizon=2), LPDSConfig(delta=0.3))
    g = torch.Generator().manual_seed(0)
    mu, log_sigma = torch.randn(6, 8, generator=g), 0.3 * torch.randn(6, 8, generator=g)
    q = torch.distributions.Normal(mu, log_sigma.exp())
    kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(torch.zeros(6, 8), torch.ones(6, 8))).sum(-1)
    torch.testing.assert_close(agent.divergence(mu, log_sigma), 2 * kl)
    torch.testing.assert_close(agent.divergence(mu, None), mu.pow(2).sum(-1))  # lpds: ‖Δ‖², the σ = 1 case
    with pytest.raises(LpdsError, match="lpds-gauss"):  # no w = ε + Δ(s) form for the runtime
        agent.shift(torch.zeros(1, 3))


def test_lpds_gauss_narrows_the_latent_where_that_pays_and_lpds_cannot():
    """Reward 1 for a first action near 0 (the prior's centre): no shift helps, a smaller σ does."""
    delta = 0.25

    def near_zero(a):
        return (a.abs() < 0.5).float()

    def reward_rate(agent, n=4096):
        eps = torch.randn((n, 2, 1), generator=torch.Generator().manual_seed(99))
        return near_zero(agent.policy_chunk(torch.zeros(n, 1), eps)[:, 0, 0]).mean().item()

    base = reward_rate(make_agent("base", BimodalDecoder()))
    gauss, deviations = _train_one_step_toy("lpds-gauss", LPDSConfig(delta=delta, lr=3e-3, **SMALL), 420, reward=near_zero)
    lpds, _ = _train_one_step_toy("lpds", LPDSConfig(delta=delta, lr=3e-3, **SMALL), 420, reward=near_zero)
    assert base == pytest.approx(0.21, abs=0.03)  # P(|tanh(2z)| < 0.5), z ~ N(0, 1)
    assert reward_rate(gauss) > base + 0.05 and reward_rate(gauss) > reward_rate(lpds) + 0.04
    assert np.mean(deviations[-100:]) <= delta * 1.2 and max(deviations[-100:]) <= delta * 1.5
    sigma = agent_sigma(gauss)
    assert sigma[0] < 0.9  # the first action's latent narrowed: the one the reward reads


def agent_sigma(agent) -> np.ndarray:
    with torch.no_grad():
        return agent._head(agent.features(torch.zeros(1, 1)))[1].exp()[0].numpy()


def test_distilled_noise_critic_matches_the_action_critic_on_prior_noise():
    agent, _ = _train_one_step_toy("lpds", LPDSConfig(delta=0.25, lr=3e-3, **SMALL), 260)
    n = 2048
    eps = torch.randn((n, 2, 1), generator=torch.Generator().manual_seed(3))
    obs = torch.zeros(n, 1)
    with torch.no_grad():
        q_a = agent.nets["q_a"].min(obs, agent.decoder.decode(obs, eps)[:, :1].flatten(1))
        q_w = agent.nets["q_w"](torch.cat([obs, eps.flatten(1)], dim=-1)).squeeze(-1)
    assert (q_w - q_a).pow(2).mean() < 0.15 * q_a.var()


@pytest.mark.parametrize("distill_executed", [False, True])
def test_noise_critic_distils_on_prior_pairs_and_optionally_on_the_executed_ones(distill_executed):
    decoder = BimodalDecoder(obs_dim=3, action_dim=2, horizon=4, exec_horizon=2)
    agent = make_agent("lpds", decoder, LPDSConfig(delta=0.3, distill_executed=distill_executed, **SMALL))
    batch = _batch(agent)
    x = agent.features(batch["obs"])
    x_d, latent, action = agent.distillation_pairs(batch, batch["obs"], x)
    prior = [batch["prior_latent"].flatten(1), batch["prior_action"].flatten(1)]
    executed = [batch["latent"].flatten(1), batch["action"].flatten(1)]
    expected = [torch.cat([p, e]) for p, e in zip(prior, executed)] if distill_executed else prior
    torch.testing.assert_close(latent, expected[0])
    torch.testing.assert_close(action, expected[1])
    assert x_d.shape[0] == latent.shape[0] == (64 if distill_executed else 32)


@pytest.mark.parametrize("method,config", [
    ("dsrl", DSRLConfig(**SMALL)), ("dsrl-sac", DSRLConfig(**SMALL)), ("residual", ResidualConfig(**SMALL)),
    ("lpds", LPDSConfig(delta=0.3, distill_noise="fresh", **SMALL)), ("lpds-gauss", LPDSConfig(delta=0.3, **SMALL)),
    ("lpds", LPDSConfig(delta=0.3, actor_gradient="decoder", **SMALL)),
    ("lpds", LPDSConfig(delta=0.3, distill_executed=True, **SMALL)),
])
def test_every_method_updates_with_its_fixed_metric_keys(method, config):
    decoder = BimodalDecoder(obs_dim=3, action_dim=2, horizon=4, exec_horizon=2)
    agent = make_agent(method, decoder, config)
    obs = torch.randn(5, 3)
    chunk, extras = agent.act(obs, torch.Generator().manual_seed(0))
    assert chunk.shape == (5, 4, 2) and chunk.abs().max() <= 1.0
    assert {k: tuple(v.shape[1:]) for k, v in extras.items()} == agent.extra_fields
    metrics = agent.update(_batch(agent))
    assert tuple(metrics) == agent.metric_keys and all(np.isfinite(v) for v in metrics.values())
    assert agent.policy_chunk(obs, torch.zeros(5, 4, 2)).shape == (5, 4, 2)


@pytest.mark.parametrize("backbone", ["diffusion", "flow"])
def test_decoder_actor_gradient_reaches_the_shift_and_leaves_the_decoder_frozen(backbone):
    """actor_gradient="decoder": Δ_θ learns through Φ's K steps, Φ itself gets no gradient, and no Q^W exists."""
    from lpds_ros.policies import make_policy
    from lpds_ros.policies.config import PolicyConfig

    torch.manual_seed(0)
    decoder = make_policy(PolicyConfig(obs_dim=3, action_dim=2, backbone=backbone, horizon=4, exec_horizon=2,
                                       hidden_dim=32, num_layers=1, cond_dim=16)).eval().requires_grad_(False)
    frozen = {k: v.clone() for k, v in decoder.state_dict().items()}
    agent = make_agent("lpds", decoder, LPDSConfig(delta=0.3, actor_gradient="decoder", **SMALL))
    assert "q_w" not in agent.nets and "prior_latent" not in agent.extra_fields
    shift_before = [p.clone() for p in agent.nets["delta"].parameters()]
    agent.update(_batch(agent, reward=torch.linspace(-1, 1, 32)))
    assert any(not torch.equal(a, b) for a, b in zip(shift_before, agent.nets["delta"].parameters()))
    assert all(p.grad is None for p in decoder.parameters())
    assert all(torch.equal(v, frozen[k]) for k, v in decoder.state_dict().items())


def test_replay_buffer_wraps_and_round_trips(tmp_path):
    fields = transition_fields(2, 2, 1, {"latent": (4, 1)})
    buffer = ReplayBuffer(5, fields)
    for i in range(3):
        buffer.add({name: np.full((2, *shape), i, np.float32) for name, shape in fields.items()})
    assert len(buffer) == 5 and buffer.ptr == 1 and buffer.data["obs"][0, 0] == 2
    buffer.save(tmp_path / "b.npz")
    other = ReplayBuffer(5, fields)
    other.load(tmp_path / "b.npz")
    assert other.ptr == 1 and all(np.array_equal(other.data[k], buffer.data[k]) for k in fields)
    with pytest.raises(LpdsError, match="does not fit"):
        ReplayBuffer(6, fields).load(tmp_path / "b.npz")


def test_n_step_gather_follows_each_env_and_stops_at_episode_ends():
    """Two envs (stride 2), capacity 7, four decisions: the eighth row overwrites the first.  env 0: a → a → a
    (terminated), then a new episode b; env 1: c → c (truncated), then a new episode e → e."""
    fields = transition_fields(1, 1, 1)
    buffer = ReplayBuffer(7, fields)
    decisions = [  # (obs, reward, next_obs, done, discount) for env 0, env 1
        [(0.0, 1.0, 1.0, 0.0, 0.9), (10.0, 10.0, 11.0, 0.0, 0.8)],
        [(1.0, 2.0, 2.0, 0.0, 0.7), (11.0, 20.0, 12.0, 0.0, 0.6)],  # env 1 truncated: next episode starts at 20
        [(2.0, 3.0, 3.0, 1.0, 0.5), (20.0, 30.0, 21.0, 0.0, 0.4)],  # env 0 terminated
        [(5.0, 4.0, 10.0, 0.0, 0.3), (21.0, 40.0, 22.0, 0.0, 0.2)],  # env 0 ends where an older row starts
    ]
    for rows in decisions:
        obs, reward, next_obs, done, discount = (np.array(v, np.float32) for v in zip(*rows))
        buffer.add({"obs": obs[:, None], "action": np.zeros((2, 1, 1)), "reward": reward, "next_obs": next_obs[:, None],
                    "done": done, "discount": discount})
    # positions: decision t of env i sits at (2t + i) mod 7; row 0 (env 0's first) is overwritten by env 1's last
    idx = np.array([2, 1, 5, 6, 4, 3])
    one = buffer.gather(idx)
    assert np.array_equal(one["reward"], [2.0, 10.0, 30.0, 4.0, 3.0, 20.0])
    three = buffer.gather(idx, n_step=3, stride=2)
    np.testing.assert_allclose(three["reward"], [
        2.0 + 0.7 * 3.0,  # stops at env 0's termination
        10.0 + 0.8 * 20.0,  # stops at env 1's truncation (the next row starts another episode)
        30.0 + 0.4 * 40.0,  # stops at the newest row of env 1
        4.0,  # env 0's newest row: its +2 neighbour is an older row of the ring, though its obs matches
        3.0,  # terminated itself
        20.0,  # the truncated chunk bootstraps from its own next_obs
    ], rtol=1e-6)
    np.testing.assert_allclose(three["discount"], [0.7 * 0.5, 0.8 * 0.6, 0.4 * 0.2, 0.3, 0.5, 0.6], rtol=1e-6)
    assert np.array_equal(three["done"], [1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    assert np.array_equal(three["next_obs"][:, 0], [3.0, 12.0, 22.0, 10.0, 3.0, 12.0])
    assert np.array_equal(three["obs"], one["obs"]) and np.array_equal(three["action"], one["action"])


def test_residual_zero_init_mean_starts_at_the_base_policy():
    decoder = BimodalDecoder(obs_dim=3, action_dim=2, horizon=4, exec_horizon=2)
    obs, eps = torch.randn(16, 3), torch.randn(16, 4, 2, generator=torch.Generator().manual_seed(1))
    base = decoder.decode(obs, eps)
    zeroed = make_agent("residual", decoder, ResidualConfig(zero_init_mean=True, **SMALL))
    assert torch.equal(zeroed.policy_chunk(obs, eps), base)
    assert zeroed.deviation(obs) == 0.0
    # the default (random) mean does move the step-0 policy
    default = make_agent("residual", decoder, ResidualConfig(**SMALL))
    assert (default.policy_chunk(obs, eps) - base).abs().max() > 1e-4


def test_noise_critic_check_sees_no_gain_before_training_and_the_rewarded_shift_after():
    from lpds_ros.steering.critic_check import noise_critic_check

    obs = torch.zeros(8, 1)
    untrained = make_agent("lpds", BimodalDecoder(), LPDSConfig(delta=0.25, **SMALL))
    check = noise_critic_check(untrained, obs, latents=32)
    assert check["gain"] == {"q_w": 0.0, "q_a": 0.0, "corr": check["gain"]["corr"], "sign_agreement": 1.0}
    assert check["prior ε"] == check["ε + Δ(s)"]  # Δ = 0 at initialisation: the same latents

    agent, _ = _train_one_step_toy("lpds", LPDSConfig(delta=0.25, lr=3e-3, **SMALL), 260)
    check = noise_critic_check(agent, obs, latents=256)
    assert check["gain"]["q_a"] > 0 and check["gain"]["q_w"] > 0  # both critics value the move to the rewarded mode
    assert check["slope"]["cosine_per_state"] > 0.5  # one latent dimension that matters: the slopes agree
