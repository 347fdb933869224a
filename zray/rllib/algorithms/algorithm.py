"""Algorithm: the driver-side loop of an RL algorithm, shaped as a Tune Trainable.

`setup(config)` builds the env runners and the learner; `step()` runs one `training_step()`
(plus evaluation every `evaluation_interval` iterations) and returns RLlib's nested result
dict; `train()` adds Tune's bookkeeping keys (`training_iteration`, `time_this_iter_s`, ...);
`save_checkpoint(dir)` / `load_checkpoint(dir)` are the Trainable hooks behind
`save_to_path` / `restore_from_path` / `from_checkpoint`.

The learner lives in the driver; subclasses (PPO, DQN) provide `_build_learner()`,
`training_step()` and, for acting, `_acting_net()`.
"""
import json
import logging
import os
import pickle
import platform
import socket
import tempfile
import time
from datetime import datetime

import numpy as np

from ..env.env_runner import seed_for
from ..env.env_runner_group import EnvRunnerGroup
from ..env_registry import EnvContext, env_creator_for, make_env
from ..utils.metrics import EpisodeWindow, episode_stats

logger = logging.getLogger("zray.rllib")

DEFAULT_MODULE_ID = "default_policy"
CHECKPOINT_VERSION = 1


class TrainingResult:
    """What `Algorithm.save()` returns (Tune's `_TrainingResult`): `.checkpoint.path`."""

    class _Checkpoint:
        def __init__(self, path):
            self.path = path

        def __repr__(self):
            return f"Checkpoint(path={self.path!r})"

    def __init__(self, path, metrics):
        self.checkpoint = self._Checkpoint(path)
        self.metrics = metrics


