"""Pulls between two stores over an in-memory network: no sockets, virtual time."""
import collections

import pytest

from zray import _native
from zray.exceptions import ObjectFetchTimedOutError, ObjectLostError, ObjectStoreFullError
from zray.store.object_store import ObjectStore
import dataclasses

from zray.store import transfer as T
from zray.store.transfer import PullManager, ServeTable

CAP = 1 << 20
A, B = "tcp://a", "tcp://b"          # the source's and the puller's addresses
NODE_A = "a" * 28


def make_store(tmp_path, name, cap=CAP):
    d = tmp_path / name
    d.mkdir()
    return ObjectStore(memoryview(bytearray(cap)), cap, _native.Allocator(cap, 64), str(d))


def put(store, oid, data, seal=True):
    off = store.create(oid, len(data), "owner", "writer")
    store.view[off:off + len(data)] = data
    if seal:
        store.seal(oid, "writer")
    return off


class Net:
    """Delivers each side's actions to the other in FIFO order, one message per step."""

    def __init__(self, tmp_path, chunk=1000, window=3, stall=10.0, dest_cap=CAP):
        self.src_store = make_store(tmp_path, "a")
        self.dst_store = make_store(tmp_path, "b", dest_cap)
        self.pulls = PullManager(self.dst_store, chunk_size=chunk, window=window, stall_timeout_s=stall)
        self.serves = ServeTable(self.src_store, idle_timeout_s=30.0)
        self.queue = collections.deque()
        self.replies = {}               # (reader, req_id) -> "pinned" | error
        self.pinned_objects = []
        self.max_outstanding = 0
        self.chunk_requests = 0
        self.pull_requests = 0
        self.now = 0.0

    def run_pull_actions(self, actions):
        for a in actions:
            if isinstance(a, T.Pinned):
                self.pinned_objects.append(a.object_id)
                for w in a.waiters:
                    self.replies[w] = "pinned"
            elif isinstance(a, T.PullFailed):
                for w in a.waiters:
                    self.replies[w] = a.error
            else:
                assert a.source_address == A
                if isinstance(a, T.RequestPull):
                    self.pull_requests += 1
                elif isinstance(a, T.RequestChunk):
                    self.chunk_requests += 1
                self.queue.append(("to_a", a))
        self.max_outstanding = max(self.max_outstanding, sum(
            len(p.outstanding) for p in self.pulls.pulls.values()))

    def run_serve_actions(self, actions):
        for a in actions:
            assert a.peer == B
            if isinstance(a, T.SendChunk) and a.view is not None:
                a = dataclasses.replace(a, view=bytes(a.view))   # what the network delivers
            self.queue.append(("to_b", a))

    def step(self):
        where, a = self.queue.popleft()
        now = self.now
        if where == "to_a":
            if isinstance(a, T.RequestPull):
                self.run_serve_actions(self.serves.handle_pull_request(B, a.pull_id, a.object_id, now))
            elif isinstance(a, T.RequestChunk):
                self.run_serve_actions(self.serves.handle_chunk_request(
                    B, a.pull_id, a.offset, a.length, now))
            elif isinstance(a, T.EndPull):
                self.serves.handle_pull_end(B, a.pull_id, a.kept)
        else:
            if isinstance(a, T.ReplyPull):
                self.run_pull_actions(self.pulls.handle_pull_reply(A, a.pull_id, a.size, a.error, now))
            elif isinstance(a, T.SendChunk):
                self.run_pull_actions(self.pulls.handle_chunk(A, a.pull_id, a.offset, a.view,
                                                              a.error, now))

    def run(self, max_steps=10_000):
        for _ in range(max_steps):
            if not self.queue:
                return
            self.step()
        raise AssertionError("the transfer did not finish")

    def pin(self, oid, reader, req_id=1):
        self.run_pull_actions(self.pulls.handle_pin(oid, reader, req_id, NODE_A, A, self.now))


