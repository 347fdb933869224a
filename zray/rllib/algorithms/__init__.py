"""The algorithms: `Algorithm`, `AlgorithmConfig`, and PPO / DQN with their configs."""
import importlib

_LAZY = {
    "Algorithm": "zray.rllib.algorithms.algorithm",
    "AlgorithmConfig": "zray.rllib.algorithms.algorithm_config",
    "PPO": "zray.rllib.algorithms.ppo", "PPOConfig": "zray.rllib.algorithms.ppo",
    "DQN": "zray.rllib.algorithms.dqn", "DQNConfig": "zray.rllib.algorithms.dqn",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'zray.rllib.algorithms' has no attribute {name!r}")


def get_algorithm_class(name):
    """"PPO" -> the PPO class (for Tune's `Tuner("PPO", ...)`)."""
    names = {"PPO": "zray.rllib.algorithms.ppo", "DQN": "zray.rllib.algorithms.dqn"}
    if name not in names:
        raise ValueError(f"unknown algorithm {name!r}; zray.rllib has {sorted(names)}")
    return getattr(importlib.import_module(names[name]), name)
