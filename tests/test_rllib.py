"""zray.rllib end to end: the README quickstart shape, checkpoints, evaluation, seeds, a
crashing env, and PPO / DQN learning CartPole."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
gym = pytest.importorskip("gymnasium")

from zray.rllib.algorithms.algorithm import Algorithm  # noqa: E402
from zray.rllib.algorithms.dqn import DQNConfig  # noqa: E402
from zray.rllib.algorithms.ppo import PPOConfig  # noqa: E402
from zray.rllib.env_registry import register_env  # noqa: E402


class SimpleCorridor(gym.Env):
    """RLlib's README env: walk right to the end of a corridor."""

    def __init__(self, config):
        self.end_pos = config["corridor_length"]
        self.cur_pos = 0
        self.action_space = gym.spaces.Discrete(2)
        self.observation_space = gym.spaces.Box(0.0, self.end_pos, shape=(1,))

    def reset(self, *, seed=None, options=None):
        self.cur_pos = 0
        return [self.cur_pos], {}

    def step(self, action):
        if action == 0 and self.cur_pos > 0:
            self.cur_pos -= 1
        elif action == 1:
            self.cur_pos += 1
        done = self.cur_pos >= self.end_pos
        return [self.cur_pos], 1.0 if done else -0.1, done, False, {}


class CrashingEnv(SimpleCorridor):
    def step(self, action):
        if self.cur_pos >= 0 and np.random.random() < 0.5:
            raise_from_the_env()
        return super().step(action)


def raise_from_the_env():
    raise ValueError("the corridor caught fire")


def _small(config):
    return config.training(train_batch_size=400, minibatch_size=100, num_epochs=4,
                           lr=1e-3).rl_module(model_config={"fcnet_hiddens": [32]})


def test_readme_quickstart_shape(shared_cluster):
    config = _small(PPOConfig().environment(env=SimpleCorridor,
                                            env_config={"corridor_length": 5})
                    .env_runners(num_env_runners=2).debugging(seed=0))
    algo = config.build_algo()
    try:
        for _ in range(5):
            result = algo.train()
        assert result["training_iteration"] == 5
        assert result["num_env_steps_sampled_lifetime"] >= 5 * 400
        assert result["env_runners"]["num_episodes"] > 0
        assert math.isfinite(result["env_runners"]["episode_return_mean"])
        assert "policy_loss" in result["learners"]["default_policy"]
        env = SimpleCorridor({"corridor_length": 5})
        terminated = truncated = False
        total_reward, steps = 0.0, 0
        obs, info = env.reset()
        while not terminated and not truncated and steps < 500:
            action = algo.compute_single_action(obs)
            obs, reward, terminated, truncated, info = env.step(action)
            total_reward += reward
            steps += 1
        assert terminated and total_reward > -50
    finally:
        algo.stop()


def test_a_crashing_env_fails_train_with_its_traceback(shared_cluster):
    algo = _small(PPOConfig().environment(CrashingEnv, env_config={"corridor_length": 5})
                  .env_runners(num_env_runners=1)).build_algo()
    try:
        with pytest.raises(ValueError) as info:
            algo.train()
        text = str(info.value)
        assert "the corridor caught fire" in text and "raise_from_the_env" in text
    finally:
        algo.stop()


def test_checkpoint_round_trip_gives_the_same_actions(tmp_path):
    algo = _small(PPOConfig().environment("CartPole-v1").env_runners(num_env_runners=0)
                  .debugging(seed=1)).build_algo()
    algo.train()
    path = algo.save_to_path(str(tmp_path / "ckpt"))
    obs = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    before = [algo.compute_single_action(o, explore=False) for o in obs]
    restored = Algorithm.from_checkpoint(path)
    assert type(restored).__name__ == "PPO" and restored.iteration == 1
    assert [restored.compute_single_action(o, explore=False) for o in obs] == before
    ref = algo.get_module().forward_inference({"obs": torch.from_numpy(obs)})
    out = restored.get_module().forward_inference({"obs": torch.from_numpy(obs)})
    torch.testing.assert_close(ref["action_dist_inputs"], out["action_dist_inputs"])
    # restore_from_path into a fresh algo; training then continues from the same state
    fresh = _small(PPOConfig().environment("CartPole-v1").env_runners(num_env_runners=0)
                   .debugging(seed=99)).build_algo()
    fresh.restore_from_path(path)
    assert [fresh.compute_single_action(o, explore=False) for o in obs] == before
    assert restored.train()["training_iteration"] == 2


def test_seeded_runs_are_reproducible():
    returns = []
    for _ in range(2):
        algo = _small(PPOConfig().environment("CartPole-v1")
                      .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
                      .debugging(seed=5)).build_algo()
        r = [algo.train() for _ in range(2)][-1]
        returns.append((r["env_runners"]["episode_return_mean"],
                        r["learners"]["default_policy"]["total_loss"]))
    assert returns[0] == returns[1]


def test_evaluation_results_and_evaluate():
    register_env("zray_corridor", lambda cfg: SimpleCorridor(cfg))
    algo = _small(PPOConfig().environment("zray_corridor", env_config={"corridor_length": 3})
                  .env_runners(num_env_runners=0)
                  .evaluation(evaluation_interval=1, evaluation_duration=3,
                              evaluation_config={"explore": False})).build_algo()
    result = algo.train()
    ev = result["evaluation"]["env_runners"]
    assert ev["num_episodes"] == 3 and math.isfinite(ev["episode_return_mean"])
    assert algo.evaluate()["env_runners"]["num_episodes"] == 3


def test_get_module_forward_inference_and_continuous_actions():
    algo = _small(PPOConfig().environment("Pendulum-v1").env_runners(num_env_runners=0)
                  ).build_algo()
    algo.train()
    module = algo.get_module()
    out = module.forward_inference({"obs": torch.zeros(3, 3)})
    assert out["action_dist_inputs"].shape == (3, 2)
    a = algo.compute_single_action(np.zeros(3, np.float32))
    assert a.shape == (1,) and -2.0 <= a[0] <= 2.0


@pytest.mark.slow
def test_ppo_learns_cartpole_within_a_budget(shared_cluster):
    config = (PPOConfig().environment("CartPole-v1")
              .env_runners(num_env_runners=2, num_envs_per_env_runner=4)
              .training(lr=3e-4, train_batch_size=2000, minibatch_size=256, num_epochs=8,
                        lambda_=0.95, vf_loss_coeff=0.01, entropy_coeff=0.0, kl_coeff=0.0,
                        grad_clip=0.5)
              .rl_module(model_config={"fcnet_hiddens": [64, 64]})
              .debugging(seed=0))
    algo = config.build_algo()
    try:
        best = -1.0
        for _ in range(20):   # 40k env steps
            best = max(best, algo.train()["env_runners"]["episode_return_mean"])
            if best >= 150:
                break
        assert best >= 150
    finally:
        algo.stop()


@pytest.mark.slow
def test_dqn_learns_cartpole():
    config = (DQNConfig().environment("CartPole-v1").env_runners(num_env_runners=0)
              .training(lr=5e-4, train_batch_size=64, hiddens=[64],
                        epsilon=[(0, 1.0), (6000, 0.02)])
              .rl_module(model_config={"fcnet_hiddens": [64]})
              .debugging(seed=1))
    algo = config.build_algo()
    first = algo.train()["env_runners"]["episode_return_mean"]
    best = first
    for _ in range(11):
        result = algo.train()
        best = max(best, result["env_runners"]["episode_return_mean"])
    assert result["learners"]["default_policy"]["num_target_updates"] > 0
    assert best >= 60 and best > 2 * first
