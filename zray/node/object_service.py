"""The node daemon's object messages: its store's clients, and objects moving between nodes.

Local clients create, seal, pin, unpin and free objects in this node's store. A pin that names
a location on another live member (OBJ_PIN's third field) and finds nothing here joins or starts
a pull from that member; the reply waits until the copy is sealed here. The bookkeeping is in
zray/store/transfer.py (no sockets); this service decodes messages, hands them to it, and sends
what it decides. See docs/architecture.md, "Objects across nodes". A member that dies fails
the pulls from it and drops the pulls it was served (member_gone).
"""
import os
from collections import defaultdict

from ..exceptions import ObjectLostError
from ..mesh.swim import ALIVE, SUSPECT
from ..store import transfer
from ..transport import wire
from .service import Service


def _env_number(name, default, kind=float):
    value = os.environ.get(name)
    return kind(value) if value else default


class ObjectService(Service):
    def __init__(self, ctx):
        self.ctx = ctx
        self.store = ctx.store
        self.node_id = ctx.node_id
        self.membership = ctx.membership
        self.pulls = transfer.PullManager(
            self.store,
            chunk_size=_env_number("ZRAY_PULL_CHUNK_BYTES", transfer.CHUNK_SIZE, int),
            window=_env_number("ZRAY_PULL_WINDOW", transfer.WINDOW, int),
            stall_timeout_s=_env_number("ZRAY_PULL_STALL_TIMEOUT_S", transfer.STALL_TIMEOUT_S))
        self.serves = transfer.ServeTable(
            self.store, idle_timeout_s=_env_number("ZRAY_SERVE_IDLE_TIMEOUT_S",
                                                   transfer.SERVE_IDLE_TIMEOUT_S))

    def handlers(self):
        return {
            wire.OBJ_CREATE: self.on_obj_create,
            wire.OBJ_SEAL: self.on_obj_seal,
            wire.OBJ_PIN: self.on_obj_pin,
            wire.OBJ_UNPIN: self.on_obj_unpin,
            wire.OBJ_FREE: self.on_obj_free,
            wire.STORE_STATS: self.on_store_stats,
            wire.LIST_OBJECTS: self.on_list_objects,
            wire.OBJ_PULL_REQUEST: self.on_obj_pull_request,
            wire.OBJ_PULL_REPLY: self.on_obj_pull_reply,
            wire.OBJ_CHUNK_REQUEST: self.on_obj_chunk_request,
            wire.OBJ_CHUNK: self.on_obj_chunk,
            wire.OBJ_PULL_END: self.on_obj_pull_end,
            wire.OBJ_FREE_COPIES: self.on_obj_free_copies,
        }

    def on_list_objects(self, sender, payload, frames):
        self.ctx.reply(sender, wire.LIST_OBJECTS_REPLY, payload[0], self.store.list_objects())

    # -- local clients ---------------------------------------------------------------------------
    def on_obj_create(self, sender, payload, frames):
        req_id, object_id, size, owner = payload
        try:
            offset = self.store.create(object_id, size, owner, sender)
        except Exception as exc:
            self.ctx.reply(sender, wire.OBJ_CREATED, req_id, None, exc)
        else:
            self.ctx.reply(sender, wire.OBJ_CREATED, req_id, offset)

    def on_obj_seal(self, sender, payload, frames):
        self.store.seal(payload[0], sender)
        if self.serves.waiting_seal:
            self.run_transfer_actions(self.serves.handle_sealed(payload[0], self.ctx.now()))

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
            self.ctx.reply(sender, wire.OBJ_PINNED, req_id, None, exc)
        else:
            self.ctx.reply(sender, wire.OBJ_PINNED, req_id, result)

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
        self.ctx.reply(sender, wire.STORE_STATS_REPLY, payload[0], stats)

    # -- pulling (this node reads) -----------------------------------------------------------------
    def _pin_remote(self, reader, req_id, object_id, location):
        address = None
        if not self.pulls.active(object_id):
            address, why = self._member_address(location)
            if address is None:
                self.ctx.reply(reader, wire.OBJ_PINNED, req_id, None, ObjectLostError(
                    object_id.hex(), f"Object {object_id.hex()} is lost: it is stored on node "
                                     f"{location[:12]}, which {why}"))
                return
        self.run_transfer_actions(self.pulls.handle_pin(
            object_id, reader, req_id, location, address, self.ctx.now()))

    def _member_address(self, node_id):
        """(tcp address, None) of a live member, else (None, why not)."""
        if not self.membership.in_mesh:
            return None, "this node cannot reach: it is not in a mesh"
        state = self.membership.state_of(node_id)
        if state is None:
            return None, "is not a member of this node's mesh"
        if state not in (ALIVE, SUSPECT):
            return None, f"is {state}"
        return self.membership.address_of(node_id), None

    def on_obj_pull_reply(self, sender, payload, frames):
        pull_id, size, error = payload
        self.run_transfer_actions(self.pulls.handle_pull_reply(sender, pull_id, size, error,
                                                               self.ctx.now()))

    def on_obj_chunk(self, sender, payload, frames):
        pull_id, offset, error = payload
        data = frames[0].buffer if frames else b""
        self.run_transfer_actions(self.pulls.handle_chunk(sender, pull_id, offset, data, error,
                                                          self.ctx.now()))

    # -- serving (a peer reads from this node) -----------------------------------------------------
    def on_obj_pull_request(self, sender, payload, frames):
        pull_id, object_id = payload
        self.run_transfer_actions(self.serves.handle_pull_request(sender, pull_id, object_id,
                                                                  self.ctx.now()))

    def on_obj_chunk_request(self, sender, payload, frames):
        pull_id, offset, length = payload
        self.run_transfer_actions(self.serves.handle_chunk_request(sender, pull_id, offset, length,
                                                                   self.ctx.now()))

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
                if type(action) is transfer.FreeCopies:
                    forward = forward or defaultdict(list)
                    forward[action.peer].append(action.object_id)
                else:
                    self.run_transfer_actions([action])
        for address, ids in (forward or {}).items():
            self.ctx.send(address, wire.OBJ_FREE_COPIES, (ids,))

    # -- time and membership -----------------------------------------------------------------------
    def tick(self, now):
        if self.pulls.pulls or self.serves.active():
            self.run_transfer_actions(self.pulls.tick(now) + self.serves.tick(now))

    def member_gone(self, member):
        actions = []
        if member.name in self.pulls.sources():
            actions = self.pulls.handle_source_gone(member.name, member.state)
        if member.address in self.serves.peers():
            self.serves.handle_peer_gone(member.address)
        self.run_transfer_actions(actions)

    def client_gone(self, gone):
        if gone.local:
            self.store.client_gone(gone.address)

    # -- actions of the transfer state machines ----------------------------------------------------
    def run_transfer_actions(self, actions):
        for action in actions:
            kind = type(action)
            if kind is transfer.SendChunk:
                self.ctx.send(action.peer, wire.OBJ_CHUNK,
                              (action.pull_id, action.offset, action.error),
                              [action.view] if action.view is not None else ())
            elif kind is transfer.RequestChunk:
                self.ctx.send(action.source_address, wire.OBJ_CHUNK_REQUEST,
                              (action.pull_id, action.offset, action.length))
            elif kind is transfer.RequestPull:
                self.ctx.send(action.source_address, wire.OBJ_PULL_REQUEST,
                              (action.pull_id, action.object_id))
            elif kind is transfer.ReplyPull:
                self.ctx.send(action.peer, wire.OBJ_PULL_REPLY,
                              (action.pull_id, action.size, action.error))
            elif kind is transfer.EndPull:
                self.ctx.send(action.source_address, wire.OBJ_PULL_END,
                              (action.pull_id, action.kept))
            elif kind is transfer.Pinned:
                self._pin_for_waiters(action.object_id, action.waiters)
            elif kind is transfer.PullFailed:
                for reader, req_id in action.waiters:
                    self.ctx.reply(reader, wire.OBJ_PINNED, req_id, None, action.error)
            elif kind is transfer.FreeCopies:
                self.ctx.send(action.peer, wire.OBJ_FREE_COPIES, ([action.object_id],))
            else:
                raise TypeError(f"unknown transfer action {action!r}")

    def _pin_for_waiters(self, object_id, waiters):
        for reader, req_id in waiters:
            if not self.ctx.clients.is_client(reader):
                continue     # it died while waiting: a pin for it would never be given back
            try:
                result = self.store.pin(object_id, reader)
            except Exception as exc:
                self.ctx.reply(reader, wire.OBJ_PINNED, req_id, None, exc)
            else:
                self.ctx.reply(reader, wire.OBJ_PINNED, req_id, result)
