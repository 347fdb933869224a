"""The node daemon's part in bottom-up scheduling: tasks placed across the mesh.

Every task is submitted to its owner's node. `place_task` asks the Placement state machine
(scheduling/placement.py) whether it stays or goes to a peer; a forwarded task carries its
spec and argument frames (FORWARD_TASK), and the function it runs the first time that peer
needs it. Where it lands it is an ordinary local task, except that its node tells the sender
when it ends (FORWARD_DONE), so the sender's view of the peer stays honest and the sender
knows which of its tasks die with a peer: on a member's death their owners get TASK_FAILED
("node_died") and retry them; actor creations are placed again by the actor service. Results
never pass through daemons: the worker sends them to the owner's address.

Interface for other services:
    place_task(task)                  here, or on a peer
    replace_infeasible()              parked tasks are placed again (resources changed)
    forwarded_ended(task_id)          a forwarded task is accounted for (actor creations)
    peer_rooms()                      {node_id: room} of the live peers, as gossiped
    note_reserved(node_id, units)     units promised on a peer, until its next gossip
    add_to_peer_view(node_id, units)  resources a peer gained (committed bundles)
    set_actor_creations(owner)        owner.creation_unschedulable(task, text) -> bool and
                                      owner.creation_lost(task) -> bool take actor creations
"""
import logging
import random

from ..scheduling.placement import Forward, Placement, Unschedulable
from ..scheduling.local_scheduler import Task
from ..scheduling.resources import to_units
from ..scheduling.task_spec import ACTOR_CREATION
from ..transport import wire
from .service import Service

log = logging.getLogger("zray.node")

MOVE_QUEUED_PER_TICK = 64     # queued tasks moved to peers with room, per turn of the loop


class RoutingService(Service):
    def __init__(self, ctx, tasks, functions):
        self.ctx = ctx
        self.tasks = tasks
        self.functions = functions
        self.scheduler = ctx.scheduler
        self.membership = ctx.membership
        self.placement = Placement(ctx.node_id, random.Random())
        self.forwarded = {}          # task_id -> (node_id, Task) sent to a peer, not ended yet
        self._creations = None
        tasks.set_placement(self.place_task)

    def set_actor_creations(self, owner):
        self._creations = owner

    def handlers(self):
        return {
            wire.FORWARD_TASK: self.on_forward_task,
            wire.FORWARD_DONE: self.on_forward_done,
        }

    # -- placing ---------------------------------------------------------------------------------
    def place_task(self, task):
        spec = task.spec
        if not self.membership.in_mesh:
            self.tasks.submit_here(task)
            return
        strategy = spec.extra.get("strategy") if spec.extra else None
        decision = self.placement.choose(spec.resources, strategy, task.hops,
                                         self.scheduler.total, self.scheduler.room())
        if type(decision) is Forward:
            self.forward_task(task, decision.node_id)
        elif type(decision) is Unschedulable:
            self.task_unschedulable(task, decision.text)
        else:   # local, or infeasible: the scheduler parks it and warns the owner once
            self.tasks.submit_here(task)

    def forward_task(self, task, node_id):
        spec = task.spec
        address = self.membership.address_of(node_id)
        self.functions.export_to(node_id, address, spec.function_id)
        driver = self.ctx.clients.driver_of(spec.job_id)
        self.ctx.send(address, wire.FORWARD_TASK, (spec, task.hops + 1, driver), task.frames)
        self.placement.forwarded(node_id, spec.resources)
        self.forwarded[spec.task_id] = (node_id, task)

    def task_unschedulable(self, task, text):
        if not (task.spec.kind == ACTOR_CREATION and self._creations is not None
                and self._creations.creation_unschedulable(task, text)):
            spec = task.spec
            self.ctx.send(spec.owner, wire.TASK_FAILED,
                          (spec.task_id, spec.attempt, "unschedulable", text))
        self.tasks.task_ended(task)

    def tick(self, now):
        """Tasks queued here for lack of room go to peers that have room now."""
        if not self.placement.peers or not self.scheduler.has_queued():
            return

        def can_move(task):
            spec = task.spec
            if task.hops >= 2 or (spec.extra and spec.extra.get("strategy")):
                return False
            return self.placement.peer_with_room(spec.resources) is not None
        for task in self.scheduler.take_waiting(can_move, MOVE_QUEUED_PER_TICK):
            node_id = self.placement.peer_with_room(task.spec.resources)
            if node_id is None:
                self.tasks.submit_here(task)
            else:
                self.forward_task(task, node_id)

    def replace_infeasible(self):
        """The membership or some resources changed: infeasible tasks may fit somewhere."""
        for task in self.scheduler.take_infeasible():
            self.place_task(task)

    # -- arriving from a peer, and coming back ---------------------------------------------------
    def on_forward_task(self, sender, payload, frames):
        spec, hops, driver = payload
        self.ctx.clients.add_remote_driver(spec.job_id, driver)
        self.place_task(Task(spec, frames, hops=hops, origin=sender))

    def on_forward_done(self, sender, payload, frames):
        entry = self.forwarded.pop(payload[0], None)
        if entry is not None:
            node_id, task = entry
            self.placement.returned(node_id, task.spec.resources)
            self.tasks.task_ended(task)

    def forwarded_ended(self, task_id):
        entry = self.forwarded.pop(task_id, None)
        if entry is not None:
            self.placement.returned(entry[0], entry[1].spec.resources)

    # -- the view of the peers (placement groups) ------------------------------------------------
    def peer_rooms(self):
        return {node_id: view.room() for node_id, view in self.placement.peers.items()}

    def note_reserved(self, node_id, units):
        self.placement.forwarded(node_id, units)

    def add_to_peer_view(self, node_id, units):
        if self.placement.add_to_peer(node_id, units) and self.scheduler.has_infeasible():
            self.replace_infeasible()

    # -- lifecycle -------------------------------------------------------------------------------
    def member_joined(self, member):
        self.member_updated(member)

    def member_updated(self, member):
        meta = member.meta or {}
        self.placement.update_peer(member.name, to_units(meta.get("resources", {})),
                                   to_units(meta.get("available", {})))
        if self.scheduler.has_infeasible():
            self.replace_infeasible()

    def member_gone(self, member):
        node_id = member.name
        self.placement.remove_peer(node_id)
        # Tasks we sent there: their owners retry them (actor creations are placed again).
        lost = [(tid, task) for tid, (nid, task) in self.forwarded.items() if nid == node_id]
        for tid, task in lost:
            del self.forwarded[tid]
            spec = task.spec
            if (spec.kind == ACTOR_CREATION and not task.origin and self._creations is not None
                    and self._creations.creation_lost(task)):
                continue
            self.tasks.fail_task(task, "node_died", f"node {node_id} died while it held the task")

    def client_gone(self, gone):
        """Tasks we forwarded for an owner that died: nobody waits for how they end."""
        for tid in [t for t, (_, task) in self.forwarded.items() if task.spec.owner == gone.address]:
            del self.forwarded[tid]
