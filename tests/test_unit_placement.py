"""The placement state machine, without sockets: where a task goes in the mesh."""
import random

from zray.scheduling.placement import INFEASIBLE, LOCAL, MAX_HOPS, Forward, Placement, Unschedulable
from zray.scheduling.resources import to_units

CPU1 = to_units({"CPU": 1})


def _placement(**peers):
    p = Placement("me", random.Random(1))
    for name, (total, available) in peers.items():
        p.update_peer(name, to_units(total), to_units(available))
    return p


def test_a_task_that_fits_stays_local():
    p = _placement(b=({"CPU": 4}, {"CPU": 4}))
    assert p.choose(CPU1, None, 0, to_units({"CPU": 2}), to_units({"CPU": 1})) == LOCAL


def test_a_busy_node_forwards_to_a_peer_with_room_and_counts_what_it_sent():
    p = _placement(b=({"CPU": 2}, {"CPU": 2}), c=({"CPU": 2}, {"CPU": 0}))
    total, busy = to_units({"CPU": 2}), {}
    assert p.choose(CPU1, None, 0, total, busy) == Forward("b")
    p.forwarded("b", CPU1)
    assert p.choose(CPU1, None, 0, total, busy) == Forward("b")
    p.forwarded("b", CPU1)
    # b is full by our own count: the task queues here, where it fits the total.
    assert p.choose(CPU1, None, 0, total, busy) == LOCAL
    p.returned("b", CPU1)
    assert p.choose(CPU1, None, 0, total, busy) == Forward("b")
    # A fresh view from b replaces our count.
    p.update_peer("b", to_units({"CPU": 2}), {})
    assert p.choose(CPU1, None, 0, total, busy) == LOCAL


def test_forwarding_for_room_stops_after_max_hops():
    p = _placement(b=({"CPU": 2}, {"CPU": 2}))
    total = to_units({"CPU": 1})
    assert p.choose(CPU1, None, MAX_HOPS, total, {}) == LOCAL


def test_a_resource_only_a_peer_has_goes_there_and_nowhere_is_infeasible():
    p = _placement(b=({"CPU": 1, "special": 1}, {"CPU": 0}))
    need = to_units({"special": 1})
    assert p.choose(need, None, 0, to_units({"CPU": 4}), to_units({"CPU": 4})) == Forward("b")
    assert p.choose(to_units({"other": 1}), None, 0, to_units({"CPU": 4}), {}) == INFEASIBLE
    p.remove_peer("b")
    assert p.choose(need, None, 0, to_units({"CPU": 4}), {}) == INFEASIBLE


def test_the_better_of_two_peers_by_free_cpu():
    p = _placement(b=({"CPU": 8}, {"CPU": 1}), c=({"CPU": 8}, {"CPU": 7}))
    picks = {p.choose(CPU1, None, 0, {}, {}).node_id for _ in range(20)}
    assert picks == {"c"}


def test_node_affinity_hard_and_soft():
    p = _placement(b=({"CPU": 1}, {"CPU": 0}))
    total = to_units({"CPU": 1})
    assert p.choose(CPU1, ("node", "b", False), 0, total, total) == Forward("b")
    assert p.choose(CPU1, ("node", "me", False), 0, total, {}) == LOCAL
    decision = p.choose(CPU1, ("node", "gone", False), 0, total, total)
    assert type(decision) is Unschedulable and "gone" in decision.text
    assert p.choose(CPU1, ("node", "gone", True), 0, total, total) == LOCAL


def test_spread_visits_every_node_that_fits():
    p = _placement(b=({"CPU": 1}, {"CPU": 1}), c=({"CPU": 1}, {"CPU": 1}),
                   small=({"memory": 1}, {"memory": 1}))
    total = to_units({"CPU": 1})
    seen = set()
    for _ in range(6):
        d = p.choose(CPU1, "SPREAD", 0, total, total)
        seen.add("me" if d == LOCAL else d.node_id)
    assert seen == {"me", "b", "c"}
    # A task spread to a node stays there.
    assert p.choose(CPU1, "SPREAD", 1, total, total) == LOCAL
