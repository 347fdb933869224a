"""An Algorithm class as a Tune Trainable: what `Tuner("PPO", ...)` and `tune.run("PPO", ...)`
run in a trial.

The trial's config is `AlgorithmConfig.to_dict()` after Tune resolved its search spaces; the
trainable builds the Algorithm from it, and each Tune step is one `Algorithm.train()`. A trial
asks for a placement group of `1 + num_env_runners (+ evaluation runners)` bundles: the trial
actor (driver and learner) takes the first, and the env runners it starts are captured into the
others, so a trial never waits on CPUs its own actor holds.
"""
import functools

from zray.tune.trainable import PlacementGroupFactory, Trainable

# Filled again by Tune's Trainable.train and the trial, from the trial's own counters.
_TUNE_KEYS = ("config", "trial_id", "done", "training_iteration", "time_total_s",
              "time_since_restore", "iterations_since_restore", "timestamp", "date", "pid",
              "hostname", "node_ip")


class AlgorithmTrainable(Trainable):
    _algo_class = None

    def setup(self, config):
        self.algo = self._algo_class(config=dict(config))

    def step(self):
        result = self.algo.train()
        for key in _TUNE_KEYS:
            result.pop(key, None)
        return result

    def save_checkpoint(self, checkpoint_dir):
        self.algo.save_checkpoint(checkpoint_dir)

    def load_checkpoint(self, checkpoint_dir):
        self.algo.load_checkpoint(checkpoint_dir)

    def reset_config(self, new_config):
        return False        # env runners are built for one config: rebuild the algorithm

    def cleanup(self):
        algo = getattr(self, "algo", None)
        if algo is not None:
            algo.stop()

    @classmethod
    def default_resource_request(cls, config):
        cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
        defaults = cls._algo_class.get_default_config()
        runners = _fixed(cfg, "num_env_runners", defaults.num_env_runners)
        evaluators = _fixed(cfg, "evaluation_num_env_runners", defaults.evaluation_num_env_runners)
        per_runner = _fixed(cfg, "num_cpus_per_env_runner", defaults.num_cpus_per_env_runner)
        main = _fixed(cfg, "num_cpus_for_main_process", 1)
        bundles = [{"CPU": main}] + [{"CPU": per_runner}] * (runners + evaluators)
        return PlacementGroupFactory(bundles, strategy="PACK")


def _fixed(cfg, name, default):
    """A resource option of the param space: a number, or the largest of a grid search (every
    trial gets the same reservation)."""
    value = cfg.get(name, default)
    if isinstance(value, dict) and "grid_search" in value:
        value = max(value["grid_search"])
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} sizes each trial's placement group, so it must be a number "
                         f"or a grid_search of numbers when tuning, got {value!r}")
    return value


@functools.lru_cache(maxsize=None)
def algorithm_trainable(algo_class):
    """The Trainable class running `algo_class` (one class per algorithm, named after it)."""
    return type(algo_class.__name__, (AlgorithmTrainable,),
                {"_algo_class": algo_class, "__qualname__": algo_class.__name__})
