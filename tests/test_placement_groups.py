"""Placement groups on one node (zray.init) and across `zray start` nodes on loopback."""
import os
import pathlib
import shutil
import tempfile
import time

import pytest

import zray
from zray.util import (get_current_placement_group, get_placement_group, placement_group,
                       placement_group_table, remove_placement_group)
from zray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from conftest import wait_for
from helpers.nodes import Cluster


def in_group(pg, index=-1, capture=None):
    return PlacementGroupSchedulingStrategy(pg, index, capture)


@zray.remote
def assigned():
    return zray.get_runtime_context().get_assigned_resources(), get_current_placement_group()


@zray.remote
class Holder:
    def group(self):
        return get_current_placement_group()

    def pid(self):
        return os.getpid()


# -- one node -------------------------------------------------------------------------------------
def test_create_ready_wait_table_and_remove(shared_cluster):
    pg = placement_group([{"CPU": 1}, {"CPU": 0.5}])
    assert pg.wait(10)
    assert zray.get(pg.ready(), timeout=30) == pg
    assert pg.bundle_specs == [{"CPU": 1.0}, {"CPU": 0.5}] and pg.bundle_count == 2
    assert len(pg.id.hex()) == 36
    table = placement_group_table(pg)
    assert table["state"] == "CREATED" and table["strategy"] == "PACK"
    assert table["bundles"] == {0: {"CPU": 1.0}, 1: {"CPU": 0.5}}
    assert pg.id.hex() in placement_group_table()
    total = zray.cluster_resources()
    assert total[f"CPU_group_{pg.id.hex()}"] == 1.5
    assert total[f"CPU_group_1_{pg.id.hex()}"] == 0.5
    assert zray.available_resources().get("CPU", 0) == 0.5
    remove_placement_group(pg)
    assert placement_group_table(pg)["state"] == "REMOVED"
    assert wait_for(lambda: zray.available_resources().get("CPU") == 2.0)
    assert not any("_group_" in k for k in zray.cluster_resources())


def test_strategies_on_one_node(shared_cluster):
    for strategy in ("PACK", "SPREAD", "STRICT_PACK"):
        pg = placement_group([{"CPU": 0.5}, {"CPU": 0.5}], strategy=strategy)
        assert pg.wait(10), strategy
        remove_placement_group(pg)
    one = placement_group([{"CPU": 1}], strategy="STRICT_SPREAD")
    assert one.wait(10)
    remove_placement_group(one)
    # STRICT_SPREAD needs a node per bundle: two bundles on one node stay pending.
    two = placement_group([{"CPU": 0.5}, {"CPU": 0.5}], strategy="STRICT_SPREAD")
    assert not two.wait(0.5)
    assert placement_group_table(two)["state"] == "PENDING"
    ready, _ = zray.wait([two.ready()], timeout=0.5)
    assert ready == []
    remove_placement_group(two)
    # STRICT_PACK that needs more than the node has waits too.
    big = placement_group([{"CPU": 1.5}, {"CPU": 1}], strategy="STRICT_PACK")
    assert not big.wait(0.5)
    remove_placement_group(big)


def test_tasks_and_actors_run_in_their_bundle(shared_cluster):
    pg = placement_group([{"CPU": 1}, {"CPU": 1}])
    assert pg.wait(10)
    res, current = zray.get(assigned.options(scheduling_strategy=in_group(pg, 1)).remote(), timeout=30)
    assert res == {"CPU": 1.0} and current == pg
    # the legacy options
    res, current = zray.get(assigned.options(placement_group=pg, placement_group_bundle_index=0,
                                             num_cpus=0.5).remote(), timeout=30)
    assert res == {"CPU": 0.5} and current == pg
    holder = Holder.options(scheduling_strategy=in_group(pg, 0)).remote()
    assert zray.get(holder.group.remote(), timeout=30) == pg
    assert zray.get(assigned.options(num_cpus=0).remote(), timeout=30)[1] is None   # no group
    assert get_current_placement_group() is None                  # the driver
    remove_placement_group(pg)


def test_children_are_captured_only_when_asked(shared_cluster):
    pg = placement_group([{"CPU": 1}])
    assert pg.wait(10)

    @zray.remote
    def parent():
        return zray.get(assigned.options(num_cpus=0).remote())[1]
    assert zray.get(parent.options(scheduling_strategy=in_group(pg)).remote(), timeout=30) is None
    captured = parent.options(scheduling_strategy=in_group(pg, capture=True)).remote()
    assert zray.get(captured, timeout=30) == pg
    remove_placement_group(pg)


