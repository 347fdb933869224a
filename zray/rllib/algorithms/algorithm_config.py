"""AlgorithmConfig: RLlib's builder-style config, with chained setters.

Every setter takes keyword arguments only and returns the config, so that
`PPOConfig().environment("CartPole-v1").training(lr=3e-4).build_algo()` reads as in RLlib.
Options RLlib has that zray accepts and ignores (they tune machinery zray does not have) are
listed in each setter's `_IGNORED`; an unknown option is a TypeError, as a misspelt keyword
argument is in Python.
"""
import copy
import logging

logger = logging.getLogger("zray.rllib")


class _NotProvided:
    def __repr__(self):
        return "NotProvided"


NotProvided = _NotProvided()


# RLlib options each setter accepts and ignores: they tune machinery zray does not have.
_IGNORED = {
    "env_runners": {"num_gpus_per_env_runner", "custom_resources_per_env_runner",
                    "validate_env_runners_after_construction",
                    "max_requests_in_flight_per_env_runner", "env_to_module_connector",
                    "module_to_env_connector", "add_default_connectors_to_env_to_module_pipeline",
                    "add_default_connectors_to_module_to_env_pipeline",
                    "episode_lookback_horizon", "compress_observations", "remote_worker_envs",
                    "remote_env_batch_wait_ms", "preprocessor_pref", "observation_filter",
                    "create_env_on_local_worker", "create_local_env_runner", "env_runner_cls",
                    "gym_env_vectorize_mode", "merge_env_runner_states",
                    "broadcast_env_runner_states", "exploration_config",
                    "num_consecutive_env_runner_failures_tolerance", "enable_connectors",
                    "update_worker_filter_stats", "use_worker_filter_stats"},
    "evaluation": {"evaluation_force_reset_envs_before_iteration",
                   "evaluation_auto_duration_min_env_steps_per_sample",
                   "evaluation_auto_duration_max_env_steps_per_sample",
                   "custom_evaluation_function",
                   "always_attach_evaluation_results", "off_policy_estimation_methods",
                   "ope_split_batch_by_episode"},
    "learners": {"num_aggregator_actors_per_learner",
                 "max_requests_in_flight_per_aggregator_actor",
                 "local_gpu_idx", "max_requests_in_flight_per_learner"},
    "debugging": {"logger_creator", "logger_config", "log_sys_usage",
                  "fake_sampler", "_run_training_always_in_thread",
                  "_evaluation_parallel_to_training_wo_thread"},
    "framework": {"eager_tracing", "eager_max_retraces", "tf_session_args",
                  "local_tf_session_args", "torch_compile_learner",
                  "torch_compile_learner_what_to_compile", "torch_compile_learner_dynamo_backend",
                  "torch_compile_learner_dynamo_mode", "torch_compile_worker",
                  "torch_compile_worker_dynamo_backend", "torch_compile_worker_dynamo_mode",
                  "torch_ddp_kwargs", "torch_skip_nan_gradients"},
    "reporting": {"keep_per_episode_custom_metrics", "metrics_episode_collection_timeout_s",
                  "min_train_timesteps_per_iteration", "log_gradients"},
}


def _accept_ignored(config, setter, values):
    unknown = set(values) - _IGNORED.get(setter, set())
    if unknown:
        raise TypeError(f"{type(config).__name__}.{setter}() got unexpected keyword "
                        f"argument(s) {sorted(unknown)}")
    _set(config, values, ignored=values.keys())


def _set(config, values, ignored=()):
    for key, value in values.items():
        if value is NotProvided:
            continue
        if key in ignored:
            logger.debug("AlgorithmConfig: %s=%r is accepted and has no effect in zray", key,
                         value)
        setattr(config, key, value)


