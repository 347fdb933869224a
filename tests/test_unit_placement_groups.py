"""Placement groups' state machines, with no sockets: choosing nodes, the two-phase reservation,
rollback, rescheduling after a node death, and the scheduler's hooks."""
import pytest

from zray.scheduling import placement_groups as pgm
from zray.scheduling.local_scheduler import Dispatch, GroupRemoved, GroupWorker, LocalScheduler, Task
from zray.scheduling.placement_groups import (BundleReservations, Commit, Group,
                                              PlacementGroupManager, Prepare, Release, Removed,
                                              Waited, bundle_resources, original_resources,
                                              plan_bundles, rewrite_request)
from zray.scheduling.task_spec import TaskSpec

U = 10_000


def cpu(n):
    return {"CPU": n * U}


def nodes(**rooms):
    return {k: cpu(v) for k, v in rooms.items()}


# -- choosing nodes -------------------------------------------------------------------------------
def test_pack_prefers_one_node_and_the_local_one():
    plan = plan_bundles({0: cpu(1), 1: cpu(1)}, "PACK", nodes(a=4, b=4), "b")
    assert plan == {0: "b", 1: "b"}


def test_pack_spills_over_when_no_node_fits_all_but_strict_pack_waits():
    bundles = {0: cpu(2), 1: cpu(2)}
    assert sorted(plan_bundles(bundles, "PACK", nodes(a=2, b=3), "a").values()) == ["a", "b"]
    assert plan_bundles(bundles, "STRICT_PACK", nodes(a=2, b=3), "a") is None
    assert plan_bundles(bundles, "STRICT_PACK", nodes(a=2, b=4), "a") == {0: "b", 1: "b"}


def test_spread_uses_distinct_nodes_when_it_can():
    bundles = {0: cpu(1), 1: cpu(1), 2: cpu(1)}
    plan = plan_bundles(bundles, "SPREAD", nodes(a=4, b=4, c=4), "a")
    assert sorted(plan.values()) == ["a", "b", "c"]
    plan = plan_bundles(bundles, "SPREAD", nodes(a=4, b=4), "a")
    assert sorted(plan.values()) == ["a", "a", "b"]


def test_strict_spread_needs_one_node_per_bundle():
    bundles = {0: cpu(1), 1: cpu(1)}
    assert plan_bundles(bundles, "STRICT_SPREAD", nodes(a=4), "a") is None
    assert sorted(plan_bundles(bundles, "STRICT_SPREAD", nodes(a=4, b=1), "a").values()) == ["a", "b"]
    # rescheduling: the node that still holds bundle 0 does not get bundle 1
    assert plan_bundles({1: cpu(1)}, "STRICT_SPREAD", nodes(a=4, b=1), "a",
                        placed={0: "a"}) == {1: "b"}


def test_a_bundle_that_fits_nowhere_gives_no_plan():
    assert plan_bundles({0: {"GPU": U}}, "PACK", nodes(a=8), "a") is None


# -- resource names -------------------------------------------------------------------------------
def test_renamed_resources_and_requests():
    added = bundle_resources("P", 1, cpu(2))
    assert added == {"CPU_group_P": 2 * U, "CPU_group_1_P": 2 * U,
                     "bundle_group_P": pgm.MARKER_UNITS, "bundle_group_1_P": pgm.MARKER_UNITS}
    assert rewrite_request(cpu(1), "P") == {"CPU_group_P": U, "bundle_group_P": pgm.MARKER_REQUEST}
    assert rewrite_request(cpu(1), "P", 1) == {"CPU_group_P": U, "CPU_group_1_P": U,
                                               "bundle_group_1_P": pgm.MARKER_REQUEST}
    assert original_resources(rewrite_request({"CPU": U, "a_group_b": 5}, "P", 0)) == {
        "CPU": U, "a_group_b": 5}


# -- the owner's two phases -----------------------------------------------------------------------
def _created(manager, pg_id="P", bundles=(cpu(1), cpu(1)), strategy="PACK", **kw):
    group = Group(pg_id, list(bundles), strategy, **kw)
    manager.handle_create(group)
    return group


