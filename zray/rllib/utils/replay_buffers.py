"""A uniform replay buffer of transitions in preallocated numpy rings.

Capacity is in transitions; when full, the oldest are overwritten. `sample(n, rng)` draws n
indices uniformly with replacement (as RLlib's EpisodeReplayBuffer does per timestep).
"""
import numpy as np


class ReplayBuffer:
    FIELDS = ("obs", "actions", "rewards", "next_obs", "terminateds")

    def __init__(self, capacity):
        if int(capacity) < 1:
            raise ValueError(f"replay buffer capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._data = None
        self._next = 0
        self._size = 0
        self.num_added = 0

    def __len__(self):
        return self._size

    def _allocate(self, batch):
        self._data = {k: np.zeros((self.capacity,) + np.asarray(batch[k]).shape[1:],
                                  np.asarray(batch[k]).dtype) for k in self.FIELDS}

    def add(self, batch):
        """Add a dict of equal-length arrays (one row per transition)."""
        n = len(batch["rewards"])
        if n == 0:
            return
        if self._data is None:
            self._allocate(batch)
        if n > self.capacity:   # only the newest `capacity` fit
            batch = {k: np.asarray(batch[k])[-self.capacity:] for k in self.FIELDS}
            n = self.capacity
        idx = (self._next + np.arange(n)) % self.capacity
        for k in self.FIELDS:
            self._data[k][idx] = batch[k]
        self._next = (self._next + n) % self.capacity
        self._size = min(self.capacity, self._size + n)
        self.num_added += n

    def sample(self, n, rng):
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = rng.integers(0, self._size, n)
        return {k: v[idx] for k, v in self._data.items()}

    def get_state(self):
        return {"capacity": self.capacity, "data": self._data, "next": self._next,
                "size": self._size, "num_added": self.num_added}

    def set_state(self, state):
        self.capacity = state["capacity"]
        self._data = state["data"]
        self._next = state["next"]
        self._size = state["size"]
        self.num_added = state["num_added"]


def fragment_to_transitions(frag):
    """A time-major Fragment -> flat transitions (obs, actions, rewards, next_obs,
    terminateds); a truncated step's next_obs is the observation it ended on."""
    T, N = frag.rewards.shape
    next_obs = np.empty_like(frag.obs)
    next_obs[:-1] = frag.obs[1:]
    next_obs[-1] = frag.last_obs
    for (t, n), o in frag.final_obs.items():
        next_obs[t, n] = o
    flat = lambda a: a.reshape((T * N,) + a.shape[2:])   # noqa: E731
    return {"obs": flat(frag.obs), "actions": flat(frag.actions), "rewards": flat(frag.rewards),
            "next_obs": flat(next_obs), "terminateds": flat(frag.terminateds)}
