"""The node daemon's part in bottom-up scheduling: tasks and actors placed across the mesh.

Every task is submitted to its owner's node. `place_task` asks the Placement state machine
(scheduling/placement.py) whether it stays or goes to a peer; a forwarded task carries its
spec and argument frames (FORWARD_TASK), and the function it runs the first time that peer
needs it. Where it lands it is an ordinary local task, except that its node tells the sender
when it ends (FORWARD_DONE), so the sender's view of the peer stays honest and the sender
knows which of its tasks die with a peer: on a member's death their owners get TASK_FAILED
("node_died") and retry them. Results never pass through daemons: the worker sends them to
the owner's address, over TCP when the owner is on another host.

An actor's record stays at its home node, where its owner registered it (the directory there
decides restarts and death); the node that hosts its worker reports ACTOR_HOSTED and
ACTOR_HOST_DIED home, and takes KILL_REMOTE_WORKER from there.

Deaths travel too: a driver or worker that exits is announced to every peer
(PEER_CLIENT_GONE), so tasks it owned stop everywhere and borrowers drop it; a member declared
dead is announced to this node's processes (NODE_DIED).
"""
import random
import sys

from ..scheduling.local_scheduler import Task
from .actor_replicas import record_fields
from ..scheduling.placement import Placement
from ..scheduling.resources import to_units
from ..transport.address import node_of

MOVE_QUEUED_PER_TICK = 64     # queued tasks moved to peers with room, per turn of the loop