@zray.remote
class BuiltInGroup:
    """Sees its group in its constructor, and starts a child there (as an RLlib algorithm
    starts its env runners while it is built)."""

    def __init__(self):
        self.seen = get_current_placement_group()
        self.child = Holder.options(num_cpus=0).remote()

    def groups(self):
        return self.seen, zray.get(self.child.group.remote(), timeout=30)


def test_an_actor_sees_its_group_in_its_constructor(shared_cluster):
    pg = placement_group([{"CPU": 1}])
    assert pg.wait(10)
    actor = BuiltInGroup.options(scheduling_strategy=in_group(pg, 0, capture=True)).remote()
    assert zray.get(actor.groups.remote(), timeout=30) == (pg, pg)
    remove_placement_group(pg)


def test_a_group_holding_every_cpu_keeps_other_tasks_waiting_until_removed(shared_cluster):
    pg = placement_group([{"CPU": 2}])
    assert pg.wait(10)

    @zray.remote
    def plain():
        return "ran"
    ref = plain.remote()
    ready, _ = zray.wait([ref], timeout=1.0)
    assert ready == []
    # a task inside the group runs meanwhile
    inside = zray.get(assigned.options(scheduling_strategy=in_group(pg)).remote(), timeout=30)
    assert inside[0] == {"CPU": 1.0}
    remove_placement_group(pg)
    assert zray.get(ref, timeout=30) == "ran"


def test_removal_kills_the_tasks_and_actors_in_the_group(zray_cluster):
    zray_cluster(num_cpus=2)
    pg = placement_group([{"CPU": 1}, {"CPU": 1}])
    assert pg.wait(10)

    @zray.remote
    def sleeper():
        time.sleep(300)
    ref = sleeper.options(scheduling_strategy=in_group(pg, 0)).remote()
    holder = Holder.options(scheduling_strategy=in_group(pg, 1), max_restarts=3).remote()
    pid = zray.get(holder.pid.remote(), timeout=30)
    time.sleep(0.5)      # the sleeper is running
    remove_placement_group(pg)
    with pytest.raises(zray.exceptions.TaskUnschedulableError, match="placement group"):
        zray.get(ref, timeout=30)
    with pytest.raises(zray.exceptions.RayActorError):
        zray.get(holder.pid.remote(), timeout=30)
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}"), timeout=10)
    # a task submitted to the removed group fails rather than waiting forever
    with pytest.raises(zray.exceptions.TaskUnschedulableError):
        zray.get(assigned.options(scheduling_strategy=in_group(pg)).remote(), timeout=30)
    assert wait_for(lambda: zray.available_resources().get("CPU") == 2.0)


@pytest.mark.parametrize("bundles, message", [
    ([], "non-empty list"),
    ([{}], "empty dictionary"),
    ([{"CPU": 0}], "only 0 values"),
    ([{"CPU": -1}], ">= 0"),
    ("CPU", "must be a list"),
    ([{"CPU": "1"}], "resource dictionaries"),
])
def test_bad_bundles_are_rejected(shared_cluster, bundles, message):
    with pytest.raises(ValueError, match=message):
        placement_group(bundles)


def test_bad_options_are_rejected(shared_cluster):
    with pytest.raises(ValueError, match="strategy"):
        placement_group([{"CPU": 1}], strategy="TIGHT")
    with pytest.raises(ValueError, match="lifetime"):
        placement_group([{"CPU": 1}], lifetime="forever")
    pg = placement_group([{"CPU": 1}])
    with pytest.raises(ValueError, match="bundle index 3 is invalid"):
        assigned.options(scheduling_strategy=in_group(pg, 3)).remote()
    with pytest.raises(ValueError, match="cannot fit into any bundles"):
        assigned.options(num_cpus=2, scheduling_strategy=in_group(pg)).remote()
    with pytest.raises(ValueError, match="bundle index must be -1"):
        assigned.options(placement_group_bundle_index=0).remote()
    remove_placement_group(pg)


def test_named_groups(shared_cluster):
    pg = placement_group([{"CPU": 0.5}], name="pg-named")
    found = get_placement_group("pg-named")
    assert found == pg and found.bundle_specs == [{"CPU": 0.5}]
    assert found.wait(10)
    with pytest.raises(zray.exceptions.RaySystemError, match="already exists"):
        placement_group([{"CPU": 0.5}], name="pg-named")
    with pytest.raises(ValueError, match="Failed to look up"):
        get_placement_group("no-such-group")
    remove_placement_group(found)
    with pytest.raises(ValueError, match="Failed to look up"):
        get_placement_group("pg-named")
    again = placement_group([{"CPU": 0.5}], name="pg-named")     # the name is free again
    assert again.wait(10)
    remove_placement_group(again)


