"""Tasks on this node: messages decoded here, decided by the LocalScheduler, actions carried out.

SUBMIT_TASK goes to the placement (routing_service.py, which may keep the task here or forward
it); an actor's creation task goes to the actor service first (it keeps the record). Interface
for other services:

    run(actions)              carry out the scheduler's actions
    submit_here(task)         queue a task on this node's scheduler
    task_ended(task)          a task forwarded here ended: tell the node that sent it
    fail_task(task, reason, detail)   TASK_FAILED to its owner, and task_ended
    set_actor_creations(owner)        who is told where actor creation tasks were dispatched:
                              owner.creation_dispatched(task, worker)
    set_records(records)      where tasks run here are recorded (state_service's TaskRecords)
    creation_ended(worker_id, ok, message)   an actor's constructor returned (or raised)
"""
import logging

from ..scheduling.local_scheduler import (Cancelled, Dispatch, Failed, GroupRemoved, GroupWorker,
                                          Infeasible, Interrupt, KillWorker, StartWorker, Task,
                                          WorkerCapReached)
from ..scheduling.resources import from_units
from ..scheduling.task_spec import ACTOR_CREATION
from ..state.records import TaskRecords, now_ms, row_of_spec
from ..transport import wire
from ..transport.address import node_of
from .service import Service

log = logging.getLogger("zray.node")


