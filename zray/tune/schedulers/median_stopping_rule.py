"""MedianStoppingRule (Golovin et al., Vizier): stop a trial whose best result so far is worse
than the median of the other trials' running means at the same time."""
from .trial_scheduler import FIFOScheduler, TrialScheduler, median


class MedianStoppingRule(FIFOScheduler):
    def __init__(self, time_attr="time_total_s", metric=None, mode=None, grace_period=60.0,
                 min_samples_required=3, min_time_slice=0, hard_stop=True):
        if mode is not None and mode not in ("min", "max"):
            raise ValueError("mode must be 'min' or 'max'")
        self._time_attr = time_attr
        self._metric = metric
        self._mode = mode
        self._grace_period = grace_period
        self._min_samples_required = min_samples_required
        self._min_time_slice = min_time_slice
        self._hard_stop = hard_stop
        self._results = {}          # trial_id -> [(time, score)]
        self._completed = set()
        self._last_pause = {}
        self._num_stopped = 0

    def on_trial_add(self, tune_controller, trial):
        if not self._metric or not self._mode:
            raise ValueError("MedianStoppingRule needs a metric and a mode")
        self._results.setdefault(trial.trial_id, [])

    def on_trial_result(self, tune_controller, trial, result):
        score = self._score(result)
        t = result.get(self._time_attr)
        if score is None or t is None:
            return TrialScheduler.CONTINUE
        self._results.setdefault(trial.trial_id, []).append((t, score))
        if t < self._grace_period:
            return TrialScheduler.CONTINUE
        if t - self._last_pause.get(trial.trial_id, float("-inf")) < self._min_time_slice:
            return TrialScheduler.CONTINUE
        means = []
        for other, rows in self._results.items():
            if other == trial.trial_id:
                continue
            upto = [s for (tt, s) in rows if tt <= t]
            if upto:
                means.append(sum(upto) / len(upto))
        if len(means) < self._min_samples_required:
            return TrialScheduler.CONTINUE
        best = max(s for _, s in self._results[trial.trial_id])
        if best < median(means):
            self._last_pause[trial.trial_id] = t
            if self._hard_stop:
                self._num_stopped += 1
                return TrialScheduler.STOP
            return TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result):
        self._completed.add(trial.trial_id)

    def on_trial_remove(self, tune_controller, trial):
        self._results.pop(trial.trial_id, None)

    def debug_string(self):
        return f"Using MedianStoppingRule: num_stopped: {self._num_stopped}."
