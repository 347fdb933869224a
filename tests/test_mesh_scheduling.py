"""Bottom-up scheduling across nodes on loopback: spilling to peers, custom resources, waiting
for a node that fits, scheduling strategies, and what a node's death does to its work."""
import time

import pytest

from helpers.nodes import Cluster, seconds_until

WHERE = """
import time, zray
zray.init(address="auto")

@zray.remote
def where(seconds=0.0):
    time.sleep(seconds)
    return zray.get_runtime_context().get_node_id()
"""

TILL = """
@zray.remote
class Till:
    def __init__(self):
        self.total = 0
    def add(self, k):
        self.total += k
        return self.total
    def node(self):
        return zray.get_runtime_context().get_node_id()
"""

NAMED = """
import zray
zray.init(address="auto", namespace="shop")
""" + TILL


@pytest.fixture
def mesh(tmp_path):
    c = Cluster(tmp_path, 0)
    yield c
    c.stop_all()


def test_a_busy_node_spills_tasks_to_its_peer_and_results_and_prints_come_back(mesh):
    mesh.add_node(num_cpus=1)
    mesh.add_node(num_cpus=1)
    mesh.wait_mesh_ready()
    out = mesh.run_driver(0, WHERE + """
me = zray.get_runtime_context().get_node_id()
nodes = zray.get([where.remote(1.0) for _ in range(4)])
print("NODES", len(set(nodes)), me in nodes)

@zray.remote
def shout(x):
    print("shouting", x)
    return x * 2
print("DOUBLED", sum(zray.get([shout.remote(i) for i in range(6)])))
""")
    assert "NODES 2 True" in out.stdout, out.stdout + out.stderr
    assert "DOUBLED 30" in out.stdout
    # Worker output from either node reaches the driver.
    assert all(f"shouting {i}" in out.stdout for i in range(6)), out.stdout


def test_a_custom_resource_draws_tasks_and_actors_to_its_node(mesh):
    mesh.add_node(num_cpus=1)
    mesh.add_node(num_cpus=1, resources={"special": 2})
    mesh.wait_mesh_ready()
    special = mesh.node_id(1)
    out = mesh.run_driver(0, WHERE + TILL + """
print("TASK", zray.get(where.options(resources={"special": 1}).remote()))
c = Till.options(resources={"special": 1}).remote()
print("ACTOR", zray.get(c.node.remote()), zray.get([c.add.remote(1) for _ in range(50)])[-1])
zray.kill(c)
# Its special unit is free again: a task that needs both units runs.
print("AFTER", zray.get(where.options(resources={"special": 2}).remote(), timeout=30))
""")
    assert f"TASK {special}" in out.stdout, out.stdout + out.stderr
    assert f"ACTOR {special} 50" in out.stdout
    assert f"AFTER {special}" in out.stdout


def test_an_infeasible_task_warns_once_and_runs_when_a_fitting_node_joins(mesh):
    mesh.add_node(num_cpus=1)
    driver = mesh.start_driver(0, WHERE + """
refs = [where.options(resources={"later": 1}).remote() for _ in range(2)]
print("RESULT", set(zray.get(refs, timeout=60)), flush=True)
""")
    try:
        time.sleep(3)
        assert driver.poll() is None
        joined = mesh.add_node(num_cpus=1, resources={"later": 1})
        out, err = driver.communicate(timeout=60)
    finally:
        driver.kill()
    assert f"RESULT {{'{mesh.node_id(joined)}'}}" in out, out + err
    assert err.count("no node has that much") == 1, err


