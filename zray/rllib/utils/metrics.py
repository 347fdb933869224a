"""Episode statistics over a sliding window, in RLlib's result keys.

`env_runners/episode_return_mean` is the mean return of the last
`metrics_num_episodes_for_smoothing` (default 100) episodes that ended, across all runners;
NaN until the first episode ends, as in RLlib.
"""
from collections import deque

import numpy as np


class EpisodeWindow:
    def __init__(self, maxlen=100):
        if int(maxlen) < 1:
            raise ValueError(f"metrics_num_episodes_for_smoothing must be >= 1, got {maxlen}")
        self.returns = deque(maxlen=int(maxlen))
        self.lengths = deque(maxlen=int(maxlen))
        self.num_episodes_lifetime = 0

    def add(self, returns, lengths):
        self.returns.extend(returns)
        self.lengths.extend(lengths)
        self.num_episodes_lifetime += len(returns)

    def stats(self):
        r, n = np.asarray(self.returns, np.float64), np.asarray(self.lengths, np.float64)
        nan = float("nan")
        if len(r) == 0:
            return {"episode_return_mean": nan, "episode_return_max": nan,
                    "episode_return_min": nan, "episode_len_mean": nan,
                    "episode_len_max": nan, "episode_len_min": nan}
        return {"episode_return_mean": float(r.mean()), "episode_return_max": float(r.max()),
                "episode_return_min": float(r.min()), "episode_len_mean": float(n.mean()),
                "episode_len_max": int(n.max()), "episode_len_min": int(n.min())}

    def get_state(self):
        return {"returns": list(self.returns), "lengths": list(self.lengths),
                "maxlen": self.returns.maxlen, "lifetime": self.num_episodes_lifetime}

    def set_state(self, state):
        self.returns = deque(state["returns"], maxlen=state["maxlen"])
        self.lengths = deque(state["lengths"], maxlen=state["maxlen"])
        self.num_episodes_lifetime = state["lifetime"]


def episode_stats(returns, lengths):
    """Stats of one batch of episodes (evaluation)."""
    w = EpisodeWindow(max(1, len(returns)))
    w.add(returns, lengths)
    return w.stats()
