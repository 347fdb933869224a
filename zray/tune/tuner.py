"""`Tuner`: configure, `fit()`, `restore()` — the composition root of zray.tune."""
import copy
import logging
import math
import inspect
import os
import secrets
import sys

import zray

from .config import RunConfig, TuneConfig, default_storage_path
from .controller import TrialController
from .logger import default_loggers
from .progress import CLIReporter
from .result_grid import ResultGrid, TuneError
from .runner import TrialRunner
from .schedulers.trial_scheduler import FIFOScheduler
from .search.basic_variant import BasicVariantGenerator
from .search.searcher import ConcurrencyLimiter, SearchAlgorithm, Searcher, SearchGenerator
from .stopper import as_stopper
from .storage import ExperimentStorage, can_restore, default_experiment_name, load_state, \
    load_tuner
from .trainable import is_class_trainable, placement_of, resources_of, trainable_name

logger = logging.getLogger("zray.tune")

_registry = {}


def register_trainable(name, trainable, warn=True):
    _registry[name] = trainable


def _lookup(trainable):
    """A registered name, an RLlib algorithm's name ("PPO") or class, or the trainable itself."""
    if isinstance(trainable, str):
        if trainable in _registry:
            return _registry[trainable]
        from zray.rllib.algorithms import get_algorithm_class
        try:
            trainable = get_algorithm_class(trainable)
        except ValueError:
            raise TuneError(f"unknown trainable {trainable!r}: register it with "
                            "tune.register_trainable first, or name an RLlib algorithm "
                            "(PPO, DQN)") from None
    algorithm = sys.modules.get("zray.rllib.algorithms.algorithm")
    if algorithm is not None and inspect.isclass(trainable) and \
            issubclass(trainable, algorithm.Algorithm):
        from zray.rllib.algorithms.tune_trainable import algorithm_trainable
        return algorithm_trainable(trainable)
    return trainable


def _as_param_space(param_space):
    """A dict; an RLlib AlgorithmConfig becomes its `to_dict()` (search spaces included)."""
    if param_space is None:
        return {}
    if not isinstance(param_space, dict) and callable(getattr(param_space, "to_dict", None)):
        return param_space.to_dict()
    return param_space


def _search_alg(search_alg, tune_config):
    alg = search_alg if search_alg is not None else BasicVariantGenerator()
    if isinstance(alg, Searcher):
        if tune_config.max_concurrent_trials and not isinstance(alg, ConcurrencyLimiter):
            alg = ConcurrencyLimiter(alg, tune_config.max_concurrent_trials)
        alg = SearchGenerator(alg)
    if not isinstance(alg, SearchAlgorithm):
        raise TypeError(f"search_alg must be a Searcher or a SearchAlgorithm, got "
                        f"{type(alg).__name__}")
    return alg


def _slots(resources, max_concurrent):
    cluster = zray.cluster_resources()
    slots = None
    for key, amount in resources.items():
        if not amount:
            continue
        have = cluster.get(key, 0)
        n = int(math.floor(have / amount + 1e-9))
        if n < 1:
            raise TuneError(f"a trial needs {resources} but the cluster has {cluster}: no trial "
                            "could ever start")
        slots = n if slots is None else min(slots, n)
    slots = slots or 1
    if max_concurrent:
        slots = min(slots, max_concurrent)
    return slots


def _actor_options(resources):
    opts = {"num_cpus": resources.get("CPU", 0), "num_gpus": resources.get("GPU", 0)}
    custom = {k: v for k, v in resources.items() if k not in ("CPU", "GPU", "memory")}
    if custom:
        opts["resources"] = custom
    if resources.get("memory"):
        opts["memory"] = resources["memory"]
    return opts


