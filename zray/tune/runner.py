"""The runner: executes the controller's commands on trial actors and files, and turns the
actors' replies into the controller's events. No decision is made here.

One call is outstanding per running trial; `zray.wait` on all of them wakes the driver when
any reply arrives (no polling). The wait's timeout only serves the time budget, the progress
output and the periodic experiment checkpoint.
"""
import logging
import os
import shutil
import time

import zray
from zray.exceptions import RayActorError

from .callback import CallbackList
from .checkpoint import Checkpoint
from .controller import ContinueTrial, DeleteCheckpoint, Notify, StartTrial, StopTrial
from .logger import EXPR_ERROR_FILE
from .worker import TrialActor, TrialSpec

logger = logging.getLogger("zray.tune")

STOP_GRACE_S = 5.0        # a trial asked to stop that has not answered by then is killed
MIN_SAVE_PERIOD_S = 0.5   # experiment state: at most every 0.5 s, and under ~5% of the time
TICK_S = 1.0


class TrialRunner:
    def __init__(self, controller, trainable, *, experiment_name, storage, callbacks, reporter,
                 reuse_actors=True, actor_options=None, fail_fast=False, placement=None):
        self.c = controller
        self.trainable = trainable
        self.experiment_name = experiment_name
        self.storage = storage
        self.callbacks = CallbackList(callbacks)
        self.reporter = reporter
        self.reuse_actors = reuse_actors
        self.actor_options = actor_options or {"num_cpus": 1}
        self.fail_fast = fail_fast
        self._actor_cls = zray.remote(TrialActor).options(**self.actor_options)
        self.placement = placement    # a PlacementGroupFactory: one group per trial actor
        self._idle = []
        self._all_actors = []
        self._group_of = {}           # actor -> its placement group (kept while it is reused)
        self._actor_of = {}
        self._inflight = {}           # ObjectRef -> trial id
        self._busy = set()            # trial ids with a call in flight
        self._stop_deadline = {}
        self._deferred_deletes = []
        self._next_save = 0.0
        self._dirty = True
        self._raise = None

    # ---- the loop ----

    def run(self):
        self.callbacks.call("setup", stop=None, num_samples=None,
                            total_num_samples=self.c.search_alg.total_samples)
        try:
            self._apply(self.c.start())
            while not self.c.is_finished():
                if self._raise is not None:
                    break
                self.callbacks.call("on_step_begin", iteration=self.c.iteration,
                                    trials=self.c.trials)
                refs = list(self._inflight)
                if not refs:
                    raise RuntimeError("zray.tune: no trial is running yet the experiment is not "
                                       "finished (a scheduler or searcher is stuck)")
                ready, _ = zray.wait(refs, num_returns=1, timeout=self._timeout())
                for ref in ready:
                    self._handle(ref)
                self._apply(self.c.on_tick())
                self._kill_overdue()
                self.callbacks.call("on_step_end", iteration=self.c.iteration,
                                    trials=self.c.trials)
                self._maybe_save()
                self._maybe_report()
        finally:
            self._shutdown_actors()
            self._save(force=True)
            self.callbacks.call("on_experiment_end", trials=self.c.trials)
            self._maybe_report(done=True)
        if self._raise is not None:
            raise self._raise

    def _timeout(self):
        t = TICK_S
        if self.c.time_budget_s is not None:
            t = min(t, max(0.01, self.c.time_budget_s - self.c.elapsed()))
        if self._stop_deadline:
            t = min(t, max(0.01, min(self._stop_deadline.values()) - time.monotonic()))
        return t

    # ---- replies -> events ----

    def _handle(self, ref):
        tid = self._inflight.pop(ref)
        self._busy.discard(tid)
        try:
            reply = zray.get(ref)
        except RayActorError as e:
            self._drop_actor(tid)
            self._apply(self.c.on_error(tid, _error_text(e), e))
            return
        except Exception as e:   # noqa: BLE001 - the trainable's own error, for its trial
            self._release_actor(tid)
            self._apply(self.c.on_error(tid, _error_text(e), e))
            return
        if reply.kind == "result":
            cmds = []
            if reply.saved:
                cmds += self.c.on_saved(tid, reply.saved)
            cmds += self.c.on_result(tid, reply.metrics, reply.checkpoint)
            self._apply(cmds)
        else:
            self._stop_deadline.pop(tid, None)
            if reply.dirty:
                self._drop_actor(tid, kill=True)
            else:
                self._release_actor(tid)
            self._apply(self.c.on_returned(tid, reply.saved))

    def _kill_overdue(self):
        now = time.monotonic()
        for tid, deadline in list(self._stop_deadline.items()):
            if now < deadline:
                continue
            del self._stop_deadline[tid]
            for ref, owner in list(self._inflight.items()):
                if owner == tid:
                    del self._inflight[ref]
            self._busy.discard(tid)
            logger.warning("trial %s did not stop within %.0fs: killing its actor", tid,
                           STOP_GRACE_S)
            self._drop_actor(tid, kill=True)
            self._apply(self.c.on_returned(tid))

    # ---- commands -> calls, files, callbacks ----

    def _apply(self, commands):
        for cmd in commands:
            if isinstance(cmd, ContinueTrial):
                self._call(cmd.trial_id, "step", "continue", cmd.save)
            elif isinstance(cmd, StopTrial):
                if cmd.trial_id in self._busy:
                    self._stop_deadline.setdefault(cmd.trial_id, time.monotonic() + STOP_GRACE_S)
                else:
                    self._call(cmd.trial_id, "step", "stop", cmd.save)
            elif isinstance(cmd, StartTrial):
                self._start(cmd)
            elif isinstance(cmd, Notify):
                self._notify(cmd)
            elif isinstance(cmd, DeleteCheckpoint):
                self._deferred_deletes.append(cmd.path)
                self._dirty = True

    def _call(self, tid, method, *args):
        actor = self._actor_of[tid]
        ref = getattr(actor, method).remote(*args)
        self._inflight[ref] = tid
        self._busy.add(tid)

    def _start(self, cmd):
        trial = self.c.get_trial(cmd.trial_id)
        if self._idle:
            actor = self._idle.pop()
        else:
            actor = self._new_actor()
        self._actor_of[trial.trial_id] = actor
        restore = cmd.restore
        spec = TrialSpec(
            trial_id=trial.trial_id, trial_name=str(trial), trial_dir=trial.local_path,
            experiment_name=self.experiment_name, experiment_dir=self.c.experiment_path,
            config=trial.config, restore_path=restore.path if restore else None,
            counters=({"training_iteration": restore.iteration, "time_total_s": restore.time_total}
                      if restore else {}),
            resources=dict(trial.resources), checkpoint_index=trial.checkpoint_manager.count)
        self._call(trial.trial_id, "start", spec)

    def _new_actor(self):
        if self.placement is None:
            actor = self._actor_cls.remote(self.trainable)
        else:
            # The actor takes the group's first bundle; what it starts (an algorithm's env
            # runners) is captured into the others. Creation waits for the group, not here.
            from zray.util.placement_group import placement_group
            from zray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
            group = placement_group(self.placement.bundles, strategy=self.placement.strategy)
            strategy = PlacementGroupSchedulingStrategy(
                group, placement_group_bundle_index=0, placement_group_capture_child_tasks=True)
            actor = zray.remote(TrialActor).options(
                **self.actor_options, scheduling_strategy=strategy).remote(self.trainable)
            self._group_of[actor] = group
        self._all_actors.append(actor)
        return actor

    def _release_actor(self, tid):
        actor = self._actor_of.pop(tid, None)
        if actor is None:
            return
        if self.reuse_actors:
            self._idle.append(actor)
        else:
            self._kill(actor)

    def _drop_actor(self, tid, kill=False):
        actor = self._actor_of.pop(tid, None)
        if actor is not None and kill:
            self._kill(actor)

    def _kill(self, actor):
        try:
            zray.kill(actor)
        except Exception:   # noqa: BLE001 - already dead is fine
            logger.debug("kill of a trial actor failed", exc_info=True)
        if actor in self._all_actors:
            self._all_actors.remove(actor)
        group = self._group_of.pop(actor, None)
        if group is not None:
            from zray.util.placement_group import remove_placement_group
            try:
                remove_placement_group(group)
            except Exception:   # noqa: BLE001 - the cluster may be going away
                logger.debug("removing a trial's placement group failed", exc_info=True)

    def _shutdown_actors(self):
        for actor in list(self._all_actors):
            self._kill(actor)
        self._idle.clear()
        self._all_actors.clear()

    def _notify(self, n):
        trial = self.c.get_trial(n.trial_id)
        kw = {"iteration": self.c.iteration, "trials": self.c.trials, "trial": trial}
        if n.kind == "result":
            self.callbacks.call("on_trial_result", result=n.result, **kw)
            return
        self._dirty = True
        if n.kind == "start":
            if trial.checkpoint_manager.latest is not None or trial.restore_record is not None:
                self.callbacks.call("on_trial_restore", **kw)
            self.callbacks.call("on_trial_start", **kw)
        elif n.kind == "complete":
            self.callbacks.call("on_trial_complete", **kw)
        elif n.kind == "checkpoint":
            self.callbacks.call("on_checkpoint", checkpoint=Checkpoint(n.result), **kw)
            self.callbacks.call("on_trial_save", **kw)
        elif n.kind == "retry":
            logger.warning("trial %s failed (%d time(s)); retrying from its latest checkpoint",
                           trial, trial.num_failures)
            self.callbacks.call("on_trial_recover", **kw)
        elif n.kind == "error":
            self._write_error(trial)
            logger.error("trial %s errored: %s", trial, (trial.error_msg or "").strip()
                         .splitlines()[-1:] or "")
            self.callbacks.call("on_trial_error", **kw)
            if self.fail_fast == "raise" and self._raise is None:
                err = trial.error
                self._raise = err if isinstance(err, BaseException) else \
                    RuntimeError(trial.error_msg)

    def _write_error(self, trial):
        try:
            os.makedirs(trial.local_path, exist_ok=True)
            with open(os.path.join(trial.local_path, EXPR_ERROR_FILE), "a") as f:
                f.write(f"Failure # {trial.num_failures} (occurred at "
                        f"{time.strftime('%Y-%m-%d_%H-%M-%S')})\n{trial.error_msg}\n")
        except OSError:
            logger.warning("could not write the error file of trial %s", trial, exc_info=True)

    # ---- experiment checkpoint and progress ----

    def _maybe_save(self):
        if self._dirty and time.monotonic() >= self._next_save:
            self._save()

    def _save(self, force=False):
        if self.storage is None or not (self._dirty or force):
            return
        t0 = time.monotonic()
        summary = [{"trial_id": t.trial_id, "status": t.status, "config": t.config,
                    "path": t.dirname} for t in self.c.trials]
        self.storage.save_state(self.c.get_state(), summary)
        for path in self._deferred_deletes:   # only once the state no longer refers to them
            shutil.rmtree(path, ignore_errors=True)
        self._deferred_deletes = []
        took = time.monotonic() - t0
        self._next_save = time.monotonic() + max(MIN_SAVE_PERIOD_S, 20 * took)
        self._dirty = False

    def _maybe_report(self, done=False):
        r = self.reporter
        if r is not None and r.should_report(self.c.trials, done=done):
            r.report(self.c.trials, done)


def _error_text(error):
    import traceback
    cause = getattr(error, "cause", None)
    text = str(error)
    if not text.strip() or cause is None:
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return text
