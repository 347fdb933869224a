"""Actors whose home is this node: messages decoded here, decided by the ActorDirectory.

An actor's record stays at its home node, where its owner registered it: the directory there
places the creation task (through routing_service.place_task), restarts the actor when its
worker dies, and tells every subscriber each change of state. Its worker may run on another
node (actor_host_service.py reports from there). A detached actor without restarts moves home
to the node that hosts it once it runs (ACTOR_ADOPT), so it does not depend on its driver's
node; callers learn the new home from the next ACTOR_STATE, and the old home redirects
("MOVED") or forwards what still comes. One with restarts left stays home and is copied to the
ring (actor_replicas.py).

Interface for other services:
    creation_submitted / creation_dispatched / creation_unschedulable / creation_lost (task)
                                   the creation tasks (TaskService, RoutingService call these)
    adopt(fields, frames) -> (record, notify)  become the home of a record kept elsewhere
    settle_adopted(record, notify)           after adopting a replica: manage or restart it
    subscribe(actor_id, caller) -> bool      a caller asks for the state of an actor homed here
    kill_for_group(worker_id) -> bool        kill for good the actor a worker hosts
    watch_records(callback)                  callback(record) on every change of state
    actor_records() / host_node_of(record)   read the records (the state API)
"""
from ..scheduling.actor_directory import (DEAD, ActorDirectory, ActorRecord, Create,
                                          KillActorWorker, Notify, Terminate)
from ..scheduling.local_scheduler import Task
from ..transport import wire
from ..transport.address import node_of
from .service import Service


def record_fields(record):
    """The record as plain values (its creation frames travel as message frames)."""
    fields = {k: getattr(record, k) for k in record.__slots__ if k not in ("frames", "subscribers")}
    fields["subscribers"] = sorted(record.subscribers)
    frames = [f.bytes if hasattr(f, "bytes") else bytes(f) for f in (record.frames or ())]
    return fields, frames


def record_from_fields(fields, frames):
    record = ActorRecord.__new__(ActorRecord)
    for key in ActorRecord.__slots__:
        setattr(record, key, fields.get(key))
    record.frames = [f.bytes if hasattr(f, "bytes") else f for f in frames]
    record.subscribers = set(fields["subscribers"])
    return record


