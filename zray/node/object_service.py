"""The node daemon's object messages: its store's clients, and objects moving between nodes.

Local clients create, seal, pin, unpin and free objects in this node's store. A pin that names
a location on another live member (OBJ_PIN's third field) and finds nothing here joins or starts
a pull from that member; the reply waits until the copy is sealed here. The bookkeeping is in
zray/store/transfer.py (no sockets); this mixin decodes messages, hands them to it, and sends
what it decides. See docs/architecture.md, "Objects across nodes".
"""
import os
import time
from collections import defaultdict

from ..exceptions import ObjectLostError
from ..mesh.swim import ALIVE, DEAD, LEFT, SUSPECT
from ..store import transfer


def _env_number(name, default, kind=float):
    value = os.environ.get(name)
    return kind(value) if value else default


class ObjectService:
    """Mixed into NodeDaemon (before MeshService: its mesh_tick also ticks the transfers)."""

    def _init_object_service(self):
        wire = self.wire
        self.pulls = transfer.PullManager(
            self.store,
            chunk_size=_env_number("ZRAY_PULL_CHUNK_BYTES", transfer.CHUNK_SIZE, int),
            window=_env_number("ZRAY_PULL_WINDOW", transfer.WINDOW, int),
            stall_timeout_s=_env_number("ZRAY_PULL_STALL_TIMEOUT_S", transfer.STALL_TIMEOUT_S))
        self.serves = transfer.ServeTable(
            self.store, idle_timeout_s=_env_number("ZRAY_SERVE_IDLE_TIMEOUT_S",
                                                   transfer.SERVE_IDLE_TIMEOUT_S))
        self.handlers.update({
            wire.OBJ_CREATE: self.on_obj_create,
            wire.OBJ_SEAL: self.on_obj_seal,
            wire.OBJ_PIN: self.on_obj_pin,
            wire.OBJ_UNPIN: self.on_obj_unpin,
            wire.OBJ_FREE: self.on_obj_free,
            wire.STORE_STATS: self.on_store_stats,
            wire.OBJ_PULL_REQUEST: self.on_obj_pull_request,
            wire.OBJ_PULL_REPLY: self.on_obj_pull_reply,
            wire.OBJ_CHUNK_REQUEST: self.on_obj_chunk_request,
            wire.OBJ_CHUNK: self.on_obj_chunk,
            wire.OBJ_PULL_END: self.on_obj_pull_end,
            wire.OBJ_FREE_COPIES: self.on_obj_free_copies,
        })

    # -- local clients ---------------------------------------------------------------------------
    def on_obj_create(self, sender, payload, frames):
        req_id, object_id, size, owner = payload
        try:
            offset = self.store.create(object_id, size, owner, sender)
        except Exception as exc:
            self.reply(sender, self.wire.OBJ_CREATED, req_id, None, exc)
        else:
            self.reply(sender, self.wire.OBJ_CREATED, req_id, offset)

    def on_obj_seal(self, sender, payload, frames):
        self.store.seal(payload[0], sender)
        if self.serves.waiting_seal:
            self.run_transfer_actions(self.serves.handle_sealed(payload[0], time.monotonic()))

    def on_obj_pin(self, sender, payload, frames):
        req_id, object_id = payload[0], payload[1]
        location = payload[2] if len(payload) > 2 else None
        if (location is not None and location != self.node_id
                and (self.pulls.active(object_id) or not self.store.contains(object_id))):
            self._pin_remote(sender, req_id, object_id, location)
            return
        try:
            result = self.store.pin(object_id, sender)
        except Exception as exc:
            self.reply(sender, self.wire.OBJ_PINNED, req_id, None, exc)
        else:
            self.reply(sender, self.wire.OBJ_PINNED, req_id, result)

    def on_obj_unpin(self, sender, payload, frames):
        for object_id in payload[0]:
            self.store.unpin(object_id, sender)

    def on_obj_free(self, sender, payload, frames):
        """From the owner: (object_ids[, locations]). Frees the copy here, and has the
        location node (which tells the nodes it served copies to) free its own."""
        self._free_objects(payload[0], payload[1] if len(payload) > 1 else None)

    def on_store_stats(self, sender, payload, frames):
        stats = self.store.stats()
        stats.update({
            "pulls_started": self.pulls.started, "pulls_completed": self.pulls.completed,
            "pulls_failed": self.pulls.failed, "pulls_active": len(self.pulls.pulls),
            "bytes_pulled": self.pulls.bytes_received, "pulls_served": self.serves.served,
            "serves_active": len(self.serves.serves), "bytes_served": self.serves.bytes_sent,
        })
        self.reply(sender, self.wire.STORE_STATS_REPLY, payload[0], stats)

    # -- pulling (this node reads) -----------------------------------------------------------------
    def _pin_remote(self, reader, req_id, object_id, location):
        address = None
        if not self.pulls.active(object_id):
            address, why = self._member_address(location)
            if address is None:
                self.reply(reader, self.wire.OBJ_PINNED, req_id, None, ObjectLostError(
                    object_id.hex(), f"Object {object_id.hex()} is lost: it is stored on node "
                                     f"{location[:12]}, which {why}"))
                return
        self.run_transfer_actions(self.pulls.handle_pin(
            object_id, reader, req_id, location, address, time.monotonic()))

    def _member_address(self, node_id):
        """(tcp address, None) of a live member, else (None, why not)."""
        if self.swim is None:
            return None, "this node cannot reach: it is not in a mesh"
        member = self.swim.members.get(node_id)
        if member is None:
            return None, "is not a member of this node's mesh"
        if member.state not in (ALIVE, SUSPECT):
            return None, f"is {member.state}"
        return member.address, None

    def on_obj_pull_reply(self, sender, payload, frames):
        pull_id, size, error = payload
        self.run_transfer_actions(self.pulls.handle_pull_reply(sender, pull_id, size, error,
                                                               time.monotonic()))

    def on_obj_chunk(self, sender, payload, frames):
        pull_id, offset, error = payload
        data = frames[0].buffer if frames else b""
        self.run_transfer_actions(self.pulls.handle_chunk(sender, pull_id, offset, data, error,
                                                          time.monotonic()))

    # -- serving (a peer reads from this node) -----------------------------------------------------
    def on_obj_pull_request(self, sender, payload, frames):
        pull_id, object_id = payload
        self.run_transfer_actions(self.serves.handle_pull_request(sender, pull_id, object_id,
                                                                  time.monotonic()))

    def on_obj_chunk_request(self, sender, payload, frames):
        pull_id, offset, length = payload
        self.run_transfer_actions(self.serves.handle_chunk_request(sender, pull_id, offset, length,
                                                                   time.monotonic()))

    def on_obj_pull_end(self, sender, payload, frames):
        pull_id, kept = payload
        self.serves.handle_pull_end(sender, pull_id, kept)

    # -- freeing every copy ------------------------------------------------------------------------
    def on_obj_free_copies(self, sender, payload, frames):
        self._free_objects(payload[0])

    def _free_objects(self, object_ids, locations=None):
        forward = None       # address -> object_ids: the frees that go on to other nodes
        node_id = self.node_id
        for i, object_id in enumerate(object_ids):
            self.store.free(object_id)
            location = locations[i] if locations else None
            if location is not None and location != node_id:
                address, _ = self._member_address(location)
                if address is not None:
                    forward = forward or defaultdict(list)
                    forward[address].append(object_id)
            if not (self.pulls.by_object or self.serves.copies or self.serves.waiting_seal):
                continue     # the common case, one node: no transfer knows this object
            for action in self.pulls.handle_freed(object_id) + self.serves.handle_freed(object_id):
                if action[0] == "free_copies":
                    forward = forward or defaultdict(list)
                    forward[action[1]].append(action[2])
                else:
                    self.run_transfer_actions([action])
        for address, ids in (forward or {}).items():
            self.send(address, self.wire.OBJ_FREE_COPIES, (ids,))

    # -- time and membership -----------------------------------------------------------------------
    def mesh_tick(self):
        super().mesh_tick()
        if self.pulls.pulls or self.serves.active():
            self._transfer_tick(time.monotonic())

    def _transfer_tick(self, now):
        actions = []
        if self.swim is not None:
            members = self.swim.members
            for node_id in self.pulls.sources():
                member = members.get(node_id)
                if member is None or member.state in (DEAD, LEFT):
                    actions += self.pulls.handle_source_gone(node_id, member.state if member else "gone")
            if self.serves.active():
                states = {m.address: m.state for m in members.values()}
                for peer in self.serves.peers():
                    if states.get(peer) in (DEAD, LEFT):
                        self.serves.handle_peer_gone(peer)
        actions += self.pulls.tick(now)
        actions += self.serves.tick(now)
        self.run_transfer_actions(actions)

    # -- actions of the transfer state machines ----------------------------------------------------
    def run_transfer_actions(self, actions):
        wire = self.wire
        for action in actions:
            kind = action[0]
            if kind == "chunk":
                _, peer, pull_id, offset, view, error = action
                self.send(peer, wire.OBJ_CHUNK, (pull_id, offset, error), [view] if view is not None else ())
            elif kind == "chunk_request":
                _, address, pull_id, offset, length = action
                self.send(address, wire.OBJ_CHUNK_REQUEST, (pull_id, offset, length))
            elif kind == "request":
                _, address, pull_id, object_id = action
                self.send(address, wire.OBJ_PULL_REQUEST, (pull_id, object_id))
            elif kind == "pull_reply":
                _, peer, pull_id, size, error = action
                self.send(peer, wire.OBJ_PULL_REPLY, (pull_id, size, error))
            elif kind == "end":
                _, address, pull_id, kept = action
                self.send(address, wire.OBJ_PULL_END, (pull_id, kept))
            elif kind == "pinned":
                _, object_id, waiters = action
                for reader, req_id in waiters:
                    if reader not in self.clients:
                        continue     # it died while waiting: a pin for it would never be given back
                    try:
                        result = self.store.pin(object_id, reader)
                    except Exception as exc:
                        self.reply(reader, wire.OBJ_PINNED, req_id, None, exc)
                    else:
                        self.reply(reader, wire.OBJ_PINNED, req_id, result)
            elif kind == "failed":
                _, waiters, error = action
                for reader, req_id in waiters:
                    self.reply(reader, wire.OBJ_PINNED, req_id, None, error)
            elif kind == "free_copies":
                self.send(action[1], wire.OBJ_FREE_COPIES, ([action[2]],))