class Tuner:
    def __init__(self, trainable=None, *, param_space=None, tune_config=None, run_config=None,
                 _restore=None):
        self._trainable = _lookup(trainable)
        if self._trainable is None:
            raise TypeError("Tuner needs a trainable (a function or a Trainable class)")
        self.param_space = _as_param_space(param_space)
        self.tune_config = tune_config or TuneConfig()
        self.run_config = run_config or RunConfig()
        self._restore = _restore          # (experiment path, resume flags) when restoring
        self._results = None
        if not isinstance(self.param_space, dict):
            raise TypeError("param_space must be a dict")

    # ---- restore ----

    @classmethod
    def can_restore(cls, path, storage_filesystem=None):
        return can_restore(os.path.expanduser(os.fspath(path)))

    @classmethod
    def restore(cls, path, trainable, resume_unfinished=True, resume_errored=False,
                restart_errored=False, param_space=None, storage_filesystem=None,
                _resume_config=None):
        path = os.path.abspath(os.path.expanduser(os.fspath(path)))
        if not can_restore(path):
            raise TuneError(f"no experiment to restore at {path} (tuner.pkl is missing)")
        saved = load_tuner(path)
        run_config = copy.copy(saved["run_config"])
        run_config.name = os.path.basename(path)
        run_config.storage_path = os.path.dirname(path)
        tuner = cls(trainable, param_space=param_space or saved["param_space"],
                    tune_config=saved["tune_config"], run_config=run_config,
                    _restore={"resume_unfinished": resume_unfinished,
                              "resume_errored": resume_errored,
                              "restart_errored": restart_errored})
        return tuner

    # ---- fit ----

    def get_results(self):
        if self._results is None:
            raise RuntimeError("fit() has not run yet")
        return self._results

    def fit(self):
        if not zray.is_initialized():
            zray.init()
        tc, rc = self.tune_config, self.run_config
        trainable = self._trainable
        name_of_trainable = trainable_name(trainable)
        storage_path = rc.storage_path or default_storage_path()
        name = rc.name or default_experiment_name(name_of_trainable)
        experiment_path = os.path.join(storage_path, name)
        storage = ExperimentStorage(experiment_path)
        if self._restore is None:
            try:
                storage.save_tuner({"param_space": self.param_space, "tune_config": tc,
                                    "run_config": rc, "trainable_name": name_of_trainable})
            except Exception:   # noqa: BLE001 - restore needs it, the run does not
                logger.warning("could not pickle the Tuner's settings: this experiment will not "
                               "be restorable", exc_info=True)

        search_alg = _search_alg(tc.search_alg, tc)
        search_alg.set_search_properties(tc.metric, tc.mode, self.param_space)
        search_alg.setup(self.param_space, tc.num_samples)
        scheduler = tc.scheduler or FIFOScheduler()
        if not scheduler.set_search_properties(tc.metric, tc.mode):
            raise ValueError("the scheduler's metric/mode conflict with TuneConfig's")
        resources = resources_of(trainable, self.param_space)
        placement = placement_of(trainable, self.param_space)
        controller = TrialController(
            trainable_name=name_of_trainable, search_alg=search_alg, scheduler=scheduler,
            stopper=as_stopper(rc.stop), metric=tc.metric, mode=tc.mode,
            max_slots=_slots(resources, tc.max_concurrent_trials),
            max_failures=rc.failure_config.max_failures, fail_fast=rc.failure_config.fail_fast,
            time_budget_s=tc.time_budget_s, checkpoint_config=rc.checkpoint_config,
            is_class_trainable=is_class_trainable(trainable), experiment_path=experiment_path,
            run_id=secrets.token_hex(3)[:5], resources=resources,
            trial_name_creator=tc.trial_name_creator,
            trial_dirname_creator=tc.trial_dirname_creator)
        if self._restore is not None:
            state = load_state(experiment_path)
            if state is None:
                raise TuneError(f"no experiment state to restore in {experiment_path}")
            controller.set_state(state, **self._restore)
            controller.max_slots = _slots(resources, tc.max_concurrent_trials)

        verbose = 1 if rc.verbose is None else int(rc.verbose)
        reporter = rc.progress_reporter
        if reporter is None and verbose >= 1:
            reporter = CLIReporter(metric=tc.metric, mode=tc.mode)
        elif reporter is not None and hasattr(reporter, "set_search_properties"):
            reporter.set_search_properties(tc.metric, tc.mode)
        callbacks = list(rc.callbacks or [])
        callbacks = default_loggers() + callbacks
        reuse = True if tc.reuse_actors is None else bool(tc.reuse_actors)
        runner = TrialRunner(controller, trainable, experiment_name=name, storage=storage,
                             callbacks=callbacks, reporter=reporter, reuse_actors=reuse,
                             actor_options=_actor_options(placement.bundles[0] if placement
                                                          else resources),
                             placement=placement,
                             fail_fast=rc.failure_config.fail_fast)
        self._restore = None
        runner.run()
        self._results = ResultGrid(controller.trials, experiment_path, tc.metric, tc.mode)
        return self._results