class ActorService(Service):
    def __init__(self, ctx, tasks, routing, names, hosting):
        self.ctx = ctx
        self.tasks = tasks
        self.routing = routing
        self.names = names
        self.hosting = hosting
        self.membership = ctx.membership
        self.directory = ActorDirectory()
        self.remote_workers = {}     # worker_id -> node_id of actors of ours hosted elsewhere
        self.moved = {}              # actor_id -> new home, for detached actors handed over
        self._watchers = []
        self._run = {Create: self._create, Notify: self._notify,
                     KillActorWorker: self._kill_worker, Terminate: self._terminate}
        tasks.set_actor_creations(self)
        routing.set_actor_creations(self)

    def handlers(self):
        return {
            wire.REGISTER_ACTOR: self.on_register_actor,
            wire.ACTOR_STARTED: self.on_actor_started,
            wire.SUBSCRIBE_ACTOR: self.on_subscribe_actor,
            wire.KILL_ACTOR: self.on_kill_actor,
            wire.ACTOR_EXITING: self.on_actor_exiting,
            wire.GET_ACTOR: self.on_get_actor,
            wire.ACTOR_OUT_OF_SCOPE: self.on_actor_out_of_scope,
            wire.LIST_ACTORS: self.on_list_actors,
            wire.ACTOR_HOSTED: self.on_actor_hosted,
            wire.ACTOR_HOST_DIED: self.on_actor_host_died,
            wire.ACTOR_ADOPT: self.on_actor_adopt,
            wire.ACTOR_ADOPTED: self.on_actor_adopted,
        }

    def actor_records(self):
        """The records of the actors this node is the home of (read them, never change them)."""
        return self.directory.records()

    def host_node_of(self, record):
        """The node that hosts a record's worker when it is another one, else None."""
        return self.remote_workers.get(record.worker_id)

    def watch_records(self, callback):
        self._watchers.append(callback)

    # -- registering and looking up --------------------------------------------------------------
    def on_register_actor(self, sender, payload, frames):
        (req_id, actor_id, name, namespace, detached, get_if_exists, max_restarts, class_name,
         job_id, owner, meta) = payload
        home = self.membership.home_address()
        if home:
            meta = dict(meta, home=home)
        record = ActorRecord(actor_id, None, None, name, namespace, detached, job_id, owner,
                             max_restarts, class_name, meta)
        if not (name and self.membership.in_mesh):
            self._register_here(sender, req_id, record, get_if_exists)
            return
        # In a mesh the name's decider on the ring says whether it is free (name_service.py).
        entry = {"actor_id": actor_id, "owner": owner, "meta": meta, "home": home,
                 "node": self.ctx.node_id}

        def claimed(ok, holder, error):
            if error is not None:
                self.ctx.reply(sender, wire.ACTOR_REGISTERED, req_id, None, error)
            elif ok:
                self._register_here(sender, req_id, record, get_if_exists)
            elif get_if_exists:
                self.ctx.reply(sender, wire.ACTOR_REGISTERED, req_id,
                               (holder["actor_id"], holder["owner"], holder["meta"]))
            else:
                self.ctx.reply(sender, wire.ACTOR_REGISTERED, req_id, None, ValueError(
                    f"An actor named {name!r} already exists in namespace {namespace!r}"))
        self.names.claim_name(namespace, name, entry, claimed)

    def _register_here(self, sender, req_id, record, get_if_exists):
        try:
            chosen = self.directory.handle_register(record, get_if_exists)
        except ValueError as exc:
            self.ctx.reply(sender, wire.ACTOR_REGISTERED, req_id, None, exc)
            return
        other = self.directory.get(chosen)
        self.ctx.reply(sender, wire.ACTOR_REGISTERED, req_id, (chosen, other.owner, other.meta))

    def on_get_actor(self, sender, payload, frames):
        req_id, name, namespace = payload

        def answer(found):
            if found is None:
                self.ctx.reply(sender, wire.GET_ACTOR_REPLY, req_id, None, ValueError(
                    f"Failed to look up actor with name {name!r} in namespace {namespace!r}: "
                    "no live actor has that name"))
            else:
                self.ctx.reply(sender, wire.GET_ACTOR_REPLY, req_id, found)
        record = self.directory.lookup(name, namespace)
        if record is not None:
            answer((record.actor_id, record.owner, record.meta))
        elif self.membership.in_mesh:
            self.names.lookup_name(namespace, name, lambda entry: answer(
                None if entry is None else (entry["actor_id"], entry["owner"], entry["meta"])))
        else:
            answer(None)

    def on_list_actors(self, sender, payload, frames):
        self.ctx.reply(sender, wire.LIST_ACTORS_REPLY, payload[0], self.directory.list())

    # -- creation tasks --------------------------------------------------------------------------
    def creation_submitted(self, task):
        """A SUBMIT_TASK that creates an actor: the directory keeps it for restarts."""
        spec = task.spec
        home = self.membership.home_address()
        if home:
            spec.extra["home"] = home
        self.run(self.directory.handle_creation_task(spec.extra["actor_id"], spec, task.frames))

    def creation_dispatched(self, task, worker):
        actor_id = task.spec.extra["actor_id"]
        if self.directory.get(actor_id) is not None:
            self.directory.handle_dispatched(actor_id, worker.worker_id)
        else:
            self.hosting.note_dispatched(task, worker)

    def creation_unschedulable(self, task, text):
        actor_id = task.spec.extra["actor_id"]
        if self.directory.get(actor_id) is None:
            return False
        self.run(self.directory.handle_creation_failed(actor_id, None, text, None))
        return True

    def creation_lost(self, task):
        """A creation forwarded to a node that died: placed again, unless the actor is dead."""
        record = self.directory.get(task.spec.extra["actor_id"])
        if record is None:
            return False
        if record.state != DEAD:
            self.routing.place_task(Task(task.spec, task.frames))
        return True

    # -- the actor's life ------------------------------------------------------------------------
    def on_actor_started(self, sender, payload, frames):
        actor_id, ok, message = payload
        worker_id = self.ctx.clients.worker_id_of(sender)
        pid = self.ctx.clients.pid_of(sender)
        self.tasks.creation_ended(worker_id, ok, message)
        record = self.directory.get(actor_id)
        if record is None and self.hosting.hosts(worker_id):
            self.hosting.actor_started(actor_id, worker_id, ok, message, sender, pid, frames)
            return
        if ok:
            lifetime = record.spec.extra["lifetime"] if record and record.spec else {}
            detached = bool(record and record.detached)
            self.tasks.run(self.ctx.scheduler.handle_actor_started(worker_id, lifetime, detached))
            self.run(self.directory.handle_started(actor_id, worker_id, sender, pid))
        else:
            layout = frames[0].bytes if frames else None
            self.run(self.directory.handle_creation_failed(actor_id, worker_id, message, layout))

    def on_actor_hosted(self, sender, payload, frames):
        actor_id, ok, message, worker_id, address, pid = payload
        record = self.directory.get(actor_id)
        if record is not None and record.spec is not None:
            self.routing.forwarded_ended(record.spec.task_id)
        self.remote_workers[worker_id] = (node_of(address) if address
                                          else self.membership.node_at(sender))
        if ok:
            self.run(self.directory.handle_started(actor_id, worker_id, address, pid))
            if (record is not None and record.detached and record.state == "ALIVE"
                    and record.max_restarts == 0):
                self._hand_over(actor_id, sender)
        else:
            layout = frames[0].bytes if frames else None
            self.run(self.directory.handle_creation_failed(actor_id, worker_id, message, layout))

    def on_actor_host_died(self, sender, payload, frames):
        actor_id, worker_id, detail = payload
        self.remote_workers.pop(worker_id, None)
        record = self.directory.get(actor_id)
        if record is not None and record.worker_id is None and record.spec is not None:
            self.routing.forwarded_ended(record.spec.task_id)   # it died in its constructor
            self.run(self.directory.handle_host_died(actor_id, worker_id, detail))
        else:
            self.run(self.directory.handle_worker_died(worker_id, detail))

    def on_subscribe_actor(self, sender, payload, frames):
        moved_to = self.moved.get(payload[0])
        if moved_to is not None:
            self.ctx.send(sender, wire.ACTOR_STATE, (payload[0], "MOVED", None, None, moved_to))
            return
        self.run(self.directory.handle_subscribe(payload[0], sender))

    def on_kill_actor(self, sender, payload, frames):
        actor_id, no_restart = payload
        if not self._forward_if_moved(actor_id, wire.KILL_ACTOR, payload):
            self.run(self.directory.handle_kill(actor_id, no_restart))

    def on_actor_exiting(self, sender, payload, frames):
        if not self._forward_if_moved(payload[0], wire.ACTOR_EXITING, payload):
            self.run(self.directory.handle_exiting(payload[0]))

    def on_actor_out_of_scope(self, sender, payload, frames):
        if not self._forward_if_moved(payload[0], wire.ACTOR_OUT_OF_SCOPE, payload):
            self.run(self.directory.handle_out_of_scope(payload[0]))

    def _forward_if_moved(self, actor_id, msg_type, payload):
        home = self.moved.get(actor_id)
        if home is None:
            return False
        self.ctx.send(home, msg_type, payload)
        return True

    # -- lifecycle -------------------------------------------------------------------------------
    def worker_died(self, worker_id, detail):
        self.run(self.directory.handle_worker_died(worker_id, detail))

    def client_gone(self, gone):
        if gone.kind is None:
            return
        self.run(self.directory.handle_client_gone(gone.address))

    def job_finished(self, job_id):
        self.run(self.directory.handle_job_finished(job_id))

    def member_gone(self, member):
        node_id = member.name
        for worker_id in [w for w, n in self.remote_workers.items() if n == node_id]:
            del self.remote_workers[worker_id]
            self.run(self.directory.handle_worker_died(
                worker_id, f"the node {node_id} that hosted it died"))

    # -- records moving between homes ------------------------------------------------------------
    # A detached actor outlives its driver, so its record must not depend on the driver's node:
    # once it runs elsewhere, the hosting node adopts the record. One with restarts left stays
    # with its home, which restarts it if its host dies: a record lives on one node, so it can
    # survive the host or the creator, not both (architecture.md).
    def _hand_over(self, actor_id, host_daemon):
        record = self.directory.handle_hand_over(actor_id)
        self.remote_workers.pop(record.worker_id, None)
        self.moved[actor_id] = host_daemon
        fields, frames = record_fields(record)
        self.ctx.send(host_daemon, wire.ACTOR_ADOPT, (fields,), frames)

    def on_actor_adopt(self, sender, payload, frames):
        record, notify = self.adopt(payload[0], frames)
        self.hosting.forget(record.worker_id)
        self.ctx.send(sender, wire.ACTOR_ADOPTED, (record.actor_id, self.membership.home_address()))
        self.run(notify)
        if not self.ctx.clients.has_worker(record.worker_id):
            # Its worker died while the record was on its way.
            self.run(self.directory.handle_worker_died(record.worker_id, None))

    def on_actor_adopted(self, sender, payload, frames):
        actor_id, home = payload
        self.moved[actor_id] = home

    def adopt(self, fields, frames):
        """Become the home of an actor whose record comes from another node (a hand-over or a
        replica): this directory keeps it, its name points here, its spec restarts it here.
        Tells the subscribers where the home is now."""
        record = record_from_fields(fields, frames)
        home = self.membership.home_address()
        record.meta = dict(record.meta or {}, home=home)
        if record.spec is not None:
            record.spec.extra["home"] = home
            record.spec.extra["meta"] = record.meta
        notify = self.directory.handle_adopt(record)
        if record.name:
            self.names.claim_name(record.namespace, record.name, {
                "actor_id": record.actor_id, "owner": record.owner, "meta": record.meta,
                "home": home, "node": self.ctx.node_id}, lambda ok, held, error: None)
        return record, notify

    def settle_adopted(self, record, notify):
        """After adopting a replica whose home died: manage the actor where it still runs, or
        restart it (or let it die) as the home would have."""
        host = node_of(record.address) if record.address else None
        if host is not None and host != self.ctx.node_id and self.membership.is_live(host):
            # It still runs: manage it from here, and have its node report here.
            self.remote_workers[record.worker_id] = host
            self.ctx.send(self.membership.address_of(host), wire.ACTOR_REHOMED,
                          (record.worker_id, self.membership.home_address()))
            self.run(notify)
        elif record.worker_id is not None and self.ctx.clients.has_worker(record.worker_id):
            self.hosting.forget(record.worker_id)
            self.run(notify)
        else:
            self.run(self.directory.handle_host_died(
                record.actor_id, None, "the node that kept the actor's record died"))

    def subscribe(self, actor_id, caller):
        if self.directory.get(actor_id) is None:
            return False
        self.run(self.directory.handle_subscribe(actor_id, caller))
        return True

    def kill_for_group(self, worker_id):
        actor_id = self.directory.actor_of_worker(worker_id)
        if actor_id is None:
            return False
        self.run(self.directory.handle_kill(actor_id, True))
        return True

    # -- actions of the directory ----------------------------------------------------------------
    def run(self, actions):
        for action in actions:
            self._run[type(action)](action)

    def _create(self, action):
        record = action.record
        self.routing.place_task(Task(record.spec, record.frames))

    def _notify(self, action):
        record = action.record
        if record.state == DEAD and record.name and self.membership.in_mesh:
            self.names.release_name(record.namespace, record.name, record.actor_id)
        for watch in self._watchers:
            watch(record)
        message, layout = record.death_cause or (None, None)
        frames = [layout] if layout else []
        home = (record.meta or {}).get("home")
        # exited: it ended by itself after answering its calls (its replies may still be on
        # their way to the callers, straight from it: actor_caller.py waits for them).
        exited = record.state == "DEAD" and record.exiting
        for address in action.subscribers:
            self.ctx.send(address, wire.ACTOR_STATE,
                          (record.actor_id, record.state, record.address, message, home, exited),
                          frames)

    def _kill_worker(self, action):
        worker_id = action.worker_id
        if self.ctx.clients.has_worker(worker_id):
            self.ctx.kill_pid(self.ctx.clients.worker_pid(worker_id))
            return
        address = self.membership.address_of(self.remote_workers.get(worker_id))
        if address is not None:
            self.ctx.send(address, wire.KILL_REMOTE_WORKER, (worker_id,))

    def _terminate(self, action):
        if action.record.address:
            self.ctx.send(action.record.address, wire.TERMINATE_ACTOR, ())
