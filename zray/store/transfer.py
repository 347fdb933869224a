"""Objects moving between nodes: the bookkeeping of both ends, with no sockets.

A reader's node *pulls* an object it does not hold from the node that holds the primary copy
(the location its owner reports). `PullManager` runs on the reader's node, `ServeTable` on the
source's; both are plain objects over an `ObjectStore`: events go in through `handle_*` and
`tick`, actions come out as frozen records (below) that the daemon
(zray/node/object_service.py) turns into messages. The conversation, one pull (messages in zray/transport/wire.py, 100-105):

    puller                                   source
      OBJ_PULL_REQUEST (pull_id, object_id) ->     pins the object for the transfer
      <- OBJ_PULL_REPLY (pull_id, size, error)
    allocates `size` bytes in its own store (unsealed, pinned by the pull)
      OBJ_CHUNK_REQUEST (pull_id, offset, n) ->    at most WINDOW requests outstanding
      <- OBJ_CHUNK (pull_id, offset, error) + the bytes, sent from the source's region
    writes each chunk into its region at once, asks for the next; when all arrived: seals
      OBJ_PULL_END (pull_id, kept) ->              unpins; remembers the puller holds a copy

With a data channel (zray/transport/data_channel.py, the default in a mesh), the source's
reply names its data endpoint, and the chunk requests are replaced by one stream:

      <- OBJ_PULL_REPLY (pull_id, size, error, data endpoint)
    StreamPull: a thread of the puller's node reads all `size` bytes over plain TCP straight
    into the region; its end comes back as handle_stream_done (seal, or fail)
      OBJ_PULL_END (pull_id, kept) ->

A streamed pull that fails (source gone, freed, ...) is answered at once, but its space is
given back only when the stream reports its end (CancelStream stops it): until then a thread
may still write there. A stream that cannot connect falls back to chunks over ZeroMQ.

The receiver asks for every chunk, so it alone bounds what is in flight: WINDOW * CHUNK_SIZE
bytes (8 MiB by default) whatever the object's size, and a 1 GB object needs no memory beyond
its place in the store. One pull per object per node: pins that arrive while it runs wait for
it. Defaults and what they bound:

    CHUNK_SIZE = 1 MiB        a message: large enough that per-message costs vanish, small
                              enough that a membership ping on the same connection waits little
    WINDOW = 8                chunks in flight: in-flight memory = WINDOW * CHUNK_SIZE; 8 MiB
                              covers the bandwidth-delay product of 10 Gb/s at 6 ms round trip
                              (on loopback 1 MiB x 8 and 4 MiB x 4 measure the same)
    STALL_TIMEOUT_S = 15      a pull with no reply or chunk for this long fails
                              (ObjectFetchTimedOutError, an ObjectLostError)
    SERVE_IDLE_TIMEOUT_S = 60 a served pull with no request for this long is dropped (its pin
                              is given back): the puller died without saying so
"""
import itertools
from dataclasses import dataclass

from ..exceptions import ObjectFetchTimedOutError, ObjectLostError

CHUNK_SIZE = 1 << 20
WINDOW = 8
STALL_TIMEOUT_S = 15.0
SERVE_IDLE_TIMEOUT_S = 60.0


# -- actions of PullManager (the reader's node) ---------------------------------------------------
@dataclass(frozen=True)
class RequestPull:
    source_address: str
    pull_id: int
    object_id: bytes


@dataclass(frozen=True)
class RequestChunk:
    source_address: str
    pull_id: int
    offset: int
    length: int


@dataclass(frozen=True)
class EndPull:
    source_address: str
    pull_id: int
    kept: bool                 # the puller now holds a copy (freed with the primary)


@dataclass(frozen=True)
class StreamPull:
    source_address: str
    pull_id: int
    endpoint: str              # the source's data channel
    base: int                  # where the copy goes in the local region
    size: int


@dataclass(frozen=True)
class CancelStream:
    pull_id: int               # its end still comes back through handle_stream_done


@dataclass(frozen=True)
class Pinned:
    object_id: bytes
    waiters: list              # [(reader, req_id)]: sealed here, pin it for each


