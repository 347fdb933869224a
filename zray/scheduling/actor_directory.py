"""The node's actor manager: a state machine with no sockets, like the LocalScheduler.

Each actor lives on one node, and that node's directory decides its life: it places the
creation task (through the scheduler), learns when the constructor finished or failed, restarts
the actor when its worker dies and `max_restarts` allows, and tells subscribers (every process
that calls the actor) each change of state. Names map (namespace, name) to actor ids.

Every change goes through a `handle_*` event; the node reads records through the queries
(`get`, `lookup`, `actor_of_worker`, `list`). Actions returned (frozen dataclasses):
    Create(record)                     place the creation task (again, on a restart)
    Notify(record, subscribers)        send the current state to these addresses
    KillActorWorker(worker_id)         SIGKILL the actor's worker
    Terminate(record)                  ask the actor to exit after its queued calls

A record moves between nodes whole: `handle_hand_over` gives it away (a detached actor's home
becomes the node that hosts it), `handle_adopt` takes one in (from a hand-over or from a
replica whose home died).
"""
from dataclasses import dataclass

# Death causes worded as Ray's, since users match on them ("ray.kill", "exit_actor()").
KILLED_REASON = "is dead because it was killed by `ray.kill` (zray.kill)"
EXITED_REASON = ("exited by a user request: exit_actor() is called or __ray_terminate__ ran "
                 "(an intended user exit)")

PENDING = "PENDING_CREATION"
ALIVE = "ALIVE"
RESTARTING = "RESTARTING"
DEAD = "DEAD"


@dataclass(frozen=True, slots=True)
class Create:
    record: "ActorRecord"


@dataclass(frozen=True, slots=True)
class Notify:
    record: "ActorRecord"
    subscribers: frozenset


@dataclass(frozen=True, slots=True)
class KillActorWorker:
    worker_id: str


@dataclass(frozen=True, slots=True)
class Terminate:
    record: "ActorRecord"


def _notify(record, subscribers=None):
    return Notify(record, frozenset(record.subscribers if subscribers is None else subscribers))


class ActorRecord:
    __slots__ = ("actor_id", "spec", "frames", "name", "namespace", "detached", "job_id",
                 "owner", "max_restarts", "restarts", "state", "address", "worker_id", "pid",
                 "subscribers", "death_cause", "no_restart", "class_name", "exiting", "meta")

    def __init__(self, actor_id, spec, frames, name, namespace, detached, job_id, owner,
                 max_restarts, class_name, meta):
        self.actor_id = actor_id
        self.spec = spec
        self.frames = frames
        self.name = name
        self.namespace = namespace
        self.detached = detached
        self.job_id = job_id
        self.owner = owner
        self.max_restarts = max_restarts
        self.restarts = 0
        self.state = PENDING
        self.address = None
        self.worker_id = None
        self.pid = None
        self.subscribers = {owner}
        self.death_cause = None      # (message, serialized error layout or None)
        self.no_restart = False
        self.class_name = class_name
        self.exiting = False
        self.meta = meta             # what a handle needs: method options, class flags

    def info(self):
        return {"actor_id": self.actor_id.hex(), "class_name": self.class_name, "state": self.state,
                "name": self.name or "", "namespace": self.namespace, "pid": self.pid,
                "job_id": self.job_id, "restarts": self.restarts,
                "detached": self.detached}