def test_a_pull_copies_the_bytes_in_chunks_with_a_bounded_window(tmp_path):
    net = Net(tmp_path, chunk=1000, window=3)
    data = bytes(range(256)) * 40 + b"tail"          # 10244 bytes: 11 chunks, the last short
    put(net.src_store, b"x", data)
    net.pin(b"x", "r1")
    net.run()
    assert net.replies == {("r1", 1): "pinned"} and net.pinned_objects == [b"x"]
    obj = net.dst_store.objects[b"x"]
    assert obj.sealed and obj.copy_from == NODE_A and not obj.pins
    assert bytes(net.dst_store.view[obj.offset:obj.offset + obj.size]) == data
    assert net.chunk_requests == 11 and net.max_outstanding == 3
    # The source pinned it for the transfer only, and remembers who took a copy.
    assert not net.src_store.objects[b"x"].pins and not net.serves.serves
    assert net.serves.copies == {b"x": {B}}
    assert net.pulls.completed == 1 and net.pulls.bytes_received == len(data)


def test_readers_that_arrive_during_a_pull_join_it(tmp_path):
    net = Net(tmp_path)
    put(net.src_store, b"x", b"v" * 5000)
    net.pin(b"x", "r1")
    net.step()
    net.pin(b"x", "r2")
    net.pin(b"x", "r1", req_id=2)
    net.run()
    assert net.pull_requests == 1
    assert net.replies == {("r1", 1): "pinned", ("r2", 1): "pinned", ("r1", 2): "pinned"}


def test_an_object_the_source_does_not_have_is_lost_naming_object_and_node(tmp_path):
    net = Net(tmp_path)
    net.pin(b"gone", "r1")
    net.run()
    err = net.replies[("r1", 1)]
    assert isinstance(err, ObjectLostError)
    assert b"gone".hex() in str(err) and NODE_A[:12] in str(err)
    assert not net.pulls.pulls and b"gone" not in net.dst_store.objects


def test_source_gone_mid_way_fails_the_readers_and_frees_the_partial_copy(tmp_path):
    net = Net(tmp_path)
    put(net.src_store, b"x", b"v" * 9000)
    net.pin(b"x", "r1")
    for _ in range(4):
        net.step()
    assert net.dst_store.stats()["used"] > 0
    net.run_pull_actions(net.pulls.handle_source_gone(NODE_A, "dead"))
    err = net.replies[("r1", 1)]
    assert isinstance(err, ObjectLostError) and "dead" in str(err) and NODE_A[:12] in str(err)
    assert net.dst_store.stats()["used"] == 0 and not net.dst_store.objects
    net.run()     # late chunks of the abandoned pull are dropped
    assert not net.pulls.pulls and net.dst_store.stats()["used"] == 0


def test_a_stalled_pull_times_out_and_releases_the_source(tmp_path):
    net = Net(tmp_path, stall=5.0)
    put(net.src_store, b"x", b"v" * 9000)
    net.pin(b"x", "r1")
    for _ in range(3):
        net.step()
    net.queue.clear()                 # the network loses everything in flight
    net.now = 4.0
    net.run_pull_actions(net.pulls.tick(net.now))
    assert not net.replies
    net.now = 5.5
    net.run_pull_actions(net.pulls.tick(net.now))
    err = net.replies[("r1", 1)]
    assert isinstance(err, ObjectFetchTimedOutError) and isinstance(err, ObjectLostError)
    assert "5 s" in str(err) and b"x".hex() in str(err)
    net.run()                         # the pull's end reaches the source: it unpins
    assert not net.src_store.objects[b"x"].pins and not net.serves.serves
    assert net.serves.copies == {}


def test_a_full_local_store_gives_the_stores_own_error(tmp_path):
    net = Net(tmp_path, dest_cap=4096)
    put(net.src_store, b"x", b"v" * 9000)
    net.pin(b"x", "r1")
    net.run()
    assert isinstance(net.replies[("r1", 1)], ObjectStoreFullError)
    assert not net.src_store.objects[b"x"].pins


def test_freed_during_the_pull(tmp_path):
    net = Net(tmp_path)
    put(net.src_store, b"x", b"v" * 9000)
    net.pin(b"x", "r1")
    for _ in range(3):
        net.step()
    net.run_pull_actions(net.pulls.handle_freed(b"x"))
    assert "freed" in str(net.replies[("r1", 1)])
    net.run()
    assert not net.dst_store.objects and not net.src_store.objects[b"x"].pins