@dataclass(frozen=True)
class PullFailed:
    waiters: list              # [(reader, req_id)]: answer each with the error
    error: Exception


# -- actions of ServeTable (the source's node) ------------------------------------------------------
@dataclass(frozen=True)
class ReplyPull:
    peer: str
    pull_id: int
    size: int                  # None with an error
    error: Exception = None
    base: int = None           # where the object lies in the source's region (to grant a stream)


@dataclass(frozen=True)
class Unserved:
    peer: str                  # the transfer (peer, pull_id) is over: its pin was given back
    pull_id: int


@dataclass(frozen=True)
class SendChunk:
    peer: str
    pull_id: int
    offset: int
    view: memoryview           # a view of the region (None with an error)
    error: Exception = None


@dataclass(frozen=True)
class FreeCopies:
    peer: str                  # a node that took a copy of the freed object
    object_id: bytes


def _node(node_id):
    return (node_id or "?")[:12]


class Pull:
    __slots__ = ("pull_id", "object_id", "source_node", "source_address", "client", "waiters",
                 "size", "base", "next_offset", "outstanding", "received", "last_progress",
                 "streaming")

    def __init__(self, pull_id, object_id, source_node, source_address, now):
        self.pull_id = pull_id
        self.object_id = object_id
        self.source_node = source_node
        self.source_address = source_address
        self.client = f"pull#{pull_id}"     # pins the unsealed copy while it is written
        self.waiters = []                   # [(reader address, req_id)]
        self.size = None                    # known once the source replied
        self.base = None                    # the copy's offset in the local region
        self.next_offset = 0
        self.outstanding = {}               # chunk offset -> length, requested, not arrived
        self.received = 0
        self.last_progress = now
        self.streaming = False              # a data-channel thread may write into its space