def test_node_affinity_and_spread(mesh):
    for _ in range(3):
        mesh.add_node(num_cpus=1)
    mesh.wait_mesh_ready()
    ids = [mesh.node_id(i) for i in range(3)]
    out = mesh.run_driver(0, WHERE + f"""
from zray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as Affinity
ids = {ids!r}
print("HARD", [zray.get(where.options(scheduling_strategy=Affinity(n, soft=False)).remote())
               for n in ids] == ids)
print("SPREAD", len(set(zray.get([where.options(scheduling_strategy="SPREAD").remote(0.5)
                                  for _ in range(6)]))))
print("SOFT", zray.get(where.options(scheduling_strategy=Affinity("00" * 14, soft=True)).remote()) in ids)
try:
    zray.get(where.options(scheduling_strategy=Affinity("00" * 14, soft=False)).remote())
except zray.exceptions.TaskUnschedulableError as e:
    print("UNSCHEDULABLE", "not alive" in str(e))

@zray.remote
class A:
    def node(self):
        return zray.get_runtime_context().get_node_id()
a = A.options(scheduling_strategy=Affinity(ids[2], soft=False)).remote()
print("ACTOR", zray.get(a.node.remote()) == ids[2])
try:
    zray.get(where.options(scheduling_strategy="NOWHERE").remote())
except ValueError as e:
    print("BADSTRATEGY", "scheduling_strategy" in str(e))
""")
    for line in ("HARD True", "SPREAD 3", "SOFT True", "UNSCHEDULABLE True", "ACTOR True",
                 "BADSTRATEGY True"):
        assert line in out.stdout, out.stdout + out.stderr


@pytest.mark.slow
def test_kill_9_of_a_node_retries_its_tasks_and_restarts_its_actors_elsewhere(mesh):
    mesh.add_node(num_cpus=2)
    mesh.add_node(num_cpus=2)
    mesh.wait_mesh_ready()
    victim = mesh.node_id(1)
    driver = mesh.start_driver(0, WHERE + f"""
from zray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as Affinity
there = Affinity({victim!r}, soft=True)

@zray.remote(max_restarts=1, max_task_retries=-1)
class Actor:
    def node(self):
        return zray.get_runtime_context().get_node_id()

a = Actor.options(scheduling_strategy=there).remote()
print("ACTOR BEFORE", zray.get(a.node.remote()), flush=True)
slow = where.options(scheduling_strategy=there, max_retries=2).remote(8.0)
pinned = where.options(scheduling_strategy=Affinity({victim!r}, soft=False), max_retries=0).remote(8.0)
time.sleep(1.5)
print("READY", flush=True)
print("TASK AFTER", zray.get(slow, timeout=60), flush=True)
try:
    zray.get(pinned, timeout=60)
except Exception as e:
    print("PINNED", type(e).__name__, flush=True)
print("ACTOR AFTER", zray.get(a.node.remote(), timeout=60), flush=True)
""")
    try:
        line = driver.stdout.readline()
        assert line.strip() == f"ACTOR BEFORE {victim}", line + driver.stderr.read()
        assert driver.stdout.readline().strip() == "READY"
        mesh.kill9(1)
        out, err = driver.communicate(timeout=90)
    finally:
        driver.kill()
    survivor = mesh.node_id(0)
    assert f"TASK AFTER {survivor}" in out, out + err
    assert "PINNED NodeDiedError" in out, out + err
    assert f"ACTOR AFTER {survivor}" in out, out + err


def test_a_driver_that_exits_takes_its_tasks_on_peers_with_it(mesh):
    mesh.add_node(num_cpus=1)
    mesh.add_node(num_cpus=1)
    mesh.wait_mesh_ready()
    other = mesh.node_id(1)
    mesh.run_driver(0, WHERE + f"""
from zray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as Affinity
refs = [where.options(scheduling_strategy=Affinity({other!r}, soft=False)).remote(600)]
time.sleep(2)
""")
    # The long task on the other node is stopped, its worker with it.
    gone = seconds_until(lambda: mesh.status(1)["cluster"]["workers"] == 0, 20)
    assert gone is not None, mesh.status(1)