def test_the_source_frees_every_copy_it_served(tmp_path):
    net = Net(tmp_path)
    put(net.src_store, b"x", b"v" * 3000)
    net.pin(b"x", "r1")
    net.run()
    net.src_store.free(b"x")
    assert net.serves.handle_freed(b"x") == [T.FreeCopies(B, b"x")]
    assert net.serves.handle_freed(b"x") == []       # once


def test_a_pull_that_overtakes_the_seal_is_answered_at_the_seal(tmp_path):
    net = Net(tmp_path)
    put(net.src_store, b"x", b"s" * 3000, seal=False)
    net.pin(b"x", "r1")
    net.run()
    assert not net.replies and net.serves.waiting_seal
    net.src_store.seal(b"x", "writer")
    net.run_serve_actions(net.serves.handle_sealed(b"x", net.now))
    net.run()
    assert net.replies == {("r1", 1): "pinned"}


def test_a_dead_puller_gives_its_pins_back(tmp_path):
    net = Net(tmp_path)
    put(net.src_store, b"x", b"v" * 9000)
    net.pin(b"x", "r1")
    net.step()
    assert net.src_store.objects[b"x"].pins
    net.serves.handle_peer_gone(B)
    assert not net.src_store.objects[b"x"].pins and not net.serves.copies


def test_an_idle_serve_is_dropped(tmp_path):
    net = Net(tmp_path)
    put(net.src_store, b"x", b"v" * 9000)
    net.pin(b"x", "r1")
    net.step()
    net.serves.tick(29.0)
    assert net.serves.serves
    net.serves.tick(31.0)
    assert not net.serves.serves and not net.src_store.objects[b"x"].pins


def test_chunk_requests_outside_the_object_are_refused(tmp_path):
    net = Net(tmp_path)
    put(net.src_store, b"x", b"v" * 3000)
    net.serves.handle_pull_request(B, 7, b"x", 0.0)
    (action,) = net.serves.handle_chunk_request(B, 7, 2500, 1000, 0.0)
    assert action.view is None and isinstance(action.error, ObjectLostError)
    (action,) = net.serves.handle_chunk_request(B, 8, 0, 10, 0.0)
    assert action.view is None


def test_invalid_settings_are_refused(tmp_path):
    with pytest.raises(ValueError):
        PullManager(make_store(tmp_path, "s"), chunk_size=0)


def test_copies_are_evicted_not_spilled(tmp_path):
    store = make_store(tmp_path, "s")
    off = store.create(b"copy", 600_000, None, "pull#1", copy_from=NODE_A)
    store.seal(b"copy", "pull#1")
    put(store, b"new", b"n" * 600_000)
    assert b"copy" not in store.objects and store.stats()["evicted_copies"] == 1
    assert store.stats()["spill_count"] == 0 and off is not None


# -- streamed pulls (the data channel does the bytes; here a test plays it) ---------------------------
EP = "tcp://a-data:1"


def _stream_start(net, oid, data, reader="r1"):
    """Pin `oid` on B with A offering a data channel: returns the StreamPull action."""
    put(net.src_store, oid, data)
    net.pin(oid, reader)
    (request,) = [a for _, a in net.queue]
    net.queue.clear()
    (reply,) = net.serves.handle_pull_request(B, request.pull_id, oid, net.now)
    assert reply.base is not None and reply.size == len(data)
    (stream,) = net.pulls.handle_pull_reply(A, reply.pull_id, reply.size, None, net.now, EP)
    assert isinstance(stream, T.StreamPull) and stream.endpoint == EP and stream.size == len(data)
    return reply, stream


