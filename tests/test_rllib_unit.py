"""zray.rllib's decisions as plain functions, without a cluster: GAE, the PPO and DQN losses,
the replay buffer, schedules, the numpy twin of the models, the config and the env runner."""
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
gym = pytest.importorskip("gymnasium")

from zray.rllib.algorithms.dqn import DQNConfig  # noqa: E402
from zray.rllib.algorithms.dqn.dqn_learner import td_loss, td_targets  # noqa: E402
from zray.rllib.algorithms.ppo import PPOConfig  # noqa: E402
from zray.rllib.algorithms.ppo.ppo_learner import (PPOLossConfig, adapt_kl_coeff,  # noqa: E402
                                                   ppo_loss)
from zray.rllib.core.distributions import Categorical, DiagGaussian  # noqa: E402
from zray.rllib.core.numpy_net import sample_categorical, sample_categorical_list  # noqa: E402
from zray.rllib.core.rl_module import DQNTorchRLModule, PPOTorchRLModule  # noqa: E402
from zray.rllib.core.spaces import ActionSpec, action_spec, obs_spec  # noqa: E402
from zray.rllib.env.env_runner import EnvRunner, seed_for  # noqa: E402
from zray.rllib.env_registry import env_creator_for, register_env  # noqa: E402
from zray.rllib.utils.metrics import EpisodeWindow  # noqa: E402
from zray.rllib.utils.postprocessing import (bootstrap_truncated, compute_gae,  # noqa: E402
                                             explained_variance, standardize)
from zray.rllib.utils.replay_buffers import ReplayBuffer, fragment_to_transitions  # noqa: E402
from zray.rllib.utils.schedules import PiecewiseSchedule  # noqa: E402


# -- GAE -----------------------------------------------------------------------------------------
def _gae_reference(rewards, values, dones, last_value, gamma, lam):
    adv, gae = [], 0.0
    next_v = last_value
    for t in reversed(range(len(rewards))):
        nd = 1.0 - dones[t]
        delta = rewards[t] + gamma * nd * next_v - values[t]
        gae = delta + gamma * lam * nd * gae
        adv.append(gae)
        next_v = values[t]
    return np.array(adv[::-1], np.float32)


def test_gae_matches_the_recursion_per_env():
    rng = np.random.default_rng(0)
    T, N = 7, 3
    r, v = rng.normal(size=(T, N)), rng.normal(size=(T, N))
    d = rng.random((T, N)) < 0.3
    boot = rng.normal(size=N)
    adv, targets = compute_gae(r, v, d, boot, 0.9, 0.8)
    for n in range(N):
        np.testing.assert_allclose(adv[:, n], _gae_reference(r[:, n], v[:, n], d[:, n],
                                                             boot[n], 0.9, 0.8), rtol=1e-5)
    np.testing.assert_allclose(targets, adv + v.astype(np.float32), rtol=1e-6)


def test_gae_with_lambda_one_and_zero_values_is_the_discounted_return():
    r = np.ones((3, 1))
    adv, _ = compute_gae(r, np.zeros((3, 1)), np.zeros((3, 1)), np.zeros(1), 0.5, 1.0)
    np.testing.assert_allclose(adv[:, 0], [1.75, 1.5, 1.0])


def test_a_done_step_does_not_bootstrap_from_the_next_episode():
    adv, _ = compute_gae(np.array([[1.0], [1.0]]), np.array([[0.0], [100.0]]),
                         np.array([[True], [False]]), np.array([0.0]), 0.99, 1.0)
    assert adv[0, 0] == pytest.approx(1.0)


def test_truncated_steps_bootstrap_from_the_final_observation():
    r = np.zeros((2, 2), np.float32)
    out = bootstrap_truncated(r, {(1, 0): 10.0}, 0.5)
    assert out[1, 0] == 5.0 and out.sum() == 5.0 and r.sum() == 0.0


def test_standardize_and_explained_variance():
    x = standardize(np.arange(10.0))
    assert abs(x.mean()) < 1e-6 and x.std() == pytest.approx(1.0, rel=1e-4)
    assert explained_variance(np.arange(5.0), np.arange(5.0)) == pytest.approx(1.0)
    assert explained_variance(np.ones(3), np.zeros(3)) == -1.0


