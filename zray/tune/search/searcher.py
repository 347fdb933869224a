"""The search algorithm interface the trial controller talks to, and Ray's `Searcher` base.

`SearchAlgorithm` is what the controller calls: `next_config(trial_id)` returns a
`Suggestion`, None ("not now, ask later") or, once `is_finished()`, nothing more.
`BasicVariantGenerator` implements it directly; a user's `Searcher` (suggest one config per
trial id) is adapted by `SearchGenerator`. Everything here is I/O-free and picklable, so an
experiment's checkpoint can hold the searcher as it is.
"""
import copy
import logging
import pickle
from dataclasses import dataclass, field

from .variant_generator import flatten_dict, format_vars, has_unresolved, resolve

logger = logging.getLogger("zray.tune")


@dataclass(frozen=True)
class Suggestion:
    config: dict
    resolved_vars: dict = field(default_factory=dict)   # {path tuple: value}, for the tag

    @property
    def tag(self):
        return format_vars(self.resolved_vars)


class SearchAlgorithm:
    """What the trial controller needs from any search algorithm."""

    _finished = False

    def set_search_properties(self, metric, mode, config, **spec):
        return True

    def setup(self, param_space, num_samples):   # pragma: no cover - abstract
        raise NotImplementedError

    def next_config(self, trial_id):   # pragma: no cover - abstract
        raise NotImplementedError

    def on_trial_result(self, trial_id, result):
        pass

    def on_trial_complete(self, trial_id, result=None, error=False):
        pass

    def is_finished(self):
        return self._finished

    def set_finished(self):
        self._finished = True

    @property
    def total_samples(self):
        return None

    def get_state(self):
        return self.__dict__.copy()

    def set_state(self, state):
        self.__dict__.update(state)


class Searcher:
    """Base for a user's searcher: `suggest(trial_id) -> dict | None | Searcher.FINISHED`."""

    FINISHED = "FINISHED"
    CKPT_FILE_TMPL = "searcher-state-{}.pkl"

    def __init__(self, metric=None, mode=None):
        if mode is not None and mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self._metric = metric
        self._mode = mode

    @property
    def metric(self):
        return self._metric

    @property
    def mode(self):
        return self._mode

    def set_search_properties(self, metric, mode, config, **spec):
        """Called once before the first suggest; False if the searcher keeps its own settings."""
        if self._metric is None and metric is not None:
            self._metric = metric
        if self._mode is None and mode is not None:
            self._mode = mode
        return True

    def set_max_concurrency(self, max_concurrent):
        return False

    def suggest(self, trial_id):   # pragma: no cover - abstract
        raise NotImplementedError

    def on_trial_result(self, trial_id, result):
        pass

    def on_trial_complete(self, trial_id, result=None, error=False):
        pass

    def add_evaluated_point(self, parameters, value, error=False, pruned=False,
                            intermediate_values=None):
        raise NotImplementedError(f"{type(self).__name__} cannot add evaluated points")

    def get_state(self):
        return self.__dict__.copy()

    def set_state(self, state):
        self.__dict__.update(state)

    def save(self, checkpoint_path):
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path):
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))

    def save_to_dir(self, checkpoint_dir, session_str="default"):
        import os
        self.save(os.path.join(checkpoint_dir, self.CKPT_FILE_TMPL.format(session_str)))

    def restore_from_dir(self, checkpoint_dir):
        import glob
        import os
        paths = sorted(glob.glob(os.path.join(checkpoint_dir, self.CKPT_FILE_TMPL.format("*"))))
        if not paths:
            raise RuntimeError(f"no searcher state in {checkpoint_dir}")
        self.restore(paths[-1])


class ConcurrencyLimiter(Searcher):
    """At most `max_concurrent` live suggestions; `batch=True` waits for a whole batch to end."""

    def __init__(self, searcher, max_concurrent, batch=False):
        if not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise ValueError(f"max_concurrent must be an int >= 1, got {max_concurrent!r}")
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.searcher = searcher
        self.max_concurrent = max_concurrent
        self.batch = batch
        self.live_trials = set()
        self.num_unfinished_live_trials = 0
        self.cached_results = {}
        searcher.set_max_concurrency(max_concurrent)

    @property
    def metric(self):
        return self.searcher.metric

    @property
    def mode(self):
        return self.searcher.mode

    def set_search_properties(self, metric, mode, config, **spec):
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id):
        if len(self.live_trials) >= self.max_concurrent:
            return None
        suggestion = self.searcher.suggest(trial_id)
        if suggestion not in (None, Searcher.FINISHED):
            self.live_trials.add(trial_id)
            self.num_unfinished_live_trials += 1
        return suggestion

    def on_trial_result(self, trial_id, result):
        if trial_id in self.live_trials:
            self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id, result=None, error=False):
        if trial_id not in self.live_trials:
            return
        if not self.batch:
            self.live_trials.discard(trial_id)
            self.num_unfinished_live_trials -= 1
            self.searcher.on_trial_complete(trial_id, result=result, error=error)
            return
        self.cached_results[trial_id] = (result, error)
        self.num_unfinished_live_trials -= 1
        if self.num_unfinished_live_trials <= 0:
            for tid, (res, err) in self.cached_results.items():
                self.searcher.on_trial_complete(tid, result=res, error=err)
                self.live_trials.discard(tid)
            self.cached_results = {}
            self.num_unfinished_live_trials = 0

    def add_evaluated_point(self, *args, **kwargs):
        return self.searcher.add_evaluated_point(*args, **kwargs)

    def get_state(self):
        state = self.__dict__.copy()
        state["searcher"] = self.searcher
        return state


def deep_merge(base, update):
    out = copy.deepcopy(base) if isinstance(base, dict) else {}
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class SearchGenerator(SearchAlgorithm):
    """Adapts a `Searcher` to the controller: `num_samples` suggestions, merged into the space."""

    def __init__(self, searcher):
        if not isinstance(searcher, Searcher):
            raise TypeError(f"expected a Searcher, got {type(searcher).__name__}")
        self.searcher = searcher
        self._param_space = {}
        self._num_samples = 1
        self._count = 0
        self._finished = False

    @property
    def metric(self):
        return self.searcher.metric

    @property
    def mode(self):
        return self.searcher.mode

    def set_search_properties(self, metric, mode, config, **spec):
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def setup(self, param_space, num_samples):
        self._param_space = param_space or {}
        self._num_samples = num_samples

    @property
    def total_samples(self):
        return None if self._num_samples < 0 else self._num_samples

    def next_config(self, trial_id):
        if self._finished:
            return None
        if 0 <= self._num_samples <= self._count:
            self._finished = True
            return None
        suggested = self.searcher.suggest(trial_id)
        if suggested == Searcher.FINISHED:
            self._finished = True
            return None
        if suggested is None:
            return None
        self._count += 1
        config = deep_merge(self._param_space, suggested)
        resolved = {tuple(k.split("/")): v for k, v in flatten_dict(suggested).items()}
        if has_unresolved(config):
            config, more = resolve(config, 0)
            resolved.update(more)
        return Suggestion(config, resolved)

    def on_trial_result(self, trial_id, result):
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.searcher.on_trial_complete(trial_id, result=result, error=error)
