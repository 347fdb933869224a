"""zray.data across two `zray start` nodes on loopback: a sort and a groupby whose map tasks run
on both nodes, so the reducers pull partitions from the other node's store."""
import pytest

pytest.importorskip("pyarrow")

from helpers.nodes import Cluster    # noqa: E402

SHUFFLE = """
import collections, time
import numpy as np
import zray, zray.data as rd
zray.init(address="auto")
rd.DataContext.get_current().enable_progress_bars = False

def tag(batch):
    time.sleep(0.2)      # keep the node's CPU busy so the next task spills to the peer
    batch["node"] = np.array([zray.get_runtime_context().get_node_id()] * len(batch["v"]))
    return batch

rng = np.random.default_rng(0)
values = rng.integers(0, 10_000, 4_000)
ds = rd.from_items([{"v": int(v), "k": int(v) % 7} for v in values], override_num_blocks=8)
tagged = ds.map_batches(tag).materialize()
nodes = collections.Counter(r["node"] for r in tagged.take_all())
out = [r["v"] for r in tagged.sort("v").take_all()]
assert out == sorted(values.tolist()), "sort across nodes is wrong"
sums = {r["k"]: r["sum(v)"] for r in tagged.groupby("k").sum("v").take_all()}
expect = collections.Counter()
for v in values.tolist():
    expect[v % 7] += v
assert sums == dict(expect), (sums, expect)
shuffled = [r["v"] for r in tagged.random_shuffle(seed=1).take_all()]
assert sorted(shuffled) == sorted(values.tolist())
print("NODES", len(nodes))
"""


@pytest.fixture
def two_nodes(tmp_path):
    cluster = Cluster(tmp_path, 2, num_cpus=1)
    try:
        cluster.wait_mesh_ready()
        yield cluster
    finally:
        cluster.stop_all()


def test_shuffles_across_two_nodes(two_nodes):
    out = two_nodes.run_driver(0, SHUFFLE, timeout=110)
    assert "NODES 2" in out.stdout, out.stdout + out.stderr