# -- PPO loss ------------------------------------------------------------------------------------
def test_ppo_loss_at_ratio_one_is_minus_the_mean_advantage():
    logits = torch.randn(8, 3)
    actions = torch.randint(0, 3, (8,))
    adv = torch.randn(8)
    cfg = PPOLossConfig(use_kl_loss=True, vf_loss_coeff=0.0)
    loss, stats = ppo_loss(cfg, 0.2, "discrete", logits, logits, actions, adv,
                           torch.zeros(8), torch.zeros(8))
    assert float(stats["policy_loss"]) == pytest.approx(float(-adv.mean()), abs=1e-6)
    assert float(stats["mean_kl_loss"]) == pytest.approx(0.0, abs=1e-6)
    assert float(loss) == pytest.approx(float(-adv.mean()), abs=1e-6)


def test_ppo_surrogate_is_clipped():
    old = torch.zeros(1, 2)
    new = torch.tensor([[5.0, 0.0]])     # action 0 becomes far more likely: ratio ~ 1.99
    cfg = PPOLossConfig(clip_param=0.2, vf_loss_coeff=0.0, use_kl_loss=False)
    _, stats = ppo_loss(cfg, 0.0, "discrete", new, old, torch.tensor([0]), torch.tensor([1.0]),
                        torch.zeros(1), torch.zeros(1))
    assert float(stats["policy_loss"]) == pytest.approx(-1.2, abs=1e-5)


def test_value_loss_is_clipped_at_vf_clip_param():
    cfg = PPOLossConfig(vf_clip_param=10.0, use_kl_loss=False)
    x = torch.zeros(1, 2)
    _, stats = ppo_loss(cfg, 0.0, "discrete", x, x, torch.tensor([0]), torch.tensor([0.0]),
                        torch.tensor([0.0]), torch.tensor([100.0]))
    assert float(stats["vf_loss"]) == 10.0 and float(stats["vf_loss_unclipped"]) == 10000.0


def test_kl_coeff_adapts_like_rllib():
    assert adapt_kl_coeff(0.2, 0.05, 0.01) == pytest.approx(0.3)
    assert adapt_kl_coeff(0.2, 0.001, 0.01) == pytest.approx(0.1)
    assert adapt_kl_coeff(0.2, 0.01, 0.01) == 0.2


def test_distributions_agree_with_torch():
    logits = torch.randn(5, 4)
    a = torch.randint(0, 4, (5,))
    ref = torch.distributions.Categorical(logits=logits)
    c = Categorical(logits)
    torch.testing.assert_close(c.logp(a), ref.log_prob(a))
    torch.testing.assert_close(c.entropy(), ref.entropy())
    other = torch.randn(5, 4)
    torch.testing.assert_close(c.kl(Categorical(other)), torch.distributions.kl_divergence(
        ref, torch.distributions.Categorical(logits=other)))
    inp, inp2 = torch.randn(5, 4), torch.randn(5, 4)
    g = DiagGaussian(inp)
    refg = torch.distributions.Normal(inp[:, :2], inp[:, 2:].exp())
    x = torch.randn(5, 2)
    torch.testing.assert_close(g.logp(x), refg.log_prob(x).sum(-1))
    torch.testing.assert_close(g.entropy(), refg.entropy().sum(-1))
    refg2 = torch.distributions.Normal(inp2[:, :2], inp2[:, 2:].exp())
    torch.testing.assert_close(g.kl(DiagGaussian(inp2)),
                               torch.distributions.kl_divergence(refg, refg2).sum(-1))


# -- DQN -----------------------------------------------------------------------------------------
def test_td_targets_double_q_uses_the_online_argmax():
    online = torch.tensor([[1.0, 2.0]])
    target = torch.tensor([[10.0, 3.0]])
    r, term = torch.tensor([1.0]), torch.tensor([False])
    assert float(td_targets(r, term, online, target, 0.5, True)) == pytest.approx(2.5)
    assert float(td_targets(r, term, None, target, 0.5, False)) == pytest.approx(6.0)
    assert float(td_targets(r, torch.tensor([True]), online, target, 0.5, True)) == 1.0


def test_td_loss_kinds():
    q, y = torch.tensor([0.0]), torch.tensor([3.0])
    assert float(td_loss(q, y, "huber")) == pytest.approx(2.5)
    assert float(td_loss(q, y, "mse")) == pytest.approx(9.0)
    with pytest.raises(ValueError):
        td_loss(q, y, "l1")