class PullManager:
    """The reader's node: one pull per object, chunks written straight into the store.

    Actions out: RequestPull, RequestChunk, StreamPull, CancelStream, EndPull, Pinned,
    PullFailed.
    """

    def __init__(self, store, chunk_size=CHUNK_SIZE, window=WINDOW, stall_timeout_s=STALL_TIMEOUT_S):
        if chunk_size <= 0 or window <= 0 or stall_timeout_s <= 0:
            raise ValueError("chunk_size, window and stall_timeout_s must be positive")
        self.store = store
        self.chunk_size = chunk_size
        self.window = window
        self.stall_timeout_s = stall_timeout_s
        self.pulls = {}          # pull_id -> Pull
        self.by_object = {}      # object_id -> Pull
        self.cancelling = {}     # pull_id -> Pull: failed while streaming, space still held
        self.deferred = {}       # object_id -> Pull: waits for a cancelling pull of that object
        self.fallbacks = 0       # streams that could not connect and used chunks instead
        self.bytes_streamed = 0  # bytes of completed streamed pulls (bytes_received: chunks)
        self._ids = itertools.count(1)
        self.started = 0
        self.completed = 0
        self.failed = 0
        self.bytes_received = 0

    def active(self, object_id):
        return object_id in self.by_object

    def sources(self):
        return {p.source_node for p in self.pulls.values()}

    # -- events ----------------------------------------------------------------------------------
    def handle_pin(self, object_id, reader, req_id, source_node, source_address, now):
        """A reader wants an object held by `source_node`: join its pull or start one."""
        pull = self.by_object.get(object_id)
        if pull is not None:
            pull.waiters.append((reader, req_id))
            return []
        pull = Pull(next(self._ids), object_id, source_node, source_address, now)
        pull.waiters.append((reader, req_id))
        self.pulls[pull.pull_id] = pull
        self.by_object[object_id] = pull
        self.started += 1
        if any(p.object_id == object_id for p in self.cancelling.values()):
            # The space of a failed pull of this object is still written by its stream: this
            # one starts when that stream has ended.
            self.deferred[object_id] = pull
            return []
        return [RequestPull(source_address, pull.pull_id, object_id)]

    def handle_pull_reply(self, source_address, pull_id, size, error, now, endpoint=None):
        pull = self.pulls.get(pull_id)
        if pull is None or pull.source_address != source_address or pull.size is not None:
            # Given up on meanwhile: the source pinned the object for us, let it go.
            return [] if error is not None else [EndPull(source_address, pull_id, False)]
        if error is not None:
            if isinstance(error, ObjectLostError):
                error = ObjectLostError(pull.object_id.hex(), (
                    f"Object {pull.object_id.hex()} is lost: node {_node(pull.source_node)} "
                    f"({pull.source_address}), where its owner says it is stored, does not have "
                    f"it ({error})"))
            return self._fail(pull, error, end=False)
        try:
            pull.base = self.store.create(pull.object_id, size, None, pull.client,
                                          copy_from=pull.source_node)
        except Exception as exc:      # the local store is full: its own error, as for a put
            return self._fail(pull, exc, end=True)
        pull.size = size
        pull.last_progress = now
        if size == 0:
            return self._complete(pull)
        if endpoint is not None:
            pull.streaming = True
            return [StreamPull(source_address, pull_id, endpoint, pull.base, size)]
        return self._request_more(pull)

    def handle_stream_done(self, pull_id, failure, now):
        """A stream ended: failure None (every byte is in place) or (kind, detail), kinds of
        zray/transport/data_channel.py."""
        pull = self.cancelling.pop(pull_id, None)
        if pull is not None:          # failed meanwhile: its space can go now
            self.store.abort(pull.object_id, pull.client)
            waiting = self.deferred.pop(pull.object_id, None)
            if waiting is None or self.pulls.get(waiting.pull_id) is not waiting:
                return []
            waiting.last_progress = now
            return [RequestPull(waiting.source_address, waiting.pull_id, waiting.object_id)]
        pull = self.pulls.get(pull_id)
        if pull is None or not pull.streaming:
            return []
        pull.streaming = False
        pull.last_progress = now
        if failure is None:
            pull.received = pull.size
            pull.next_offset = pull.size
            self.bytes_streamed += pull.size
            return self._complete(pull)
        kind, detail = failure
        if kind == "connect":         # no data channel to that node: chunks over ZeroMQ
            self.fallbacks += 1
            return self._request_more(pull)
        if kind == "timeout":
            return self._fail(pull, ObjectFetchTimedOutError(pull.object_id.hex(), (
                f"Object {pull.object_id.hex()} could not be pulled from node "
                f"{_node(pull.source_node)} ({pull.source_address}): {detail}")), end=True)
        return self._fail(pull, self._lost(pull, f"its data stream failed: {detail}"), end=True)

    def handle_chunk(self, source_address, pull_id, offset, data, error, now):
        pull = self.pulls.get(pull_id)
        if (pull is None or pull.size is None or pull.source_address != source_address
                or pull.streaming):
            return []     # a pull already given up: its late chunks are dropped
        if error is not None:
            return self._fail(pull, self._lost(pull, f"the source failed to send it: {error}"), end=True)
        data = memoryview(data)
        length = pull.outstanding.pop(offset, None)
        if length is None or data.nbytes != length:
            return self._fail(pull, self._lost(
                pull, f"the source sent {data.nbytes} bytes at offset {offset}, which were not "
                      f"asked for"), end=True)
        start = pull.base + offset
        self.store.view[start:start + length] = data.cast("B") if data.format != "B" else data
        pull.received += length
        self.bytes_received += length
        pull.last_progress = now
        if pull.received == pull.size:
            return self._complete(pull)
        return self._request_more(pull)

    def handle_source_gone(self, source_node, state):
        """The source member is dead or has left: every pull from it fails."""
        actions = []
        for pull in [p for p in self.pulls.values() if p.source_node == source_node]:
            actions += self._fail(pull, self._lost(pull, f"that node is {state}"), end=False)
        return actions

    def handle_freed(self, object_id):
        """The owner freed the object while it was being pulled here."""
        pull = self.by_object.get(object_id)
        if pull is None:
            return []
        return self._fail(pull, ObjectLostError(object_id.hex(), (
            f"Object {object_id.hex()} was freed by its owner while it was being pulled from "
            f"node {_node(pull.source_node)}")), end=True)

    def tick(self, now):
        actions = []
        # A streaming pull has the stall timeout on its socket instead.
        for pull in [p for p in self.pulls.values()
                     if not p.streaming and now - p.last_progress > self.stall_timeout_s]:
            what = "no reply" if pull.size is None else (
                f"no data after {pull.received} of {pull.size} bytes")
            err = ObjectFetchTimedOutError(pull.object_id.hex(), (
                f"Object {pull.object_id.hex()} could not be pulled from node "
                f"{_node(pull.source_node)} ({pull.source_address}): {what} for "
                f"{self.stall_timeout_s:g} s"))
            actions += self._fail(pull, err, end=True)
        return actions

    # -- internals -------------------------------------------------------------------------------
    def _request_more(self, pull):
        actions = []
        while len(pull.outstanding) < self.window and pull.next_offset < pull.size:
            length = min(self.chunk_size, pull.size - pull.next_offset)
            pull.outstanding[pull.next_offset] = length
            actions.append(RequestChunk(pull.source_address, pull.pull_id, pull.next_offset, length))
            pull.next_offset += length
        return actions

    def _complete(self, pull):
        self._forget(pull)
        self.store.seal(pull.object_id, pull.client)
        self.completed += 1
        return [EndPull(pull.source_address, pull.pull_id, True),
                Pinned(pull.object_id, pull.waiters)]

    def _fail(self, pull, error, end):
        self._forget(pull)
        actions = []
        if pull.streaming:
            self.cancelling[pull.pull_id] = pull     # aborted when the stream has ended
            actions.append(CancelStream(pull.pull_id))
        elif pull.base is not None:
            self.store.abort(pull.object_id, pull.client)
        self.failed += 1
        actions.append(PullFailed(pull.waiters, error))
        if end:
            actions.append(EndPull(pull.source_address, pull.pull_id, False))
        return actions

    def _forget(self, pull):
        self.pulls.pop(pull.pull_id, None)
        if self.by_object.get(pull.object_id) is pull:
            del self.by_object[pull.object_id]
        if self.deferred.get(pull.object_id) is pull:
            del self.deferred[pull.object_id]

    @staticmethod
    def _lost(pull, why):
        return ObjectLostError(pull.object_id.hex(), (
            f"Object {pull.object_id.hex()} is lost: it was being pulled from node "
            f"{_node(pull.source_node)} ({pull.source_address}) and {why}"))


