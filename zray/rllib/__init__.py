"""zray.rllib: RLlib 2.x's public surface (PPO, DQN; torch) on zray actors.

    from zray.rllib.algorithms.ppo import PPOConfig
    algo = PPOConfig().environment("CartPole-v1").build_algo()
    print(algo.train()["env_runners"]["episode_return_mean"])

Env runners are zray actors stepping vectorized envs with a numpy copy of the policy; the
learner (torch) runs in the driver. torch and gymnasium are imported only when an algorithm
is used. See docs/rllib.md.
"""
import importlib

_LAZY = {
    "Algorithm": "zray.rllib.algorithms.algorithm",
    "AlgorithmConfig": "zray.rllib.algorithms.algorithm_config",
    "PPO": "zray.rllib.algorithms.ppo",
    "PPOConfig": "zray.rllib.algorithms.ppo",
    "DQN": "zray.rllib.algorithms.dqn",
    "DQNConfig": "zray.rllib.algorithms.dqn",
    "register_env": "zray.rllib.env_registry",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'zray.rllib' has no attribute {name!r}")
