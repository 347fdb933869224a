"""Several node daemons on loopback, each with its own port and directory: SWIM membership over
CURVE-authenticated TCP, resources summed over the mesh, failure detection, leave, security."""
import os
import pickle
import signal
import subprocess
import sys

import pytest
import zmq

from helpers.nodes import Cluster
from helpers.nodes import cli as _cli
from zray.node import local_node
from zray.transport import wire


@pytest.fixture
def cluster3(tmp_path):
    c = Cluster(tmp_path, 3)
    yield c
    c.stop_all()


def test_three_nodes_converge_and_sum_their_resources(cluster3):
    c = cluster3
    assert c.wait(lambda: all(list(c.states(i).values()).count("ALIVE") == 3 for i in range(3)), 10)
    st = c.status(1)
    assert st["cluster"]["total"]["CPU"] == 3.0
    out = subprocess.run([sys.executable, "-c",
                          "import zray; zray.init(address='auto'); "
                          "print(zray.cluster_resources()['CPU'], len(zray.nodes()))"],
                         env=dict(os.environ, ZRAY_TMPDIR=str(c.dirs[2])),
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["3.0", "3"], out.stderr


def test_kill_9_of_a_node_is_detected_within_5_seconds(cluster3):
    c = cluster3
    assert c.wait(lambda: list(c.states(0).values()).count("ALIVE") == 3, 10)
    victim = c.node_info(2)
    os.kill(victim["pid"], signal.SIGKILL)
    took = c.wait(lambda: all(c.states(i).get(victim["node_id"]) == "DEAD" for i in (0, 1)), 15)
    assert took is not None and took < 5.0, took
    assert c.status(0)["cluster"]["total"]["CPU"] == 2.0


def test_graceful_stop_is_seen_as_left(cluster3):
    c = cluster3
    assert c.wait(lambda: list(c.states(0).values()).count("ALIVE") == 3, 10)
    leaving = c.node_info(1)["node_id"]
    _cli(c.dirs[1], "stop")
    assert c.wait(lambda: c.states(0).get(leaving) == "LEFT" and c.states(2).get(leaving) == "LEFT", 5)


def test_a_peer_without_the_secret_gets_nothing_and_the_cluster_keeps_serving(cluster3):
    c = cluster3
    assert c.wait(lambda: list(c.states(0).values()).count("ALIVE") == 3, 10)
    ctx = zmq.Context()
    try:
        for curve_key in (None, "wrong"):
            sock = ctx.socket(zmq.DEALER)
            sock.linger = 0
            if curve_key:
                from zray.mesh.security import CurveKeys
                CurveKeys("not the cluster secret").make_client(sock)
            inbox = ctx.socket(zmq.ROUTER)
            inbox.linger = 0
            port = inbox.bind_to_random_port("tcp://127.0.0.1")
            sock.setsockopt(zmq.IDENTITY, f"tcp://127.0.0.1:{port}".encode())
            sock.connect(f"tcp://127.0.0.1:{c.port}")
            sock.send(pickle.dumps((wire.CLUSTER_INFO, (1,))))
            sock.send(pickle.dumps((wire.MESH_SWIM, (("push_pull", "intruder", [], False),))))
            assert not inbox.poll(1500) and not sock.poll(100)
            sock.close()
            inbox.close()
    finally:
        ctx.term()
    assert c.status(0)["cluster"]["total"]["CPU"] == 3.0
    assert "intruder" not in c.states(0)


def test_joining_without_the_secret_is_refused(tmp_path):
    port = local_node.free_port("127.0.0.1")
    seed = tmp_path / "seed"
    seed.mkdir()
    _cli(seed, "start", "--num-cpus", "1", "--port", str(port), "--node-ip-address", "127.0.0.1")
    try:
        other = tmp_path / "other"
        other.mkdir()
        env = {k: v for k, v in os.environ.items() if k != "ZRAY_CLUSTER_SECRET"}
        out = subprocess.run([sys.executable, "-m", "zray.scripts.cli", "start", "--address",
                              f"127.0.0.1:{port}"], env=dict(env, ZRAY_TMPDIR=str(other)),
                             capture_output=True, text=True, timeout=60)
        assert out.returncode != 0
        assert "secret" in (out.stderr + out.stdout).lower()
    finally:
        _cli(seed, "stop", check=False)


def test_init_with_the_address_of_any_member(cluster3):
    c = cluster3
    assert c.wait(lambda: list(c.states(1).values()).count("ALIVE") == 3, 10)
    code = ("import zray\n"
            f"zray.init(address='127.0.0.1:{c.port}')\n"
            "print(zray.cluster_resources()['CPU'])\n"
            "zray.shutdown()\n"
            "try:\n"
            "    zray.init(address='127.0.0.1:1')\n"
            "except ConnectionError as e:\n"
            "    print('refused')\n")
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, ZRAY_TMPDIR=str(c.dirs[1])),
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["3.0", "refused"], out.stderr


def test_drivers_and_workers_tcp_endpoints_refuse_peers_without_the_secret(tmp_path):
    from helpers.nodes import Cluster, Driver
    c = Cluster(tmp_path, 2)
    try:
        c.wait_mesh_ready()
        driver = Driver(c.dirs[0], tmp_path / "driver.log")
        try:
            code = ("import zray.api\n"
                    "@zray.remote\n"
                    "def address():\n"
                    "    return zray.api._runtime().address\n"
                    "result = [zray.api._runtime().address, zray.get(address.remote())]\n")
            addresses = driver.run(code)
            tcps = [a.split("|")[1] for a in addresses]
            assert all(t.startswith("tcp://127.0.0.1:") for t in tcps), addresses
            ctx = zmq.Context()
            try:
                for tcp in tcps:
                    sock = ctx.socket(zmq.DEALER)
                    sock.linger = 0
                    sock.setsockopt(zmq.IDENTITY, b"intruder")
                    sock.connect(tcp)
                    # A task result for nobody and a request for an object: unpickled by no one.
                    sock.send(pickle.dumps((wire.OBJ_STATUS_REQUEST, (b"x" * 16,))))
                    sock.send(pickle.dumps((wire.CLUSTER_INFO, (1,))))
                    assert not sock.poll(1500)
                    sock.close()
            finally:
                ctx.term()
            # The driver and its worker keep serving.
            assert driver.run(code)[0] == addresses[0]
        finally:
            driver.close()
    finally:
        c.stop_all()