class RoutingService:
    """Mixed into NodeDaemon (after MeshService)."""

    def _init_routing(self):
        wire = self.wire
        self.placement = Placement(self.node_id, random.Random())
        self.forwarded = {}          # task_id -> (node_id, Task) sent to a peer, not ended yet
        self.functions_sent = set()  # (node_id, function_id)
        self.remote_drivers = {}     # job_id -> driver address, for jobs forwarded here
        self.hosted_for_home = {}    # worker_id -> (actor_id, home) actors hosted for another node
        self.remote_actor_workers = {}   # worker_id -> node_id of actors of ours hosted elsewhere
        self.moved_actors = {}       # actor_id -> new home, for detached actors handed over
        self.handlers.update({
            wire.FORWARD_TASK: self.on_forward_task,
            wire.FORWARD_DONE: self.on_forward_done,
            wire.PEER_CLIENT_GONE: self.on_peer_client_gone,
            wire.ACTOR_HOSTED: self.on_actor_hosted,
            wire.ACTOR_HOST_DIED: self.on_actor_host_died,
            wire.KILL_REMOTE_WORKER: self.on_kill_remote_worker,
            wire.ACTOR_ADOPT: self.on_actor_adopt,
            wire.ACTOR_ADOPTED: self.on_actor_adopted,
        })

    def home_address(self):
        """Where callers on any host reach this node's actor directory: an ipc|tcp pair, so
        callers on this host use the ipc path (and the socket they already have to us)."""
        if self.swim is None:
            return None
        from ..transport.address import join
        return join(self.address, self.mesh_address, self.node_id)

    # -- placing ---------------------------------------------------------------------------------
    def place_task(self, task):
        spec = task.spec
        if self.swim is None:
            self.run_actions(self.scheduler.handle_task_submitted(task))
            return
        strategy = spec.extra.get("strategy") if spec.extra else None
        decision = self.placement.choose(spec.resources, strategy, task.hops,
                                         self.scheduler.total, self.scheduler.room())
        if decision[0] == "forward":
            self.forward_task(task, decision[1])
        elif decision[0] == "unschedulable":
            self.task_unschedulable(task, decision[1])
        else:   # local, or infeasible: the scheduler parks it and warns the owner once
            self.run_actions(self.scheduler.handle_task_submitted(task))

    def forward_task(self, task, node_id):
        spec = task.spec
        member = self.swim.members.get(node_id)
        address = member.address
        fid = spec.function_id
        if fid is not None and (node_id, fid) not in self.functions_sent and fid in self.functions:
            self.functions_sent.add((node_id, fid))
            self.send(address, self.wire.EXPORT_FUNCTION, (fid,), [self.functions[fid]])
        driver = self.drivers.get(spec.job_id) or self.remote_drivers.get(spec.job_id)
        self.send(address, self.wire.FORWARD_TASK, (spec, task.hops + 1, driver), task.frames)
        self.placement.forwarded(node_id, spec.resources)
        self.forwarded[spec.task_id] = (node_id, task)

    def task_unschedulable(self, task, text):
        spec = task.spec
        actor_id = spec.extra.get("actor_id") if spec.extra else None
        if actor_id is not None and actor_id in self.directory.actors:
            self.run_actor_actions(self.directory.handle_creation_failed(actor_id, None, text, None))
        else:
            self.send(spec.owner, self.wire.TASK_FAILED, (spec.task_id, spec.attempt, "unschedulable", text))
        self._forward_done(task)

    def move_queued_tasks(self):
        """Tasks queued here for lack of room go to peers that have room now."""
        if not self.placement.peers or not self.scheduler.queues:
            return

        def can_move(task):
            spec = task.spec
            if task.hops >= 2 or (spec.extra and spec.extra.get("strategy")):
                return False
            return self.placement.peer_with_room(spec.resources) is not None
        for task in self.scheduler.take_waiting(can_move, MOVE_QUEUED_PER_TICK):
            node_id = self.placement.peer_with_room(task.spec.resources)
            if node_id is None:
                self.run_actions(self.scheduler.handle_task_submitted(task))
            else:
                self.forward_task(task, node_id)

    def replace_infeasible(self):
        """The membership or a peer's resources changed: infeasible tasks may fit somewhere."""
        waiting = list(self.scheduler.infeasible.values())
        self.scheduler.infeasible.clear()
        for task in waiting:
            self.place_task(task)

    # -- arriving from a peer ----------------------------------------------------------------------
    def on_forward_task(self, sender, payload, frames):
        spec, hops, driver = payload
        if driver and spec.job_id not in self.drivers:
            self.remote_drivers[spec.job_id] = driver
        self.place_task(Task(spec, frames, hops=hops, origin=sender))

    def task_ended_here(self, task):
        """A task forwarded here finished, failed or was dropped: tell the node that sent it."""
        self._forward_done(task)

    def _forward_done(self, task):
        if task.origin is not None:
            self.send(task.origin, self.wire.FORWARD_DONE, (task.spec.task_id,))
            task.origin = None

    def on_forward_done(self, sender, payload, frames):
        entry = self.forwarded.pop(payload[0], None)
        if entry is not None:
            node_id, task = entry
            self.placement.returned(node_id, task.spec.resources)
            self._forward_done(task)

    # -- actors hosted for another node --------------------------------------------------------------
    def note_dispatched_remote_actor(self, task, worker):
        extra = task.spec.extra
        self.hosted_for_home[worker.worker_id] = (extra["actor_id"], extra.get("home"), task)

    def report_actor_started(self, actor_id, worker_id, ok, message, address, pid, frames):
        """An actor whose record lives on another node started (or failed to) here."""
        entry = self.hosted_for_home.get(worker_id)
        if entry is None:
            return
        _, home, task = entry
        if not ok:
            del self.hosted_for_home[worker_id]
        self.send(home, self.wire.ACTOR_HOSTED, (actor_id, ok, message, worker_id, address, pid),
                  [f.bytes if hasattr(f, "bytes") else f for f in frames])
        self._forward_done(task)

    def report_hosted_worker_died(self, worker_id, detail):
        entry = self.hosted_for_home.pop(worker_id, None)
        if entry is not None:
            actor_id, home, task = entry
            self.send(home, self.wire.ACTOR_HOST_DIED, (actor_id, worker_id, detail))
            self._forward_done(task)

    def on_kill_remote_worker(self, sender, payload, frames):
        worker = self.workers.get(payload[0])
        if worker is not None:
            self._kill(worker.pid)

    # -- at the actor's home -------------------------------------------------------------------------
    def on_actor_hosted(self, sender, payload, frames):
        actor_id, ok, message, worker_id, address, pid = payload
        record = self.directory.actors.get(actor_id)
        if record is not None and record.spec is not None:
            entry = self.forwarded.pop(record.spec.task_id, None)
            if entry is not None:
                self.placement.returned(entry[0], record.spec.resources)
        self.remote_actor_workers[worker_id] = node_of(address) if address else self._node_at(sender)
        if ok:
            self.run_actor_actions(self.directory.handle_started(actor_id, worker_id, address, pid))
            if (record is not None and record.detached and record.state == "ALIVE"
                    and record.max_restarts == 0):
                self.hand_over_actor(record, sender)
        else:
            layout = frames[0].bytes if frames else None
            self.run_actor_actions(self.directory.handle_creation_failed(actor_id, worker_id, message, layout))

    def on_actor_host_died(self, sender, payload, frames):
        actor_id, worker_id, detail = payload
        self.remote_actor_workers.pop(worker_id, None)
        record = self.directory.actors.get(actor_id)
        if record is not None and record.worker_id is None and record.spec is not None:
            self.forwarded.pop(record.spec.task_id, None)
            record.worker_id = worker_id      # it died during its constructor
            self.directory.by_worker[worker_id] = actor_id
        self.run_actor_actions(self.directory.handle_worker_died(worker_id, detail))

    # -- detached actors move home to the node that hosts them -----------------------------------
    # A detached actor outlives its driver, so its record must not depend on the driver's node:
    # once it runs elsewhere, the hosting node adopts the record. Callers learn the new home
    # from the next ACTOR_STATE; the old home redirects ("MOVED") or forwards what still comes.
    # One with restarts left stays with its home, which restarts it if its host dies: a record
    # lives on one node, so it can survive the host or the creator, not both (architecture.md).
    def hand_over_actor(self, record, host_daemon):
        directory = self.directory
        directory.actors.pop(record.actor_id, None)
        directory.by_worker.pop(record.worker_id, None)
        if record.name and directory.names.get((record.namespace, record.name)) == record.actor_id:
            del directory.names[(record.namespace, record.name)]
        self.remote_actor_workers.pop(record.worker_id, None)
        self.moved_actors[record.actor_id] = host_daemon
        fields, frames = record_fields(record)
        self.send(host_daemon, self.wire.ACTOR_ADOPT, (fields,), frames)

    def on_actor_adopt(self, sender, payload, frames):
        record = self.adopt_record(payload[0], frames)
        self.hosted_for_home.pop(record.worker_id, None)
        self.send(sender, self.wire.ACTOR_ADOPTED, (record.actor_id, self.home_address()))
        self.run_actor_actions([("notify", record, set(record.subscribers))])
        if record.worker_id not in self.workers:
            # Its worker died while the record was on its way.
            self.run_actor_actions(self.directory.handle_worker_died(record.worker_id, None))

    def on_actor_adopted(self, sender, payload, frames):
        actor_id, home = payload
        self.moved_actors[actor_id] = home

    def kill_actor_worker(self, worker_id):
        """The directory wants an actor's worker gone, wherever it runs."""
        worker = self.workers.get(worker_id)
        if worker is not None:
            self._kill(worker.pid)
            return
        node_id = self.remote_actor_workers.get(worker_id)
        member = self.swim.members.get(node_id) if (node_id and self.swim) else None
        if member is not None:
            self.send(member.address, self.wire.KILL_REMOTE_WORKER, (worker_id,))

    def _node_at(self, mesh_address):
        for member in self.swim.members.values():
            if member.address == mesh_address:
                return member.name
        return None

    # -- deaths ----------------------------------------------------------------------------------
    def announce_client_gone(self, client):
        if self.swim is None:
            return
        for member in self.swim.members.values():
            if member.name != self.node_id and member.state in ("alive", "suspect"):
                self.send(member.address, self.wire.PEER_CLIENT_GONE,
                          (client.address, client.kind, client.job_id))

    def forget_forwarded_of(self, owner):
        """Tasks we forwarded for an owner that died: nobody waits for how they end."""
        for tid in [t for t, (_, task) in self.forwarded.items() if task.spec.owner == owner]:
            del self.forwarded[tid]

    def on_peer_client_gone(self, sender, payload, frames):
        address, kind, job_id = payload
        self.remote_client_gone(address, kind, job_id)

    def remote_client_gone(self, address, kind, job_id):
        self.transport.forget(address)
        self.run_actions(self.scheduler.handle_owner_died(address))
        self.forget_forwarded_of(address)
        for other in self.clients.values():
            self.send(other.address, self.wire.CLIENT_DIED, (address,))
        self.directory.handle_client_gone(address)
        if kind == "driver":
            self.remote_drivers.pop(job_id, None)
            self.run_actions(self.scheduler.handle_job_finished(job_id))
            self.run_actor_actions(self.directory.handle_job_finished(job_id))

    def member_changed(self, kind, member):
        """A SWIM event: keep the placement view, and clean up after a member that is gone."""
        if member.name == self.node_id:
            return
        if kind in ("join", "update"):
            meta = member.meta or {}
            self.placement.update_peer(member.name, to_units(meta.get("resources", {})),
                                       to_units(meta.get("available", {})))
            if self.scheduler.infeasible:
                self.replace_infeasible()
        elif kind in ("dead", "leave"):
            self.placement.remove_peer(member.name)
            self.functions_sent = {k for k in self.functions_sent if k[0] != member.name}
            self.node_gone(member.name, member.address)

    def node_gone(self, node_id, mesh_address):
        for other in self.clients.values():
            self.send(other.address, self.wire.NODE_DIED, (node_id, mesh_address))
        # Tasks we sent there: their owners retry them (actor creations are placed again).
        lost = [(tid, task) for tid, (nid, task) in self.forwarded.items() if nid == node_id]
        for tid, task in lost:
            del self.forwarded[tid]
            spec = task.spec
            actor_id = spec.extra.get("actor_id") if spec.extra else None
            if actor_id is not None and not task.origin and actor_id in self.directory.actors:
                record = self.directory.actors[actor_id]
                if record.state != "DEAD":
                    self.place_task(Task(spec, task.frames))
                continue
            self.send(spec.owner, self.wire.TASK_FAILED, (
                spec.task_id, spec.attempt, "node_died",
                f"node {node_id} died while it held the task"))
            self._forward_done(task)
        # Our actors hosted there.
        for worker_id in [w for w, n in self.remote_actor_workers.items() if n == node_id]:
            del self.remote_actor_workers[worker_id]
            self.run_actor_actions(self.directory.handle_worker_died(
                worker_id, f"the node {node_id} that hosted it died"))
        # Processes that lived there: tasks they own stop here, their jobs end here.
        owners = {t.spec.owner for q in self.scheduler.queues.values() for t in q}
        owners.update(t.spec.owner for t in self.scheduler.running.values())
        owners.update(t.spec.owner for t in self.scheduler.infeasible.values())
        for owner in owners:
            if node_of(owner) == node_id:
                self.run_actions(self.scheduler.handle_owner_died(owner))
        for job_id, driver in list(self.remote_drivers.items()):
            if node_of(driver) == node_id:
                self.remote_client_gone(driver, "driver", job_id)

    def log(self, text):
        print(f"zray node {self.node_id[:8]}: {text}", file=sys.stderr, flush=True)
