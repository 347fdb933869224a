"""Short-lived clients (`zray status`, state queries, the dashboard's poll) ask a node from a
fresh socket each time; the node answers each on a socket it closes at once. Before, it kept
one per client address, and a dashboard polling for 20 minutes ran its node out of file
descriptors (a node then answers nothing and cannot even be stopped cleanly)."""
import os
import time

import pytest
import zmq

import zray
from zray.node import local_node
from zray.transport import address as addresses
from zray.transport import wire
from zray.transport.zmq_transport import Transport


def _fds(pid="self"):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_one_shot_addresses_are_unique_and_recognised(tmp_path):
    a, b = addresses.one_shot(str(tmp_path)), addresses.one_shot(str(tmp_path))
    assert a != b and addresses.is_one_shot(a) and addresses.is_one_shot(b)
    assert not addresses.is_one_shot(f"ipc://{tmp_path}/sock/node")
    assert not addresses.is_one_shot(f"ipc://{tmp_path}/sock/w1234abcd")
    assert not addresses.is_one_shot(addresses.join(f"ipc://{tmp_path}/sock/qx",
                                                    "tcp://10.0.0.1:5", "n" * 28))


def test_a_server_answering_many_one_shot_clients_keeps_no_socket_per_client(tmp_path):
    (tmp_path / "sock").mkdir()
    server = Transport(f"ipc://{tmp_path}/sock/node")
    try:
        def ask(i):
            client = Transport(addresses.one_shot(str(tmp_path)))
            try:
                client.send(server.address, wire.CLUSTER_INFO, (i,))
                assert server.inbox.poll(10_000)
                sender, msg_type, payload, _ = server.recv(zmq.NOBLOCK)
                assert msg_type == wire.CLUSTER_INFO and payload == (i,)
                server.send(sender, wire.CLUSTER_INFO_REPLY, (i, "answer", None))
                assert client.inbox.poll(10_000)
                assert client.recv(zmq.NOBLOCK)[2] == (i, "answer", None)
            finally:
                client.close()
                os.unlink(client.address[len("ipc://"):])

        for i in range(20):      # ZeroMQ's own sockets and threads settle
            ask(i)
        before = _fds()
        for i in range(300):
            ask(i)
        assert _fds() - before < 20
        assert len(server._outboxes) == 0
    finally:
        server.close()


def test_a_node_answers_thousands_of_status_queries_with_flat_file_descriptors(zray_cluster):
    zray_cluster(num_cpus=1)
    info = local_node.find_node(os.path.join(zray.api._context_info()["session_dir"],
                                             "node.json"))
    for _ in range(20):
        local_node.query(wire.CLUSTER_INFO, info)
    before = _fds(info["pid"])
    for _ in range(1500):         # more than a default limit of 1024 descriptors
        assert local_node.query(wire.CLUSTER_INFO, info)["nodes"]
    assert _fds(info["pid"]) - before < 50
    assert zray.get(zray.put("still answering")) == "still answering"


def test_a_kept_node_client_asks_many_times_skips_late_replies_and_cleans_up(tmp_path):
    """NodeClient (the launcher's watch: four requests a second for a job's life) keeps one
    transport: its descriptors stay flat, a reply to an earlier request that timed out is
    skipped, a malformed reply is an error naming its type, and close() removes its socket
    file and refuses later requests."""
    import threading
    (tmp_path / "sock").mkdir()
    server = Transport(f"ipc://{tmp_path}/sock/node")
    client = local_node.NodeClient({"session": str(tmp_path), "address": server.address})
    script = []            # per request: the replies the server sends, as (req_id, payload)

    def serve():
        for replies in script:
            assert server.inbox.poll(10_000)
            sender, msg_type, payload, _ = server.recv(zmq.NOBLOCK)
            for reply in replies(payload[0]):
                server.send(sender, wire.CLUSTER_INFO_REPLY, reply)

    try:
        script[:] = [lambda rid: [(rid, {"n": rid}, None)]] * 220 + [
            lambda rid: [],                                       # no answer: a timeout
            lambda rid: [(rid - 1, "late", None), (rid, "fresh", None)],
            lambda rid: ["not a triple"],
            lambda rid: [(rid, None, ValueError("the node's own error"))]]
        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        for i in range(20):
            assert client.query(wire.CLUSTER_INFO) == {"n": i + 1}
        before = _fds()
        for i in range(20, 220):
            assert client.query(wire.CLUSTER_INFO) == {"n": i + 1}
        assert _fds() - before < 5
        with pytest.raises(TimeoutError, match=r"did not answer in 0.3s"):
            client.query(wire.CLUSTER_INFO, timeout=0.3)
        assert client.query(wire.CLUSTER_INFO) == "fresh"
        with pytest.raises(RuntimeError, match=r"CLUSTER_INFO_REPLY: 'not a triple'"):
            client.query(wire.CLUSTER_INFO)
        with pytest.raises(ValueError, match=r"the node's own error"):
            client.query(wire.CLUSTER_INFO)
        thread.join(10)
        socket_file = client._address[len("ipc://"):]
        assert os.path.exists(socket_file)
        client.close()
        assert not os.path.exists(socket_file)
        with pytest.raises(ConnectionError, match="closed"):
            client.query(wire.CLUSTER_INFO)
    finally:
        client.close()
        server.close()


def test_closing_a_node_client_does_not_wait_out_a_query_to_a_silent_node(tmp_path):
    """A launcher stops (closes its client) while its watch thread waits for a node that
    does not answer: close() returns at once and the waiting query ends with an error."""
    import threading
    (tmp_path / "sock").mkdir()
    server = Transport(f"ipc://{tmp_path}/sock/node")        # never answers
    client = local_node.NodeClient({"session": str(tmp_path), "address": server.address})
    outcome = []

    def ask():
        try:
            outcome.append(client.query(wire.CLUSTER_INFO, timeout=30))
        except Exception as exc:       # noqa: BLE001 - the test reads it
            outcome.append(exc)

    thread = threading.Thread(target=ask, daemon=True)
    try:
        thread.start()
        assert server.inbox.poll(10_000)          # the query is out and waiting
        t0 = time.monotonic()
        client.close()
        closed_in = time.monotonic() - t0
        thread.join(5)
        assert not thread.is_alive()
        assert isinstance(outcome[0], ConnectionError) and "closed" in str(outcome[0])
        assert closed_in < 5, closed_in           # not the query's 30 s
    finally:
        client.close()
        server.close()
