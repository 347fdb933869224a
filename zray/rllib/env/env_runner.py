"""An env runner: `num_envs` copies of an environment stepped in lockstep with one batched
numpy forward pass per step.

The same class runs in the driver (`num_env_runners=0`, and evaluation by default) or as an
actor (`EnvRunnerGroup`). It needs no torch: the learner sends a `NumpyNet` of the acting path.

`sample(num_steps)` returns a `Fragment` of `num_steps` steps of every env, time-major. Episodes
run on across calls; a finished env is reset at once, so row t+1 of an env that finished at t
holds the first observation of its next episode. For a truncated step the observation it ended
on is kept in `final_obs`, so learners can bootstrap from it.
"""
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from ..core.numpy_net import (_PY_SAMPLE_MAX, greedy, sample_categorical,
                              sample_categorical_list, sample_gaussian)
from ..core.spaces import action_spec, obs_spec
from ..env_registry import EnvContext, make_env

logger = logging.getLogger("zray.rllib")


@dataclass
class Fragment:
    obs: np.ndarray          # (T, N, obs_dim) float32
    actions: np.ndarray      # (T, N) int64 or (T, N, act_dim) float32
    rewards: np.ndarray      # (T, N) float32
    terminateds: np.ndarray  # (T, N) bool
    truncateds: np.ndarray   # (T, N) bool
    last_obs: np.ndarray     # (N, obs_dim): the observation after the last step
    final_obs: dict = field(default_factory=dict)   # (t, n) -> obs_dim array, truncated steps
    episode_returns: list = field(default_factory=list)   # episodes that ended in this fragment
    episode_lengths: list = field(default_factory=list)

    @property
    def env_steps(self):
        return int(self.rewards.size)


@dataclass
class EpisodeReport:
    episode_returns: list
    episode_lengths: list
    env_steps: int


def seed_for(seed, worker_index, vector_index):
    """The seed of one env: distinct per runner and per env, fixed by the config's seed."""
    return None if seed is None else int(seed) + 1000 * int(worker_index) + int(vector_index)