class ActorDirectory:
    def __init__(self):
        self.actors = {}
        self.names = {}
        self.by_worker = {}

    # -- events --------------------------------------------------------------------------------
    def handle_register(self, record, get_if_exists=False):
        """A new actor, before its creation task arrives. Returns the id of the actor to use
        (another one, for get_if_exists and a taken name); raises ValueError for a taken name."""
        if record.name:
            key = (record.namespace, record.name)
            existing = self.names.get(key)
            if existing is not None and self.actors[existing].state != DEAD:
                if get_if_exists:
                    return existing
                raise ValueError(f"An actor named {record.name!r} already exists in namespace "
                                 f"{record.namespace!r}")
            self.names[key] = record.actor_id
        self.actors[record.actor_id] = record
        return record.actor_id

    def handle_creation_task(self, actor_id, spec, frames):
        """The owner resolved the constructor's arguments: place the actor."""
        record = self.actors.get(actor_id)
        if record is None or record.state == DEAD:
            return []
        record.spec = spec
        record.frames = frames
        return [Create(record)]

    def handle_dispatched(self, actor_id, worker_id):
        """The creation task went to this worker: its death now concerns the actor."""
        record = self.actors.get(actor_id)
        if record is not None:
            record.worker_id = worker_id
            self.by_worker[worker_id] = actor_id

    def handle_started(self, actor_id, worker_id, address, pid):
        record = self.actors.get(actor_id)
        if record is None:
            return [KillActorWorker(worker_id)]
        if record.state == DEAD:
            return [KillActorWorker(worker_id)]
        record.state = ALIVE
        record.death_cause = None
        record.address = address
        record.worker_id = worker_id
        record.pid = pid
        self.by_worker[worker_id] = actor_id
        return [_notify(record)]

    def handle_creation_failed(self, actor_id, worker_id, message, error_layout):
        """The constructor raised: the actor is dead for good (Ray does not restart it)."""
        record = self.actors.get(actor_id)
        if record is None:
            return [KillActorWorker(worker_id)]
        record.worker_id = worker_id
        self.by_worker[worker_id] = actor_id
        actions = self._die(record, message, error_layout)
        return actions + [KillActorWorker(worker_id)]

    def handle_worker_died(self, worker_id, detail):
        actor_id = self.by_worker.pop(worker_id, None)
        record = self.actors.get(actor_id)
        if record is None or record.state == DEAD:
            return []
        if record.exiting:
            return self._die(record, f"The actor {record.class_name} {EXITED_REASON}", None)
        can_restart = not record.no_restart and (
            record.max_restarts == -1 or record.restarts < record.max_restarts)
        if can_restart:
            record.restarts += 1
            record.state = RESTARTING
            # What callers with calls in flight are told (they fail when not retried).
            message = f"The actor {record.class_name} ({record.actor_id.hex()}) died unexpectedly"
            record.death_cause = (f"{message}\n{detail}" if detail else message, None)
            record.address = None
            record.worker_id = None
            if record.spec is not None:
                record.spec.attempt += 1     # results of the previous life are stale
            return [_notify(record), Create(record)]
        reason = KILLED_REASON if record.no_restart else "died unexpectedly"
        message = f"The actor {record.class_name} ({record.actor_id.hex()}) {reason}"
        if detail and not record.no_restart:
            message += f"\n{detail}"
        return self._die(record, message, None)

    def handle_kill(self, actor_id, no_restart):
        record = self.actors.get(actor_id)
        if record is None or record.state == DEAD:
            return []
        if no_restart:
            record.no_restart = True
        if record.worker_id is None:
            if record.no_restart:
                return self._die(record, f"The actor {record.class_name} {KILLED_REASON}", None)
            return []
        return [KillActorWorker(record.worker_id)]

    def handle_out_of_scope(self, actor_id):
        """No handle to a non-detached actor remains: it ends after its queued calls."""
        record = self.actors.get(actor_id)
        if record is None or record.detached or record.state == DEAD:
            return []
        record.no_restart = True
        if record.state == ALIVE:
            record.exiting = True
            return [Terminate(record)]
        return self._die(record, "All handles to the actor went out of scope", None)

    def handle_exiting(self, actor_id):
        record = self.actors.get(actor_id)
        if record is not None:
            record.exiting = True
            record.no_restart = True
        return []

    def handle_subscribe(self, actor_id, address):
        record = self.actors.get(actor_id)
        if record is None:
            return []
        record.subscribers.add(address)
        return [_notify(record, {address})]

    def handle_job_finished(self, job_id):
        actions = []
        for record in list(self.actors.values()):
            if record.job_id == job_id and not record.detached and record.state != DEAD:
                record.no_restart = True
                worker = record.worker_id
                actions.extend(self._die(record, "The actor's job (its driver) ended", None))
                if worker is not None:
                    actions.append(KillActorWorker(worker))
        return actions

    def handle_client_gone(self, address):
        for record in self.actors.values():
            record.subscribers.discard(address)
        return []

    def handle_host_died(self, actor_id, worker_id, detail):
        """The actor's worker is gone with the node that hosted it (or with the home that kept
        its record). A creation that never reported its worker dies or restarts the same way."""
        record = self.actors.get(actor_id)
        if record is None:
            return []
        if record.worker_id is None:
            record.worker_id = worker_id or ("lost-" + actor_id.hex())
            self.by_worker[record.worker_id] = actor_id
        return self.handle_worker_died(worker_id or record.worker_id, detail)

    def handle_hand_over(self, actor_id):
        """The record leaves this directory for another home; returns it (or None)."""
        record = self.actors.pop(actor_id, None)
        if record is None:
            return None
        if self.by_worker.get(record.worker_id) == actor_id:
            del self.by_worker[record.worker_id]
        if record.name and self.names.get((record.namespace, record.name)) == actor_id:
            del self.names[(record.namespace, record.name)]
        return record

    def handle_adopt(self, record):
        """This directory becomes the home of a record kept elsewhere until now. Returns the
        state to tell its subscribers."""
        self.actors[record.actor_id] = record
        if record.worker_id is not None:
            self.by_worker[record.worker_id] = record.actor_id
        if record.name:
            self.names[(record.namespace, record.name)] = record.actor_id
        return [_notify(record)]

    # -- queries -------------------------------------------------------------------------------
    def get(self, actor_id):
        """The record of an actor this node is the home of, or None. Read it, never change it."""
        return self.actors.get(actor_id)

    def actor_of_worker(self, worker_id):
        return self.by_worker.get(worker_id)

    def lookup(self, name, namespace):
        actor_id = self.names.get((namespace, name))
        record = self.actors.get(actor_id)
        if record is None or record.state == DEAD:
            return None
        return record

    def list(self):
        return [r.info() for r in self.actors.values()]

    def records(self):
        return list(self.actors.values())

    # -- internals -----------------------------------------------------------------------------
    def _die(self, record, message, error_layout):
        record.state = DEAD
        record.address = None
        record.death_cause = (message, error_layout)
        record.spec = None
        record.frames = None
        if record.name and self.names.get((record.namespace, record.name)) == record.actor_id:
            del self.names[(record.namespace, record.name)]
        return [_notify(record)]
