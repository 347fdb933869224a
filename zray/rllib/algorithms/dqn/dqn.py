"""DQN: epsilon-greedy sampling into a uniform replay buffer, TD updates in the driver.

One iteration runs rounds until `min_sample_timesteps_per_iteration` env steps were sampled.
A round: every runner steps each env `rollout_fragment_length` times ("auto": 4) at the
current epsilon; the transitions go into the buffer; once it holds
`num_steps_sampled_before_learning_starts` transitions, the learner does
`training_intensity * sampled / train_batch_size` updates (default: one per round) of
`train_batch_size` sampled transitions; the target network follows every
`target_network_update_freq` sampled steps.
"""
import logging
import time


from ...core.rl_module import DQNTorchRLModule
from ...core.spaces import action_spec, obs_spec
from ...utils.replay_buffers import ReplayBuffer, fragment_to_transitions
from ...utils.schedules import PiecewiseSchedule
from ..algorithm import DEFAULT_MODULE_ID, Algorithm
from ..algorithm_config import AlgorithmConfig
from .dqn_learner import DQNLearner

logger = logging.getLogger("zray.rllib")

_DQN_OPTIONS = ("replay_buffer_config", "target_network_update_freq",
                "num_steps_sampled_before_learning_starts", "double_q", "dueling", "n_step",
                "epsilon", "training_intensity", "tau", "td_error_loss_fn", "hiddens",
                "store_buffer_in_checkpoints", "lr_schedule", "noisy", "num_atoms", "v_min",
                "v_max", "sigma0", "adam_epsilon", "categorical_distribution_temperature",
                "before_learn_on_batch", "burn_in_len")


class DQNConfig(AlgorithmConfig):
    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or DQN)
        self.lr = 5e-4
        self.train_batch_size = 32
        self.grad_clip = 40.0
        self.replay_buffer_config = {"type": "PrioritizedEpisodeReplayBuffer",
                                     "capacity": 50000, "alpha": 0.6, "beta": 0.4}
        self.target_network_update_freq = 500
        self.num_steps_sampled_before_learning_starts = 1000
        self.double_q = True
        self.dueling = True
        self.n_step = 1
        self.epsilon = [(0, 1.0), (10000, 0.05)]
        self.training_intensity = None
        self.tau = 1.0
        self.td_error_loss_fn = "huber"
        self.hiddens = [256]
        self.min_sample_timesteps_per_iteration = 1000
        self.store_buffer_in_checkpoints = False

    def _training_options(self):
        return super()._training_options() + _DQN_OPTIONS

    def _ignored_training_options(self):
        return super()._ignored_training_options() | {
            "lr_schedule", "noisy", "num_atoms", "v_min", "v_max", "sigma0", "adam_epsilon",
            "categorical_distribution_temperature", "before_learn_on_batch", "burn_in_len"}

    def training(self, **kwargs):
        if "replay_buffer_config" in kwargs and kwargs["replay_buffer_config"] is not None:
            kwargs["replay_buffer_config"] = {**self.replay_buffer_config,
                                              **kwargs["replay_buffer_config"]}
        return super().training(**kwargs)

    def get_rollout_fragment_length(self):
        if self.rollout_fragment_length == "auto":
            return 4
        return int(self.rollout_fragment_length)

    def validate(self):
        super().validate()
        if int(self.n_step if not isinstance(self.n_step, (tuple, list)) else
               max(self.n_step)) != 1:
            raise NotImplementedError("zray.rllib's DQN supports n_step=1 only")
        if self.td_error_loss_fn not in ("huber", "mse"):
            raise ValueError(f"td_error_loss_fn must be 'huber' or 'mse', got "
                             f"{self.td_error_loss_fn!r}")
        if not 0.0 < float(self.tau) <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if int(self.target_network_update_freq) < 0:
            raise ValueError("target_network_update_freq must be >= 0")
        PiecewiseSchedule(self.epsilon)   # raises on a bad schedule
        kind = self.replay_buffer_config.get("type", "EpisodeReplayBuffer")
        if isinstance(kind, str) and "Prioritized" in kind:
            logger.debug("zray.rllib's DQN samples its replay buffer uniformly")