def test_replay_buffer_wraps_and_samples_what_was_added():
    buf = ReplayBuffer(5)
    for start in (0, 3, 6):
        n = 3
        buf.add({"obs": np.arange(start, start + n, dtype=np.float32)[:, None],
                 "actions": np.zeros(n, np.int64), "rewards": np.arange(start, start + n,
                                                                          dtype=np.float32),
                 "next_obs": np.zeros((n, 1), np.float32), "terminateds": np.zeros(n, bool)})
    assert len(buf) == 5 and buf.num_added == 9
    sample = buf.sample(200, np.random.default_rng(0))
    assert set(sample["rewards"].tolist()) == {4.0, 5.0, 6.0, 7.0, 8.0}
    np.testing.assert_array_equal(sample["obs"][:, 0], sample["rewards"])
    with pytest.raises(ValueError):
        ReplayBuffer(0)


def test_schedule_interpolates_and_clamps():
    s = PiecewiseSchedule([(0, 1.0), (100, 0.0)])
    assert s.value(-5) == 1.0 and s.value(50) == 0.5 and s.value(1000) == 0.0
    with pytest.raises(ValueError):
        PiecewiseSchedule([(10, 1.0), (5, 0.0)])


# -- models --------------------------------------------------------------------------------------
@pytest.mark.parametrize("share", [False, True])
def test_numpy_twin_matches_the_ppo_module(share):
    m = PPOTorchRLModule(3, ActionSpec("discrete", 4),
                         {"fcnet_hiddens": [16, 8], "fcnet_activation": "relu",
                          "vf_share_layers": share})
    x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    ref = m.forward_inference({"obs": torch.from_numpy(x)})["action_dist_inputs"].numpy()
    np.testing.assert_allclose(m.to_numpy_net().forward(x.copy()), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dueling", [False, True])
def test_numpy_twin_matches_the_dqn_module(dueling):
    m = DQNTorchRLModule(3, ActionSpec("discrete", 2), {"fcnet_hiddens": [16]},
                         dueling=dueling, hiddens=[8])
    x = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    ref = m.forward_inference({"obs": torch.from_numpy(x)})["qf_preds"].numpy()
    np.testing.assert_allclose(m.to_numpy_net().forward(x.copy()), ref, rtol=1e-5, atol=1e-6)


def test_categorical_sampling_follows_the_probabilities():
    logits = np.log(np.array([[0.7, 0.2, 0.1]] * 20000, np.float32))
    a = sample_categorical(logits, np.random.default_rng(0))
    np.testing.assert_allclose(np.bincount(a, minlength=3) / len(a), [0.7, 0.2, 0.1], atol=0.02)


def test_few_rows_are_sampled_in_python_with_the_same_draws_as_numpy():
    logits = np.random.default_rng(2).normal(size=(3000, 3)).astype(np.float32) * 3
    batched = sample_categorical(logits, np.random.default_rng(7))     # numpy path (many rows)
    uniforms = np.random.default_rng(7).random(len(logits)).tolist()
    rows = [sample_categorical_list(logits[i:i + 1], None, uniforms[i:i + 1])[0]
            for i in range(len(logits))]
    np.testing.assert_array_equal(batched, rows)
    few = sample_categorical(logits[:2], np.random.default_rng(7))     # Python path
    assert few.dtype == np.int64 and few.tolist() == rows[:2]
    one_row = np.log(np.array([[0.7, 0.2, 0.1]], np.float32))
    rng = np.random.default_rng(0)
    drawn = [sample_categorical_list(one_row, rng)[0] for _ in range(20000)]
    np.testing.assert_allclose(np.bincount(drawn, minlength=3) / len(drawn), [0.7, 0.2, 0.1],
                               atol=0.02)


@pytest.mark.parametrize("make", [
    lambda: PPOTorchRLModule(3, ActionSpec("discrete", 4), {"fcnet_hiddens": [16, 8]}),
    lambda: DQNTorchRLModule(3, ActionSpec("discrete", 2), {"fcnet_hiddens": [16]},
                             dueling=True, hiddens=[8])])
def test_one_row_forward_matches_the_batch_and_survives_pickling(make):
    import pickle
    net = make().to_numpy_net()
    x = np.random.default_rng(3).normal(size=(4, 3)).astype(np.float32)
    batch = net.forward(x.copy())
    for i in range(len(x)):
        np.testing.assert_allclose(net.forward(x[i:i + 1].copy()), batch[i:i + 1], rtol=1e-5,
                                   atol=1e-6)
    copy = pickle.loads(pickle.dumps(net))
    assert "_plan" not in copy.__dict__          # the cached layer list does not travel
    np.testing.assert_allclose(copy.forward(x.copy()), batch, rtol=1e-6)


def test_spaces():
    assert obs_spec(gym.spaces.Box(0, 1, (2, 3))).dim == 6
    d = obs_spec(gym.spaces.Discrete(4))
    np.testing.assert_array_equal(d.encode([2]), [[0, 0, 1, 0]])
    assert action_spec(gym.spaces.Box(-1, 1, (2,))).dist_inputs == 4
    with pytest.raises(NotImplementedError):
        action_spec(gym.spaces.MultiBinary(3))


# -- config --------------------------------------------------------------------------------------
def test_config_chains_and_keeps_rllib_defaults():
    c = (PPOConfig().environment("CartPole-v1", env_config={"a": 1})
         .env_runners(num_env_runners=3, num_envs_per_env_runner=2, rollout_fragment_length=50)
         .training(gamma=0.9, lr=1e-3, train_batch_size=600, minibatch_size=64, num_epochs=3,
                   lambda_=0.95, clip_param=0.2, vf_loss_coeff=0.5, entropy_coeff=0.01,
                   kl_coeff=0.0, grad_clip=0.5)
         .rl_module(model_config={"fcnet_hiddens": [32], "vf_share_layers": True})
         .evaluation(evaluation_interval=2, evaluation_duration=3)
         .learners(num_learners=0).debugging(seed=7).framework("torch"))
    assert (c.num_env_runners, c.num_envs_per_env_runner, c.lambda_, c.seed) == (3, 2, 0.95, 7)
    assert c.model_config["vf_share_layers"] and c["lambda"] == 0.95
    assert PPOConfig().lr == 5e-5 and PPOConfig().num_epochs == 30
    assert DQNConfig().target_network_update_freq == 500
    d = PPOConfig.from_dict(c.to_dict())
    assert d.clip_param == 0.2 and d.env_config == {"a": 1}


def test_config_rejects_what_rllib_rejects():
    with pytest.raises(TypeError):
        PPOConfig().training(no_such_option=1)
    with pytest.raises(TypeError):
        PPOConfig().env_runners(num_env_runner=2)
    with pytest.raises(ValueError):
        PPOConfig().framework("tf2")
    with pytest.raises(ValueError):
        PPOConfig().validate()   # no env
    with pytest.raises(ValueError):
        PPOConfig().environment("CartPole-v1").training(lambda_=2.0).validate()


def test_rollout_fragment_length_auto_splits_the_batch():
    c = PPOConfig().training(train_batch_size=1000).env_runners(num_env_runners=3,
                                                               num_envs_per_env_runner=2)
    assert c.get_rollout_fragment_length() == 167


# -- env registry and runner ---------------------------------------------------------------------
class _Counter(gym.Env):
    """Reward 1 per step; ends (truncated) after `limit` steps."""

    def __init__(self, config):
        self.limit = config.get("limit", 3)
        self.observation_space = gym.spaces.Box(0, 100, (1,))
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t], np.float32), 1.0, False, self.t >= self.limit, {}


