"""Population Based Training (Jaderberg et al. 2017), Ray's PopulationBasedTraining.

Every `perturbation_interval` (in `time_attr`) a trial is ranked among the trials that have
reported: in the top `quantile_fraction` it asks for a checkpoint (the one it reported, for a
function trainable); in the bottom one it *exploits* a random top trial — it takes the
checkpoint that trial had when it was last ranked, and an *explored* copy of its config — and
restarts from it, taking over the donor's perturbation clock too, so that the restored trial is
next ranked one interval after the donor's state was, not one interval after its own.
Explore: each mutated key is resampled with `resample_probability`, otherwise a number is
multiplied by one of `perturbation_factors` and a list value moves to a neighbouring entry.
"""
import copy
import logging
import math
import random

from ..search.sample import Categorical, Domain, Function
from .trial_scheduler import FIFOScheduler, TrialScheduler

logger = logging.getLogger("zray.tune")


class _PBTTrialState:
    def __init__(self, trial):
        self.orig_tag = trial.experiment_tag
        self.last_score = None
        self.last_checkpoint_at = None     # training_iteration when last ranked
        self.last_perturbation_time = 0
        self.last_train_time = 0
        self.last_result = None


def explore(config, mutations, resample_probability, perturbation_factors, custom_explore_fn,
            rng=random):
    """A mutated copy of `config` (I/O-free; rng injectable for tests)."""
    new = copy.deepcopy(config)
    for key, spec in mutations.items():
        if isinstance(spec, dict):
            if isinstance(new.get(key), dict):
                new[key] = explore(new[key], spec, resample_probability, perturbation_factors,
                                   None, rng)
            continue
        value = new.get(key)
        if isinstance(spec, (list, tuple, Categorical)):
            choices = list(spec.categories if isinstance(spec, Categorical) else spec)
            if rng.random() < resample_probability or value not in choices:
                new[key] = rng.choice(choices)
            else:
                idx = choices.index(value) + rng.choice([-1, 1])
                new[key] = choices[max(0, min(len(choices) - 1, idx))]
        elif isinstance(spec, Domain) or callable(spec):
            sample = (lambda: spec.sample(random_state=rng)) if isinstance(spec, Domain) \
                and not isinstance(spec, Function) else (
                    lambda: spec.func(None) if isinstance(spec, Function) else spec())
            if rng.random() < resample_probability or not isinstance(value, (int, float)):
                new[key] = sample()
            else:
                factor = rng.choice(list(perturbation_factors))
                new[key] = type(value)(value * factor) if isinstance(value, int) \
                    and not isinstance(value, bool) else value * factor
        else:
            raise TypeError(f"unsupported hyperparam_mutations entry for {key!r}: {spec!r}")
    if custom_explore_fn is not None:
        new = custom_explore_fn(new)
        if new is None:
            raise ValueError("custom_explore_fn must return the new config")
    return new


def _checkpoint_at(trial, iteration):
    """The trial's checkpoint of `training_iteration` == iteration (the one of its last
    ranking), else its latest (none was saved then, or num_to_keep dropped it); None without
    any."""
    if trial is None:
        return None
    for record in reversed(trial.checkpoint_manager.records):
        if record.iteration == iteration:
            return record.checkpoint
    return trial.checkpoint