def test_actor_names_live_on_the_ring_and_survive_the_death_of_any_other_node(mesh):
    for _ in range(3):
        mesh.add_node(num_cpus=1)
    mesh.wait_mesh_ready()
    # Names made on node 1, many of them so that every member decides some.
    mesh.run_driver(1, NAMED + """
tills = [Till.options(name=f"till{i}", lifetime="detached", num_cpus=0).remote() for i in range(8)]
print([zray.get(t.add.remote(i)) for i, t in enumerate(tills)])
""")
    out = mesh.run_driver(2, NAMED + """
try:
    Till.options(name="till3", lifetime="detached").remote()
except ValueError as e:
    print("TAKEN", "already exists" in str(e))
again = Till.options(name="till3", get_if_exists=True).remote()
print("SAME", zray.get(again.add.remote(10)))
print("FOUND", [zray.get(zray.get_actor(f"till{i}").add.remote(1)) for i in range(8)])
""")
    assert "TAKEN True" in out.stdout, out.stdout + out.stderr
    assert "SAME 13" in out.stdout
    assert "FOUND [1, 2, 3, 14, 5, 6, 7, 8]" in out.stdout
    # The first node started (the seed) dies: no name is lost.
    mesh.kill9(0)
    gone = seconds_until(lambda: mesh.alive_count(2) == 2, 15)
    assert gone is not None
    out = mesh.run_driver(2, NAMED + """
print("AFTER", [zray.get(zray.get_actor(f"till{i}").add.remote(1)) for i in range(8)])
zray.kill(zray.get_actor("till0"))
import time
time.sleep(0.5)
try:
    zray.get_actor("till0")
except ValueError:
    print("RELEASED")
""")
    assert "AFTER [2, 3, 4, 15, 6, 7, 8, 9]" in out.stdout, out.stdout + out.stderr
    assert "RELEASED" in out.stdout


def test_objects_flow_both_ways_between_a_driver_and_a_task_on_another_node(mesh):
    mesh.add_node(num_cpus=1)
    mesh.add_node(num_cpus=1)
    mesh.wait_mesh_ready()
    other = mesh.node_id(1)
    out = mesh.run_driver(0, WHERE + f"""
import numpy as np
from zray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as On
data = np.arange(5_000_000, dtype=np.int64)        # 40 MB: in the store, pulled by node 1
ref = zray.put(data)

@zray.remote(scheduling_strategy=On({other!r}, soft=False))
def twice(a):
    return zray.get_runtime_context().get_node_id(), a * 2

node, doubled = zray.get(twice.remote(ref))
print("PULLED", node == {other!r}, bool((doubled == data * 2).all()))
refs = [twice.remote(ref) for _ in range(3)]
print("AGAIN", all(bool((d == data * 2).all()) for _, d in zray.get(refs)))
""")
    assert "PULLED True True" in out.stdout, out.stdout + out.stderr
    assert "AGAIN True" in out.stdout


@pytest.mark.slow
def test_results_lost_with_their_node_are_rebuilt_from_lineage_or_raise(mesh):
    mesh.add_node(num_cpus=1)
    mesh.add_node(num_cpus=1)
    mesh.wait_mesh_ready()
    victim = mesh.node_id(1)
    driver = mesh.start_driver(0, WHERE + f"""
import numpy as np
from zray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as On

@zray.remote
def make(n):
    return np.full(1_000_000, n, dtype=np.int64)      # 8 MB: stored where it ran

there = On({victim!r}, soft=True)
kept = make.options(scheduling_strategy=there, max_retries=1).remote(7)
once = make.options(scheduling_strategy=there, max_retries=0).remote(8)
zray.wait([kept, once], num_returns=2, timeout=60)
print("STORED", flush=True)
input()
print("REBUILT", int(zray.get(kept, timeout=60)[0]), flush=True)
try:
    zray.get(once, timeout=60)
except zray.exceptions.ObjectLostError as e:
    print("LOST", type(e).__name__, flush=True)
""")
    try:
        assert driver.stdout.readline().strip() == "STORED"
        mesh.kill9(1)     # read at once: before or after the node is declared dead
        out, err = driver.communicate(input="\n", timeout=90)
    finally:
        driver.kill()
    assert "REBUILT 7" in out, out + err
    assert "LOST" in out, out + err