def test_prepare_then_commit_on_every_node_then_ready():
    m = PlacementGroupManager("a")
    group = _created(m, strategy="SPREAD")
    assert m.handle_wait("P", "w1", deadline=10) == []
    actions = m.handle_place(nodes(a=1, b=1), now=0)
    assert sorted((a.node_id, a.items) for a in actions) == [
        ("a", [(0, cpu(1))]), ("b", [(1, cpu(1))])]
    assert all(type(a) is Prepare for a in actions)
    round_id = actions[0].round_id
    assert m.handle_place(nodes(a=1, b=1), now=0) == []          # a round is in flight
    assert m.handle_prepared("P", round_id, "a", True, now=0) == []
    done = m.handle_prepared("P", round_id, "b", True, now=0)
    assert sorted(a.node_id for a in done if type(a) is Commit) == ["a", "b"]
    assert Waited("w1", True) in done
    assert group.state == pgm.CREATED and group.nodes == ["a", "b"]
    assert m.handle_wait("P", "w2", deadline=10) == [Waited("w2", True)]


def test_a_no_rolls_the_round_back_and_it_is_retried_later():
    m = PlacementGroupManager("a")
    group = _created(m, strategy="SPREAD")
    round_id = m.handle_place(nodes(a=1, b=1), now=0)[0].round_id
    m.handle_prepared("P", round_id, "a", True, now=0)
    undo = m.handle_prepared("P", round_id, "b", False, now=0)
    assert sorted(undo, key=lambda a: a.node_id) == [Release("a", "P", [0]), Release("b", "P", [1])]
    assert group.state == pgm.PENDING and group.round is None
    assert m.handle_prepared("P", round_id, "b", True, now=0) == []    # late answer: ignored
    assert m.handle_place(nodes(a=1, b=1), now=0.1) == []              # not before RETRY_S
    assert m.handle_place(nodes(a=1, b=1), now=pgm.RETRY_S)


def test_a_silent_node_times_the_round_out():
    m = PlacementGroupManager("a")
    _created(m)
    m.handle_place(nodes(b=2), now=0)
    assert m.tick(now=1) == []
    assert m.tick(now=pgm.PREPARE_TIMEOUT_S) == [Release("b", "P", [0, 1])]


def test_one_call_never_promises_the_same_room_twice():
    m = PlacementGroupManager("a")
    _created(m, "P", [cpu(1)])
    _created(m, "Q", [cpu(1)])
    actions = m.handle_place(nodes(a=1), now=0)
    assert [a.pg_id for a in actions] == ["P"]


def test_wait_times_out_and_remove_releases_everything():
    m = PlacementGroupManager("a")
    group = _created(m, strategy="STRICT_SPREAD", name="n")
    m.handle_wait("P", "w", deadline=1.0)
    assert m.handle_place(nodes(a=4), now=0) == []            # pending: one node only
    assert m.tick(now=1.0) == [Waited("w", False)]
    m.handle_wait("P", "w2", deadline=5.0)
    actions = m.handle_remove("P")
    assert Waited("w2", False) in actions and Removed(group) in actions
    assert group.state == pgm.REMOVED and "P" not in m.live
    assert m.handle_remove("P") == []


def test_remove_of_a_created_group_releases_on_its_nodes():
    m = PlacementGroupManager("a")
    _created(m, strategy="SPREAD")
    round_id = m.handle_place(nodes(a=1, b=1), now=0)[0].round_id
    m.handle_prepared("P", round_id, "a", True, now=0)
    m.handle_prepared("P", round_id, "b", True, now=0)
    releases = sorted((a for a in m.handle_remove("P") if type(a) is Release), key=lambda a: a.node_id)
    assert releases == [Release("a", "P", None), Release("b", "P", None)]


def test_bundles_on_a_dead_node_are_placed_again():
    m = PlacementGroupManager("a")
    group = _created(m, strategy="SPREAD")
    round_id = m.handle_place(nodes(a=1, b=1), now=0)[0].round_id
    m.handle_prepared("P", round_id, "a", True, now=0)
    m.handle_prepared("P", round_id, "b", True, now=0)
    m.handle_live_nodes({"a", "c"}, now=1)
    assert group.state == pgm.RESCHEDULING and group.nodes == ["a", None]
    actions = m.handle_place(nodes(a=0, c=1), now=1)
    assert [(type(a), a.node_id, a.items) for a in actions] == [(Prepare, "c", [(1, cpu(1))])]


