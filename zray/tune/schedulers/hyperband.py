"""Synchronous HyperBand (Li et al. 2016), Ray's HyperBandScheduler.

Trials fill brackets in turn; bracket s starts n0 = ceil(s_max/(s+1) * eta**s) trials with a
budget r0 = max_t * eta**-s. A trial that reaches its bracket's current milestone PAUSEs. When
every live trial of the bracket has reached it (and the bracket is full, or no more trials will
come), the best 1/eta go on to a milestone eta times further and the others stop; at `max_t`
trials stop. Pausing gives the trial's slot up; it resumes from its latest checkpoint.
"""
import math

from .trial_scheduler import FIFOScheduler, TrialScheduler


class _HBBracket:
    def __init__(self, s, s_max_1, eta, max_t):
        self.s = s
        self.eta = eta
        self.max_t = max_t
        self.capacity = int(math.ceil(s_max_1 / (s + 1) * eta ** s))
        self.milestone = min(max_t, max(1, int(math.ceil(max_t * eta ** (-s)))))
        self.live = []              # trial ids still in the bracket, in order of arrival
        self.scores = {}            # trial id -> score at the current milestone
        self.released = set()       # paused trials allowed to resume
        self.added = 0

    def full(self):
        return self.added >= self.capacity

    def add(self, trial_id):
        self.live.append(trial_id)
        self.added += 1

    def remove(self, trial_id):
        if trial_id in self.live:
            self.live.remove(trial_id)
        self.scores.pop(trial_id, None)
        self.released.discard(trial_id)

    def rung_complete(self):
        return bool(self.live) and all(t in self.scores for t in self.live)

    def advance(self):
        """Keep the best 1/eta at this milestone; returns the ids to stop."""
        ranked = sorted(self.live, key=lambda t: self.scores[t], reverse=True)
        keep = max(1, int(len(ranked) / self.eta))
        stop = ranked[keep:]
        for t in stop:
            self.remove(t)
        self.scores = {}
        self.milestone = min(self.max_t, int(math.ceil(self.milestone * self.eta)))
        self.released.update(ranked[:keep])
        return stop


class HyperBandScheduler(FIFOScheduler):
    _supports_buffered_results = False

    def __init__(self, time_attr="training_iteration", metric=None, mode=None, max_t=81,
                 reduction_factor=3, stop_last_trials=True):
        if max_t <= 0 or reduction_factor <= 1:
            raise ValueError("HyperBand needs max_t > 0 and reduction_factor > 1")
        if mode is not None and mode not in ("min", "max"):
            raise ValueError("mode must be 'min' or 'max'")
        self._time_attr = time_attr
        self._metric = metric
        self._mode = mode
        self._max_t = max_t
        self._eta = reduction_factor
        self._stop_last_trials = stop_last_trials
        self._s_max_1 = int(round(math.log(max_t) / math.log(reduction_factor))) + 1
        self._brackets = []
        self._next_s = self._s_max_1 - 1
        self._trial_bracket = {}
        self._num_stopped = 0

    def on_trial_add(self, tune_controller, trial):
        if not self._metric or not self._mode:
            raise ValueError("HyperBandScheduler needs a metric and a mode")
        if not self._brackets or self._brackets[-1].full():
            self._brackets.append(_HBBracket(self._next_s, self._s_max_1, self._eta, self._max_t))
            self._next_s = self._next_s - 1 if self._next_s > 0 else self._s_max_1 - 1
        bracket = self._brackets[-1]
        bracket.add(trial.trial_id)
        self._trial_bracket[trial.trial_id] = bracket

    def on_trial_result(self, tune_controller, trial, result):
        bracket = self._trial_bracket.get(trial.trial_id)
        t = result.get(self._time_attr)
        if bracket is None or t is None:
            return TrialScheduler.CONTINUE
        if t >= self._max_t and self._stop_last_trials:
            self._forget(trial.trial_id)
            return TrialScheduler.STOP
        if t < bracket.milestone:
            return TrialScheduler.CONTINUE
        score = self._score(result)
        bracket.scores[trial.trial_id] = score if score is not None else float("-inf")
        bracket.released.discard(trial.trial_id)
        return self._maybe_advance(tune_controller, bracket, trial.trial_id)

    def _maybe_advance(self, tune_controller, bracket, current=None):
        if not bracket.rung_complete():
            return TrialScheduler.PAUSE
        if not bracket.full() and not tune_controller.search_finished():
            return TrialScheduler.PAUSE
        stopped = bracket.advance()
        action = TrialScheduler.CONTINUE
        for tid in stopped:
            self._num_stopped += 1
            self._trial_bracket.pop(tid, None)
            if tid == current:
                action = TrialScheduler.STOP
            else:
                tune_controller.stop_trial(tid)
        if current is not None and current in bracket.released:
            bracket.released.discard(current)
        return action

    def _forget(self, trial_id):
        bracket = self._trial_bracket.pop(trial_id, None)
        if bracket is not None:
            bracket.remove(trial_id)
            return bracket
        return None

    def on_trial_complete(self, tune_controller, trial, result):
        self._after_removal(tune_controller, self._forget(trial.trial_id))

    def on_trial_error(self, tune_controller, trial):
        self._after_removal(tune_controller, self._forget(trial.trial_id))

    def on_trial_remove(self, tune_controller, trial):
        self._after_removal(tune_controller, self._forget(trial.trial_id))

    def _after_removal(self, tune_controller, bracket):
        if bracket is not None and bracket.rung_complete() and (
                bracket.full() or tune_controller.search_finished()):
            self._maybe_advance(tune_controller, bracket)

    def choose_trial_to_run(self, tune_controller):
        for trial in tune_controller.get_trials():
            if trial.status == "PENDING" and tune_controller.has_resources_for_trial(trial):
                return trial
        for trial in tune_controller.get_trials():
            bracket = self._trial_bracket.get(trial.trial_id)
            if trial.status == "PAUSED" and bracket is not None and \
                    trial.trial_id in bracket.released:
                bracket.released.discard(trial.trial_id)
                return trial
        if tune_controller.search_finished():
            for bracket in self._brackets:   # no more trials will come: close partial rungs
                if bracket.rung_complete():
                    self._maybe_advance(tune_controller, bracket)
                    for trial in tune_controller.get_trials():
                        if trial.status == "PAUSED" and trial.trial_id in bracket.released:
                            bracket.released.discard(trial.trial_id)
                            return trial
        return None

    def debug_string(self):
        return (f"Using HyperBand: num_stopped={self._num_stopped} "
                f"brackets={len(self._brackets)}")
