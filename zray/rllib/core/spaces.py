"""Observation and action spaces reduced to what the models need: flat float32 vectors in,
a categorical or diagonal-Gaussian distribution out.

Box observations are flattened; Discrete ones become one-hot vectors; anything else goes
through `gymnasium.spaces.flatten`.
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ObsSpec:
    kind: str          # "box" | "discrete" | "other"
    dim: int
    space: object = None   # kept only for "other"

    def encode(self, obs_list):
        """A list of observations -> a float32 array (len, dim)."""
        if self.kind == "box":
            return np.asarray(obs_list, dtype=np.float32).reshape(len(obs_list), self.dim)
        if self.kind == "discrete":
            out = np.zeros((len(obs_list), self.dim), np.float32)
            out[np.arange(len(obs_list)), np.asarray(obs_list, dtype=np.int64)] = 1.0
            return out
        from gymnasium.spaces import flatten
        return np.stack([np.asarray(flatten(self.space, o), np.float32) for o in obs_list])

    def encode_one(self, obs):
        return self.encode([obs])


@dataclass(frozen=True)
class ActionSpec:
    kind: str          # "discrete" | "box"
    n: int             # number of actions (discrete) or action dimensions (box)
    low: tuple = ()
    high: tuple = ()

    @property
    def dist_inputs(self):
        """Width of the policy head: logits, or a mean and a log-std per dimension."""
        return self.n if self.kind == "discrete" else 2 * self.n


def obs_spec(space):
    from gymnasium import spaces
    if isinstance(space, spaces.Box):
        return ObsSpec("box", int(np.prod(space.shape)) if space.shape else 1)
    if isinstance(space, spaces.Discrete):
        return ObsSpec("discrete", int(space.n))
    return ObsSpec("other", int(spaces.flatdim(space)), space)


def action_spec(space):
    from gymnasium import spaces
    if isinstance(space, spaces.Discrete):
        if int(space.start) != 0:
            raise ValueError(f"Discrete action spaces must start at 0, got start={space.start}")
        return ActionSpec("discrete", int(space.n))
    if isinstance(space, spaces.Box) and len(space.shape) == 1:
        return ActionSpec("box", int(space.shape[0]), tuple(map(float, space.low)),
                          tuple(map(float, space.high)))
    raise NotImplementedError(f"zray.rllib supports Discrete and 1-D Box action spaces, "
                              f"got {space}")
