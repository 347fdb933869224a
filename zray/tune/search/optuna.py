"""OptunaSearch: Optuna's samplers behind the `Searcher` interface (optuna imported here only).

The space is a dict of tune domains (converted to Optuna distributions, nested keys joined by
"/"), a dict of Optuna distributions, or a define-by-run function `fn(ot_trial)` that may
return constants. Uses Optuna's ask/tell interface; intermediate results go to `trial.report`
(for Optuna's pruners), a trial's last result to `study.tell`.
"""
import logging
import pickle

from .sample import Categorical, Domain, Float, Function, Integer
from .searcher import Searcher
from .variant_generator import flatten_dict, is_grid, unflatten_dict

logger = logging.getLogger("zray.tune")


def _import_optuna():
    try:
        import optuna
    except ImportError as e:
        raise ImportError("OptunaSearch needs optuna: pip install optuna "
                          "(or zray[tune])") from e
    return optuna


def convert_search_space(space):
    """A tune search space -> {flat key: optuna distribution}."""
    ot = _import_optuna()
    out = {}
    for key, domain in flatten_dict(space).items():
        if is_grid(domain):
            raise ValueError("grid_search is not supported by OptunaSearch")
        if not isinstance(domain, Domain):
            continue
        if isinstance(domain, Function):
            raise ValueError(f"sample_from ({key}) is not supported by OptunaSearch")
        if isinstance(domain, Float):
            if domain.normal is not None:
                raise ValueError(f"randn ({key}) is not supported by OptunaSearch")
            step = None if domain.log else domain.q
            if domain.log and domain.q:
                logger.warning("Optuna does not quantize log distributions: %s ignores q", key)
            out[key] = ot.distributions.FloatDistribution(domain.lower, domain.upper,
                                                          log=domain.log, step=step)
        elif isinstance(domain, Integer):
            step = domain.q or 1
            if domain.log and step != 1:
                logger.warning("Optuna does not quantize log distributions: %s ignores q", key)
                step = 1
            out[key] = ot.distributions.IntDistribution(domain.lower, domain.high,
                                                        log=domain.log, step=step)
        elif isinstance(domain, Categorical):
            out[key] = ot.distributions.CategoricalDistribution(domain.categories)
        else:
            raise ValueError(f"OptunaSearch cannot convert {domain!r} ({key})")
    return out


class OptunaSearch(Searcher):
    def __init__(self, space=None, metric=None, mode=None, points_to_evaluate=None, sampler=None,
                 seed=None, evaluated_rewards=None):
        _import_optuna()
        if isinstance(metric, (list, tuple)) and not isinstance(mode, (list, tuple)):
            raise ValueError("a list of metrics needs a list of modes")
        super().__init__(metric=metric, mode=None)
        self._mode = mode
        self._space = None
        self._define_by_run = None
        self._set_space(space)
        self._points = list(points_to_evaluate or [])
        self._evaluated_rewards = evaluated_rewards
        self._sampler = sampler
        self._seed = seed
        self._study = None
        self._ot_trials = {}
        self._completed = set()

    def _set_space(self, space):
        if space is None:
            return
        if callable(space):
            self._define_by_run = space
            return
        ot = _import_optuna()
        flat = flatten_dict(space)
        if flat and all(isinstance(v, ot.distributions.BaseDistribution) for v in flat.values()):
            self._space = flat
        else:
            self._space = convert_search_space(space)

    def set_search_properties(self, metric, mode, config, **spec):
        if self._space is not None or self._define_by_run is not None:
            if config and any(isinstance(v, Domain) for v in flatten_dict(config).values()):
                logger.warning("OptunaSearch has its own space: the param_space's domains "
                               "are ignored")
        else:
            self._set_space(config or {})
        super().set_search_properties(metric, mode, config)
        return True

    def _setup_study(self):
        ot = _import_optuna()
        if ot.logging.get_verbosity() == ot.logging.INFO:
            ot.logging.set_verbosity(ot.logging.WARNING)   # one line per trial is the table's job
        if self._metric is None or self._mode is None:
            raise ValueError("OptunaSearch needs a metric and a mode (here or in TuneConfig)")
        modes = self._mode if isinstance(self._mode, (list, tuple)) else [self._mode]
        directions = ["minimize" if m == "min" else "maximize" for m in modes]
        sampler = self._sampler or ot.samplers.TPESampler(seed=self._seed)
        if len(directions) == 1:
            self._study = ot.create_study(sampler=sampler, direction=directions[0])
        else:
            self._study = ot.create_study(sampler=sampler, directions=directions)
        for point in self._points:
            self._study.enqueue_trial(flatten_dict(point))
        self._points = []

    def suggest(self, trial_id):
        if self._space is None and self._define_by_run is None:
            raise RuntimeError("OptunaSearch has no search space: pass space= or a param_space")
        if self._study is None:
            self._setup_study()
        if self._define_by_run is not None:
            ot_trial = self._study.ask()
            constants = self._define_by_run(ot_trial) or {}
            params = dict(flatten_dict(constants))
            params.update(ot_trial.params)
        else:
            ot_trial = self._study.ask(fixed_distributions=self._space)
            params = dict(ot_trial.params)
        self._ot_trials[trial_id] = ot_trial
        return unflatten_dict(params)

    def _values(self, result):
        metrics = self._metric if isinstance(self._metric, (list, tuple)) else [self._metric]
        values = [result.get(m) for m in metrics]
        if any(v is None for v in values):
            return None
        return values[0] if len(values) == 1 else values

    def on_trial_result(self, trial_id, result):
        if isinstance(self._metric, (list, tuple)):
            return
        ot_trial = self._ot_trials.get(trial_id)
        value = self._values(result)
        step = result.get("training_iteration")
        if ot_trial is not None and value is not None and step is not None:
            try:
                ot_trial.report(value, step)
            except Exception:   # noqa: BLE001 - a repeated step is not worth a failed trial
                logger.debug("optuna report failed", exc_info=True)

    def on_trial_complete(self, trial_id, result=None, error=False):
        ot = _import_optuna()
        ot_trial = self._ot_trials.pop(trial_id, None)
        if ot_trial is None:
            return
        value = self._values(result) if result else None
        if error or value is None:
            self._study.tell(ot_trial, state=ot.trial.TrialState.FAIL)
        else:
            self._study.tell(ot_trial, value)

    def add_evaluated_point(self, parameters, value, error=False, pruned=False,
                            intermediate_values=None):
        ot = _import_optuna()
        if self._study is None:
            self._setup_study()
        state = ot.trial.TrialState.FAIL if error else (
            ot.trial.TrialState.PRUNED if pruned else ot.trial.TrialState.COMPLETE)
        dists = {k: v for k, v in (self._space or {}).items() if k in flatten_dict(parameters)}
        trial = ot.trial.create_trial(params=flatten_dict(parameters), distributions=dists,
                                      value=None if error else value, state=state,
                                      intermediate_values=intermediate_values)
        self._study.add_trial(trial)

    def get_state(self):
        return {k: v for k, v in self.__dict__.items()}

    def save(self, checkpoint_path):
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)