def test_job_end_removes_all_but_detached_groups():
    m = PlacementGroupManager("a")
    _created(m, "P", job_id="j1")
    _created(m, "Q", job_id="j1", detached=True)
    _created(m, "R", job_id="j2")
    m.handle_job_finished("j1")
    assert m.live == {"Q", "R"}


# -- the holder's side ----------------------------------------------------------------------------
def test_reservations_prepare_all_or_nothing_commit_and_release():
    r = BundleReservations()
    assert r.prepare("P", [(0, cpu(1)), (1, cpu(2))], "owner", cpu(2)) is None
    assert r.bundles == {}
    assert r.prepare("P", [(0, cpu(1)), (1, cpu(1))], "owner", cpu(2)) == cpu(2)
    assert r.prepare("P", [(0, cpu(1))], "owner", {}) == {}       # repeated: nothing more
    assert r.commit("P", [0, 1])["CPU_group_P"] == 2 * U
    assert r.commit("P", [0]) == {}
    assert r.groups_of_owners_not_in({"owner"}) == []
    assert r.groups_of_owners_not_in({"x"}) == ["P"]
    plain, renamed = r.release("P")
    assert plain == cpu(2) and renamed["CPU_group_0_P"] == U and r.bundles == {}


# -- the scheduler's hooks ------------------------------------------------------------------------
def _task(n, resources, owner="o"):
    spec = TaskSpec(bytes([n]) * 24, "job", f"t{n}", b"f", [], [], 1, resources, 0, False, owner)
    return Task(spec, [])


def test_scheduler_runs_group_tasks_only_on_the_groups_resources():
    s = LocalScheduler(cpu(2))
    s.handle_worker_started("w1", "job", "addr1", 1)
    s.handle_worker_started("w2", "job", "addr2", 2)
    s.reserve(cpu(2))
    # a plain task waits: the group holds every CPU
    assert s.handle_task_submitted(_task(1, cpu(1))) == []
    added = bundle_resources("P", 0, cpu(2))
    assert s.handle_resources_added(added) == []
    actions = s.handle_task_submitted(_task(2, rewrite_request(cpu(1), "P", 0)))
    assert [type(a) for a in actions] == [Dispatch]
    actions = s.handle_resources_removed(added)
    assert type(actions[0]) is GroupWorker and actions[0].worker.worker_id in ("w1", "w2")
    assert "CPU_group_P" not in s.total and "CPU_group_P" not in s.available
    running = actions[0].worker.task
    assert running.orphaned
    # the plain resources come back: the waiting task runs
    assert [type(a) for a in s.handle_unreserved(cpu(2))] == [Dispatch]


def test_scheduler_fails_queued_tasks_of_a_removed_group_and_does_not_warn_for_them():
    s = LocalScheduler(cpu(1))
    task = _task(1, rewrite_request(cpu(1), "P", -1))
    assert s.handle_task_submitted(task) == []          # infeasible, but no warning
    assert task.spec.task_id in s.infeasible
    added = bundle_resources("P", 0, cpu(1))
    s.handle_resources_added(added)
    for waiting in s.take_infeasible():                 # re-evaluated
        s.handle_task_submitted(waiting)
    assert s.num_queued() == 1                          # waits for a worker now
    actions = s.handle_resources_removed(added)
    assert GroupRemoved(task) in actions and s.num_queued() == 0


def test_a_blocked_worker_lends_its_group_cpus():
    s = LocalScheduler(cpu(1))
    s.handle_worker_started("w1", "job", "addr1", 1)
    s.reserve(cpu(1))
    s.handle_resources_added(bundle_resources("P", 0, cpu(1)))
    s.handle_task_submitted(_task(1, rewrite_request(cpu(1), "P")))
    assert s.available["CPU_group_P"] == 0
    s.handle_worker_blocked("w1", True)
    assert s.available["CPU_group_P"] == U
    s.handle_worker_blocked("w1", False)
    assert s.available["CPU_group_P"] == 0
    s.handle_task_finished("w1")
    assert s.available["CPU_group_P"] == U


@pytest.mark.parametrize("strategy", pgm.STRATEGIES)
def test_every_strategy_places_a_fitting_group_on_one_big_node(strategy):
    bundles = {0: cpu(1)} if "SPREAD" in strategy else {0: cpu(1), 1: cpu(1)}
    assert set(plan_bundles(bundles, strategy, nodes(a=4), "a").values()) == {"a"}