def test_a_streamed_pull_is_sealed_when_its_stream_reports_every_byte(tmp_path):
    net = Net(tmp_path)
    data = bytes(range(256)) * 20
    reply, stream = _stream_start(net, b"x", data)
    # The stream writes the bytes where the machine said, from another thread.
    net.dst_store.view[stream.base:stream.base + stream.size] = data
    assert net.pulls.tick(1000.0) == []          # its socket has the stall timeout, not tick
    net.run_pull_actions(net.pulls.handle_stream_done(stream.pull_id, None, net.now))
    assert net.replies == {("r1", 1): "pinned"} and net.chunk_requests == 0
    obj = net.dst_store.objects[b"x"]
    assert obj.sealed and bytes(net.dst_store.view[obj.offset:obj.offset + obj.size]) == data
    assert net.pulls.bytes_streamed == len(data) and net.pulls.completed == 1
    (end,) = [a for _, a in net.queue]
    assert end == T.EndPull(A, stream.pull_id, True)
    assert net.serves.handle_pull_end(B, stream.pull_id, True) == [T.Unserved(B, stream.pull_id)]
    assert not net.src_store.objects[b"x"].pins


def test_a_streamed_pull_that_fails_keeps_its_space_until_the_stream_has_ended(tmp_path):
    net = Net(tmp_path)
    _, stream = _stream_start(net, b"x", b"v" * 5000)
    actions = net.pulls.handle_source_gone(NODE_A, "dead")
    assert T.CancelStream(stream.pull_id) in actions
    net.run_pull_actions([a for a in actions if not isinstance(a, T.CancelStream)])
    assert isinstance(net.replies[("r1", 1)], ObjectLostError)
    # The thread may still write there: the space stays allocated, and a new reader's pull of
    # the same object waits for it.
    assert net.dst_store.stats()["used"] > 0 and net.pulls.cancelling
    net.queue.clear()
    net.pin(b"x", "r2")
    assert not net.queue
    (restart,) = net.pulls.handle_stream_done(stream.pull_id, ("cancelled", "cancelled"), net.now)
    assert isinstance(restart, T.RequestPull) and restart.object_id == b"x"
    assert not net.pulls.cancelling and b"x" not in net.dst_store.objects
    net.run_pull_actions([restart])
    net.run()                     # no endpoint in this net's replies: chunks
    assert net.replies[("r2", 1)] == "pinned"


def test_a_stream_that_cannot_connect_falls_back_to_chunks(tmp_path):
    net = Net(tmp_path)
    data = b"w" * 4500
    _, stream = _stream_start(net, b"x", data)
    net.run_pull_actions(net.pulls.handle_stream_done(
        stream.pull_id, ("connect", "connection refused"), net.now))
    net.run()
    assert net.replies == {("r1", 1): "pinned"} and net.pulls.fallbacks == 1
    obj = net.dst_store.objects[b"x"]
    assert bytes(net.dst_store.view[obj.offset:obj.offset + obj.size]) == data


@pytest.mark.parametrize("kind, error", [("timeout", ObjectFetchTimedOutError),
                                         ("broken", ObjectLostError), ("refused", ObjectLostError)])
def test_a_failed_stream_names_its_cause_and_frees_the_copy(tmp_path, kind, error):
    net = Net(tmp_path)
    _, stream = _stream_start(net, b"x", b"v" * 5000)
    net.run_pull_actions(net.pulls.handle_stream_done(stream.pull_id, (kind, "the detail"), net.now))
    err = net.replies[("r1", 1)]
    assert isinstance(err, error) and "the detail" in str(err) and NODE_A[:12] in str(err)
    assert not net.dst_store.objects and not net.pulls.pulls and not net.pulls.cancelling
    (end,) = [a for _, a in net.queue]
    assert end == T.EndPull(A, stream.pull_id, False)


def test_serves_that_end_say_so_for_the_data_channel(tmp_path):
    net = Net(tmp_path)
    put(net.src_store, b"x", b"v" * 3000)
    net.serves.handle_pull_request(B, 1, b"x", 0.0)
    net.serves.handle_pull_request(B, 2, b"x", 0.0)
    net.serves.handle_activity(B, 1, 29.0)       # the data channel is sending pull 1
    assert net.serves.tick(31.0) == [T.Unserved(B, 2)]
    assert net.serves.handle_peer_gone(B) == [T.Unserved(B, 1)]
    assert not net.src_store.objects[b"x"].pins