@pytest.mark.slow
def test_a_detached_actor_lives_on_after_the_node_that_created_it_dies(mesh):
    mesh.add_node(num_cpus=1)
    mesh.add_node(num_cpus=1, resources={"special": 1})
    mesh.add_node(num_cpus=1)
    mesh.wait_mesh_ready()
    host, creator = mesh.node_id(1), mesh.node_id(0)
    mesh.run_driver(0, NAMED + """
t = Till.options(name="keeper", lifetime="detached", resources={"special": 1}).remote()
print(zray.get(t.add.remote(5)))
""")
    watcher = mesh.start_driver(2, NAMED + """
import sys
t = zray.get_actor("keeper")
print("BEFORE", zray.get(t.add.remote(1)), flush=True)
sys.stdin.readline()
print("AFTER", zray.get(t.add.remote(1), timeout=30), zray.get(t.node.remote()), flush=True)
""")
    try:
        assert watcher.stdout.readline().strip() == "BEFORE 6"
        mesh.kill9(0)          # the node whose driver created it (and the mesh's seed)
        assert seconds_until(lambda: mesh.states(2).get(creator) == "DEAD", 15) is not None
        out, err = watcher.communicate(input="\n", timeout=60)
    finally:
        watcher.kill()
    assert f"AFTER 7 {host}" in out, out + err
    out = mesh.run_driver(2, NAMED + """
print("FOUND", zray.get(zray.get_actor("keeper").add.remote(1)))
""")
    assert "FOUND 8" in out.stdout, out.stdout + out.stderr


@pytest.mark.slow
def test_a_detached_actor_with_restarts_survives_its_creator_node_and_then_its_host(mesh):
    mesh.add_node(num_cpus=1)
    mesh.add_node(num_cpus=1, resources={"special": 1})
    mesh.add_node(num_cpus=1, resources={"special": 1})
    mesh.wait_mesh_ready()
    creator, host, last = (mesh.node_id(i) for i in range(3))
    mesh.run_driver(0, NAMED + f"""
from zray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as On
t = Till.options(name="phoenix", lifetime="detached", max_restarts=1, resources={{"special": 1}},
                 scheduling_strategy=On({host!r}, soft=True)).remote()
print(zray.get(t.add.remote(5)))
""")
    watcher = mesh.start_driver(2, NAMED + """
import sys
t = zray.get_actor("phoenix")
print("START", zray.get(t.add.remote(1)), zray.get(t.node.remote()), flush=True)
sys.stdin.readline()
print("NO CREATOR", zray.get(t.add.remote(1), timeout=30), zray.get(t.node.remote()), flush=True)
sys.stdin.readline()
print("NO HOST", zray.get(t.add.remote(1), timeout=60), zray.get(t.node.remote()), flush=True)
""")
    try:
        assert watcher.stdout.readline().strip() == f"START 6 {host}"
        mesh.kill9(0)
        assert seconds_until(lambda: mesh.states(2).get(creator) == "DEAD", 15) is not None
        watcher.stdin.write("\n")
        watcher.stdin.flush()
        line = watcher.stdout.readline().strip()
        assert line == f"NO CREATOR 7 {host}", line + watcher.stderr.read()
        mesh.kill9(1)
        assert seconds_until(lambda: mesh.states(2).get(host) == "DEAD", 15) is not None
        out, err = watcher.communicate(input="\n", timeout=90)
    finally:
        watcher.kill()
    assert f"NO HOST 1 {last}" in out, out + err


