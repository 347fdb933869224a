"""Objects pulled across nodes: two `zray start` nodes on loopback (own ports and ZRAY_TMPDIRs).

Tasks do not spill to other nodes yet, so each test uses driver processes: one attached to
node A puts a value and hands its pickled ObjectRef (through a file) to drivers attached to
node B, which `get` it. The owner (A's driver) stays alive and answers where the object is.
"""
import os
import signal
import threading

import pytest

from helpers.nodes import Cluster, Driver, DriverError

MB = 1 << 20

PUT = """
import hashlib, pickle
import numpy as np
arr = np.random.default_rng({seed}).integers(0, 255, size={size}, dtype=np.uint8)
ref = zray.put(arr)
with open({path!r}, "wb") as f:
    pickle.dump(ref, f)
result = hashlib.sha256(arr.tobytes()).hexdigest()
del arr
"""

GET = """
import hashlib, pickle
with open({path!r}, "rb") as f:
    ref = pickle.load(f)
value = zray.get(ref, timeout={timeout})
result = [hashlib.sha256(value.tobytes()).hexdigest(), value.flags.writeable]
"""

DROP = """
import gc
globals().pop("ref", None)
globals().pop("value", None)
gc.collect()
"""

STILL_WORKS = """
import numpy as np
@zray.remote
def total(x):
    return int(x.sum())
big = zray.put(np.ones(4 << 20, dtype=np.uint8))
result = [zray.get(total.remote(big)), zray.get(zray.put(7))]
"""


@pytest.fixture
def two_nodes(tmp_path):
    # A short stall timeout on the reader's node keeps the failure tests short.
    env = {"ZRAY_PULL_STALL_TIMEOUT_S": "8"}
    c = Cluster(tmp_path, 2, object_store_memory=256 * MB, env=env)
    drivers = []

    def driver(i):
        d = Driver(c.dirs[i], tmp_path / f"driver{len(drivers)}-node{i}.log")
        drivers.append(d)
        return d
    c.driver = driver
    try:
        assert c.wait_converged(), "the two nodes did not see each other"
        yield c
    finally:
        for d in drivers:
            d.close()
        c.stop_all()


