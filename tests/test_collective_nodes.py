"""Collective groups whose ranks live on two zray nodes (two `zray start` nodes on loopback,
actors placed by custom resources): every rank pair that crosses nodes goes over ZeroMQ (cpu
backend) or MPI's Open_port/Connect (mpi backend), and a member killed on the other node
fails the pending calls with a CollectiveError instead of hanging."""
import json

import pytest

from helpers.nodes import Cluster

COMMON = """
import json, os, signal, time
import numpy as np
import zray
import zray.util.collective as col
zray.init(address="auto")

@zray.remote(num_cpus=0)
class Member:
    def node(self):
        return zray.get_runtime_context().get_node_id()

    def init(self, world, rank, name, backend):
        col.init_collective_group(world, rank, backend, name)
        return col.get_group_handle(name).backend

    def uses_shm(self, name):
        return bool(getattr(col.get_group_handle(name), "use_shm", False))

    def ops(self, name, big):
        r, ws = col.get_rank(name), col.get_collective_group_size(name)
        out = {}
        for label, n in (("small", 16), ("big", big)):
            x = np.arange(n, dtype=np.float32) + r
            col.allreduce(x, name)
            expected = ws * np.arange(n, dtype=np.float32) + sum(range(ws))
            out["allreduce_" + label] = bool(np.array_equal(x, expected))
        x = np.full(8, float(r))
        col.broadcast(x, ws - 1, name)
        out["broadcast"] = x.tolist()
        outs = [np.zeros(4) for _ in range(ws)]
        col.allgather(outs, np.full(4, float(r)), name)
        out["allgather"] = [o[0] for o in outs]
        # send/recv across the nodes, both ways: rank 0 <-> the last rank
        last = ws - 1
        if r == 0:
            col.send(np.arange(5, dtype=np.int64) * 3, last, name)
            got = np.zeros(5, np.int64)
            col.recv(got, last, name)
            out["recv"] = got.tolist()
        elif r == last:
            got = np.zeros(5, np.int64)
            col.recv(got, 0, name)
            col.send(got + 1, 0, name)
            out["recv"] = got.tolist()
        col.barrier(name)
        return out

    def hang_in_allreduce(self, name):
        t0 = time.monotonic()
        try:
            col.allreduce(np.ones(1 << 16, np.float32), name, timeout_ms=60000)
            return {"type": None}
        except Exception as exc:
            return {"type": type(exc).__name__, "msg": str(exc), "peer": getattr(exc, "peer", None),
                    "collective": isinstance(exc, col.CollectiveError),
                    "s": time.monotonic() - t0}

    def die(self):
        os.kill(os.getpid(), signal.SIGKILL)

    def destroy(self, name):
        col.destroy_collective_group(name)
        return col.is_group_initialized(name)

# ranks 0 and 1 on the node with "left", rank 2 on the one with "right"
def members():
    ms = [Member.options(resources={"left": 1}).remote(),
          Member.options(resources={"left": 1}).remote(),
          Member.options(resources={"right": 1}).remote()]
    return ms, zray.get([m.node.remote() for m in ms], timeout=60)
"""

OPS = COMMON + """
ms, nodes = members()
zray.get([m.init.remote(3, r, "x", BACKEND) for r, m in enumerate(ms)], timeout=120)
shm = zray.get([m.uses_shm.remote("x") for m in ms], timeout=30)
res = zray.get([m.ops.remote("x", 300000) for m in ms], timeout=120)
gone = zray.get([m.destroy.remote("x") for m in ms], timeout=30)
print("RESULT " + json.dumps({"nodes": nodes, "shm": shm, "res": res, "gone": gone}))
"""

KILL = COMMON + """
ms, nodes = members()
zray.get([m.init.remote(3, r, "k", "gloo") for r, m in enumerate(ms)], timeout=120)
pending = [m.hang_in_allreduce.remote("k") for m in ms[:2]]
time.sleep(1.0)                     # ranks 0 and 1 wait inside the allreduce
t0 = time.monotonic()
ms[2].die.remote()
res = zray.get(pending, timeout=60)
print("RESULT " + json.dumps({"nodes": nodes, "res": res, "s": time.monotonic() - t0}))
"""


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("coll-nodes"), 0)
    try:
        c.add_node(num_cpus=1, resources={"left": 4})
        c.add_node(num_cpus=1, resources={"right": 4})
        c.wait_mesh_ready()
        yield c
    finally:
        c.stop_all()


def _result(out):
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, out.stdout + out.stderr
    return json.loads(lines[-1][7:])


@pytest.mark.parametrize("backend", ["gloo", "mpi"])
def test_every_kind_of_op_between_two_nodes(two_nodes, backend):
    if backend == "mpi":
        pytest.importorskip("mpi4py")
    out = _result(two_nodes.run_driver(0, OPS.replace("BACKEND", repr(backend)), timeout=240))
    nodes = out["nodes"]
    assert nodes[0] == nodes[1] != nodes[2], nodes
    if backend == "gloo":
        assert out["shm"] == [False, False, False]     # the group spans nodes: ZeroMQ
    for r, res in enumerate(out["res"]):
        assert res["allreduce_small"] and res["allreduce_big"], (r, res)
        assert res["broadcast"] == [2.0] * 8, (r, res)
        assert res["allgather"] == [0.0, 1.0, 2.0], (r, res)
    assert out["res"][0]["recv"] == [1, 4, 7, 10, 13]
    assert out["res"][2]["recv"] == [0, 3, 6, 9, 12]
    assert out["gone"] == [False, False, False]


def test_a_rank_killed_on_the_other_node_fails_the_pending_calls(two_nodes):
    out = _result(two_nodes.run_driver(0, KILL, timeout=240))
    assert out["nodes"][0] != out["nodes"][2]
    print(f"the others failed {out['s']:.2f} s after the kill: "
          f"{[(r['type'], r['msg']) for r in out['res']]}")
    for res in out["res"]:
        assert res["collective"] and res["type"] in ("PeerDiedError", "GroupBrokenError"), res
        assert "'k'" in res["msg"], res
    # far below the call's 60 s timeout: the death is seen, not waited out
    assert out["s"] < 30, out