def test_refs_and_actor_handles_work_from_a_task_on_another_node(mesh):
    mesh.add_node(num_cpus=1)
    mesh.add_node(num_cpus=1)
    mesh.wait_mesh_ready()
    other = mesh.node_id(1)
    out = mesh.run_driver(0, NAMED + f"""
from zray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as On
till = Till.options(num_cpus=0).remote()          # on the driver's node
small, big = zray.put(21), zray.put(bytes(300_000))

@zray.remote(scheduling_strategy=On({other!r}, soft=False))
def use(handle, refs):
    value = zray.get(refs[0]) * 2 + len(zray.get(refs[1]))
    return zray.get(handle.add.remote(value)), zray.get_runtime_context().get_node_id()

print("USED", zray.get(use.remote(till, [small, big])))
print("AFTER", zray.get(till.add.remote(0)))
""")
    assert f"USED (300042, '{other}')" in out.stdout, out.stdout + out.stderr
    assert "AFTER 300042" in out.stdout


@pytest.mark.slow
def test_a_borrower_on_a_third_node_gets_a_result_rebuilt_after_its_node_died(mesh):
    for _ in range(3):
        mesh.add_node(num_cpus=1)
    mesh.wait_mesh_ready()
    victim, reader = mesh.node_id(1), mesh.node_id(2)
    driver = mesh.start_driver(0, WHERE + f"""
import sys
import numpy as np
from zray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as On

@zray.remote
def make(n):
    return np.full(1_000_000, n, dtype=np.int64)      # 8 MB: stored where it ran

@zray.remote(scheduling_strategy=On({reader!r}, soft=False))
def first(boxed):
    return int(zray.get(boxed[0], timeout=60)[0])     # a borrower: the ref came in a list

kept = make.options(scheduling_strategy=On({victim!r}, soft=True), max_retries=1).remote(7)
once = make.options(scheduling_strategy=On({victim!r}, soft=True), max_retries=0).remote(8)
zray.wait([kept, once], num_returns=2, timeout=60)
print("STORED", flush=True)
sys.stdin.readline()
print("REBUILT", zray.get(first.remote([kept]), timeout=90), flush=True)
try:
    zray.get(first.remote([once]), timeout=90)
except zray.exceptions.ObjectLostError as e:
    print("LOST", type(e).__name__, flush=True)
""")
    try:
        assert driver.stdout.readline().strip() == "STORED"
        mesh.kill9(1)
        out, err = driver.communicate(input="\n", timeout=120)
    finally:
        driver.kill()
    assert "REBUILT 7" in out, out + err
    assert "LOST" in out, out + err


def test_zray_list_shows_every_live_nodes_actors_and_tasks(mesh):
    from helpers.nodes import cli
    import json
    mesh.add_node(num_cpus=1)
    mesh.add_node(num_cpus=1, resources={"special": 1})
    mesh.wait_mesh_ready()
    ids = [mesh.node_id(i) for i in range(2)]
    driver = mesh.start_driver(0, NAMED + """
import sys, time
here = Till.options(name="here", num_cpus=0).remote()
there = Till.options(name="there", resources={"special": 1}).remote()
zray.get([here.add.remote(1), there.add.remote(1)])
print("READY", flush=True)
sys.stdin.readline()
""")
    try:
        assert driver.stdout.readline().strip() == "READY"
        rows = json.loads(cli(mesh.dirs[1], "list", "actors", "--format", "json").stdout)
        where = {r["name"]: r["node_id"] for r in rows if r["state"] == "ALIVE"}
        assert set(where) == {"here", "there"}, rows
        assert set(where.values()) <= set(ids)
        only = json.loads(cli(mesh.dirs[1], "list", "actors", "--this-node", "--format", "json").stdout)
        assert all(r["node_id"] == ids[1] for r in only)
        table = cli(mesh.dirs[0], "list", "actors").stdout
        assert "NODE_ID" in table and "here" in table and "there" in table
    finally:
        driver.communicate(input="\n", timeout=60)