def test_register_env_and_specs():
    register_env("zray_test_counter", lambda cfg: _Counter(cfg))
    assert env_creator_for("zray_test_counter")({"limit": 2}).limit == 2
    assert env_creator_for(_Counter) is _Counter
    assert "CartPole" in repr(env_creator_for("CartPole-v1"))
    with pytest.raises(TypeError):
        env_creator_for(3)


def test_env_runner_fragments_keep_truncated_final_observations():
    r = EnvRunner(_Counter, {"limit": 3}, num_envs=2, seed=0)
    r.set_weights(PPOTorchRLModule(1, ActionSpec("discrete", 2),
                                   {"fcnet_hiddens": [4]}).to_numpy_net())
    f = r.sample(4)
    assert f.obs.shape == (4, 2, 1) and f.actions.shape == (4, 2)
    assert f.truncateds[2].all() and not f.terminateds.any()
    assert f.final_obs[(2, 0)][0] == 3.0 and f.obs[3, 0, 0] == 0.0   # reset after truncation
    assert f.episode_returns == [3.0, 3.0] and f.episode_lengths == [3, 3]
    t = fragment_to_transitions(f)
    assert t["next_obs"].shape == (8, 1) and t["next_obs"][2 * 2, 0] == 3.0
    report = r.sample_episodes(3, explore=False)
    assert report.episode_returns == [3.0, 3.0, 3.0]


def test_env_runner_is_reproducible_with_a_seed():
    net = PPOTorchRLModule(4, ActionSpec("discrete", 2), {"fcnet_hiddens": [8]}).to_numpy_net()
    runs = []
    for _ in range(2):
        r = EnvRunner(env_creator_for("CartPole-v1"), {}, num_envs=2, seed=3)
        runs.append(r.sample(50, net))
    np.testing.assert_array_equal(runs[0].obs, runs[1].obs)
    np.testing.assert_array_equal(runs[0].actions, runs[1].actions)


