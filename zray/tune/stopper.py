"""Stoppers: `stop(trial_id, result) -> bool` ends one trial, `stop_all() -> bool` all of them."""
import time
from collections import defaultdict, deque

from ..train.policy import lookup_metric


class Stopper:
    def __call__(self, trial_id, result):
        raise NotImplementedError

    def stop_all(self):
        raise NotImplementedError


class NoopStopper(Stopper):
    def __call__(self, trial_id, result):
        return False

    def stop_all(self):
        return False


class FunctionStopper(Stopper):
    def __init__(self, function):
        self._fn = function

    def __call__(self, trial_id, result):
        return bool(self._fn(trial_id, result))

    def stop_all(self):
        return False


class DictStopper(Stopper):
    """`{"training_iteration": 10, "acc": 0.9}`: stop once any result value reaches its bound."""

    def __init__(self, criteria):
        self.criteria = dict(criteria)

    def __call__(self, trial_id, result):
        for key, bound in self.criteria.items():
            value = lookup_metric(result, key)
            if value is not None and value >= bound:
                return True
        return False

    def stop_all(self):
        return False


class MaximumIterationStopper(Stopper):
    def __init__(self, max_iter):
        self._max_iter = max_iter
        self._iter = defaultdict(int)

    def __call__(self, trial_id, result):
        self._iter[trial_id] += 1
        return self._iter[trial_id] >= self._max_iter

    def stop_all(self):
        return False


class TrialPlateauStopper(Stopper):
    """Stop a trial when its last `num_results` values of `metric` have a std below `std`."""

    def __init__(self, metric, std=0.01, num_results=4, grace_period=4, metric_threshold=None,
                 mode=None):
        if metric_threshold is not None and mode not in ("min", "max"):
            raise ValueError("metric_threshold needs mode 'min' or 'max'")
        self._metric, self._std, self._num_results = metric, std, num_results
        self._grace_period, self._threshold, self._mode = grace_period, metric_threshold, mode
        self._iter = defaultdict(int)
        self._results = defaultdict(lambda: deque(maxlen=self._num_results))

    def __call__(self, trial_id, result):
        value = result.get(self._metric)
        if value is None:
            return False
        self._iter[trial_id] += 1
        window = self._results[trial_id]
        window.append(value)
        if self._iter[trial_id] < self._grace_period or len(window) < self._num_results:
            return False
        if self._threshold is not None:
            if self._mode == "min" and value > self._threshold:
                return False
            if self._mode == "max" and value < self._threshold:
                return False
        mean = sum(window) / len(window)
        std = (sum((v - mean) ** 2 for v in window) / len(window)) ** 0.5
        return std < self._std

    def stop_all(self):
        return False

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_results"] = {k: list(v) for k, v in self._results.items()}
        return state

    def __setstate__(self, state):
        results = state.pop("_results")
        self.__dict__.update(state)
        self._results = defaultdict(lambda: deque(maxlen=self._num_results))
        for k, v in results.items():
            self._results[k].extend(v)


class ExperimentPlateauStopper(Stopper):
    """Stop everything when the top `top` values of `metric` plateau (std < `std`)."""

    def __init__(self, metric, std=0.001, top=10, mode="min", patience=0):
        if mode not in ("min", "max"):
            raise ValueError("mode must be 'min' or 'max'")
        self._metric, self._std, self._top, self._mode = metric, std, top, mode
        self._patience = patience
        self._values = []
        self._iterations = 0

    def __call__(self, trial_id, result):
        value = result.get(self._metric)
        if value is None:
            return False
        self._values.append(value)
        self._values.sort(reverse=self._mode == "max")
        del self._values[self._top:]
        if len(self._values) == self._top:
            mean = sum(self._values) / self._top
            std = (sum((v - mean) ** 2 for v in self._values) / self._top) ** 0.5
            self._iterations = self._iterations + 1 if std <= self._std else 0
        return self.stop_all()

    def stop_all(self):
        return len(self._values) == self._top and self._iterations > self._patience


class TimeoutStopper(Stopper):
    """Stop the whole experiment `timeout` seconds (or a timedelta) after it starts."""

    def __init__(self, timeout):
        import datetime
        if isinstance(timeout, datetime.timedelta):
            timeout = timeout.total_seconds()
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._timeout = float(timeout)
        self._start = None

    def __call__(self, trial_id, result):
        return self.stop_all()

    def stop_all(self):
        now = time.monotonic()
        if self._start is None:
            self._start = now
        return now - self._start >= self._timeout

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_start"] = None   # a restored experiment gets its budget again
        return state


class CombinedStopper(Stopper):
    def __init__(self, *stoppers):
        self._stoppers = stoppers

    def __call__(self, trial_id, result):
        return any([s(trial_id, result) for s in self._stoppers])

    def stop_all(self):
        return any([s.stop_all() for s in self._stoppers])


def as_stopper(stop):
    """RunConfig.stop in any of Ray's forms -> a Stopper (or None)."""
    if stop is None:
        return None
    if isinstance(stop, Stopper):
        return stop
    if isinstance(stop, dict):
        return DictStopper(stop)
    if callable(stop):
        return FunctionStopper(stop)
    raise TypeError(f"stop must be a dict, a function or a Stopper, got {type(stop).__name__}")
