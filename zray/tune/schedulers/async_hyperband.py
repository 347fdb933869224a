"""ASHA (asynchronous successive halving; Li et al. 2018), Ray's AsyncHyperBandScheduler.

Each bracket has rungs at `grace_period * reduction_factor**(k + s)` (below `max_t`). When a
trial first reaches a rung it is compared with the trials recorded there before it: below the
top `1/reduction_factor` quantile it stops, otherwise it goes on; either way its score is
recorded. Trials stop at `max_t`. New trials join a bracket at random, weighted like Ray's.
"""
import logging
import math
import random

from .trial_scheduler import FIFOScheduler, TrialScheduler, percentile

logger = logging.getLogger("zray.tune")


class _Bracket:
    def __init__(self, min_t, max_t, reduction_factor, s, stop_last_trials=True):
        self.rf = reduction_factor
        self.max_t = max_t
        self.stop_last_trials = stop_last_trials
        count = int(math.log(max_t / min_t, reduction_factor) - s + 1) if max_t > min_t else 0
        milestones = [min_t * reduction_factor ** (k + s) for k in reversed(range(max(count, 0)))]
        self.rungs = [(m, {}) for m in milestones]     # highest milestone first

    def cutoff(self, recorded):
        if not recorded:
            return None
        return percentile(recorded.values(), (1 - 1 / self.rf) * 100)

    def on_result(self, trial_id, cur_iter, score):
        action = TrialScheduler.CONTINUE
        for milestone, recorded in self.rungs:
            if cur_iter >= self.max_t and self.stop_last_trials:
                action = TrialScheduler.STOP
            if cur_iter < milestone or trial_id in recorded:
                continue
            cutoff = self.cutoff(recorded)
            if score is not None and cutoff is not None and score < cutoff:
                action = TrialScheduler.STOP
            recorded[trial_id] = score if score is not None else float("nan")
            break
        return action

    def debug_str(self):
        return " | ".join(f"Iter {m:.3f}: {self.cutoff(r)}" for m, r in self.rungs)


class AsyncHyperBandScheduler(FIFOScheduler):
    def __init__(self, time_attr="training_iteration", metric=None, mode=None, max_t=100,
                 grace_period=1, reduction_factor=4, brackets=1, stop_last_trials=True):
        if grace_period <= 0:
            raise ValueError("grace_period must be positive")
        if reduction_factor <= 1:
            raise ValueError("reduction_factor must be > 1")
        if brackets < 1:
            raise ValueError("brackets must be >= 1")
        if max_t <= 0:
            raise ValueError("max_t must be positive")
        if mode is not None and mode not in ("min", "max"):
            raise ValueError("mode must be 'min' or 'max'")
        self._time_attr = time_attr
        self._metric = metric
        self._mode = mode
        self._max_t = max_t
        self._reduction_factor = reduction_factor
        self._stop_last_trials = stop_last_trials
        self._brackets = [_Bracket(grace_period, max_t, reduction_factor, s, stop_last_trials)
                          for s in range(brackets)]
        weights = [math.exp(-s) for s in range(brackets)]   # Ray weighs bracket s by softmax(-s)
        total = sum(weights)
        self._bracket_weights = [w / total for w in weights]
        self._trial_info = {}
        self._rng = random.Random()
        self._num_stopped = 0

    def on_trial_add(self, tune_controller, trial):
        if not self._metric or not self._mode:
            raise ValueError(f"{type(self).__name__} needs a metric and a mode: pass them to it "
                             "or to TuneConfig")
        idx = self._rng.choices(range(len(self._brackets)), self._bracket_weights)[0]
        self._trial_info[trial.trial_id] = idx

    def on_trial_result(self, tune_controller, trial, result):
        if self._time_attr not in result:
            return TrialScheduler.CONTINUE
        t = result[self._time_attr]
        if t >= self._max_t and self._stop_last_trials:
            action = TrialScheduler.STOP
        else:
            bracket = self._brackets[self._trial_info.get(trial.trial_id, 0)]
            action = bracket.on_result(trial.trial_id, t, self._score(result))
        if action == TrialScheduler.STOP:
            self._num_stopped += 1
        return action

    def on_trial_complete(self, tune_controller, trial, result):
        if result and self._time_attr in result and trial.trial_id in self._trial_info:
            bracket = self._brackets[self._trial_info[trial.trial_id]]
            bracket.on_result(trial.trial_id, result[self._time_attr], self._score(result))
        self._trial_info.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller, trial):
        self._trial_info.pop(trial.trial_id, None)

    def debug_string(self):
        out = f"Using AsyncHyperBand: num_stopped={self._num_stopped}"
        return out + "".join(f"\n{b.debug_str()}" for b in self._brackets)


ASHAScheduler = AsyncHyperBandScheduler
