"""The protocol version travels in every connection; a peer of another version is refused.

The lying peers here are raw pyzmq sockets that claim another version (or none, as zray's
protocol 1-2 did) in their routing id; the zray side is a real Transport.
"""
import os
import pickle
import time

import pytest
import zmq

from zray.transport import wire
from zray.transport.zmq_transport import (ProtocolMismatchError, Transport, identity_of,
                                          parse_identity)


@pytest.fixture
def zray_transport(tmp_path):
    transport = Transport(f"ipc://{tmp_path}/zray")
    yield transport
    transport.close()


@pytest.fixture
def raw_ctx():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def _recv(transport, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if transport.inbox.poll(50):
            try:
                return transport.recv(zmq.NOBLOCK)
            except zmq.Again:   # the message was one the transport dropped
                continue
    return None


def _lying_peer(ctx, tmp_path, identity_address, routing_id):
    """A peer with an inbox at identity_address that connects with `routing_id`."""
    inbox = ctx.socket(zmq.ROUTER)
    inbox.bind(identity_address)
    out = ctx.socket(zmq.DEALER)
    out.setsockopt(zmq.IDENTITY, routing_id)
    return inbox, out


def test_identity_round_trip():
    assert parse_identity(identity_of("ipc:///x/y")) == (wire.PROTOCOL_VERSION, "ipc:///x/y")
    assert parse_identity(b"zray17 tcp://1.2.3.4:5|ipc:///a") == (17, "tcp://1.2.3.4:5|ipc:///a")
    assert parse_identity(b"ipc:///old/peer") == (None, "ipc:///old/peer")


def test_same_version_peers_talk(tmp_path):
    a, b = Transport(f"ipc://{tmp_path}/a"), Transport(f"ipc://{tmp_path}/b")
    try:
        a.send(b.address, wire.CLUSTER_INFO, (7,))
        assert _recv(b)[:3] == (a.address, wire.CLUSTER_INFO, (7,))
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("claimed, named", [(b"zray999 ", "protocol version 999"),
                                            (b"", "older than version 3")])
def test_peer_of_another_version_is_refused_and_told(zray_transport, raw_ctx, tmp_path,
                                                     claimed, named):
    liar_address = f"ipc://{tmp_path}/liar"
    inbox, out = _lying_peer(raw_ctx, tmp_path, liar_address, claimed + liar_address.encode())
    out.connect(zray_transport.address)
    for i in range(3):    # none of these reaches the zray process
        out.send(pickle.dumps((wire.CLUSTER_INFO, (i,))))
    assert _recv(zray_transport, timeout=1.0) is None
    # The liar is told once, with both versions and zray's release.
    assert inbox.poll(10_000)
    identity, header = inbox.recv_multipart()
    assert parse_identity(identity) == (wire.PROTOCOL_VERSION, zray_transport.address)
    msg_type, payload = pickle.loads(header)
    assert msg_type == wire.PROTOCOL_MISMATCH
    their_version, our_version, release, text = payload
    assert our_version == wire.PROTOCOL_VERSION
    assert named in text and f"protocol version {wire.PROTOCOL_VERSION}" in text
    assert not inbox.poll(300)     # once, not per message
    # A peer of our version is still served.
    other = Transport(f"ipc://{tmp_path}/other")
    try:
        other.send(zray_transport.address, wire.CLUSTER_INFO, ("still here",))
        assert _recv(zray_transport)[1:3] == (wire.CLUSTER_INFO, ("still here",))
    finally:
        other.close()


def test_refusal_reaches_the_refused_process_and_fails_later_sends(zray_transport, raw_ctx,
                                                                  tmp_path):
    """zray talks to a node of another release: the refusal names both versions, reaches the
    process as a message, and every later send to that peer raises at once."""
    peer_address = f"ipc://{tmp_path}/newer"
    inbox = raw_ctx.socket(zmq.ROUTER)
    inbox.bind(peer_address)
    zray_transport.send(peer_address, wire.CLUSTER_INFO, (1,))
    assert inbox.poll(10_000)
    identity, _ = inbox.recv_multipart()
    version, sender = parse_identity(identity)
    assert (version, sender) == (wire.PROTOCOL_VERSION, zray_transport.address)
    reply = raw_ctx.socket(zmq.DEALER)
    reply.setsockopt(zmq.IDENTITY, b"zray4 " + peer_address.encode())
    reply.connect(zray_transport.address)
    reply.send(pickle.dumps((wire.PROTOCOL_MISMATCH, (version, 4, "9.9.9", "refused"))))
    message = _recv(zray_transport)
    assert message is not None
    sender, msg_type, (error,), frames = message
    assert (sender, msg_type) == (peer_address, wire.PROTOCOL_MISMATCH)
    assert isinstance(error, ProtocolMismatchError)
    assert "protocol version 4 (zray 9.9.9)" in str(error)
    assert f"protocol version {wire.PROTOCOL_VERSION}" in str(error)
    with pytest.raises(ProtocolMismatchError):
        zray_transport.send(peer_address, wire.CLUSTER_INFO, (2,))


def _liar_daemon(ctx, address, version=99):
    """A raw 'node daemon' of another version: it refuses whatever it is sent, as a zray
    transport of that version would (PROTOCOL_MISMATCH naming both versions)."""
    import threading
    inbox = ctx.socket(zmq.ROUTER)
    inbox.bind(address)
    out = ctx.socket(zmq.DEALER)
    out.setsockopt(zmq.IDENTITY, b"zray%d " % version + address.encode())
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            if inbox.poll(50):
                identity, *_ = inbox.recv_multipart()
                their_version, sender = parse_identity(identity)
                if not out.get(zmq.LAST_ENDPOINT):
                    out.connect(sender)
                out.send(pickle.dumps((wire.PROTOCOL_MISMATCH,
                                       (their_version, version, "9.9.9", "refused"))))
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return stop, thread


def test_requests_to_a_peer_of_another_version_fail_at_once(tmp_path):
    """The inbox fails every request waiting on a peer that refused us, naming both versions
    (issue 10, d), instead of waiting for the request's timeout."""
    from zray.core.inbox import Inbox
    ctx = zmq.Context()
    liar = f"ipc://{tmp_path}/liar"
    stop, thread = _liar_daemon(ctx, liar)
    transport = Transport(f"ipc://{tmp_path}/me")
    inbox = Inbox(transport, lambda: False, lambda: None, lambda: False)
    inbox.start()
    try:
        with pytest.raises(ProtocolMismatchError) as info:
            inbox.rpc(liar, wire.CLUSTER_INFO, (), timeout=60)
        assert "protocol version 99" in str(info.value)
        assert f"protocol version {wire.PROTOCOL_VERSION}" in str(info.value)
        with pytest.raises(ProtocolMismatchError):     # and every later request
            inbox.rpc(liar, wire.CLUSTER_INFO, (), timeout=60)
    finally:
        stop.set()
        thread.join()
        inbox.stop()
        transport.close()
        ctx.destroy(linger=0)


def test_init_against_a_node_of_another_version_names_both(tmp_path, monkeypatch):
    import zray
    from zray.node import local_node
    ctx = zmq.Context()
    (tmp_path / "sock").mkdir()
    (tmp_path / "logs").mkdir()
    liar = f"ipc://{tmp_path}/sock/node"
    stop, thread = _liar_daemon(ctx, liar, version=7)
    monkeypatch.setattr(local_node, "find_node", lambda *a, **k: {
        "session": str(tmp_path), "address": liar, "pid": os.getpid(), "node_id": "x" * 28})
    try:
        with pytest.raises(ProtocolMismatchError, match="protocol version 7"):
            zray.init(address="auto")
        assert not zray.is_initialized()
    finally:
        stop.set()
        thread.join()
        ctx.destroy(linger=0)