class Serve:
    __slots__ = ("peer", "pull_id", "object_id", "client", "base", "size", "last_active")

    def __init__(self, peer, pull_id, object_id, client, base, size, now):
        self.peer = peer
        self.pull_id = pull_id
        self.object_id = object_id
        self.client = client
        self.base = base
        self.size = size
        self.last_active = now


class ServeTable:
    """The source's node: pins what it serves, hands out chunk views, remembers copy holders.

    Actions out: ReplyPull, SendChunk, FreeCopies, Unserved.
    """

    def __init__(self, store, idle_timeout_s=SERVE_IDLE_TIMEOUT_S):
        self.store = store
        self.idle_timeout_s = idle_timeout_s
        self.serves = {}          # (peer, pull_id) -> Serve
        self.waiting_seal = {}    # object_id -> [(peer, pull_id, since)]: asked before sealed
        self.copies = {}          # object_id -> {peer}: nodes that took (or are taking) a copy
        self.served = 0
        self.bytes_sent = 0

    def active(self):
        return bool(self.serves or self.waiting_seal)

    def peers(self):
        peers = {s.peer for s in self.serves.values()}
        for waiting in self.waiting_seal.values():
            peers.update(p for p, _, _ in waiting)
        return peers

    # -- events ----------------------------------------------------------------------------------
    def handle_pull_request(self, peer, pull_id, object_id, now):
        obj = self.store.objects.get(object_id)
        if obj is not None and not obj.sealed and not obj.free_requested and obj.copy_from is None:
            # Its writer has not sealed it yet (the seal and this request come from different
            # processes, so they may cross): answer once it is sealed.
            self.waiting_seal.setdefault(object_id, []).append((peer, pull_id, now))
            self.copies.setdefault(object_id, set()).add(peer)
            return []
        return [self._start(peer, pull_id, object_id, now)]

    def handle_sealed(self, object_id, now):
        return [self._start(peer, pull_id, object_id, now)
                for peer, pull_id, _ in self.waiting_seal.pop(object_id, ())]

    def handle_chunk_request(self, peer, pull_id, offset, length, now):
        serve = self.serves.get((peer, pull_id))
        if serve is None or offset < 0 or length <= 0 or offset + length > serve.size:
            return [SendChunk(peer, pull_id, offset, None, ObjectLostError(
                "", f"no transfer {pull_id} of {length} bytes at offset {offset} for {peer}"))]
        serve.last_active = now
        self.bytes_sent += length
        start = serve.base + offset
        return [SendChunk(peer, pull_id, offset, self.store.view[start:start + length])]

    def handle_activity(self, peer, pull_id, now):
        """The data channel sent bytes of this transfer: it is not idle."""
        serve = self.serves.get((peer, pull_id))
        if serve is not None:
            serve.last_active = now

    def handle_pull_end(self, peer, pull_id, kept):
        serve = self.serves.pop((peer, pull_id), None)
        if serve is None:
            self._drop_waiting(lambda p, i: p == peer and i == pull_id)
            return []
        self.store.unpin(serve.object_id, serve.client)
        if not kept:
            holders = self.copies.get(serve.object_id)
            if holders is not None and not any(
                    s.peer == peer and s.object_id == serve.object_id for s in self.serves.values()):
                holders.discard(peer)
                if not holders:
                    del self.copies[serve.object_id]
        return [Unserved(peer, pull_id)]

    def handle_peer_gone(self, peer):
        """A puller's node died or left: give back what it pinned; its copies died with it."""
        actions = []
        for key in [k for k, s in self.serves.items() if s.peer == peer]:
            serve = self.serves.pop(key)
            self.store.unpin(serve.object_id, serve.client)
            actions.append(Unserved(peer, serve.pull_id))
        self._drop_waiting(lambda p, i: p == peer)
        for object_id in [o for o, holders in self.copies.items() if peer in holders]:
            self.copies[object_id].discard(peer)
            if not self.copies[object_id]:
                del self.copies[object_id]
        return actions

    def handle_freed(self, object_id):
        """The object was freed on this node: every node that took a copy frees its copy."""
        actions = [ReplyPull(peer, pull_id, None, ObjectLostError(
                        object_id.hex(), f"Object {object_id.hex()} was freed by its owner"))
                   for peer, pull_id, _ in self.waiting_seal.pop(object_id, ())]
        actions += [FreeCopies(peer, object_id) for peer in sorted(self.copies.pop(object_id, ()))]
        return actions

    def tick(self, now):
        actions = []
        for key in [k for k, s in self.serves.items() if now - s.last_active > self.idle_timeout_s]:
            serve = self.serves.pop(key)
            self.store.unpin(serve.object_id, serve.client)
            actions.append(Unserved(serve.peer, serve.pull_id))
        stale = []
        for object_id, waiting in list(self.waiting_seal.items()):
            for peer, pull_id, since in waiting:
                if now - since > self.idle_timeout_s:
                    stale.append((peer, pull_id, object_id))
        self._drop_waiting(lambda p, i: any(p == s[0] and i == s[1] for s in stale))
        return actions + [ReplyPull(peer, pull_id, None, ObjectLostError(
                    object_id.hex(), f"Object {object_id.hex()} was never sealed on this node"))
                for peer, pull_id, object_id in stale]

    # -- internals -------------------------------------------------------------------------------
    def _start(self, peer, pull_id, object_id, now):
        client = f"serve:{peer}#{pull_id}"
        try:
            base, size = self.store.pin(object_id, client)
        except Exception as exc:    # gone (ObjectLostError), or no room to restore it from disk
            return ReplyPull(peer, pull_id, None, exc)
        self.serves[(peer, pull_id)] = Serve(peer, pull_id, object_id, client, base, size, now)
        self.copies.setdefault(object_id, set()).add(peer)
        self.served += 1
        return ReplyPull(peer, pull_id, size, base=base)

    def _drop_waiting(self, match):
        for object_id in list(self.waiting_seal):
            left = [w for w in self.waiting_seal[object_id] if not match(w[0], w[1])]
            if left:
                self.waiting_seal[object_id] = left
            else:
                del self.waiting_seal[object_id]