class PopulationBasedTraining(FIFOScheduler):
    _supports_buffered_results = False

    def __init__(self, time_attr="time_total_s", metric=None, mode=None, perturbation_interval=60.0,
                 burn_in_period=0.0, hyperparam_mutations=None, quantile_fraction=0.25,
                 resample_probability=0.25, perturbation_factors=(1.2, 0.8), custom_explore_fn=None,
                 log_config=True, require_attrs=True, synch=False):
        hyperparam_mutations = hyperparam_mutations or {}
        if not hyperparam_mutations and not custom_explore_fn:
            raise ValueError("PopulationBasedTraining needs hyperparam_mutations or "
                             "custom_explore_fn")
        if not 0 <= quantile_fraction <= 0.5:
            raise ValueError("quantile_fraction must be within [0, 0.5]")
        if perturbation_interval <= 0:
            raise ValueError("perturbation_interval must be positive")
        if mode is not None and mode not in ("min", "max"):
            raise ValueError("mode must be 'min' or 'max'")
        self._time_attr = time_attr
        self._metric = metric
        self._mode = mode
        self._perturbation_interval = perturbation_interval
        self._burn_in_period = burn_in_period
        self._hyperparam_mutations = hyperparam_mutations
        self._quantile_fraction = quantile_fraction
        self._resample_probability = resample_probability
        self._perturbation_factors = perturbation_factors
        self._custom_explore_fn = custom_explore_fn
        self._log_config = log_config
        self._require_attrs = require_attrs
        self._synch = synch
        self._trial_state = {}
        self._rng = random.Random()
        self._num_perturbations = 0
        self._num_checkpoints = 0
        self.policy_log = []        # (time, trial id, donor id, old config, new config)

    def on_trial_add(self, tune_controller, trial):
        if not self._metric or not self._mode:
            raise ValueError("PopulationBasedTraining needs a metric and a mode")
        self._trial_state[trial.trial_id] = _PBTTrialState(trial)

    def on_trial_result(self, tune_controller, trial, result):
        if self._time_attr not in result:
            if self._require_attrs:
                raise RuntimeError(f"a result of trial {trial} has no {self._time_attr!r}, "
                                   "which PopulationBasedTraining needs (its time_attr)")
            return TrialScheduler.CONTINUE
        score = self._score(result)
        if score is None:
            if self._require_attrs:
                raise RuntimeError(f"a result of trial {trial} has no {self._metric!r}")
            return TrialScheduler.CONTINUE
        state = self._trial_state.setdefault(trial.trial_id, _PBTTrialState(trial))
        t = result[self._time_attr]
        state.last_train_time = t
        state.last_result = result
        if t < self._burn_in_period:
            return TrialScheduler.CONTINUE
        if t - state.last_perturbation_time < self._perturbation_interval:
            return TrialScheduler.CONTINUE
        state.last_score = score
        state.last_perturbation_time = t
        state.last_checkpoint_at = result.get("training_iteration")
        lower, upper = self._quantiles(tune_controller)
        if trial.trial_id in upper:
            tune_controller.request_save(trial)
            self._num_checkpoints += 1
            return TrialScheduler.CONTINUE
        if trial.trial_id in lower:
            donor_id = self._rng.choice(upper)
            donor = tune_controller.get_trial(donor_id)
            donor_state = self._trial_state[donor_id]
            checkpoint = _checkpoint_at(donor, donor_state.last_checkpoint_at)
            if checkpoint is None:
                logger.warning("PBT: trial %s has no checkpoint to give to trial %s; "
                               "report checkpoints for PBT to exploit", donor_id, trial)
                return TrialScheduler.CONTINUE
            new_config = explore(donor.config, self._hyperparam_mutations,
                                 self._resample_probability, self._perturbation_factors,
                                 self._custom_explore_fn, self._rng)
            self.policy_log.append((t, trial.trial_id, donor_id, dict(trial.config), new_config))
            logger.info("PBT: trial %s exploits %s: %s -> %s", trial, donor_id, trial.config,
                        new_config)
            self._num_perturbations += 1
            tag = f"{state.orig_tag}@perturbed[{self._num_perturbations}]"
            tune_controller.exploit(trial, new_config, checkpoint, tag)
            state.last_perturbation_time = donor_state.last_perturbation_time
            state.last_train_time = donor_state.last_train_time
            return TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE

    def _quantiles(self, tune_controller=None):
        """(lower, upper) trial ids among the unfinished trials that have a score, as Ray."""
        def live(tid):
            trial = tune_controller.get_trial(tid) if tune_controller is not None else None
            return trial is None or not trial.is_finished()
        scored = [(s.last_score, tid) for tid, s in self._trial_state.items()
                  if s.last_score is not None and live(tid)]
        scored.sort(key=lambda x: x[0])
        if len(scored) <= 1:
            return [], []
        n = int(math.ceil(len(scored) * self._quantile_fraction))
        n = min(n, len(scored) // 2)
        if n == 0:
            return [], []
        return [tid for _, tid in scored[:n]], [tid for _, tid in scored[-n:]]

    def on_trial_complete(self, tune_controller, trial, result):
        pass

    def on_trial_remove(self, tune_controller, trial):
        self._trial_state.pop(trial.trial_id, None)

    def choose_trial_to_run(self, tune_controller):
        """A PENDING trial first; else the PAUSED trial furthest behind in time."""
        best = None
        for trial in tune_controller.get_trials():
            if trial.status == "PENDING" and tune_controller.has_resources_for_trial(trial):
                return trial
            if trial.status == "PAUSED":
                t = self._trial_state.get(trial.trial_id)
                key = t.last_train_time if t else 0
                if best is None or key < best[0]:
                    best = (key, trial)
        return best[1] if best else None

    def debug_string(self):
        return (f"PopulationBasedTraining: {self._num_checkpoints} checkpoints, "
                f"{self._num_perturbations} perturbs")