def test_groups_go_with_shutdown(zray_cluster):
    zray_cluster(num_cpus=1)
    pg = placement_group([{"CPU": 1}], lifetime="detached")
    assert pg.wait(10)
    zray_cluster(num_cpus=1)      # shuts the first cluster down (and checks its daemon is gone)
    assert zray.available_resources().get("CPU") == 1.0
    assert placement_group_table() == {}


# -- across nodes ---------------------------------------------------------------------------------
@pytest.fixture
def mesh():
    # a short folder: socket paths under it must stay within 107 bytes
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="zpg", dir="/tmp"))
    c = Cluster(tmp, 0)
    try:
        yield c
    finally:
        c.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


PG_DRIVER = """
import zray
from zray.util import placement_group, remove_placement_group, placement_group_table
from zray.util.scheduling_strategies import PlacementGroupSchedulingStrategy as S
zray.init(address="auto")

@zray.remote(num_cpus=0.5)
def where():
    return zray.get_runtime_context().get_node_id()
"""


def test_spread_groups_put_bundles_on_different_nodes_and_tasks_follow_them(mesh):
    for _ in range(3):
        mesh.add_node(num_cpus=1)
    mesh.wait_mesh_ready()
    out = mesh.run_driver(0, PG_DRIVER + """
for strategy in ("STRICT_SPREAD", "SPREAD"):
    pg = placement_group([{"CPU": 1}] * 3, strategy=strategy)
    assert pg.wait(30), strategy
    nodes = placement_group_table(pg)["bundles_to_node_id"]
    ran = [zray.get(where.options(scheduling_strategy=S(pg, i)).remote(), timeout=60)
           for i in range(3)]
    print(strategy, len(set(nodes.values())), ran == [nodes[i] for i in range(3)])
    remove_placement_group(pg)
four = placement_group([{"CPU": 1}] * 4, strategy="STRICT_SPREAD")
print("FOUR", four.wait(2))
""", timeout=120)
    assert "STRICT_SPREAD 3 True" in out.stdout, out.stdout + out.stderr
    assert "SPREAD 3 True" in out.stdout
    assert "FOUR False" in out.stdout


def test_a_group_that_fits_no_node_waits_for_a_node_that_fits(mesh):
    mesh.add_node(num_cpus=1)
    mesh.wait_mesh_ready()
    driver = mesh.start_driver(0, PG_DRIVER + """
import sys
pg = placement_group([{"CPU": 1, "special": 1}])
print("FIRST", pg.wait(1), flush=True)
sys.stdin.readline()
print("LATER", pg.wait(60), flush=True)
print("RAN", zray.get(where.options(scheduling_strategy=S(pg, 0)).remote(), timeout=60), flush=True)
""")
    try:
        assert driver.stdout.readline().strip() == "FIRST False"
        joined = mesh.add_node(num_cpus=1, resources={"special": 1})
        driver.stdin.write("go\n")
        driver.stdin.flush()
        out, err = driver.communicate(timeout=90)
        assert "LATER True" in out, out + err
        assert f"RAN {mesh.node_id(joined)}" in out, out + err
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(timeout=10)


def test_detached_groups_outlive_their_job_and_others_do_not(mesh):
    mesh.add_node(num_cpus=2)
    mesh.add_node(num_cpus=1)
    mesh.wait_mesh_ready()
    mesh.run_driver(0, PG_DRIVER + """
kept = placement_group([{"CPU": 1}], name="kept", lifetime="detached")
gone = placement_group([{"CPU": 1}], name="gone")
assert kept.wait(30) and gone.wait(30)
""")
    out = mesh.run_driver(1, PG_DRIVER + """
import time
from zray.util import get_placement_group
kept = get_placement_group("kept")
print("KEPT", kept.wait(10), zray.get(where.options(scheduling_strategy=S(kept)).remote(), timeout=60) != "")
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    try:
        get_placement_group("gone")
        time.sleep(0.2)
    except ValueError:
        print("GONE")
        break
remove_placement_group(kept)
""")
    assert "KEPT True True" in out.stdout, out.stdout + out.stderr
    assert "GONE" in out.stdout
