"""The cluster key-value store of real node daemons, asked by a raw client on a zray Transport:
one node, and three on loopback where the node that decides a key is killed -9."""
import os
import signal

import pytest

from helpers.nodes import Cluster
from zray.mesh.ring import HashRing
from zray.node.kv_service import kv_key
from zray.transport import wire
from zray.transport.zmq_transport import Transport


class RawKvClient:
    """KV_* requests to one daemon, each answered by KV_REPLY within a deadline."""

    def __init__(self, tmp_path, daemon_address, name="kv-client"):
        self.daemon = daemon_address
        self.transport = Transport(f"ipc://{tmp_path}/{name}.sock")
        self.req_id = 0

    def call(self, msg_type, *args, timeout_s=15.0):
        self.req_id += 1
        self.transport.send(self.daemon, msg_type, (self.req_id,) + args)
        while True:
            if not self.transport.inbox.poll(int(timeout_s * 1000)):
                raise TimeoutError(f"no KV_REPLY from {self.daemon} in {timeout_s}s")
            _, got_type, payload, _ = self.transport.recv()
            if got_type == wire.KV_REPLY and payload[0] == self.req_id:
                _, result, error = payload
                if error is not None:
                    raise error
                return result

    def put(self, ns, key, value, overwrite=True):
        return self.call(wire.KV_PUT, ns, key, value, overwrite)

    def get(self, ns, key):
        return self.call(wire.KV_GET, ns, key)

    def delete(self, ns, key):
        return self.call(wire.KV_DEL, ns, key)

    def keys(self, ns, prefix=""):
        return self.call(wire.KV_KEYS, ns, prefix)

    def close(self):
        self.transport.close()


@pytest.fixture
def nodes(tmp_path):
    made = []

    def start(n):
        made.append(Cluster(tmp_path, n))
        return made[-1]
    yield start
    for c in made:
        c.stop_all()


def test_kv_on_one_node(nodes, tmp_path):
    c = nodes(1)
    client = RawKvClient(tmp_path, c.node_info(0)["address"])
    try:
        assert client.put("ns", "a", b"1") is True
        assert client.put("ns", "a", b"2", overwrite=False) is False
        assert client.get("ns", "a") == b"1"
        assert client.get("ns", "missing") is None
        assert client.put("ns", "ab", b"3") is True
        assert client.keys("ns", "a") == ["a", "ab"]
        assert client.delete("ns", "a") is True
        assert client.keys("ns") == ["ab"]
        with pytest.raises(TypeError):
            client.put("ns", "k", "a str, not bytes")
    finally:
        client.close()


def test_kv_keys_outlive_the_node_that_decides_them(nodes, tmp_path):
    c = nodes(3)
    c.wait_mesh_ready()
    ids = [c.node_id(i) for i in range(3)]
    ring = HashRing(ids)
    keys = [f"rank-{i}" for i in range(8)]
    # The victim decides at least one key; the clients talk to the two others.
    victim = max(range(3), key=lambda i: sum(ring.owner(kv_key("job", k)) == ids[i] for k in keys))
    writer, reader = [i for i in range(3) if i != victim]
    w = RawKvClient(tmp_path, c.node_info(writer)["address"], "writer")
    r = RawKvClient(tmp_path, c.node_info(reader)["address"], "reader")
    try:
        for i, key in enumerate(keys):
            assert w.put("job", key, b"addr-%d" % i) is True
        assert r.keys("job", "rank-") == sorted(keys)
        assert [r.get("job", k) for k in keys] == [b"addr-%d" % i for i in range(8)]
        os.kill(c.node_info(victim)["pid"], signal.SIGKILL)
        assert c.wait(lambda: c.states(reader).get(ids[victim]) == "DEAD"
                      and c.states(writer).get(ids[victim]) == "DEAD", 15) is not None
        assert [r.get("job", k) for k in keys] == [b"addr-%d" % i for i in range(8)]
        assert r.keys("job", "rank-") == sorted(keys)
        assert w.put("job", "rank-0", b"again", overwrite=False) is False
    finally:
        w.close()
        r.close()