def _anon_rss(pid):
    """Private (anonymous) resident memory of a process, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def _ids(objects, field="object_id"):
    return {o[field] for o in objects}


def test_readers_on_b_pull_once_get_equal_bytes_and_the_owners_free_removes_every_copy(two_nodes, tmp_path):
    c = two_nodes
    path = tmp_path / "ref.pkl"
    owner = c.driver(0)
    digest = owner.run(PUT.format(seed=1, size=48 * MB + 123, path=str(path)))
    node_a = c.node_info(0)["node_id"]
    readers = [c.driver(1) for _ in range(3)]
    for r in readers:
        r.send(GET.format(path=str(path), timeout=60))
    for r in readers:
        assert r.receive() == [digest, False]     # the same bytes, read-only like any get
    stats_b, stats_a = c.store_stats(1), c.store_stats(0)
    assert stats_b["pulls_started"] == 1 and stats_b["pulls_completed"] == 1
    # The bytes came over the data channel (plain TCP, authenticated), not the CURVE one.
    assert stats_a["data_channel"].startswith("tcp://127.0.0.1:")
    assert stats_b["bytes_streamed_in"] == stats_a["bytes_streamed_out"] >= 48 * MB
    assert stats_b["stream_fallbacks"] == 0
    assert stats_a["pulls_served"] == 1 and stats_a["serves_active"] == 0
    (copy,) = [o for o in c.objects(1) if o["copy_from"] is not None]
    assert copy["copy_from"] == node_a and copy["object_size"] >= 48 * MB
    (primary,) = [o for o in c.objects(0) if o["object_id"] == copy["object_id"]]
    assert primary["copy_from"] is None

    # A reader on A reads its own node's primary: no pull.
    local_reader = c.driver(0)
    assert local_reader.run(GET.format(path=str(path), timeout=60)) == [digest, False]
    assert c.store_stats(0)["pulls_started"] == 0

    # Every reference gone: the owner frees, on A and on B.
    for d in readers + [local_reader]:
        d.run(DROP)
    owner.run(DROP)
    gone = lambda i: copy["object_id"] not in _ids(c.objects(i))  # noqa: E731
    assert c.wait(lambda: gone(0) and gone(1), 20), (c.objects(0), c.objects(1))
    assert c.store_stats(1)["used"] == 0


def test_a_source_killed_beforehand_gives_object_lost_and_b_keeps_working(two_nodes, tmp_path):
    c = two_nodes
    path = tmp_path / "ref.pkl"
    owner = c.driver(0)
    owner.run(PUT.format(seed=2, size=4 * MB, path=str(path)))
    node_a = c.node_info(0)
    os.kill(node_a["pid"], signal.SIGKILL)
    reader = c.driver(1)
    with pytest.raises(DriverError) as info:
        reader.run(GET.format(path=str(path), timeout=60))
    # The owner lived on A too: whichever news reaches B first (the owner's death or the copy's
    # loss) names A, and both are what Ray raises here.
    assert info.value.type_name in ("ObjectLostError", "ObjectFetchTimedOutError",
                                    "OwnerDiedError")
    assert node_a["node_id"][:12] in info.value.message
    assert reader.run(STILL_WORKS) == [4 << 20, 7]
    assert c.store_stats(1)["pulls_active"] == 0 and c.store_stats(1)["num_copies"] == 0


@pytest.mark.parametrize("channel", ["curve", "tcp"])
def test_a_source_killed_mid_way_fails_the_pull_and_b_keeps_working(tmp_path, channel):
    if channel == "curve":
        # Chunks over CURVE, one small chunk in flight at a time, so the pull takes long
        # enough to be caught mid-way.
        source_env = None
        reader_env = {"ZRAY_PULL_CHUNK_BYTES": str(16 << 10), "ZRAY_PULL_WINDOW": "1",
                      "ZRAY_PULL_STALL_TIMEOUT_S": "8", "ZRAY_DATA_CHANNEL": "curve"}
    else:
        # The data channel, its source capped at 20 MB/s: ~5 s for the object.
        source_env = {"ZRAY_DATA_MAX_BYTES_PER_S": "20e6"}
        reader_env = {"ZRAY_PULL_STALL_TIMEOUT_S": "8"}
    c = Cluster(tmp_path, 2, object_store_memory=256 * MB, env=[source_env, reader_env])
    owner = reader = None
    try:
        assert c.wait_converged()
        path = tmp_path / "ref.pkl"
        owner = Driver(c.dirs[0], tmp_path / "owner.log")
        owner.run(PUT.format(seed=3, size=96 * MB, path=str(path)))
        node_a = c.node_info(0)
        reader = Driver(c.dirs[1], tmp_path / "reader.log")
        reader.send(GET.format(path=str(path), timeout=60))
        assert c.wait(lambda: c.store_stats(1)["bytes_pulled"] > 0, 30)
        os.kill(node_a["pid"], signal.SIGKILL)
        with pytest.raises(DriverError) as info:
            reader.receive(timeout=60)
        assert info.value.type_name in ("ObjectLostError", "ObjectFetchTimedOutError")
        assert node_a["node_id"][:12] in info.value.message
        stats = c.store_stats(1)
        assert stats["pulls_failed"] == 1 and stats["pulls_active"] == 0
        assert c.wait(lambda: c.store_stats(1)["pulls_cancelling"] == 0, 10)
        stats = c.store_stats(1)
        assert stats["num_copies"] == 0 and stats["used"] == 0     # the partial copy is gone
        assert (stats["bytes_streamed_in"] > 0) == (channel == "tcp")
        assert reader.run(STILL_WORKS) == [4 << 20, 7]
    finally:
        for d in (owner, reader):
            if d is not None:
                d.close()
        c.stop_all()


def test_a_copy_freed_at_the_source_fails_the_reader_with_object_lost(two_nodes, tmp_path):
    """The owner says the object is on A, but A no longer has it (its store lost it)."""
    c = two_nodes
    path = tmp_path / "ref.pkl"
    owner = c.driver(0)
    owner.run(PUT.format(seed=4, size=2 * MB, path=str(path)))
    # Free it behind the owner's back, as a lost store would.
    object_id = [o for o in c.objects(0) if o["object_size"] >= 2 * MB][0]["object_id"]
    owner.run(f"""