class TaskService(Service):
    def __init__(self, ctx, place=None):
        """place(task): where a submitted task goes (RoutingService.place_task, set by
        `set_placement`; until then: this node)."""
        self.finished_count = 0       # tasks finished here, for the dashboard's tasks/s
        self.ctx = ctx
        self.scheduler = ctx.scheduler
        self._place = place or self.submit_here
        self._creations = None
        self.records = TaskRecords(ctx.node_id)
        self._creating = {}           # worker_id -> (task_id hex, attempt) of a running creation
        self._run = {
            Dispatch: self._dispatch, StartWorker: self._start_worker,
            Infeasible: self._infeasible, Cancelled: self._cancelled,
            Interrupt: self._interrupt, Failed: self._failed, KillWorker: self._kill_worker,
            WorkerCapReached: self._cap_reached,
        }

    def set_placement(self, place):
        self._place = place

    def set_records(self, records):
        self.records = records

    def creation_ended(self, worker_id, ok, message):
        key = self._creating.pop(worker_id, None)
        if key is not None:
            self.records.ended(key[0], key[1], now_ms(), None if ok else "TASK_EXECUTION_EXCEPTION",
                               None if ok else message)

    def set_actor_creations(self, owner):
        self._creations = owner

    def handlers(self):
        return {
            wire.SUBMIT_TASK: self.on_submit_task,
            wire.TASK_FINISHED: self.on_task_finished,
            wire.CANCEL_TASK: self.on_cancel_task,
            wire.WORKER_BLOCKED: self.on_worker_blocked,
            wire.LIST_TASKS: self.on_list_tasks,
        }

    # -- handlers --------------------------------------------------------------------------------
    def on_submit_task(self, sender, payload, frames):
        task = Task(payload[0], frames)
        if task.spec.kind == ACTOR_CREATION and self._creations is not None:
            self._creations.creation_submitted(task)
        else:
            self._place(task)

    def on_task_finished(self, sender, payload, frames):
        self.finished_count += 1      # the dashboard's tasks/s (CLUSTER_INFO "tasks_finished")
        worker_id = self.ctx.clients.worker_id_of(sender)
        task = self.scheduler.running_task_of(worker_id)
        if task is not None:
            error = payload[2:4] if len(payload) >= 4 else (None, None)
            self.records.ended(task.spec.task_id.hex(), task.spec.attempt, now_ms(), *error)
        self.run(self.scheduler.handle_task_finished(worker_id))
        if task is not None and task.origin is not None:
            self.task_ended(task)

    def on_cancel_task(self, sender, payload, frames):
        task_id, force, recursive = payload
        self.run(self.scheduler.handle_cancel(task_id, force, recursive))

    def on_worker_blocked(self, sender, payload, frames):
        worker_id = self.ctx.clients.worker_id_of(sender)
        self.run(self.scheduler.handle_worker_blocked(worker_id, payload[0]))

    def on_list_tasks(self, sender, payload, frames):
        self.ctx.reply(sender, wire.LIST_TASKS_REPLY, payload[0], self.scheduler.list_tasks())

    # -- lifecycle -------------------------------------------------------------------------------
    def client_gone(self, gone):
        self.run(self.scheduler.handle_owner_died(gone.address))

    def member_gone(self, member):
        """Processes that lived there: the tasks they own stop here."""
        for owner in self.scheduler.owners():
            if node_of(owner) == member.name:
                self.run(self.scheduler.handle_owner_died(owner))

    def job_finished(self, job_id):
        self.run(self.scheduler.handle_job_finished(job_id))

    def worker_died(self, worker_id, detail):
        self.run(self.scheduler.handle_worker_died(worker_id), detail)

    # -- the interface ---------------------------------------------------------------------------
    def submit_here(self, task):
        self.run(self.scheduler.handle_task_submitted(task))

    def task_ended(self, task):
        if task.origin is not None:
            self.ctx.send(task.origin, wire.FORWARD_DONE, (task.spec.task_id,))
            task.origin = None

    def fail_task(self, task, reason, detail):
        spec = task.spec
        self.ctx.send(spec.owner, wire.TASK_FAILED, (spec.task_id, spec.attempt, reason, detail))
        self.task_ended(task)

    def run(self, actions, detail=None):
        run = self._run
        for action in actions:
            handler = run.get(type(action))
            if handler is None:
                raise TypeError(f"TaskService cannot carry out {action!r}")
            handler(action, detail)

    # -- the scheduler's actions -----------------------------------------------------------------
    def _dispatch(self, action, detail):
        task, worker = action.task, action.worker
        spec = task.spec
        self.records.started(row_of_spec(spec, self.ctx.node_id, "RUNNING", worker.worker_id,
                                         worker.pid, now_ms()))
        if spec.kind == ACTOR_CREATION:
            self._creating[worker.worker_id] = (spec.task_id.hex(), spec.attempt)
        if task.spec.kind == ACTOR_CREATION and self._creations is not None:
            self._creations.creation_dispatched(task, worker)
        if not self.ctx.send(worker.address, wire.EXECUTE_TASK, (task.spec, task.gpu_grants),
                             task.frames):
            self.ctx.kill_pid(worker.pid)   # its death fails the task (or restarts the actor)

    def _start_worker(self, action, detail):
        self.ctx.start_worker(action.job_id, action.runtime_env)

    def _infeasible(self, action, detail):
        spec = action.task.spec
        need = from_units(spec.resources)
        have = from_units(self.scheduler.total)
        self.ctx.send(spec.owner, wire.WARNING, (
            f"task {spec.name} needs {need} but no node has that much "
            f"(this node has {have}); it stays pending until a node that fits joins",))

    def _cap_reached(self, action, detail):
        spec = action.task.spec
        text = (f"task {spec.name} (and any others queued) waits for a worker: this node already "
                f"runs its maximum of {action.cap} task worker processes. Set ZRAY_MAX_WORKERS "
                "for the node to allow more (actors do not count against it).")
        log.warning("%s", text)
        self.ctx.send(spec.owner, wire.WARNING, (text,))

    def _cancelled(self, action, detail):
        row = row_of_spec(action.task.spec, self.ctx.node_id, "FAILED")
        row.end_time_ms = now_ms()
        row.error_type = "TASK_CANCELLED"
        row.error_message = "cancelled before it ran"
        self.records.add_finished(row)
        self.fail_task(action.task, "cancelled", None)

    def _interrupt(self, action, detail):
        worker = action.worker
        if action.force:
            self.ctx.kill_pid(worker.pid)
        else:
            self.ctx.send(worker.address, wire.CANCEL_TASK,
                          (worker.task.spec.task_id, False, action.recursive))

    def _failed(self, action, detail):
        spec = action.task.spec
        if spec.kind == ACTOR_CREATION:
            for worker_id, key in list(self._creating.items()):
                if key == (spec.task_id.hex(), spec.attempt):
                    del self._creating[worker_id]
        self.records.ended(spec.task_id.hex(), spec.attempt, now_ms(), "WORKER_DIED",
                           str(detail) if detail else "the worker running it died")
        if spec.kind == ACTOR_CREATION:
            return    # the actor directory decides: restart or death
        self.fail_task(action.task, "worker_died", detail)

    def _kill_worker(self, action, detail):
        self.ctx.kill_pid(action.worker.pid)


__all__ = ["TaskService", "GroupRemoved", "GroupWorker"]
