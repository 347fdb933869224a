"""WORKER_PRELOAD across a mesh: a driver on node 0 asks; node 1's workers start with the module,
and so do those of a node that joins afterwards."""
from helpers.nodes import Cluster

ASK = """
import zray
from zray.util.worker_preload import preload_worker_modules
zray.init(address="auto")
preload_worker_modules(["colorsys"])
zray.shutdown()
"""

PROBE = """
import sys, time
import zray
from zray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as Affinity
zray.init(address="auto")

@zray.remote
class Probe:
    def loaded(self):
        return "colorsys" in sys.modules

node = "%s"
deadline = time.monotonic() + 30
while True:      # the request reaches the other node through the mesh: a moment later
    probe = Probe.options(num_cpus=0, scheduling_strategy=Affinity(node, soft=False)).remote()
    got = zray.get(probe.loaded.remote(), timeout=60)
    zray.kill(probe)
    if got or time.monotonic() > deadline:
        break
    time.sleep(0.3)
print("LOADED", got)
"""


def test_a_request_reaches_every_node_and_later_joiners(tmp_path):
    cluster = Cluster(tmp_path, 2, num_cpus=1)
    try:
        cluster.wait_mesh_ready()
        cluster.run_driver(0, ASK)
        out = cluster.run_driver(0, PROBE % cluster.node_id(1), timeout=110)
        assert "LOADED True" in out.stdout, out.stdout + out.stderr
        cluster.add_node(num_cpus=1)
        cluster.wait_mesh_ready(timeout=30)
        out = cluster.run_driver(0, PROBE % cluster.node_id(2), timeout=110)
        assert "LOADED True" in out.stdout, out.stdout + out.stderr
    finally:
        cluster.stop_all()
