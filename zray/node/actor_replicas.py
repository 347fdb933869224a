"""Records of detached actors kept on the ring, so they outlive the node that holds them.

An actor's record lives in the directory of its home node. A detached actor with restarts left
must survive that node: its home copies the record (spec, creation frames, restarts so far) to
the ring members that keep key "actor:<id>" (the decider and its successors, as names do) on
every change of state, and tells them to drop it when the actor dies for good. When the home
dies, the first live keeper adopts the record: it becomes the home, restarts the actor if its
worker died with the home, or else keeps managing the worker where it runs, and tells the
subscribers where the home is now.

Callers that see the home's node die ask their own node to find the actor (ACTOR_FIND): the
keeper answers with the state from the adopted record, or DEAD when it holds none (every
non-detached actor), so no call waits on a dead home. A find that reaches a keeper before it
saw the home die waits for that (at most FIND_WAIT_S).
"""
from ..transport import wire
from ..transport.address import node_of
from .actor_service import record_fields
from .service import Service

RECORD_KEEPERS = 3        # the decider of the key and two successors
FIND_WAIT_S = 10.0


def _key(actor_id):
    return "actor:" + actor_id.hex()


class ActorReplicaService(Service):
    def __init__(self, ctx, actors, functions):
        self.ctx = ctx
        self.node_id = ctx.node_id
        self.membership = ctx.membership
        self.actors = actors
        self.functions = functions
        self.record_replicas = {}     # actor_id -> (fields, frames) kept for another home
        self.pending_finds = []       # (deadline, actor_id, caller)
        actors.watch_records(self.replicate_record)

    def handlers(self):
        return {
            wire.ACTOR_RECORD_REPLICA: self.on_actor_record_replica,
            wire.ACTOR_RECORD_DROP: self.on_actor_record_drop,
            wire.ACTOR_FIND: self.on_actor_find,
        }

    def _keepers(self, actor_id):
        return self.membership.ring.replicas(_key(actor_id), RECORD_KEEPERS)

    def _keeper_address(self, node_id):
        return self.membership.address_of(node_id)

    # -- at the home -----------------------------------------------------------------------------
    def replicate_record(self, record):
        """Called on every state change of a record: keep the keepers' copy current."""
        if not self.membership.in_mesh or not record.detached or record.max_restarts == 0:
            return
        if record.state == "DEAD":
            for node in self._keepers(record.actor_id):
                if node != self.node_id:
                    self.ctx.send(self._keeper_address(node), wire.ACTOR_RECORD_DROP, (record.actor_id,))
            return
        fields, frames = record_fields(record)
        for node in self._keepers(record.actor_id):
            if node != self.node_id:
                self._send_replica(node, fields, frames)

    def _send_replica(self, node, fields, frames):
        address = self._keeper_address(node)
        spec = fields.get("spec")
        # A keeper that adopts the record must be able to run its constructor again.
        self.functions.export_to(node, address, spec.function_id if spec is not None else None)
        self.ctx.send(address, wire.ACTOR_RECORD_REPLICA, (fields,), frames)

    # -- at a keeper ---------------------------------------------------------------------------------
    def on_actor_record_replica(self, sender, payload, frames):
        fields = payload[0]
        self.record_replicas[fields["actor_id"]] = (fields, [f.bytes for f in frames])

    def on_actor_record_drop(self, sender, payload, frames):
        self.record_replicas.pop(payload[0], None)

    def ring_changed(self, ring):
        """Adopt records whose home died, pass the others on."""
        for actor_id, (fields, frames) in list(self.record_replicas.items()):
            home_node = node_of((fields.get("meta") or {}).get("home") or "")
            keepers = self._keepers(actor_id)
            if home_node is not None and not self.membership.is_live(home_node):
                if keepers and keepers[0] == self.node_id:
                    del self.record_replicas[actor_id]
                    record, notify = self.actors.adopt(fields, frames)
                    self.actors.settle_adopted(record, notify)
                continue
            for node in keepers:
                if node != self.node_id:
                    self._send_replica(node, fields, frames)
            if self.node_id not in keepers:
                del self.record_replicas[actor_id]
        self._answer_finds(self.ctx.now())

    def tick(self, now):
        if self.pending_finds:
            self._answer_finds(now)

    # -- callers that lost an actor's home -------------------------------------------------------------
    def on_actor_find(self, sender, payload, frames):
        """From a caller (through its node, or straight from a node): where is this actor?"""
        actor_id, caller = payload
        if not self.membership.in_mesh:
            self._actor_not_found(actor_id, caller)
            return
        keeper = self._keepers(actor_id)[0]
        if keeper != self.node_id:
            self.ctx.send(self._keeper_address(keeper), wire.ACTOR_FIND, payload)
            return
        self.pending_finds.append((self.ctx.now() + FIND_WAIT_S, actor_id, caller))
        self._answer_finds(self.ctx.now())

    def _answer_finds(self, now):
        waiting = []
        for deadline, actor_id, caller in self.pending_finds:
            if self.actors.subscribe(actor_id, caller):
                continue
            if actor_id in self.record_replicas and now < deadline:
                waiting.append((deadline, actor_id, caller))   # its home is not dead to us yet
            else:
                self._actor_not_found(actor_id, caller)
        self.pending_finds = waiting

    def _actor_not_found(self, actor_id, caller):
        self.ctx.send(caller, wire.ACTOR_STATE, (
            actor_id, "DEAD", None, "The actor died: the node that kept its record died"))