class AlgorithmConfig:
    algo_class = None

    def __init__(self, algo_class=None):
        if algo_class is not None:
            self.algo_class = algo_class
        # environment
        self.env = None
        self.env_config = {}
        self.observation_space = None
        self.action_space = None
        self.clip_rewards = None
        self.clip_actions = False
        self.normalize_actions = True
        self.disable_env_checking = False
        # env runners
        self.num_env_runners = 0
        self.num_envs_per_env_runner = 1
        self.rollout_fragment_length = "auto"
        self.batch_mode = "truncate_episodes"
        self.explore = True
        self.num_cpus_per_env_runner = 1
        self.sample_timeout_s = 60.0
        # training
        self.gamma = 0.99
        self.lr = 0.001
        self.train_batch_size = 32
        self.train_batch_size_per_learner = None
        self.grad_clip = None
        self.grad_clip_by = "global_norm"
        self.optimizer = {}
        # model
        self.model_config = {}
        # evaluation
        self.evaluation_interval = None
        self.evaluation_duration = 10
        self.evaluation_duration_unit = "episodes"
        self.evaluation_num_env_runners = 0
        self.evaluation_config = None
        self.evaluation_parallel_to_training = False
        self.evaluation_sample_timeout_s = 120.0
        # learners, reporting, debugging
        self.num_learners = 0
        self.num_cpus_per_learner = 1
        self.num_gpus_per_learner = 0
        self.metrics_num_episodes_for_smoothing = 100
        self.min_sample_timesteps_per_iteration = 0
        self.min_time_s_per_iteration = None
        self.seed = None
        self.log_level = "WARN"
        self.framework_str = "torch"

    # -- setters -------------------------------------------------------------------------------
    def environment(self, env=NotProvided, *, env_config=NotProvided,
                    observation_space=NotProvided, action_space=NotProvided,
                    clip_rewards=NotProvided, normalize_actions=NotProvided,
                    clip_actions=NotProvided, disable_env_checking=NotProvided,
                    render_env=NotProvided, is_atari=NotProvided, env_task_fn=NotProvided):
        if env_config is not NotProvided and env_config is not None and \
                not isinstance(env_config, dict):
            raise TypeError(f"env_config must be a dict, got {type(env_config).__name__}")
        _set(self, dict(env=env, env_config=env_config, observation_space=observation_space,
                        action_space=action_space, clip_rewards=clip_rewards,
                        normalize_actions=normalize_actions, clip_actions=clip_actions,
                        disable_env_checking=disable_env_checking, render_env=render_env,
                        is_atari=is_atari, env_task_fn=env_task_fn),
             ignored={"observation_space", "action_space", "normalize_actions",
                      "disable_env_checking", "render_env", "is_atari", "env_task_fn"})
        if self.env_config is None:
            self.env_config = {}
        return self

    def env_runners(self, *, num_env_runners=NotProvided, num_envs_per_env_runner=NotProvided,
                    rollout_fragment_length=NotProvided, batch_mode=NotProvided,
                    explore=NotProvided, num_cpus_per_env_runner=NotProvided,
                    sample_timeout_s=NotProvided, **ignored):
        _set(self, dict(num_env_runners=num_env_runners,
                        num_envs_per_env_runner=num_envs_per_env_runner,
                        rollout_fragment_length=rollout_fragment_length, batch_mode=batch_mode,
                        explore=explore, num_cpus_per_env_runner=num_cpus_per_env_runner,
                        sample_timeout_s=sample_timeout_s))
        _accept_ignored(self, "env_runners", ignored)
        return self

    rollouts = env_runners   # RLlib 2.x's older name

    def training(self, *, gamma=NotProvided, lr=NotProvided, train_batch_size=NotProvided,
                 train_batch_size_per_learner=NotProvided, grad_clip=NotProvided,
                 grad_clip_by=NotProvided, optimizer=NotProvided, **kwargs):
        unknown = set(kwargs) - set(self._training_options())
        if unknown:
            raise TypeError(f"{type(self).__name__}.training() got unexpected keyword "
                            f"argument(s) {sorted(unknown)}")
        _set(self, dict(gamma=gamma, lr=lr, train_batch_size=train_batch_size,
                        train_batch_size_per_learner=train_batch_size_per_learner,
                        grad_clip=grad_clip, grad_clip_by=grad_clip_by, optimizer=optimizer))
        _set(self, kwargs, ignored=set(kwargs) & self._ignored_training_options())
        return self

    def _training_options(self):
        """Algorithm-specific names .training() accepts (subclasses extend)."""
        return ("model", "learner_class", "learner_connector") + \
            tuple(self._ignored_training_options())

    def _ignored_training_options(self):
        return {"model", "learner_class", "learner_connector", "add_default_connectors_to_"
                "learner_pipeline", "learner_config_dict", "num_sgd_iter", "sgd_minibatch_size"}

    def rl_module(self, *, model_config=NotProvided, rl_module_spec=NotProvided,
                  algorithm_config_overrides_per_module=NotProvided, model_config_dict=NotProvided):
        if model_config_dict is not NotProvided:
            model_config = model_config_dict
        if model_config is not NotProvided:
            if not isinstance(model_config, dict):   # RLlib's DefaultModelConfig dataclass
                model_config = {k: getattr(model_config, k) for k in
                                ("fcnet_hiddens", "fcnet_activation", "vf_share_layers")
                                if hasattr(model_config, k)}
            self.model_config = {**self.model_config, **model_config}
        if rl_module_spec is not NotProvided:
            raise NotImplementedError("custom rl_module_spec is not supported by zray.rllib; "
                                      "use model_config")
        return self

    def evaluation(self, *, evaluation_interval=NotProvided, evaluation_duration=NotProvided,
                   evaluation_duration_unit=NotProvided, evaluation_num_env_runners=NotProvided,
                   evaluation_config=NotProvided, evaluation_parallel_to_training=NotProvided,
                   evaluation_sample_timeout_s=NotProvided, **ignored):
        _set(self, dict(evaluation_interval=evaluation_interval,
                        evaluation_duration=evaluation_duration,
                        evaluation_duration_unit=evaluation_duration_unit,
                        evaluation_num_env_runners=evaluation_num_env_runners,
                        evaluation_config=evaluation_config,
                        evaluation_parallel_to_training=evaluation_parallel_to_training,
                        evaluation_sample_timeout_s=evaluation_sample_timeout_s))
        _accept_ignored(self, "evaluation", ignored)
        return self

    def learners(self, *, num_learners=NotProvided, num_cpus_per_learner=NotProvided,
                 num_gpus_per_learner=NotProvided, **ignored):
        _set(self, dict(num_learners=num_learners, num_cpus_per_learner=num_cpus_per_learner,
                        num_gpus_per_learner=num_gpus_per_learner))
        _accept_ignored(self, "learners", ignored)
        return self

    def debugging(self, *, seed=NotProvided, log_level=NotProvided, **ignored):
        _set(self, dict(seed=seed, log_level=log_level))
        _accept_ignored(self, "debugging", ignored)
        return self

    def framework(self, framework=NotProvided, **ignored):
        if framework is not NotProvided:
            if framework != "torch":
                raise ValueError(f"zray.rllib supports framework='torch' only, got {framework!r}")
            self.framework_str = framework
        _accept_ignored(self, "framework", ignored)
        return self

    def reporting(self, *, metrics_num_episodes_for_smoothing=NotProvided,
                  min_sample_timesteps_per_iteration=NotProvided,
                  min_time_s_per_iteration=NotProvided, **ignored):
        _set(self, dict(metrics_num_episodes_for_smoothing=metrics_num_episodes_for_smoothing,
                        min_sample_timesteps_per_iteration=min_sample_timesteps_per_iteration,
                        min_time_s_per_iteration=min_time_s_per_iteration))
        _accept_ignored(self, "reporting", ignored)
        return self

    def api_stack(self, **ignored):
        _set(self, ignored, ignored=ignored.keys())
        return self

    def resources(self, **ignored):
        _set(self, ignored, ignored=ignored.keys())
        return self

    def fault_tolerance(self, **ignored):
        _set(self, ignored, ignored=ignored.keys())
        return self

    def checkpointing(self, **ignored):
        _set(self, ignored, ignored=ignored.keys())
        return self

    def callbacks(self, *args, **ignored):
        if args or ignored:
            logger.warning("zray.rllib: callbacks are not supported yet and are ignored")
        return self

    # -- derived values ------------------------------------------------------------------------
    @property
    def total_train_batch_size(self):
        per = self.train_batch_size_per_learner
        return int(per if per else self.train_batch_size) * max(1, int(self.num_learners or 0))

    def get_rollout_fragment_length(self):
        """Steps per env per sample call: "auto" splits the train batch over every env of
        every runner, rounded up."""
        if self.rollout_fragment_length != "auto":
            return int(self.rollout_fragment_length)
        envs = max(1, self.num_env_runners) * self.num_envs_per_env_runner
        return max(1, -(-self.total_train_batch_size // envs))

    def validate(self):
        if self.env is None:
            raise ValueError("no environment: call .environment(env=...) on the config first")
        for name in ("num_env_runners", "evaluation_num_env_runners"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be an int >= 0, got {getattr(self, name)!r}")
        if not isinstance(self.num_envs_per_env_runner, int) or self.num_envs_per_env_runner < 1:
            raise ValueError(f"num_envs_per_env_runner must be an int >= 1, got "
                             f"{self.num_envs_per_env_runner!r}")
        if self.rollout_fragment_length != "auto" and (
                not isinstance(self.rollout_fragment_length, int)
                or self.rollout_fragment_length < 1):
            raise ValueError(f"rollout_fragment_length must be 'auto' or an int >= 1, got "
                             f"{self.rollout_fragment_length!r}")
        if not 0.0 <= float(self.gamma) <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if float(self.lr) <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.total_train_batch_size < 1:
            raise ValueError(f"train_batch_size must be >= 1, got {self.train_batch_size}")
        if self.evaluation_duration_unit not in ("episodes", "timesteps"):
            raise ValueError("evaluation_duration_unit must be 'episodes' or 'timesteps', got "
                             f"{self.evaluation_duration_unit!r}")
        if self.evaluation_duration != "auto" and int(self.evaluation_duration) < 1:
            raise ValueError(f"evaluation_duration must be >= 1, got {self.evaluation_duration}")
        if self.grad_clip_by not in ("global_norm", "norm", "value"):
            raise ValueError(f"grad_clip_by must be 'global_norm', 'norm' or 'value', got "
                             f"{self.grad_clip_by!r}")
        if self.num_gpus_per_learner:
            logger.warning("zray.rllib trains on the CPU; num_gpus_per_learner is ignored")

    # -- building ------------------------------------------------------------------------------
    def build_algo(self, env=None, logger_creator=None, use_copy=True):
        if env is not None:
            self.env = env
        if self.algo_class is None:
            raise ValueError("this config has no algorithm class; use PPOConfig or DQNConfig")
        return self.algo_class(config=self.copy() if use_copy else self)

    build = build_algo

    def copy(self, copy_frozen=None):
        return copy.deepcopy(self)

    def to_dict(self):
        d = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        d["framework"] = d.pop("framework_str")
        return copy.deepcopy(d)

    def update_from_dict(self, config_dict):
        for key, value in config_dict.items():
            if key == "framework":
                self.framework(value)
                continue
            if key == "lambda":
                key = "lambda_"
            if not hasattr(self, key):
                raise TypeError(f"{type(self).__name__} has no option {key!r}")
            setattr(self, key, value)
        return self

    @classmethod
    def from_dict(cls, config_dict):
        return cls().update_from_dict(config_dict)

    # dict-style access, for Tune's param_space and old code
    def __getitem__(self, key):
        return getattr(self, "lambda_" if key == "lambda" else key)

    def get(self, key, default=None):
        return getattr(self, "lambda_" if key == "lambda" else key, default)

    def __repr__(self):
        return f"{type(self).__name__}(env={self.env!r}, lr={self.lr}, ...)"
