"""The owner table: what a process knows about the tasks it submitted, with no I/O.

A process owns the tasks it submits (and their results). This table keeps, per task, its
record from submission until its results are final, and afterwards its lineage (the spec and
the held arguments of a finished task whose result lives in another node's store, so the task
can run again if that node dies). Events go in as method calls; what the runtime must do comes
out as frozen records, which task_owner.py carries out (sends, fills objects, releases refs):

    submitted(task)                     -> None          (its record exists from now on)
    dependency_resolved(task)           -> Send | None   (the last missing argument arrived)
    dependency_failed(task)             -> Fail | None   (an argument is an error: the task fails)
    result(task_id, attempt, retryable) -> Retry | Complete | None
    failed(task_id, attempt, reason, d) -> Retry | Fail | None
    actor_restarting(calls, message)    -> [Retry | Fail, ...]
    finished(task, results_elsewhere)   -> Release      (holds to let go of; none if kept)
    lineage_unreferenced(task_id, live) -> Release | None
    rebuild(task_ids)                   -> [Retry, ...]  (results lost with a node)
    cancel(task_id) / cancel_children   -> CancelUnsent | CancelSent | CancelActorCall | None
    generator_item(task_id, index)      -> bool          (accept the item, or a repeat: drop)

**One retry budget.** A task may run `max_retries` more times after its first attempt (-1:
without limit); `spec.attempt` counts the runs so far, and `retry_allowed(spec)` is the one
rule, read by the owner here and by the worker that decides whether an exception is worth
reporting as retryable. A worker crash, a lost node, an actor restart and a rebuild from
lineage all spend the same budget through `_spend_retry`.

Threads: user threads submit and cancel while the inbox's reader delivers results, so every
event takes the table's lock; no method calls out while holding it.
"""
import threading
from dataclasses import dataclass

from .. import exceptions


def retry_allowed(spec):
    """Whether a task that ran `spec.attempt + 1` times may run once more."""
    return spec.max_retries == -1 or spec.attempt < spec.max_retries


class PendingTask:
    """The owner's record of one submitted task (mutable: the table's own state)."""

    __slots__ = ("spec", "frames", "holds", "deps_left", "cancelled", "sent", "generator",
                 "parent", "actor", "ready", "return_ids")

    def __init__(self, spec, frames, holds, parent, actor=None):
        self.spec = spec
        self.frames = frames
        self.holds = holds            # [(object_id, owner)] held while the task may run
        self.deps_left = 0
        self.cancelled = False
        self.sent = False
        self.generator = None
        self.parent = parent
        self.actor = actor            # the callee's state (actor_caller.py), for an actor call
        self.ready = False            # an actor call whose arguments are all resolved
        self.return_ids = spec.return_ids()


class GeneratorState:
    """The items of a streaming task seen so far; `cond` wakes the consumer."""

    __slots__ = ("items", "count", "cond", "seen")

    def __init__(self):
        self.items = {}       # index -> object id, held until the user takes a ref
        self.count = None     # total, once the generator finished
        self.seen = set()     # indices ever received (a retried attempt repeats them)
        self.cond = threading.Condition()

    def next_index(self):
        """Where an error item goes: after the last item seen (None once it is finished)."""
        with self.cond:
            if self.count is not None:
                return None
            return max(self.seen) + 1 if self.seen else 0


# -- outputs ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Send:
    """Send the task (its arguments are ready)."""
    task: PendingTask


@dataclass(frozen=True)
class Retry:
    """Send the task again: a new attempt (spec.attempt was advanced)."""
    task: PendingTask


@dataclass(frozen=True)
class Complete:
    """The task's results are final: fill them from the reply, then call finished()."""
    task: PendingTask


@dataclass(frozen=True)
class Fail:
    """The task failed with `error`: its results become that error, then call finished()."""
    task: PendingTask
    error: BaseException


@dataclass(frozen=True)
class Release:
    """Let go of these held object ids (a finished task's arguments)."""
    object_ids: tuple


@dataclass(frozen=True)
class CancelUnsent:
    """Cancelled before it was sent: fail it with TaskCancelledError here."""
    task: PendingTask


@dataclass(frozen=True)
class CancelSent:
    """Ask the node to cancel the running (or queued) task."""
    task: PendingTask
    force: bool
    recursive: bool


@dataclass(frozen=True)
class CancelActorCall:
    """Cancel an actor method call (actor_caller.py knows whether it left)."""
    task: PendingTask
    force: bool


