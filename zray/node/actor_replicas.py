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
import time

from ..mesh.swim import ALIVE, SUSPECT
from ..scheduling.actor_directory import ActorRecord
from ..transport.address import node_of

RECORD_KEEPERS = 3        # the decider of the key and two successors
FIND_WAIT_S = 10.0


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


def _key(actor_id):
    return "actor:" + actor_id.hex()


class ActorReplicaService:
    """Mixed into NodeDaemon (after NameService, whose ring it uses)."""

    def _init_actor_replicas(self):
        wire = self.wire
        self.record_replicas = {}     # actor_id -> (fields, frames) kept for another home
        self.pending_finds = []       # (deadline, actor_id, caller)
        self.handlers.update({
            wire.ACTOR_RECORD_REPLICA: self.on_actor_record_replica,
            wire.ACTOR_RECORD_DROP: self.on_actor_record_drop,
            wire.ACTOR_FIND: self.on_actor_find,
            wire.ACTOR_REHOMED: self.on_actor_rehomed,
        })

    def _keepers(self, actor_id):
        return self.ring.replicas(_key(actor_id), RECORD_KEEPERS)

    def _keeper_address(self, node_id):
        return self.swim.members[node_id].address

    # -- at the home -----------------------------------------------------------------------------
    def replicate_record(self, record):
        """Called on every state change of a record: keep the keepers' copy current."""
        if self.swim is None or not record.detached or record.max_restarts == 0:
            return
        if record.state == "DEAD":
            for node in self._keepers(record.actor_id):
                if node != self.node_id:
                    self.send(self._keeper_address(node), self.wire.ACTOR_RECORD_DROP, (record.actor_id,))
            return
        fields, frames = record_fields(record)
        for node in self._keepers(record.actor_id):
            if node != self.node_id:
                self._send_replica(node, fields, frames)

    def _send_replica(self, node, fields, frames):
        address = self._keeper_address(node)
        spec = fields.get("spec")
        fid = spec.function_id if spec is not None else None
        if fid in self.functions and (node, fid) not in self.functions_sent:
            # A keeper that adopts the record must be able to run its constructor again.
            self.functions_sent.add((node, fid))
            self.send(address, self.wire.EXPORT_FUNCTION, (fid,), [self.functions[fid]])
        self.send(address, self.wire.ACTOR_RECORD_REPLICA, (fields,), frames)

    # -- at a keeper ---------------------------------------------------------------------------------
    def on_actor_record_replica(self, sender, payload, frames):
        fields = payload[0]
        self.record_replicas[fields["actor_id"]] = (fields, [f.bytes for f in frames])

    def on_actor_record_drop(self, sender, payload, frames):
        self.record_replicas.pop(payload[0], None)

    def _live(self, node_id):
        if node_id == self.node_id:
            return True
        member = self.swim.members.get(node_id)
        return member is not None and member.state in (ALIVE, SUSPECT)

    def actor_replicas_membership_changed(self):
        """After the ring changed: adopt records whose home died, pass the others on."""
        for actor_id, (fields, frames) in list(self.record_replicas.items()):
            home_node = node_of((fields.get("meta") or {}).get("home") or "")
            keepers = self._keepers(actor_id)
            if home_node is not None and not self._live(home_node):
                if keepers and keepers[0] == self.node_id:
                    del self.record_replicas[actor_id]
                    self._adopt_replica(fields, frames)
                continue
            for node in keepers:
                if node != self.node_id:
                    self._send_replica(node, fields, frames)
            if self.node_id not in keepers:
                del self.record_replicas[actor_id]
        self._answer_finds(time.monotonic())

    def adopt_record(self, fields, frames):
        """Become the home of an actor whose record comes from another node (a hand-over or a
        replica): this directory keeps it, its name points here, its spec restarts it here."""
        record = record_from_fields(fields, frames)
        home = self.home_address()
        record.meta = dict(record.meta or {}, home=home)
        if record.spec is not None:
            record.spec.extra["home"] = home
            record.spec.extra["meta"] = record.meta
        directory = self.directory
        directory.actors[record.actor_id] = record
        if record.worker_id is not None:
            directory.by_worker[record.worker_id] = record.actor_id
        if record.name:
            directory.names[(record.namespace, record.name)] = record.actor_id
            self.claim_name(record.namespace, record.name, {
                "actor_id": record.actor_id, "owner": record.owner, "meta": record.meta,
                "home": home, "node": self.node_id}, lambda ok, held, error: None)
        return record

    def _adopt_replica(self, fields, frames):
        record = self.adopt_record(fields, frames)
        directory = self.directory
        home = self.home_address()
        host = node_of(record.address) if record.address else None
        if host is not None and self._live(host) and host != self.node_id:
            # It still runs: manage it from here, and have its node report here.
            self.remote_actor_workers[record.worker_id] = host
            self.send(self._keeper_address(host), self.wire.ACTOR_REHOMED,
                      (record.worker_id, home))
            self.run_actor_actions([("notify", record, set(record.subscribers))])
        elif record.worker_id is not None and record.worker_id in self.workers:
            self.hosted_for_home.pop(record.worker_id, None)
            self.run_actor_actions([("notify", record, set(record.subscribers))])
        else:
            # Its worker died with the home: restart it (or let it die) as the home would have.
            if record.worker_id is None:
                record.worker_id = "lost-" + record.actor_id.hex()
                directory.by_worker[record.worker_id] = record.actor_id
            self.run_actor_actions(directory.handle_worker_died(
                record.worker_id, "the node that kept the actor's record died"))

    def on_actor_rehomed(self, sender, payload, frames):
        worker_id, home = payload
        entry = self.hosted_for_home.get(worker_id)
        if entry is not None:
            self.hosted_for_home[worker_id] = (entry[0], home, entry[2])

    # -- callers that lost an actor's home -------------------------------------------------------------
    def on_actor_find(self, sender, payload, frames):
        """From a caller (through its node, or straight from a node): where is this actor?"""
        actor_id, caller = payload
        if self.swim is None:
            self._actor_not_found(actor_id, caller)
            return
        keeper = self._keepers(actor_id)[0]
        if keeper != self.node_id:
            self.send(self._keeper_address(keeper), self.wire.ACTOR_FIND, payload)
            return
        self.pending_finds.append((time.monotonic() + FIND_WAIT_S, actor_id, caller))
        self._answer_finds(time.monotonic())

    def _answer_finds(self, now):
        waiting = []
        for deadline, actor_id, caller in self.pending_finds:
            if actor_id in self.directory.actors:
                self.run_actor_actions(self.directory.handle_subscribe(actor_id, caller))
            elif actor_id in self.record_replicas and now < deadline:
                waiting.append((deadline, actor_id, caller))   # its home is not dead to us yet
            else:
                self._actor_not_found(actor_id, caller)
        self.pending_finds = waiting

    def _actor_not_found(self, actor_id, caller):
        self.send(caller, self.wire.ACTOR_STATE, (
            actor_id, "DEAD", None, "The actor died: the node that kept its record died"))
