"""The scheduler interface (Ray's names) and FIFOScheduler.

A scheduler decides, for every result, whether its trial goes on (CONTINUE), gives its slot
up for now (PAUSE) or ends (STOP), and which waiting trial runs next. Schedulers are I/O-free:
they see `Trial` records and a controller whose only effects are recorded requests
(`stop_trial`, `exploit`, `request_save`), so their tests run without any process.
"""


class TrialScheduler:
    CONTINUE = "CONTINUE"
    PAUSE = "PAUSE"
    STOP = "STOP"
    NOOP = "NOOP"

    _metric = None
    _mode = None
    _supports_buffered_results = True

    @property
    def metric(self):
        return self._metric

    @property
    def supports_buffered_results(self):
        return self._supports_buffered_results

    def set_search_properties(self, metric, mode, **spec):
        if self._metric and metric and self._metric != metric:
            return False
        if self._mode and mode and self._mode != mode:
            return False
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        return True

    def on_trial_add(self, tune_controller, trial):
        pass

    def on_trial_error(self, tune_controller, trial):
        pass

    def on_trial_result(self, tune_controller, trial, result):
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result):
        pass

    def on_trial_remove(self, tune_controller, trial):
        pass

    def choose_trial_to_run(self, tune_controller):
        """The next PENDING trial, else a PAUSED one; None if none should run."""
        for status in ("PENDING", "PAUSED"):
            for trial in tune_controller.get_trials():
                if trial.status == status and tune_controller.has_resources_for_trial(trial):
                    return trial
        return None

    def debug_string(self):
        return f"Using {type(self).__name__}."

    def save(self, checkpoint_path):
        import pickle
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path):
        import pickle
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))

    # helpers for subclasses
    def _score(self, result):
        """The metric as a number to maximise (negated for mode="min"), or None if absent."""
        value = result.get(self._metric) if self._metric else None
        if value is None:
            return None
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None
        return -value if self._mode == "min" else value


class FIFOScheduler(TrialScheduler):
    """Trials run in the order they were created, each to its end."""


def percentile(values, q):
    """Linear-interpolated q-th percentile (numpy's default), q in [0, 100]."""
    data = sorted(v for v in values if v == v)
    if not data:
        return None
    pos = (len(data) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def median(values):
    return percentile(values, 50)