class Algorithm:
    _policy_kind = "ppo"
    _default_config_class = None

    def __init__(self, config=None, env=None, logger_creator=None, **kwargs):
        if config is None:
            config = self.get_default_config()
        elif isinstance(config, dict):
            config = self.get_default_config().update_from_dict(config)
        if env is not None:
            config.env = env
        self.config = config
        self.iteration = 0
        self._time_total = 0.0
        self._iterations_since_restore = 0
        self._time_since_restore = 0.0
        self._timesteps_since_restore = 0
        self.setup(config)

    @classmethod
    def get_default_config(cls):
        return cls._default_config_class()

    # -- Trainable hooks -------------------------------------------------------------------------
    def setup(self, config):
        config.validate()
        self._env_creator = env_creator_for(config.env)
        self._rng = np.random.default_rng(seed_for(config.seed, 0, 20_000))
        if config.seed is not None:
            import torch
            torch.manual_seed(int(config.seed))
        probe = make_env(self._env_creator, EnvContext(config.env_config, 0, 0,
                                                       config.num_env_runners))
        self.observation_space, self.action_space = probe.observation_space, probe.action_space
        close = getattr(probe, "close", None)
        if close is not None:
            close()
        self.env_runner_group = self._make_runner_group(config.num_env_runners, 0)
        self.eval_env_runner_group = None
        self.metrics = EpisodeWindow(config.metrics_num_episodes_for_smoothing)
        self.counters = {"num_env_steps_sampled_lifetime": 0,
                         "num_env_steps_trained_lifetime": 0,
                         "num_episodes_lifetime": 0,
                         "num_module_steps_trained_lifetime": 0}
        self._build_learner()

    def _make_runner_group(self, num_runners, offset):
        c = self.config
        return EnvRunnerGroup(self._env_creator, c.env_config, num_runners,
                              c.num_envs_per_env_runner, c.seed, self._policy_kind,
                              c.num_cpus_per_env_runner, c.sample_timeout_s, offset)

    def step(self):
        results = self.training_step()
        interval = self.config.evaluation_interval
        if interval and (self.iteration + 1) % int(interval) == 0:
            results["evaluation"] = self.evaluate()
        return results

    def save_checkpoint(self, checkpoint_dir):
        os.makedirs(checkpoint_dir, exist_ok=True)
        state = self.get_state()
        with open(os.path.join(checkpoint_dir, "algorithm_state.pkl"), "wb") as f:
            import cloudpickle
            cloudpickle.dump(state, f)
        with open(os.path.join(checkpoint_dir, "rllib_checkpoint.json"), "w") as f:
            json.dump({"type": "Algorithm", "format": "zray.rllib",
                       "checkpoint_version": CHECKPOINT_VERSION,
                       "algorithm_class": type(self).__name__}, f)
        return checkpoint_dir

    def load_checkpoint(self, checkpoint_dir):
        self.set_state(_read_state(checkpoint_dir))

    def cleanup(self):
        self.stop()

    # -- RLlib's Algorithm API -------------------------------------------------------------------
    def train(self):
        start = time.time()
        results = self.step()
        took = time.time() - start
        self.iteration += 1
        self._iterations_since_restore += 1
        self._time_total += took
        self._time_since_restore += took
        results.update({
            "training_iteration": self.iteration,
            "num_env_steps_sampled_lifetime": self.counters["num_env_steps_sampled_lifetime"],
            "num_env_steps_trained_lifetime": self.counters["num_env_steps_trained_lifetime"],
            "done": False, "trial_id": "default", "timestamp": int(time.time()),
            "date": datetime.today().strftime("%Y-%m-%d_%H-%M-%S"),
            "time_this_iter_s": took, "time_total_s": self._time_total,
            "time_since_restore": self._time_since_restore,
            "iterations_since_restore": self._iterations_since_restore,
            "pid": os.getpid(), "hostname": platform.node(), "node_ip": _node_ip(),
            "config": self.config.to_dict(),
        })
        return results

    def evaluate(self):
        """Run `evaluation_duration` episodes (or timesteps) on the evaluation runners (the
        driver when `evaluation_num_env_runners=0`); {"env_runners": {...}}."""
        c = self.config
        if self.eval_env_runner_group is None:
            self.eval_env_runner_group = self._make_runner_group(
                c.evaluation_num_env_runners, 10_000)
        explore = (c.evaluation_config or {}).get("explore", c.explore)
        net = self._acting_net()
        duration = 10 if c.evaluation_duration == "auto" else int(c.evaluation_duration)
        start = time.time()
        if c.evaluation_duration_unit == "episodes":
            reports = self.eval_env_runner_group.sample_episodes(duration, net, explore)
            returns = [x for r in reports for x in r.episode_returns]
            lengths = [x for r in reports for x in r.episode_lengths]
            steps = sum(r.env_steps for r in reports)
        else:
            steps_per_env = -(-duration // (self.eval_env_runner_group.num_envs
                                            * c.num_envs_per_env_runner))
            frags = self.eval_env_runner_group.sample(steps_per_env, net,
                                                      self._epsilon_for_eval(), explore)
            returns = [x for f in frags for x in f.episode_returns]
            lengths = [x for f in frags for x in f.episode_lengths]
            steps = sum(f.env_steps for f in frags)
        stats = episode_stats(returns, lengths)
        stats.update({"num_episodes": len(returns), "num_env_steps_sampled": steps,
                      "sample": time.time() - start})
        return {"env_runners": stats}

    def _epsilon_for_eval(self):
        return None

    def get_module(self, module_id=DEFAULT_MODULE_ID):
        if module_id != DEFAULT_MODULE_ID:
            raise KeyError(f"zray.rllib is single-agent: the only module is "
                           f"{DEFAULT_MODULE_ID!r}, got {module_id!r}")
        return self.learner.module

    def compute_single_action(self, observation=None, state=None, *, prev_action=None,
                              prev_reward=None, info=None, input_dict=None,
                              policy_id=DEFAULT_MODULE_ID, full_fetch=False, explore=None,
                              timestep=None, episode=None, unsquash_action=None,
                              clip_action=None, **kwargs):
        """The action for one observation (RLlib's README form). `explore=None` follows the
        config's `explore`: sampled from the policy (PPO) or epsilon-greedy at the current
        epsilon (DQN); `explore=False` is the greedy action."""
        if observation is None and input_dict is not None:
            observation = input_dict["obs"]
        if explore is None:
            explore = self.config.explore
        action = self._compute_actions([observation], explore)[0]
        if full_fetch or state is not None:
            return action, [], {}
        return action

    def compute_actions(self, observations, explore=None, **kwargs):
        """Actions for a dict {agent_or_env_id: obs}, or for a list of observations."""
        if explore is None:
            explore = self.config.explore
        if isinstance(observations, dict):
            keys = list(observations)
            acts = self._compute_actions([observations[k] for k in keys], explore)
            return dict(zip(keys, acts))
        return list(self._compute_actions(list(observations), explore))

    def _compute_actions(self, observations, explore):
        from ..core.numpy_net import greedy, sample_categorical, sample_gaussian
        from ..core.spaces import action_spec, obs_spec
        ospec, aspec = obs_spec(self.observation_space), action_spec(self.action_space)
        out = self._acting_net().forward(ospec.encode(observations))
        if self._policy_kind == "dqn":
            actions = out.argmax(axis=1)
            eps = self._current_epsilon() if explore else 0.0
            flip = self._rng.random(len(actions)) < eps
            actions = np.where(flip, self._rng.integers(0, aspec.n, len(actions)), actions)
        elif not explore:
            actions = greedy(out, aspec.kind)
        elif aspec.kind == "discrete":
            actions = sample_categorical(out, self._rng)
        else:
            actions = sample_gaussian(out, self._rng)
        if aspec.kind == "discrete":
            return [int(a) for a in actions]
        low, high = np.asarray(aspec.low, np.float32), np.asarray(aspec.high, np.float32)
        return [np.clip(a.astype(np.float32), low, high) for a in actions]

    def _current_epsilon(self):
        return 0.0

    def get_weights(self, policies=None):
        return {DEFAULT_MODULE_ID: self.learner.module.get_state()}

    def set_weights(self, weights):
        self.learner.module.set_state(weights[DEFAULT_MODULE_ID])
        self.learner.weights_changed()

    # -- state and checkpoints ---------------------------------------------------------------
    def get_state(self):
        return {"class": type(self), "config": self.config, "iteration": self.iteration,
                "time_total": self._time_total, "counters": dict(self.counters),
                "metrics": self.metrics.get_state(), "learner": self.learner.get_state(),
                "rng": self._rng.bit_generator.state}

    def set_state(self, state):
        self.iteration = state["iteration"]
        self._time_total = state["time_total"]
        self.counters = dict(state["counters"])
        self.metrics.set_state(state["metrics"])
        self.learner.set_state(state["learner"])
        self._rng.bit_generator.state = state["rng"]
        self._iterations_since_restore = 0
        self._time_since_restore = 0.0

    def save_to_path(self, path=None, *, state=None, filesystem=None, use_msgpack=False):
        """Write a checkpoint directory (a temporary one when `path` is None); its path."""
        path = path or tempfile.mkdtemp(prefix="zray_rllib_ckpt_")
        return self.save_checkpoint(os.fspath(path))

    def restore_from_path(self, path, *, component=None, filesystem=None):
        self.load_checkpoint(_checkpoint_path(path))
        return self

    def save(self, checkpoint_dir=None):
        return TrainingResult(self.save_to_path(checkpoint_dir), {})

    def restore(self, checkpoint_path):
        return self.restore_from_path(checkpoint_path)

    @classmethod
    def from_checkpoint(cls, path, policy_ids=None, **kwargs):
        """A new Algorithm built from the config in a checkpoint, with its state."""
        path = _checkpoint_path(path)
        state = _read_state(path)
        algo_cls = state["class"] if cls is Algorithm else cls
        algo = algo_cls(config=state["config"])
        algo.set_state(state)
        return algo

    def stop(self):
        for group in (self.env_runner_group, self.eval_env_runner_group):
            if group is not None:
                group.stop()
        self.eval_env_runner_group = None

    def __repr__(self):
        return f"{type(self).__name__}(env={self.config.env!r}, iteration={self.iteration})"

    # -- shared helpers for subclasses ----------------------------------------------------------
    def _record_episodes(self, frags):
        for f in frags:
            self.metrics.add(f.episode_returns, f.episode_lengths)
        self.counters["num_episodes_lifetime"] = self.metrics.num_episodes_lifetime

    def _env_runner_results(self, frags, sample_time):
        stats = self.metrics.stats()
        steps = sum(f.env_steps for f in frags)
        stats.update({
            "num_episodes": sum(len(f.episode_returns) for f in frags),
            "num_env_steps_sampled": steps,
            "num_agent_steps_sampled": {"default_agent": steps},
            "num_module_steps_sampled": {DEFAULT_MODULE_ID: steps},
            "num_env_steps_sampled_lifetime": self.counters["num_env_steps_sampled_lifetime"],
            "num_episodes_lifetime": self.counters["num_episodes_lifetime"],
            "module_episode_return_mean": {DEFAULT_MODULE_ID: stats["episode_return_mean"]},
            "agent_episode_return_mean": {"default_agent": stats["episode_return_mean"]},
            "sample": sample_time,
        })
        return stats


def _checkpoint_path(path):
    path = getattr(path, "path", path)             # a Tune Checkpoint
    path = getattr(getattr(path, "checkpoint", None), "path", path)   # a TrainingResult
    return os.fspath(path)


def _read_state(path):
    file = os.path.join(path, "algorithm_state.pkl")
    if not os.path.exists(file):
        raise FileNotFoundError(f"{path!r} is not a zray.rllib checkpoint (no "
                                f"algorithm_state.pkl)")
    with open(file, "rb") as f:
        return pickle.load(f)


def _node_ip():
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