class OwnerTable:
    def __init__(self):
        self.lock = threading.Lock()
        self.pending = {}       # task_id -> PendingTask, until its results are final
        self.lineage = {}       # task_id -> finished PendingTask whose results live elsewhere
        self.generators = {}    # task_id -> GeneratorState, until the consumer is done

    # -- submission ------------------------------------------------------------------------------
    def submitted(self, task, n_deps=0):
        task.deps_left = n_deps
        with self.lock:
            self.pending[task.spec.task_id] = task
            if task.spec.streaming:
                task.generator = self.generators[task.spec.task_id] = GeneratorState()

    def get(self, task_id):
        return self.pending.get(task_id)

    def dependency_resolved(self, task):
        """One argument is ready (already written into the spec): Send once all are."""
        with self.lock:
            if task.cancelled:
                return None
            task.deps_left -= 1
            if task.deps_left or task.cancelled:
                return None
            if task.actor is None:
                task.sent = True      # under the lock: cancel() sees one or the other
        return Send(task)

    def dependency_failed(self, task, error):
        """An argument holds an error: the task fails with it, without running."""
        with self.lock:
            if task.cancelled:
                return None
            task.cancelled = True
        return Fail(task, error)

    def mark_sent(self, task):
        with self.lock:
            task.sent = True

    # -- results ---------------------------------------------------------------------------------
    def _current(self, task_id, attempt):
        task = self.pending.get(task_id)
        if task is None or task.spec.attempt != attempt:
            return None      # a superseded attempt (or a task already completed)
        return task

    def result(self, task_id, attempt, retryable):
        """The worker's reply: Complete, or Retry when it asks for one and the budget allows."""
        with self.lock:
            task = self._current(task_id, attempt)
            if task is None:
                return None
            if retryable and not task.cancelled and self._spend_retry(task):
                return Retry(task)
        return Complete(task)

    def failed(self, task_id, attempt, reason, detail):
        """The node reports the attempt failed (cancelled, unschedulable, worker or node died)."""
        with self.lock:
            task = self._current(task_id, attempt)
            if task is None:
                return None
            spec = task.spec
            if reason == "cancelled" or task.cancelled:
                return Fail(task, exceptions.TaskCancelledError(spec.task_id))
            if reason == "unschedulable":
                return Fail(task, exceptions.TaskUnschedulableError(
                    f"Task {spec.name} cannot be scheduled: {detail}"))
            runs = spec.attempt
            if self._spend_retry(task):
                return Retry(task)
        if reason == "node_died":
            return Fail(task, exceptions.NodeDiedError(
                f"Task {spec.name} was lost with its node (it was retried {runs} times): {detail}"))
        return Fail(task, exceptions.WorkerCrashedError(
            f"The worker running task {spec.name} died unexpectedly "
            f"(it was retried {runs} times).\n{detail or ''}".rstrip()))

    def actor_restarting(self, calls, message):
        """The actor these calls were sent to died and restarts: each is resent while the budget
        allows (in their order), else fails."""
        out = []
        with self.lock:
            for task in calls:
                if self._spend_retry(task):
                    task.sent = False
                    out.append(Retry(task))
                else:
                    out.append(Fail(task, exceptions.ActorDiedError(
                        f"The actor died while running {task.spec.name} and is restarting; the "
                        f"call is not retried (max_task_retries=0)\n{message or ''}".rstrip())))
        return out

    def _spend_retry(self, task):
        """The one place a retry is granted (the caller holds the lock)."""
        if not retry_allowed(task.spec):
            return False
        task.spec.attempt += 1
        return True

    # -- after the results -------------------------------------------------------------------------
    def finished(self, task, results_elsewhere):
        """The task's results are final. A retryable task whose result lives in another node's
        store is kept (with its arguments held) while the result is referenced, to rebuild it
        if that node dies; otherwise its arguments are released."""
        spec = task.spec
        keep = (results_elsewhere and task.actor is None and not spec.streaming
                and not task.cancelled and retry_allowed(spec))
        with self.lock:
            self.pending.pop(spec.task_id, None)
            if keep:
                self.lineage[spec.task_id] = task
                return Release(())
        task.frames = None
        return Release(tuple(oid for oid, _ in task.holds))

    def lineage_unreferenced(self, task_id, still_referenced):
        """A result of task_id was freed; drop the lineage once none is referenced."""
        with self.lock:
            task = self.lineage.get(task_id)
            if task is None or still_referenced(task.return_ids):
                return None
            del self.lineage[task_id]
        task.frames = None
        return Release(tuple(oid for oid, _ in task.holds))

    def rebuild(self, task_ids):
        """Results of these tasks were lost with their node: the ones with lineage (and budget)
        run again, becoming pending once more."""
        out = []
        with self.lock:
            for task_id in task_ids:
                task = self.lineage.get(task_id)
                if task is None or not retry_allowed(task.spec):
                    continue
                del self.lineage[task_id]
                self.pending[task_id] = task
                self._spend_retry(task)
                out.append(Retry(task))
        return out

    # -- cancel ----------------------------------------------------------------------------------
    def cancel(self, task_id, force=False, recursive=True):
        task = self.pending.get(task_id)
        return None if task is None else self.cancel_task(task, force, recursive)

    def cancel_task(self, task, force, recursive):
        if task.actor is not None:
            return CancelActorCall(task, force)
        with self.lock:
            already, task.cancelled = task.cancelled, True
            sent = task.sent
        if sent:
            return CancelSent(task, force, recursive)
        return None if already else CancelUnsent(task)

    def children_of(self, parent_task_id):
        with self.lock:
            return [t for t in self.pending.values() if t.parent == parent_task_id]

    # -- streaming generators ----------------------------------------------------------------------
    def generator_item(self, task_id, index):
        """True when the item is new (a retried attempt repeats the ones already seen)."""
        task = self.pending.get(task_id)
        gen = None if task is None else task.generator
        if gen is None:
            return False
        with gen.cond:
            if index in gen.seen or gen.count is not None:
                return False
            gen.seen.add(index)
            return True

    def generator_done(self, task_id):
        """The consumer is done: the ids of items it never took (to release)."""
        gen = self.generators.pop(task_id, None)
        if gen is None:
            return ()
        with gen.cond:
            leftover, gen.items = tuple(gen.items.values()), {}
        return leftover
