"""The node daemon's object messages: its store's clients, and objects moving between nodes.

Local clients create, seal, pin, unpin and free objects in this node's store. A pin that names
a location on another live member (OBJ_PIN's third field) and finds nothing here joins or starts
a pull from that member; the reply waits until the copy is sealed here. The bookkeeping is in
zray/store/transfer.py (no sockets); this service decodes messages, hands them to it, and sends
what it decides. See docs/architecture.md, "Objects across nodes". A member that dies fails
the pulls from it and drops the pulls it was served (member_gone).

In a mesh, object bytes travel on the data channel (zray/transport/data_channel.py) unless
ZRAY_DATA_CHANNEL=curve: this node's DataServer serves the transfers it granted (one grant per
served pull, revoked when the serve ends), its DataClient streams the pulls the transfer machine
hands it; their ends come back through `tick` (the daemon's loop wakes on `wake_fds()`).
"""
import logging
import os
from collections import defaultdict

from ..exceptions import ObjectLostError
from ..mesh.swim import ALIVE, SUSPECT
from ..store import transfer
from ..store.object_store import SpillPending
from ..transport import wire
from .service import Service

log = logging.getLogger("zray.node")

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
        self.data_server = None
        self.data_client = None
        self.pending_creates = []      # [(sender, req_id, object_id, size, owner)]: wait for spills

    def open_data_channel(self, cluster_secret, host, mesh_address):
        """Serve and pull object bytes on plain TCP authenticated by the cluster secret (the
        default in a mesh), unless ZRAY_DATA_CHANNEL=curve keeps them on the CURVE channel."""
        from ..transport import data_channel
        if data_channel.mode() != data_channel.MODE_TCP:
            log.info("object bytes stay on the CURVE channel (%s=curve)", data_channel.MODE_ENV)
            return
        key = data_channel.derive_key(cluster_secret)
        self.data_server = data_channel.DataServer(key, host, self.store.buffer,
                                                   data_channel.max_rate(),
                                                   data_channel.max_connections())
        self.data_client = data_channel.DataClient(key, mesh_address, self.store.buffer,
                                                   self.pulls.stall_timeout_s)
        log.info("data channel on %s", self.data_server.endpoint)

    def wake_fds(self):
        """File descriptors that become readable when the data channel or the spill thread
        has news for tick()."""
        fds = [self.data_client.wake_fd] if self.data_client is not None else []
        if self.store.spiller is not None:
            fds.append(self.store.spiller.wake_fd)
        return fds

    def close(self):
        for part in (self.data_client, self.data_server):
            if part is not None:
                part.close()
        self.data_client = self.data_server = None

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
        if self.pending_creates:      # behind creates that wait for spills: in order
            self.pending_creates.append((sender, req_id, object_id, size, owner))
        elif not self._create(sender, req_id, object_id, size, owner):
            self.pending_creates.append((sender, req_id, object_id, size, owner))

    def _create(self, sender, req_id, object_id, size, owner):
        """Answer a create; False when it waits for spills under way (kept in the queue)."""
        try:
            offset = self.store.create(object_id, size, owner, sender, can_wait=True)
        except SpillPending:
            return False
        except Exception as exc:
            self.ctx.reply(sender, wire.OBJ_CREATED, req_id, None, exc)
        else:
            self.ctx.reply(sender, wire.OBJ_CREATED, req_id, offset)
        return True

    def _spills_done(self):
        """The spill thread's news: free what was written, then answer waiting creates."""
        for object_id, path, error in self.store.spiller.take_done():
            self.store.handle_spilled(object_id, path, error)
        waiting, self.pending_creates = self.pending_creates, []
        for i, (sender, req_id, object_id, size, owner) in enumerate(waiting):
            if not self.ctx.clients.is_client(sender):
                continue       # it died waiting
            if not self._create(sender, req_id, object_id, size, owner):
                self.pending_creates = waiting[i:]
                return

    def on_obj_seal(self, sender, payload, frames):
        self.store.seal(payload[0], sender)
        if self.serves.waiting_seal:
            self.run_transfer_actions(self.serves.handle_sealed(payload[0], self.ctx.now()))

    def on_obj_pin(self, sender, payload, frames):
        # (A pin that must restore a spilled object while memory is full gets a file-backed
        # copy at once: the loop never waits for disk writes.)
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
            "bytes_pulled": self.pulls.bytes_received + (
                self.data_client.bytes_received if self.data_client else 0),
            "pulls_served": self.serves.served,
            "serves_active": len(self.serves.serves),
            "bytes_served": self.serves.bytes_sent + (
                self.data_server.bytes_sent if self.data_server else 0),
            "data_channel": self.data_server.endpoint if self.data_server else None,
            "bytes_streamed_in": self.data_client.bytes_received if self.data_client else 0,
            "bytes_streamed_out": self.data_server.bytes_sent if self.data_server else 0,
            "data_refused": self.data_server.refused if self.data_server else 0,
            "data_connections": len(self.data_server._conns) if self.data_server else 0,
            "data_connections_peak": self.data_server.peak_connections if self.data_server else 0,
            "data_connections_evicted": self.data_server.evicted if self.data_server else 0,
            "data_connections_waited": self.data_server.waited if self.data_server else 0,
            "stream_fallbacks": self.pulls.fallbacks,
            "pulls_cancelling": len(self.pulls.cancelling),
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
        pull_id, size, error = payload[:3]
        # The source's data channel, when it offers one and this node pulls that way too.
        endpoint = payload[3] if len(payload) > 3 and self.data_client is not None else None
        self.run_transfer_actions(self.pulls.handle_pull_reply(sender, pull_id, size, error,
                                                               self.ctx.now(), endpoint))

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
        self.run_transfer_actions(self.serves.handle_pull_end(sender, pull_id, kept))

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
        if self.store.spilling or self.pending_creates:
            self._spills_done()
        if self.data_client is not None:
            for pull_id, failure in self.data_client.take_done():
                self.run_transfer_actions(self.pulls.handle_stream_done(pull_id, failure, now))
        if self.data_server is not None and self.serves.serves:
            for peer, pull_id in self.data_server.take_active():
                self.serves.handle_activity(peer, pull_id, now)
        if self.pulls.pulls or self.serves.active():
            self.run_transfer_actions(self.pulls.tick(now) + self.serves.tick(now))

    def member_gone(self, member):
        actions = []
        if member.name in self.pulls.sources():
            actions = self.pulls.handle_source_gone(member.name, member.state)
        if member.address in self.serves.peers():
            actions += self.serves.handle_peer_gone(member.address)
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
                payload = (action.pull_id, action.size, action.error)
                if self.data_server is not None and action.size and action.base is not None:
                    self.data_server.grant(action.peer, action.pull_id, action.base, action.size)
                    payload += (self.data_server.endpoint,)
                self.ctx.send(action.peer, wire.OBJ_PULL_REPLY, payload)
            elif kind is transfer.StreamPull:
                self.data_client.start(action.pull_id, action.endpoint, action.base, action.size)
            elif kind is transfer.CancelStream:
                self.data_client.cancel(action.pull_id)
            elif kind is transfer.Unserved:
                if self.data_server is not None:
                    self.data_server.revoke(action.peer, action.pull_id)
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
