"""The trial controller: every decision of an experiment, as an I/O-free state machine.

Events come in (`start`, `on_result`, `on_returned`, `on_stopped`, `on_error`, `on_tick`),
commands come out as frozen records; the runner (`runner.py`) turns replies of trial actors
into events and commands into actor calls, files and callbacks. Nothing here touches a
process, a file or the clock other than the injected `clock`.

A trial's life::

    PENDING --StartTrial--> RUNNING --result--> (stopper, searcher, scheduler decide)
        CONTINUE -> ContinueTrial (the trainable's report() returns)
        STOP     -> StopTrial(target=TERMINATED)  --stopped--> TERMINATED
        PAUSE    -> StopTrial(target=PAUSED)      --stopped--> PAUSED --StartTrial--> RUNNING
    RUNNING --returned--> TERMINATED        RUNNING --error--> PENDING (retry) | ERROR
"""
import logging
import time
from dataclasses import dataclass
from typing import Any, Optional

from .schedulers.trial_scheduler import FIFOScheduler, TrialScheduler
from .search.variant_generator import flatten_dict
from .trial import CheckpointManager, CheckpointRecord, Trial

logger = logging.getLogger("zray.tune")


# ---- commands -------------------------------------------------------------------------------

@dataclass(frozen=True)
class StartTrial:
    trial_id: str
    restore: Optional[CheckpointRecord] = None


@dataclass(frozen=True)
class ContinueTrial:
    trial_id: str
    save: bool = False


@dataclass(frozen=True)
class StopTrial:
    trial_id: str
    save: bool = False


@dataclass(frozen=True)
class Notify:
    """For storage, callbacks and progress: kind is one of add, start, result, checkpoint,
    complete, error, retry, pause, exploit."""
    kind: str
    trial_id: str
    result: Any = None


@dataclass(frozen=True)
class DeleteCheckpoint:
    path: str


# ---- the machine ----------------------------------------------------------------------------

def trial_dirname(trial, date_str, max_len=130):
    name = f"{trial.trainable_name}_{trial.trial_id}_{trial.experiment_tag}"
    if len(name) > max_len:
        name = name[:max_len]
    return f"{name}_{date_str}"