from zray.objects.object_ref import get_runtime
from zray.transport import wire
rt = get_runtime()
rt.transport.send(rt.daemon, wire.OBJ_FREE, ([bytes.fromhex({object_id!r})],))
""")
    assert c.wait(lambda: object_id not in _ids(c.objects(0)), 10)
    with pytest.raises(DriverError) as info:
        c.driver(1).run(GET.format(path=str(path), timeout=60))
    assert info.value.type_name == "ObjectLostError"
    assert object_id in info.value.message and c.node_info(0)["node_id"][:12] in info.value.message


@pytest.mark.slow
def test_a_1gb_object_moves(tmp_path):
    c = Cluster(tmp_path, 2, object_store_memory=1200 * MB)
    owner = reader = None
    try:
        assert c.wait_converged()
        path = tmp_path / "ref.pkl"
        owner = Driver(c.dirs[0], tmp_path / "owner.log")
        digest = owner.run(PUT.format(seed=5, size=1 << 30, path=str(path)), timeout=120)
        reader = Driver(c.dirs[1], tmp_path / "reader.log")
        daemons = [c.node_info(i)["pid"] for i in (0, 1)]
        before = [_anon_rss(pid) for pid in daemons]
        peaks = list(before)
        reader.send(GET.format(path=str(path), timeout=120))
        done = []
        sampler = threading.Thread(target=lambda: done.append(reader.receive(timeout=180)))
        sampler.start()
        while sampler.is_alive():
            peaks = [max(p, _anon_rss(pid)) for p, pid in zip(peaks, daemons)]
            sampler.join(0.02)
        assert done == [[digest, False]], reader.stderr()
        assert c.store_stats(1)["bytes_pulled"] == c.store_stats(0)["bytes_served"] >= 1 << 30
        # Bounded memory: neither daemon's private memory grows by more than a few windows
        # (the object itself lives in the shared-memory stores, not in the daemons' heaps).
        growth = [p - b for p, b in zip(peaks, before)]
        print("daemon private memory growth during the pull (A, B):", growth)
        assert max(growth) < 128 * MB, growth
    finally:
        for d in (owner, reader):
            if d is not None:
                d.close()
        c.stop_all()


MANY = """
import hashlib, pickle
import numpy as np
rng = np.random.default_rng(11)
sizes = [1, 100, 1 << 20, (1 << 20) + 1, 5 * (1 << 20) + 7, 20 * (1 << 20), 33, 3 * (1 << 20)]
arrays = [rng.integers(0, 255, size=n, dtype=np.uint8) for n in sizes]
refs = [zray.put(a) for a in arrays]
with open({path!r}, "wb") as f:
    pickle.dump(refs, f)
result = [hashlib.sha256(a.tobytes()).hexdigest() for a in arrays]
del arrays
"""

GET_MANY = """
import hashlib, pickle
with open({path!r}, "rb") as f:
    refs = pickle.load(f)