class EnvRunner:
    def __init__(self, env_creator, env_config=None, num_envs=1, worker_index=0, num_workers=0,
                 seed=None, policy_kind="ppo"):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.worker_index = worker_index
        self.policy_kind = policy_kind
        self.envs = [make_env(env_creator, EnvContext(env_config, worker_index, i, num_workers,
                                                      remote=worker_index > 0))
                     for i in range(num_envs)]
        self.obs_spec = obs_spec(self.envs[0].observation_space)
        self.action_spec = action_spec(self.envs[0].action_space)
        self.rng = np.random.default_rng(seed_for(seed, worker_index, 10_000))
        self._seed = seed
        self._net = None
        self._epsilon = 0.0
        n = num_envs
        self._cur = np.zeros((n, self.obs_spec.dim), np.float32)
        self._ep_return = [0.0] * n
        self._ep_len = [0] * n
        # A Box observation of at most one dimension is written into `_cur` as it comes.
        self._obs_direct = (self.obs_spec.kind == "box"
                            and len(self.envs[0].observation_space.shape) <= 1)
        self._needs_reset = True
        self._seeded = False
        if self.action_spec.kind == "box":
            self._low = np.asarray(self.action_spec.low, np.float32)
            self._high = np.asarray(self.action_spec.high, np.float32)

    # -- setup ---------------------------------------------------------------------------------
    def spaces(self):
        env = self.envs[0]
        return env.observation_space, env.action_space

    def set_weights(self, net, epsilon=None):
        self._net = net
        if epsilon is not None:
            self._epsilon = float(epsilon)

    def ping(self):
        return self.worker_index

    def process_cpu_s(self):
        """CPU seconds this process has used (benchmarks: sampling cost that load cannot skew
        the way it skews wall-clock rates)."""
        return time.process_time()

    def _reset_all(self):
        seeded, self._seeded = not self._seeded, True   # seed the first reset only
        for i, env in enumerate(self.envs):
            seed = seed_for(self._seed, self.worker_index, i) if seeded else None
            obs, _ = env.reset(seed=seed)
            if seeded and seed is not None:
                env.action_space.seed(seed)
            self._write_obs(i, obs)
        self._ep_return = [0.0] * len(self.envs)
        self._ep_len = [0] * len(self.envs)

    def _write_obs(self, i, obs):
        if self._obs_direct:
            self._cur[i] = obs           # numpy casts and checks the shape
        elif self.obs_spec.kind == "box":
            self._cur[i] = np.asarray(obs, np.float32).reshape(-1)
        else:
            self._cur[i] = self.obs_spec.encode_one(obs)[0]

    # -- acting --------------------------------------------------------------------------------
    def _actions(self, obs, explore, uniforms=None):
        """(the actions as stored in a fragment, the actions as passed to the envs): a list of
        Python ints for discrete spaces, clipped float32 arrays for boxes. `uniforms`: this
        step's categorical draws, when `sample` drew them ahead."""
        if self._net is None:
            raise RuntimeError("the env runner has no weights yet: call set_weights() first")
        out = self._net.forward(obs)
        if self.policy_kind == "dqn":
            actions = out.argmax(axis=1)
            if explore and self._epsilon > 0.0:
                random = self.rng.random(len(actions)) < self._epsilon
                if random.any():
                    actions = np.where(random, self.rng.integers(0, self.action_spec.n,
                                                                 len(actions)), actions)
            actions = actions.tolist()
            return actions, actions
        if self.action_spec.kind == "discrete":
            if not explore:
                actions = out.argmax(axis=1).tolist()
            elif out.size <= _PY_SAMPLE_MAX:
                actions = sample_categorical_list(out, self.rng, uniforms)
            else:
                actions = sample_categorical(out, self.rng).tolist()
            return actions, actions
        actions = greedy(out, "box") if not explore else sample_gaussian(out, self.rng)
        return actions, list(np.clip(actions, self._low, self._high))

    def sample(self, num_steps, net=None, epsilon=None, explore=True):
        """Step every env `num_steps` times; a `Fragment`."""
        if net is not None:
            self.set_weights(net, epsilon)
        if self._needs_reset:
            self._reset_all()
            self._needs_reset = False
        n, d = len(self.envs), self.obs_spec.dim
        obs = np.empty((num_steps, n, d), np.float32)
        act_rows, reward_rows = [], []
        terms = np.zeros((num_steps, n), bool)
        truncs = np.zeros((num_steps, n), bool)
        frag = Fragment(obs, None, None, terms, truncs, None)
        # The per-step path is hot (one env: every line is paid per env step), so it keeps
        # Python lists and locals and builds the fragment's arrays once at the end.
        cur, ep_ret, ep_len, envs = self._cur, self._ep_return, self._ep_len, self.envs
        act, write_obs, direct = self._actions, self._write_obs, self._obs_direct
        env_range = range(n)
        # Small categorical policies take one uniform per env step: drawn here in one call (the
        # same stream as a draw per step, since nothing else uses the rng in this loop).
        draw_ahead = (self.policy_kind != "dqn" and explore and self.action_spec.kind == "discrete"
                      and n * self.action_spec.n <= _PY_SAMPLE_MAX)
        uniforms = self.rng.random(num_steps * n).tolist() if draw_ahead else None
        for t in range(num_steps):
            obs[t] = cur
            stored, env_actions = act(cur, explore, uniforms[t * n:t * n + n] if draw_ahead
                                      else None)
            act_rows.append(stored)
            rewards = [0.0] * n
            for i in env_range:
                o, r, term, trunc, _ = envs[i].step(env_actions[i])
                r = float(r)
                rewards[i] = r
                ep_ret[i] += r
                ep_len[i] += 1
                if term or trunc:
                    terms[t, i] = term
                    truncs[t, i] = trunc and not term
                    if trunc and not term:
                        frag.final_obs[(t, i)] = self.obs_spec.encode_one(o)[0]
                    frag.episode_returns.append(ep_ret[i])
                    frag.episode_lengths.append(ep_len[i])
                    ep_ret[i] = 0.0
                    ep_len[i] = 0
                    o, _ = envs[i].reset()
                if direct:
                    cur[i] = o
                else:
                    write_obs(i, o)
            reward_rows.append(rewards)
        if self.action_spec.kind == "discrete":
            frag.actions = np.array(act_rows, np.int64).reshape(num_steps, n)
        else:
            frag.actions = np.array(act_rows, np.float32).reshape(num_steps, n,
                                                                  self.action_spec.n)
        frag.rewards = np.array(reward_rows, np.float32).reshape(num_steps, n)
        frag.last_obs = cur.copy()
        return frag

    def sample_episodes(self, num_episodes, net=None, explore=False):
        """Run fresh episodes until `num_episodes` have ended (evaluation); an EpisodeReport.
        Episodes still running then are dropped, and the next `sample` starts from new resets."""
        if net is not None:
            self.set_weights(net)
        self._reset_all()
        returns, lengths, steps = [], [], 0
        running = np.ones(len(self.envs), bool)
        started = len(self.envs)
        cur, ep_ret, ep_len = self._cur, self._ep_return, self._ep_len
        while len(returns) < num_episodes:
            acts = self._actions(cur, explore)[1]
            for i, env in enumerate(self.envs):
                if not running[i]:
                    continue
                o, r, term, trunc, _ = env.step(acts[i])
                steps += 1
                ep_ret[i] += float(r)
                ep_len[i] += 1
                if term or trunc:
                    returns.append(ep_ret[i])
                    lengths.append(ep_len[i])
                    ep_ret[i] = 0.0
                    ep_len[i] = 0
                    if started < num_episodes:
                        started += 1
                        o, _ = env.reset()
                    else:
                        running[i] = False
                        continue
                self._write_obs(i, o)
        self._needs_reset = True
        return EpisodeReport(returns[:num_episodes], lengths[:num_episodes], steps)

    def stop(self):
        for env in self.envs:
            close = getattr(env, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:   # a failing close must not hide the caller's error
                    logger.warning("closing env %r failed", env, exc_info=True)
