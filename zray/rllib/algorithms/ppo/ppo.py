"""PPO: synchronous sampling from every env runner, then minibatch SGD in the driver.

One iteration: sample until `train_batch_size` env steps (each round is one call per runner,
`rollout_fragment_length` steps per env; the weights travel with the call), update the
learner, report. RLlib's defaults, with the config's names.
"""
import time

from ...core.rl_module import PPOTorchRLModule
from ...core.spaces import action_spec, obs_spec
from ..algorithm import DEFAULT_MODULE_ID, Algorithm
from ..algorithm_config import AlgorithmConfig
from .ppo_learner import PPOLearner

_PPO_OPTIONS = ("lambda_", "use_gae", "use_critic", "use_kl_loss", "kl_coeff", "kl_target",
                "clip_param", "vf_clip_param", "vf_loss_coeff", "entropy_coeff",
                "minibatch_size", "num_epochs", "entropy_coeff_schedule", "lr_schedule",
                "shuffle_batch_per_epoch", "sgd_minibatch_size", "num_sgd_iter")


class PPOConfig(AlgorithmConfig):
    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or PPO)
        self.lr = 5e-5
        self.train_batch_size = 4000
        self.num_env_runners = 2
        self.lambda_ = 1.0
        self.use_gae = True
        self.use_critic = True
        self.use_kl_loss = True
        self.kl_coeff = 0.2
        self.kl_target = 0.01
        self.clip_param = 0.3
        self.vf_clip_param = 10.0
        self.vf_loss_coeff = 1.0
        self.entropy_coeff = 0.0
        self.minibatch_size = 128
        self.num_epochs = 30
        self.shuffle_batch_per_epoch = True

    def training(self, **kwargs):
        if "num_sgd_iter" in kwargs:   # RLlib's older names
            kwargs["num_epochs"] = kwargs.pop("num_sgd_iter")
        if "sgd_minibatch_size" in kwargs:
            kwargs["minibatch_size"] = kwargs.pop("sgd_minibatch_size")
        return super().training(**kwargs)

    def _training_options(self):
        return super()._training_options() + _PPO_OPTIONS

    def _ignored_training_options(self):
        return super()._ignored_training_options() | {"entropy_coeff_schedule", "lr_schedule",
                                                      "shuffle_batch_per_epoch"}

    def validate(self):
        super().validate()
        for name in ("minibatch_size", "num_epochs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.clip_param <= 0:
            raise ValueError(f"clip_param must be > 0, got {self.clip_param}")
        if not 0.0 <= float(self.lambda_) <= 1.0:
            raise ValueError(f"lambda_ must be in [0, 1], got {self.lambda_}")
        if self.entropy_coeff < 0:
            raise ValueError(f"entropy_coeff must be >= 0, got {self.entropy_coeff}")
        if not self.use_gae:
            raise NotImplementedError("zray.rllib's PPO always uses GAE (use_gae=True)")


class PPO(Algorithm):
    _policy_kind = "ppo"
    _default_config_class = PPOConfig

    def _build_learner(self):
        c = self.config
        module = PPOTorchRLModule(obs_spec(self.observation_space).dim,
                                  action_spec(self.action_space), c.model_config)
        self.learner = PPOLearner(module, c)

    def _acting_net(self):
        return self.learner.numpy_net()

    def training_step(self):
        c = self.config
        target = c.total_train_batch_size
        steps_per_env = c.get_rollout_fragment_length()
        frags, sampled = [], 0
        start = time.time()
        net = self.learner.numpy_net()
        while sampled < target:
            new = self.env_runner_group.sample(steps_per_env, net, explore=c.explore)
            frags += new
            sampled += sum(f.env_steps for f in new)
        sample_time = time.time() - start
        self.counters["num_env_steps_sampled_lifetime"] += sampled
        self._record_episodes(frags)
        start = time.time()
        learner_results, trained, module_steps = self.learner.update(frags)
        learn_time = time.time() - start
        self.counters["num_env_steps_trained_lifetime"] += trained
        self.counters["num_module_steps_trained_lifetime"] += module_steps
        learner_results["num_module_steps_trained_lifetime"] = \
            self.counters["num_module_steps_trained_lifetime"]
        return {
            "env_runners": self._env_runner_results(frags, sample_time),
            "learners": {
                DEFAULT_MODULE_ID: learner_results,
                "__all_modules__": {
                    "num_env_steps_trained": trained,
                    "num_module_steps_trained": module_steps,
                    "num_env_steps_trained_lifetime":
                        self.counters["num_env_steps_trained_lifetime"],
                    "num_module_steps_trained_lifetime":
                        self.counters["num_module_steps_trained_lifetime"],
                    "num_trainable_parameters": learner_results["num_trainable_parameters"],
                },
            },
            "timers": {"env_runner_sampling_timer": sample_time,
                       "learner_update_timer": learn_time},
            "num_training_step_calls_per_iteration": 1,
        }