class DQN(Algorithm):
    _policy_kind = "dqn"
    _default_config_class = DQNConfig

    def _build_learner(self):
        c = self.config
        module = DQNTorchRLModule(obs_spec(self.observation_space).dim,
                                  action_spec(self.action_space), c.model_config,
                                  dueling=c.dueling, hiddens=c.hiddens)
        self.learner = DQNLearner(module, c)
        self.replay_buffer = ReplayBuffer(self.config.replay_buffer_config["capacity"])
        self.epsilon_schedule = PiecewiseSchedule(c.epsilon)
        self._last_target_update = 0
        self._update_credit = 0.0

    def _acting_net(self):
        return self.learner.numpy_net()

    def _current_epsilon(self):
        return self.epsilon_schedule.value(self.counters["num_env_steps_sampled_lifetime"])

    def _epsilon_for_eval(self):
        return 0.0

    def _updates_for(self, sampled, rounds):
        c = self.config
        if c.training_intensity is None:
            return rounds
        self._update_credit += sampled * float(c.training_intensity) / c.total_train_batch_size
        n = int(self._update_credit)
        self._update_credit -= n
        return n

    def training_step(self):
        c = self.config
        steps_per_env = c.get_rollout_fragment_length()
        frags, sampled, sample_time, learn_time = [], 0, 0.0, 0.0
        stats, updates = {}, 0
        minimum = max(1, int(c.min_sample_timesteps_per_iteration or 0))
        while sampled < minimum:
            start = time.time()
            eps = self._current_epsilon()
            new = self.env_runner_group.sample(steps_per_env, self.learner.numpy_net(), eps,
                                               explore=c.explore)
            sample_time += time.time() - start
            n = sum(f.env_steps for f in new)
            sampled += n
            frags += new
            self.counters["num_env_steps_sampled_lifetime"] += n
            for f in new:
                self.replay_buffer.add(fragment_to_transitions(f))
            if len(self.replay_buffer) < c.num_steps_sampled_before_learning_starts:
                continue
            start = time.time()
            for _ in range(self._updates_for(n, 1)):
                batch = self.replay_buffer.sample(c.total_train_batch_size, self._rng)
                for k, v in self.learner.update(batch).items():
                    stats[k] = stats.get(k, 0.0) + v
                updates += 1
            lifetime = self.counters["num_env_steps_sampled_lifetime"]
            if lifetime - self._last_target_update >= int(c.target_network_update_freq):
                self.learner.update_target()
                self._last_target_update = lifetime
            learn_time += time.time() - start
        self._record_episodes(frags)
        trained = updates * c.total_train_batch_size
        self.counters["num_env_steps_trained_lifetime"] += trained
        self.counters["num_module_steps_trained_lifetime"] += trained
        learner_results = {k: v / updates for k, v in stats.items()} if updates else {}
        learner_results.update({
            "num_module_steps_trained": trained,
            "num_module_steps_trained_lifetime":
                self.counters["num_module_steps_trained_lifetime"],
            "num_target_updates": self.learner.num_target_updates,
            "last_target_update_ts": self._last_target_update,
            "default_optimizer_learning_rate": float(c.lr),
            "num_trainable_parameters": self.learner.num_trainable_parameters(),
        })
        env_results = self._env_runner_results(frags, sample_time)
        env_results["epsilon"] = self._current_epsilon()
        return {
            "env_runners": env_results,
            "learners": {
                DEFAULT_MODULE_ID: learner_results,
                "__all_modules__": {
                    "num_env_steps_trained": trained,
                    "num_env_steps_trained_lifetime":
                        self.counters["num_env_steps_trained_lifetime"],
                },
            },
            "replay_buffer": {"num_transitions": len(self.replay_buffer),
                              "num_added_lifetime": self.replay_buffer.num_added},
            "timers": {"env_runner_sampling_timer": sample_time,
                       "learner_update_timer": learn_time},
            "num_training_step_calls_per_iteration": 1,
        }

    def get_state(self):
        state = super().get_state()
        state.update({"last_target_update": self._last_target_update,
                      "update_credit": self._update_credit})
        if self.config.store_buffer_in_checkpoints:
            state["replay_buffer"] = self.replay_buffer.get_state()
        return state

    def set_state(self, state):
        super().set_state(state)
        self._last_target_update = state["last_target_update"]
        self._update_credit = state["update_credit"]
        if "replay_buffer" in state:
            self.replay_buffer.set_state(state["replay_buffer"])
