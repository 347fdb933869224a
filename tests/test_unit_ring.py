"""The consistent-hash ring: owners, replicas, balance, and little movement on change."""
import collections

import pytest

from zray.mesh.ring import HashRing


def test_owner_and_replicas_are_distinct_members():
    ring = HashRing(["a", "b", "c", "d"])
    reps = ring.replicas("actor:counter", 3)
    assert len(reps) == 3 == len(set(reps)) and reps[0] == ring.owner("actor:counter")
    assert ring.replicas("k", 10) and len(ring.replicas("k", 10)) == 4


def test_keys_spread_evenly():
    ring = HashRing([f"node{i}" for i in range(8)])
    counts = collections.Counter(ring.owner(f"key{i}") for i in range(20_000))
    assert len(counts) == 8
    assert max(counts.values()) < 2 * min(counts.values())


def test_a_member_leaving_moves_only_its_keys():
    members = [f"node{i}" for i in range(10)]
    ring = HashRing(members)
    keys = [f"key{i}" for i in range(10_000)]
    before = {k: ring.owner(k) for k in keys}
    ring.remove("node3")
    after = {k: ring.owner(k) for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert all(before[k] == "node3" for k in moved)
    assert all(after[k] != "node3" for k in keys)


def test_the_next_replica_takes_over_when_the_owner_dies():
    ring = HashRing(["a", "b", "c"])
    owner, successor = ring.replicas("name", 2)
    ring.remove(owner)
    assert ring.owner("name") == successor


def test_a_joining_member_takes_about_its_share():
    ring = HashRing([f"node{i}" for i in range(9)])
    keys = [f"key{i}" for i in range(10_000)]
    before = {k: ring.owner(k) for k in keys}
    ring.add("node9")
    moved = sum(1 for k in keys if ring.owner(k) != before[k])
    assert 0.03 * len(keys) < moved < 0.2 * len(keys)


def test_bad_input():
    with pytest.raises(LookupError):
        HashRing().owner("x")
    with pytest.raises(ValueError):
        HashRing(["a"]).replicas("x", 0)
    with pytest.raises(ValueError):
        HashRing(vnodes=0)