class TrialController:
    def __init__(self, *, trainable_name, search_alg, scheduler=None, stopper=None, metric=None,
                 mode=None, max_slots=1, max_failures=0, fail_fast=False, time_budget_s=None,
                 checkpoint_config=None, is_class_trainable=False, experiment_path="",
                 run_id="00000", resources=None, trial_name_creator=None,
                 trial_dirname_creator=None, clock=time.time):
        self.trainable_name = trainable_name
        self.search_alg = search_alg
        self.scheduler = scheduler or FIFOScheduler()
        self.stopper = stopper
        self.metric, self.mode = metric, mode
        self.max_slots = max(1, int(max_slots))
        self.max_failures = max_failures
        self.fail_fast = fail_fast
        self.time_budget_s = time_budget_s
        self.checkpoint_config = checkpoint_config
        self.is_class_trainable = is_class_trainable
        self.experiment_path = experiment_path
        self.run_id = run_id
        self.resources = resources or {"CPU": 1}
        self.trial_name_creator = trial_name_creator
        self.trial_dirname_creator = trial_dirname_creator
        self.clock = clock
        self.trials = []
        self._by_id = {}
        self.running = set()
        self._stop_target = {}        # trial id -> PAUSED | TERMINATED | PENDING, while stopping
        self._save_requests = set()
        self._pending = []            # commands requested by the scheduler mid-decision
        self._next_index = 0
        self.stop_all_requested = False
        self.fail_fast_error = None
        self.start_time = None
        self.elapsed_before = 0.0     # time spent before a restore
        self.iteration = 0

    # -- the view schedulers and searchers get ("tune_controller") --

    def get_trials(self):
        return self.trials

    def get_live_trials(self):
        return [t for t in self.trials if not t.is_finished()]

    def get_trial(self, trial_id):
        return self._by_id.get(trial_id)

    def has_resources_for_trial(self, trial):
        return len(self.running) < self.max_slots

    def search_finished(self):
        return self.search_alg.is_finished() or self.stop_all_requested

    def stop_trial(self, trial_id):
        """A scheduler's request to stop another trial (running or paused)."""
        trial = trial_id if isinstance(trial_id, Trial) else self._by_id.get(trial_id)
        if trial is None or trial.is_finished():
            return
        if trial.trial_id in self.running:
            if trial.trial_id not in self._stop_target:
                self._stop_target[trial.trial_id] = Trial.TERMINATED
                self._pending.append(StopTrial(trial.trial_id))
        else:
            self._pending.extend(self._complete(trial))

    def request_save(self, trial):
        self._save_requests.add(trial.trial_id)

    def exploit(self, trial, new_config, checkpoint, new_tag=None):
        """PBT: restart `trial` from `checkpoint` (another trial's) with `new_config`."""
        donor_record = None
        for t in self.trials:
            for rec in t.checkpoint_manager.records:
                if rec.path == checkpoint.path:
                    donor_record = rec
        trial.restore_record = donor_record or CheckpointRecord(checkpoint.path, {})
        trial.config = new_config
        if new_tag:
            trial.experiment_tag = new_tag
        self._pending.append(Notify("exploit", trial.trial_id, new_config))

    # -- events --

    def start(self, now=None):
        self.start_time = self.clock() if now is None else now
        if hasattr(self.scheduler, "set_search_properties"):
            self.scheduler.set_search_properties(self.metric, self.mode)
        return self._fill()

    def on_result(self, trial_id, result, checkpoint_path=None):
        trial = self._by_id[trial_id]
        self.iteration += 1
        result = dict(result)
        result.setdefault("done", False)
        result["trial_id"] = trial.trial_id
        result["experiment_tag"] = trial.experiment_tag
        result["config"] = trial.config
        trial.last_result = result
        trial.num_results += 1
        trial.metric_analysis.update({k: v for k, v in result.items() if k != "config"})
        out = [Notify("result", trial_id, result)]
        if checkpoint_path:
            out.extend(self._register_checkpoint(trial, checkpoint_path, result))
        if trial_id in self._stop_target:          # already asked to stop (stop_all, a scheduler)
            return out + [StopTrial(trial_id)]
        flat = flatten_dict(result)
        decision = TrialScheduler.CONTINUE
        if result.get("done"):
            decision = TrialScheduler.STOP
        if self.stopper is not None:
            if self.stopper(trial_id, result):
                decision = TrialScheduler.STOP
            if self.stopper.stop_all():
                self.stop_all_requested = True
        self.search_alg.on_trial_result(trial_id, flat)
        sched = self.scheduler.on_trial_result(self, trial, flat)
        if decision != TrialScheduler.STOP and sched in (TrialScheduler.STOP, TrialScheduler.PAUSE):
            decision = sched
        out.extend(self._take_pending())
        if decision == TrialScheduler.STOP:
            self._stop_target[trial_id] = Trial.TERMINATED
            out.append(StopTrial(trial_id, save=self._save_at_end()))
        elif decision == TrialScheduler.PAUSE:
            self._stop_target[trial_id] = Trial.PAUSED
            out.append(StopTrial(trial_id, save=trial.restore_record is None))
        else:
            out.append(ContinueTrial(trial_id, save=self._save_now(trial, result)))
        out.extend(self._check_budget())
        return out + self._fill()

    def on_returned(self, trial_id, checkpoint_path=None):
        """The trainable ended by itself (its function returned, or it was stopped)."""
        trial = self._by_id[trial_id]
        out = []
        if checkpoint_path:
            out.extend(self._register_checkpoint(trial, checkpoint_path, trial.last_result))
        self.running.discard(trial_id)
        target = self._stop_target.pop(trial_id, Trial.TERMINATED)
        if target == Trial.PAUSED:
            trial.status = Trial.PAUSED
            out.append(Notify("pause", trial_id))
        else:
            out.extend(self._complete(trial))
        out.extend(self._take_pending())
        return out + self._fill()

    on_stopped = on_returned

    def on_saved(self, trial_id, path):
        """A checkpoint saved on request (class trainables), as of the trial's last result."""
        trial = self._by_id[trial_id]
        return self._register_checkpoint(trial, path, trial.last_result)

    def on_error(self, trial_id, error_msg, error=None):
        trial = self._by_id[trial_id]
        self.running.discard(trial_id)
        target = self._stop_target.pop(trial_id, None)
        trial.num_failures += 1
        out = []
        if target == Trial.TERMINATED and self.stop_all_requested:
            out.extend(self._complete(trial))   # failed while being stopped: it is done anyway
            return out + self._fill()
        retry = (self.max_failures < 0 or trial.num_failures <= self.max_failures) \
            and not self.stop_all_requested
        if retry:
            trial.status = Trial.PENDING
            out.append(Notify("retry", trial_id, error_msg))
        else:
            trial.status = Trial.ERROR
            trial.error_msg = error_msg
            trial.error = error
            trial.last_result = dict(trial.last_result, done=True) if trial.last_result else {}
            self.search_alg.on_trial_complete(trial_id, None, error=True)
            self.scheduler.on_trial_error(self, trial)
            out.append(Notify("error", trial_id, error_msg))
            if self.fail_fast:
                self.fail_fast_error = error if error is not None else error_msg
                out.extend(self._stop_everything())
        out.extend(self._take_pending())
        return out + self._fill()

    def on_tick(self, now=None):
        out = list(self._check_budget(now))
        if self.stopper is not None and not self.stop_all_requested and self.stopper.stop_all():
            self.stop_all_requested = True
            out.extend(self._stop_everything())
        return out

    def is_finished(self):
        if self.running:
            return False
        if self.stop_all_requested:
            return True
        return self.search_alg.is_finished() and not any(
            t.status in (Trial.PENDING, Trial.PAUSED) for t in self.trials)

    # -- internals --

    def _take_pending(self):
        out, self._pending = self._pending, []
        return out

    def _save_at_end(self):
        cc = self.checkpoint_config
        return bool(self.is_class_trainable and cc is not None and cc.checkpoint_at_end)

    def _save_now(self, trial, result):
        if trial.trial_id in self._save_requests:
            self._save_requests.discard(trial.trial_id)
            return True
        cc = self.checkpoint_config
        if self.is_class_trainable and cc is not None and cc.checkpoint_frequency:
            return result.get("training_iteration", 0) % cc.checkpoint_frequency == 0
        return False

    def _register_checkpoint(self, trial, path, result):
        metrics = {k: v for k, v in result.items() if k != "config"}
        dropped = trial.checkpoint_manager.register(path, metrics)
        trial.restore_record = None
        return [Notify("checkpoint", trial.trial_id, path)] + [DeleteCheckpoint(p) for p in dropped]

    def _complete(self, trial):
        trial.status = Trial.TERMINATED
        self._stop_target.pop(trial.trial_id, None)
        if trial.last_result:
            trial.last_result["done"] = True
        self.search_alg.on_trial_complete(trial.trial_id, flatten_dict(trial.last_result)
                                          if trial.last_result else None)
        self.scheduler.on_trial_complete(self, trial, flatten_dict(trial.last_result)
                                         if trial.last_result else {})
        return [Notify("complete", trial.trial_id, trial.last_result)]

    def _stop_everything(self):
        self.stop_all_requested = True
        out = []
        for trial in self.trials:
            if trial.trial_id in self.running:
                if trial.trial_id not in self._stop_target:
                    self._stop_target[trial.trial_id] = Trial.TERMINATED
                    out.append(StopTrial(trial.trial_id))
                else:
                    self._stop_target[trial.trial_id] = Trial.TERMINATED
            elif trial.status in (Trial.PENDING, Trial.PAUSED):
                out.extend(self._complete(trial))
        return out

    def elapsed(self, now=None):
        now = self.clock() if now is None else now
        return self.elapsed_before + (now - (self.start_time or now))

    def _check_budget(self, now=None):
        if self.time_budget_s is None or self.stop_all_requested:
            return []
        if self.elapsed(now) >= self.time_budget_s:
            logger.info("time budget of %ss reached: stopping the experiment", self.time_budget_s)
            return self._stop_everything()
        return []

    def _new_trial(self):
        if self.stop_all_requested or self.search_alg.is_finished():
            return None
        trial_id = f"{self.run_id}_{self._next_index:05d}"
        suggestion = self.search_alg.next_config(trial_id)
        if suggestion is None:
            return None
        tag = f"{self._next_index}_{suggestion.tag}" if suggestion.tag else str(self._next_index)
        self._next_index += 1
        cc = self.checkpoint_config
        manager = CheckpointManager(cc.num_to_keep, cc.checkpoint_score_attribute,
                                    cc.checkpoint_score_order) if cc else CheckpointManager()
        trial = Trial(self.trainable_name, trial_id, suggestion.config, tag,
                      {"/".join(map(str, k)): v for k, v in suggestion.resolved_vars.items()},
                      self.experiment_path, manager, dict(self.resources))
        if self.trial_name_creator is not None:
            trial.custom_trial_name = str(self.trial_name_creator(trial))
        if self.trial_dirname_creator is not None:
            trial.dirname = str(self.trial_dirname_creator(trial))
        else:
            trial.dirname = trial_dirname(trial, time.strftime("%Y-%m-%d_%H-%M-%S",
                                                               time.localtime(self.clock())))
        self.add_trial(trial)
        return trial

    def add_trial(self, trial):
        self.trials.append(trial)
        self._by_id[trial.trial_id] = trial
        self.scheduler.on_trial_add(self, trial)
        self._pending.append(Notify("add", trial.trial_id))

    def _fill(self):
        """Start trials while there are free slots: the scheduler's choice first, else a new one."""
        out = self._take_pending()
        if self.stop_all_requested:
            return out
        while len(self.running) < self.max_slots:
            trial = self.scheduler.choose_trial_to_run(self)
            if trial is None:
                trial = self._new_trial()
                out.extend(self._take_pending())
                if trial is None:
                    break
                continue      # the scheduler chooses among the pending trials
            if trial.status not in (Trial.PENDING, Trial.PAUSED):
                break
            trial.status = Trial.RUNNING
            self.running.add(trial.trial_id)
            restore = trial.restore_record or trial.checkpoint_manager.latest
            out.append(StartTrial(trial.trial_id, restore))
            out.append(Notify("start", trial.trial_id))
            out.extend(self._take_pending())
        if not self.running and not self.is_finished():
            out.extend(self._unstick())
        return out

    def _unstick(self):
        """Nothing runs and nothing can start: end instead of waiting forever."""
        waiting = [t for t in self.trials if t.status in (Trial.PENDING, Trial.PAUSED)]
        if waiting:
            logger.warning("%d trial(s) cannot be started by the scheduler and nothing is "
                           "running: ending them", len(waiting))
        else:
            logger.warning("the search algorithm suggests nothing while no trial runs: "
                           "ending the experiment")
        self.search_alg.set_finished()
        out = []
        for t in waiting:
            out.extend(self._complete(t))
        return out

    # -- experiment checkpoints --

    def get_state(self):
        return {"trials": self.trials, "search_alg": self.search_alg, "scheduler": self.scheduler,
                "stopper": self.stopper, "next_index": self._next_index, "run_id": self.run_id,
                "elapsed": self.elapsed(), "iteration": self.iteration}

    def set_state(self, state, resume_unfinished=True, resume_errored=False,
                  restart_errored=False):
        self.search_alg = state["search_alg"]
        self.scheduler = state["scheduler"]
        if state.get("stopper") is not None:
            self.stopper = state["stopper"]
        self._next_index = state["next_index"]
        self.run_id = state["run_id"]
        self.elapsed_before = state.get("elapsed", 0.0)
        self.iteration = state.get("iteration", 0)
        self.trials, self._by_id = [], {}
        for trial in state["trials"]:
            trial.experiment_path = self.experiment_path
            if trial.status == Trial.RUNNING:
                trial.status = Trial.PENDING if resume_unfinished else Trial.TERMINATED
            elif trial.status == Trial.PAUSED and not resume_unfinished:
                trial.status = Trial.TERMINATED
            elif trial.status == Trial.ERROR and (resume_errored or restart_errored):
                trial.status = Trial.PENDING
                trial.error_msg = None
                trial.num_failures = 0
                if restart_errored:
                    trial.checkpoint_manager = CheckpointManager(
                        trial.checkpoint_manager.num_to_keep,
                        trial.checkpoint_manager.score_attribute,
                        trial.checkpoint_manager.score_order)
                    trial.last_result = {}
            self.trials.append(trial)
            self._by_id[trial.trial_id] = trial