result = [hashlib.sha256(v.tobytes()).hexdigest() for v in zray.get(refs, timeout=60)]
del refs
"""


def test_many_objects_pulled_at_once_over_the_data_channel_are_intact(two_nodes, tmp_path):
    """More pulls than stream threads, sizes from 1 byte up: every byte where it belongs."""
    c = two_nodes
    path = tmp_path / "refs.pkl"
    digests = c.driver(0).run(MANY.format(path=str(path)))
    assert c.driver(1).run(GET_MANY.format(path=str(path))) == digests
    stats = c.store_stats(1)
    # (the three tiny ones travel inline with their refs, not through the store)
    assert stats["pulls_completed"] == stats["pulls_started"] == 5 and stats["pulls_failed"] == 0
    assert stats["bytes_streamed_in"] >= 29 * MB and stats["pulls_cancelling"] == 0


def test_a_peer_without_the_secret_gets_nothing_from_the_data_channel(two_nodes, tmp_path):
    import time
    from zray.transport import data_channel as D
    c = two_nodes
    path = tmp_path / "ref.pkl"
    digest = c.driver(0).run(PUT.format(seed=8, size=2 * MB, path=str(path)))
    endpoint = c.store_stats(0)["data_channel"]
    target = bytearray(2 * MB)
    intruder = D.DataClient(D.derive_key("a guessed secret"), "tcp://127.0.0.1:1",
                            lambda o, n: memoryview(target)[o:o + n], 5.0)
    try:
        for pull_id in range(1, 4):          # whatever transfer it names
            intruder.start(pull_id, endpoint, 0, 2 * MB)
        done = []
        deadline = time.monotonic() + 20
        while len(done) < 3 and time.monotonic() < deadline:
            done += intruder.take_done()
            time.sleep(0.02)
        assert sorted(kind for _, (kind, _) in done) == [D.CONNECT] * 3
        assert target == bytearray(2 * MB)
    finally:
        intruder.close()
    assert c.wait(lambda: c.store_stats(0)["data_refused"] == 3, 10)
    assert c.driver(1).run(GET.format(path=str(path), timeout=60)) == [digest, False]


def _has_ipv6_loopback():
    import socket
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")
def test_a_cluster_on_ipv6_loopback_meshes_and_moves_objects(tmp_path):
    """IPv6 end to end: the mesh (CURVE over tcp://[::1]), drivers' and workers' endpoints,
    and the data channel, on ::1."""
    from helpers.nodes import cli, node_file_of, seconds_until, status_of
    from zray.node.local_node import free_port
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        d.mkdir()
    port = free_port("::1")
    drivers = []
    try:
        out = cli(dirs[0], "start", "--num-cpus", "1", "--port", str(port),
                  "--node-ip-address", "::1", "--object-store-memory", str(128 * MB))
        assert f"[::1]:{port}" in out.stdout
        secret = node_file_of(dirs[0])["secret_file"]
        out = cli(dirs[1], "start", "--num-cpus", "1", "--address", f"[::1]:{port}",
                  "--secret-file", secret, "--object-store-memory", str(128 * MB))
        assert "[::1]:" in out.stdout          # it chose the seed's family and loopback
        assert seconds_until(lambda: len([n for n in status_of(dirs[1])["cluster"]["nodes"]
                                          if n["Alive"]]) == 2, 20) is not None
        path = tmp_path / "ref.pkl"
        owner = Driver(dirs[0], tmp_path / "owner.log")
        drivers.append(owner)
        digest = owner.run(PUT.format(seed=9, size=12 * MB + 5, path=str(path)))
        reader = Driver(dirs[1], tmp_path / "reader.log")
        drivers.append(reader)
        assert reader.run(GET.format(path=str(path), timeout=60)) == [digest, False]
        assert reader.run(STILL_WORKS) == [4 << 20, 7]
        stats_a, stats_b = status_of(dirs[0])["store"], status_of(dirs[1])["store"]
        assert stats_a["data_channel"].startswith("tcp://[::1]:")
        assert stats_b["bytes_streamed_in"] >= 12 * MB
    finally:
        for d in drivers:
            d.close()
        for d in dirs:
            cli(d, "stop", check=False)


def test_a_puller_killed_mid_stream_leaves_nothing_at_the_source(tmp_path):
    """The reader's node dies while the data channel streams to it: the source revokes the
    grant, unpins, forgets the copy, and serves the next reader."""
    source_env = {"ZRAY_DATA_MAX_BYTES_PER_S": "20e6"}     # ~3 s for the object
    c = Cluster(tmp_path, 3, object_store_memory=128 * MB, env=[source_env, None, None])
    drivers = []
    try:
        assert c.wait_converged()
        path = tmp_path / "ref.pkl"
        owner = Driver(c.dirs[0], tmp_path / "owner.log")
        drivers.append(owner)
        digest = owner.run(PUT.format(seed=12, size=64 * MB, path=str(path)))
        doomed = Driver(c.dirs[1], tmp_path / "doomed.log")
        drivers.append(doomed)
        doomed.send(GET.format(path=str(path), timeout=60))
        assert c.wait(lambda: c.store_stats(1)["bytes_pulled"] > 0, 30)
        assert c.store_stats(0)["serves_active"] == 1
        c.kill9(1)
        assert c.wait(lambda: c.store_stats(0)["serves_active"] == 0, 30)
        stats = c.store_stats(0)
        assert stats["bytes_streamed_out"] < 64 * MB
        (primary,) = [o for o in c.objects(0) if o["object_size"] >= 64 * MB]
        assert primary["pinned_by"] == 0
        reader = Driver(c.dirs[2], tmp_path / "reader.log")
        drivers.append(reader)
        assert reader.run(GET.format(path=str(path), timeout=60)) == [digest, False]
    finally:
        for d in drivers:
            try:
                d.close()
            except Exception:      # the doomed driver's node is gone
                pass
        c.stop_all()


def test_zray_status_names_the_data_channel(two_nodes):
    from helpers.nodes import cli
    out = cli(two_nodes.dirs[0], "status").stdout
    assert "data channel: tcp://127.0.0.1:" in out and "authenticated" in out
