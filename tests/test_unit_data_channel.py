"""The data channel's two ends in one process: real sockets on loopback, no daemon."""
import socket
import time

import pytest

from zray.transport import data_channel as D

KEY = D.derive_key("the-cluster-secret")
ME = "tcp://127.0.0.1:5555"


def buffer_of(memory):
    view = memoryview(memory)
    return lambda offset, length: view[offset:offset + length]


def wait_done(client, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = client.take_done()
        if done:
            return done
        time.sleep(0.01)
    raise AssertionError("no stream ended")


@pytest.fixture
def ends():
    source = bytearray(range(256)) * (40 << 10)        # 10 MiB with a pattern
    target = bytearray(len(source) + 4096)
    server = D.DataServer(KEY, "127.0.0.1", buffer_of(source))
    clients = []

    def client(key=KEY, stall=10.0):
        c = D.DataClient(key, ME, buffer_of(target), stall)
        clients.append(c)
        return c
    try:
        yield source, target, server, client
    finally:
        for c in clients:
            c.close()
        server.close()


def test_a_granted_range_lands_where_asked_and_the_connection_is_reused(ends):
    source, target, server, client = ends
    c = client()
    server.grant(ME, 1, 1000, 5 << 20)
    c.start(1, server.endpoint, 4096, 5 << 20)
    assert wait_done(c) == [(1, None)]
    assert target[4096:4096 + (5 << 20)] == source[1000:1000 + (5 << 20)]
    assert (ME, 1) in server.take_active() and server.take_active() == []
    server.grant(ME, 2, 0, 100)
    c.start(2, server.endpoint, 0, 100)
    assert wait_done(c) == [(2, None)] and target[:100] == source[:100]
    assert len(c._idle[server.endpoint]) == 1        # one connection served both
    assert c.bytes_received == (5 << 20) + 100 and server.refused == 0


def test_a_peer_without_the_secret_is_refused_and_the_server_keeps_serving(ends):
    source, target, server, client = ends
    server.grant(ME, 1, 0, 1000)
    intruder = client(key=D.derive_key("another-secret"))
    intruder.start(1, server.endpoint, 0, 1000)
    [(pull_id, (kind, detail))] = wait_done(intruder)
    assert kind == D.CONNECT and "secret" in detail and target[:1000] == bytearray(1000)
    # Garbage that is no handshake at all.
    with socket.create_connection(D.host_port(server.endpoint)) as s:
        s.recv(64)
        s.sendall(b"\xff" * 200)
        s.settimeout(5)
        try:
            assert s.recv(64) == b""     # closed without an answer
        except ConnectionResetError:
            pass                         # or reset: what it sent was never read
    deadline = time.monotonic() + 5
    while server.refused < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.refused == 2
    c = client()
    c.start(1, server.endpoint, 0, 1000)
    assert wait_done(c) == [(1, None)] and target[:1000] == source[:1000]


def test_a_range_not_granted_is_refused_by_name(ends):
    source, target, server, client = ends
    c = client()
    c.start(9, server.endpoint, 0, 1000)
    [(pull_id, (kind, detail))] = wait_done(c)
    assert pull_id == 9
    assert kind == D.REFUSED and "no transfer 9" in detail
    server.grant(ME, 3, 0, 1000)
    c.start(3, server.endpoint, 0, 2000)            # more than granted
    [(pull_id, (kind, _))] = wait_done(c)
    assert pull_id == 3
    assert kind == D.REFUSED


def test_cancel_and_revoke_end_a_stream_mid_way(ends, monkeypatch):
    source, target, server, client = ends
    server.max_bytes_per_s = 4e6                     # 10 MiB: ~2.6 s
    monkeypatch.setattr(D, "SEND_SLICE", 256 << 10)
    c = client()
    server.grant(ME, 1, 0, len(source))
    c.start(1, server.endpoint, 0, len(source))
    time.sleep(0.5)
    c.cancel(1)
    [(pull_id, (kind, _))] = wait_done(c)
    assert pull_id == 1
    assert kind == D.CANCELLED and 0 < c.bytes_received < len(source)
    server.grant(ME, 2, 0, len(source))
    c.start(2, server.endpoint, 0, len(source))
    time.sleep(0.5)
    server.revoke(ME, 2)
    [(pull_id, (kind, detail))] = wait_done(c)
    assert pull_id == 2
    assert kind == D.BROKEN and "broke after" in detail


def test_a_silent_source_times_out(ends):
    source, target, server, client = ends
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        c = client(stall=0.5)
        c.start(1, "tcp://127.0.0.1:%d" % listener.getsockname()[1], 0, 100)
        [(pull_id, (kind, detail))] = wait_done(c)
        assert pull_id == 1
        # It accepts but never speaks: the handshake times out (CONNECT: the pull falls back).
        assert kind == D.CONNECT
    finally:
        listener.close()


def test_settings_are_checked(monkeypatch):
    monkeypatch.setenv("ZRAY_DATA_CHANNEL", "udp")
    with pytest.raises(ValueError, match="ZRAY_DATA_CHANNEL"):
        D.mode()
    monkeypatch.setenv("ZRAY_DATA_CHANNEL", "CURVE")
    assert D.mode() == D.MODE_CURVE
    monkeypatch.setenv("ZRAY_DATA_MAX_BYTES_PER_S", "-3")
    with pytest.raises(ValueError, match="positive"):
        D.max_rate()
    with pytest.raises(ValueError):
        D.derive_key("")


def test_a_pooled_connection_the_source_closed_is_replaced(ends):
    source, target, server, client = ends
    c = client()
    server.grant(ME, 1, 0, 100)
    c.start(1, server.endpoint, 0, 100)
    assert wait_done(c) == [(1, None)]
    # The source drops every connection (as a restarted peer would): the pooled one is stale.
    with server._lock:
        conns = list(server._conns)
    for conn in conns:
        D._shutdown(conn)
    time.sleep(0.2)
    server.grant(ME, 2, 100, 100)
    c.start(2, server.endpoint, 0, 100)
    assert wait_done(c) == [(2, None)] and target[:100] == source[100:200]


def test_many_connections_at_once_stay_under_the_cap_and_lose_nothing(ends):
    """40 pullers of 2 streams each (80 connections wanted) against a server capped at 6: the
    server never runs more than 6 serving threads, idle pooled connections give up their slot
    (their clients reconnect), and every byte of every range lands where it was asked."""
    import threading
    source, _, _, _ = ends
    server = D.DataServer(KEY, "127.0.0.1", buffer_of(source), max_connections=6)
    pullers = []
    try:
        threads_before = threading.active_count()
        for i in range(40):
            me = f"tcp://127.0.0.1:{6000 + i}"
            target = bytearray(64 << 10)
            pullers.append((me, target, D.DataClient(KEY, me, buffer_of(target), 30.0, threads=2)))
        pull_id = 0
        expected = {}
        for rounds in range(3):           # later rounds reuse (or lose) pooled connections
            for me, target, client in pullers:
                for half in range(2):
                    pull_id += 1
                    offset = (pull_id * 4099) % (len(source) - (32 << 10))
                    server.grant(me, pull_id, offset, 32 << 10)
                    client.start(pull_id, server.endpoint, half * (32 << 10), 32 << 10)
                    expected[pull_id] = (client, target, half, offset)
            done = {}
            deadline = time.monotonic() + 120
            while len(done) < 80 and time.monotonic() < deadline:
                for _, _, client in pullers:
                    for pid, failure in client.take_done():
                        done[pid] = failure
                time.sleep(0.01)
            assert len(done) == 80 and set(done.values()) == {None}, done
            for pid in done:
                client, target, half, offset = expected.pop(pid)
                got = bytes(target[half * (32 << 10):(half + 1) * (32 << 10)])
                assert got == bytes(source[offset:offset + (32 << 10)]), f"pull {pid}"
            with server._lock:
                assert len(server._conns) <= 6
        assert server.peak_connections <= 6
        assert server.evicted > 0          # the cap was reached and idle ones made room
        # 80 client threads were added here; the server added at most its cap (+ acceptor).
        assert threading.active_count() - threads_before <= 80 + 6 + 1
    finally:
        for _, _, client in pullers:
            client.close()
        server.close()


def test_at_the_cap_a_new_connection_waits_for_a_busy_one(ends, caplog, monkeypatch):
    """Every slot busy sending (none idle): the next connection waits in the backlog, gets
    served when a slot frees, and the cap is named in one warning."""
    source, target, _, client = ends
    monkeypatch.setattr(D, "SEND_SLICE", 256 << 10)
    server = D.DataServer(KEY, "127.0.0.1", buffer_of(source), max_connections=1,
                          max_bytes_per_s=2 << 20)      # 2 MiB take ~1 s: a busy slot
    try:
        first, second = client(), client()
        server.grant(ME, 1, 0, 2 << 20)
        server.grant(ME, 2, 0, 1000)
        first.start(1, server.endpoint, 0, 2 << 20)
        deadline = time.monotonic() + 20
        while not server.take_active() and time.monotonic() < deadline:
            time.sleep(0.005)                 # until the first stream is sending
        second.start(2, server.endpoint, (2 << 20) + 64, 1000)
        assert wait_done(first) == [(1, None)] and wait_done(second) == [(2, None)]
        assert target[(2 << 20) + 64:(2 << 20) + 1064] == source[:1000]
        assert server.peak_connections == 1 and server.waited >= 1
        assert sum("ZRAY_DATA_MAX_CONNECTIONS=1" in r.message for r in caplog.records) == 1
    finally:
        server.close()


def test_the_connection_cap_setting_is_checked(monkeypatch):
    monkeypatch.setenv("ZRAY_DATA_MAX_CONNECTIONS", "0")
    with pytest.raises(ValueError, match="ZRAY_DATA_MAX_CONNECTIONS"):
        D.max_connections()
    monkeypatch.setenv("ZRAY_DATA_MAX_CONNECTIONS", "lots")
    with pytest.raises(ValueError, match="whole number"):
        D.max_connections()
    monkeypatch.setenv("ZRAY_DATA_MAX_CONNECTIONS", "12")
    assert D.max_connections() == 12
    monkeypatch.delenv("ZRAY_DATA_MAX_CONNECTIONS")
    assert D.max_connections() == D.MAX_CONNECTIONS
