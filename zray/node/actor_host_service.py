"""Actors this node hosts for another node, their *home* (where the record lives and the
directory decides restarts and death): this node reports ACTOR_HOSTED and ACTOR_HOST_DIED home
and takes KILL_REMOTE_WORKER from there; ACTOR_REHOMED says the home moved.

Interface for other services:
    note_dispatched(task, worker)   an actor creation whose record lives elsewhere runs here
    hosts(worker_id)                whether a worker of this node hosts such an actor
    actor_started(actor_id, worker_id, ok, message, address, pid, frames)
    forget(worker_id)               this node became the actor's home (adoption)
    kill_for_group(worker_id)       ask the home to kill it for good (its group was removed)
"""
from ..transport import wire
from .service import Service


class ActorHostService(Service):
    def __init__(self, ctx, tasks):
        self.ctx = ctx
        self.tasks = tasks
        self.hosted = {}    # worker_id -> (actor_id, home address, creation Task)

    def handlers(self):
        return {wire.KILL_REMOTE_WORKER: self.on_kill_remote_worker,
                wire.ACTOR_REHOMED: self.on_actor_rehomed}

    def note_dispatched(self, task, worker):
        extra = task.spec.extra
        self.hosted[worker.worker_id] = (extra["actor_id"], extra.get("home"), task)

    def hosts(self, worker_id):
        return worker_id in self.hosted

    def forget(self, worker_id):
        self.hosted.pop(worker_id, None)

    def actor_started(self, actor_id, worker_id, ok, message, address, pid, frames):
        """An actor whose record lives on another node started (or failed to) here."""
        entry = self.hosted.get(worker_id)
        if entry is None:
            return
        _, home, task = entry
        if ok:
            extra = task.spec.extra
            self.tasks.run(self.ctx.scheduler.handle_actor_started(
                worker_id, extra["lifetime"], bool(extra.get("detached"))))
        else:
            del self.hosted[worker_id]
        self.ctx.send(home, wire.ACTOR_HOSTED, (actor_id, ok, message, worker_id, address, pid),
                      [f.bytes if hasattr(f, "bytes") else f for f in frames])
        self.tasks.task_ended(task)

    def kill_for_group(self, worker_id):
        entry = self.hosted.get(worker_id)
        if entry is None:
            return False
        self.ctx.send(entry[1], wire.KILL_ACTOR, (entry[0], True))
        return True

    def worker_died(self, worker_id, detail):
        entry = self.hosted.pop(worker_id, None)
        if entry is not None:
            actor_id, home, task = entry
            self.ctx.send(home, wire.ACTOR_HOST_DIED, (actor_id, worker_id, detail))
            self.tasks.task_ended(task)

    def on_kill_remote_worker(self, sender, payload, frames):
        self.ctx.kill_pid(self.ctx.clients.worker_pid(payload[0]))

    def on_actor_rehomed(self, sender, payload, frames):
        worker_id, home = payload
        entry = self.hosted.get(worker_id)
        if entry is not None:
            self.hosted[worker_id] = (entry[0], home, entry[2])