def test_one_env_runner_draws_the_actions_a_step_by_step_sampler_would():
    """The runner draws its uniforms for a whole fragment at once: the actions must be those
    of drawing them step by step from the same stream."""
    net = PPOTorchRLModule(4, ActionSpec("discrete", 2), {"fcnet_hiddens": [8]}).to_numpy_net()
    r = EnvRunner(env_creator_for("CartPole-v1"), {}, num_envs=1, seed=3)
    frags = [r.sample(40, net), r.sample(40)]
    rng = np.random.default_rng(seed_for(3, 0, 10_000))
    for f in frags:
        expected = [sample_categorical(net.forward(f.obs[t]), rng) for t in range(40)]
        np.testing.assert_array_equal(f.actions, np.stack(expected))
        assert f.actions.dtype == np.int64 and f.rewards.dtype == np.float32
    assert all(type(x) is float for x in frags[0].episode_returns + frags[1].episode_returns)


def test_env_runner_flattens_multi_dimensional_box_observations():
    class Grid(gym.Env):
        observation_space = gym.spaces.Box(0, 1, (2, 2), np.float32)
        action_space = gym.spaces.Discrete(2)

        def reset(self, seed=None, options=None):
            return np.arange(4, dtype=np.float32).reshape(2, 2), {}

        def step(self, action):
            return np.full((2, 2), float(action), np.float32), 1.0, True, False, {}

    net = PPOTorchRLModule(4, ActionSpec("discrete", 2), {"fcnet_hiddens": [4]}).to_numpy_net()
    f = EnvRunner(lambda cfg: Grid(), {}, num_envs=2, seed=0).sample(3, net)
    assert f.obs.shape == (3, 2, 4) and f.obs[0, 0].tolist() == [0, 1, 2, 3]
    assert f.obs[1].tolist() == [[0, 1, 2, 3]] * 2          # reset after every step
    assert f.episode_returns == [1.0] * 6 and f.episode_lengths == [1] * 6


def test_episode_window_smooths_over_the_last_episodes():
    w = EpisodeWindow(2)
    assert np.isnan(w.stats()["episode_return_mean"])
    w.add([1.0, 2.0, 3.0], [1, 2, 3])
    assert w.stats()["episode_return_mean"] == 2.5 and w.num_episodes_lifetime == 3


def test_import_zray_does_not_import_rllib_or_torch():
    code = ("import sys, zray; assert 'zray.rllib' not in sys.modules; "
            "import zray.rllib; assert 'torch' not in sys.modules and "
            "'gymnasium' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_our_adam_matches_torch_adam():
    from zray.rllib.core.learner import Adam
    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    ours, ref = Adam(a.parameters(), lr=0.01), torch.optim.Adam(b.parameters(), lr=0.01)
    for _ in range(5):
        x = torch.randn(4, 3)
        for net, opt in ((a, ours), (b, ref)):
            opt.zero_grad()
            net(x).pow(2).sum().backward()
            opt.step()
    torch.testing.assert_close(a.weight, b.weight)


def test_a_tune_trial_of_an_algorithm_asks_for_one_bundle_per_env_runner():
    from zray import tune
    from zray.rllib.algorithms.ppo import PPO
    from zray.rllib.algorithms.tune_trainable import algorithm_trainable
    from zray.tune.tuner import _lookup
    trainable = _lookup("PPO")
    assert trainable is algorithm_trainable(PPO) is _lookup(PPO) and trainable.__name__ == "PPO"
    config = PPOConfig().environment("CartPole-v1").env_runners(num_env_runners=2) \
        .evaluation(evaluation_num_env_runners=1)
    pgf = trainable.default_resource_request(config.to_dict())
    assert pgf.bundles == [{"CPU": 1}] * 4 and pgf.strategy == "PACK"
    config.env_runners(num_env_runners=tune.grid_search([0, 3]), num_cpus_per_env_runner=0.5)
    pgf = trainable.default_resource_request(config.to_dict())
    assert pgf.bundles == [{"CPU": 1}] + [{"CPU": 0.5}] * 4
    config.num_env_runners = tune.randint(0, 3)
    with pytest.raises(ValueError, match="num_env_runners sizes each trial's placement group"):
        trainable.default_resource_request(config.to_dict())
