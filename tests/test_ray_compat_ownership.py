"""Ownership and failures as Ray programs expect them (issue 13, item 6): refs that outlive the
task that made them, an actor that shares its owner's fate, cancel from any holder of a ref."""
import gc
import os
import time

import numpy as np
import pytest

import zray
from zray import exceptions


@zray.remote
class Maker:
    def small(self):
        return 7

    def large(self):
        return np.full(300_000, 3, dtype=np.uint8)


@zray.remote
def call_actor(maker, large):
    return [maker.large.remote() if large else maker.small.remote()]


@pytest.mark.parametrize("large", [False, True])
def test_a_ref_from_an_actor_call_in_a_task_outlives_the_task(shared_cluster, large):
    maker = Maker.remote()
    [ref] = zray.get(call_actor.remote(maker, large))
    time.sleep(0.3)
    gc.collect()
    value = zray.get(ref, timeout=30)
    assert (int(value.sum()) == 900_000) if large else value == 7


@zray.remote
def leaf(large):
    return np.full(300_000, 1, dtype=np.uint8) if large else "leaf"


@zray.remote
def nest(depth, large):
    """Returns the ref its own nested task returns: a chain of refs, each owned by a task."""
    if depth == 0:
        return leaf.remote(large)
    return nest.remote(depth - 1, large)


@pytest.mark.parametrize("large", [False, True])
def test_a_chain_of_returned_refs_keeps_every_object_alive(shared_cluster, large):
    value = zray.get(nest.remote(4, large), timeout=60)
    hops = 0
    while isinstance(value, zray.ObjectRef):
        time.sleep(0.1)      # the tasks that made each ref are long done
        gc.collect()
        value = zray.get(value, timeout=30)
        hops += 1
    assert hops == 5
    assert (int(value.sum()) == 300_000) if large else value == "leaf"


def test_the_chain_is_freed_once_the_outer_ref_goes(zray_cluster):
    zray_cluster(num_cpus=2, object_store_memory=64 << 20)
    core = zray.api._runtime()

    def used():
        gc.collect()
        return core.store_stats()["num_objects"]
    outer = nest.remote(2, True)
    inner = zray.get(outer)
    while isinstance(inner, zray.ObjectRef):
        inner = zray.get(inner)
    assert int(inner.sum()) == 300_000 and used() >= 1
    del inner, outer
    deadline = time.monotonic() + 20
    while used() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert used() == 0


@zray.remote
def sleeps(seconds):
    time.sleep(seconds)
    return seconds


@zray.remote
class Holder:
    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value


@zray.remote(max_retries=0)
def create_then_die():
    Holder.options(name="orphaned-holder").remote(sleeps.remote(60))
    time.sleep(0.5)
    os._exit(1)


def test_an_actor_whose_owner_dies_before_its_argument_is_ready_fails(shared_cluster):
    ref = create_then_die.remote()
    with pytest.raises(exceptions.WorkerCrashedError):
        zray.get(ref, timeout=60)
    try:
        holder = zray.get_actor("orphaned-holder")
    except ValueError:
        return      # already dead and its name released: as good
    start = time.monotonic()
    with pytest.raises(exceptions.RayActorError, match="owner"):
        zray.get(holder.get.remote(), timeout=30)
    assert time.monotonic() - start < 25


@zray.remote
def cancel_it(refs):
    zray.cancel(refs[0])
    return True


def test_any_holder_of_a_ref_can_cancel_the_task(shared_cluster):
    ref = sleeps.remote(60)
    time.sleep(0.3)
    assert zray.get(cancel_it.remote([ref]), timeout=30)
    start = time.monotonic()
    with pytest.raises(exceptions.TaskCancelledError):
        zray.get(ref, timeout=30)
    assert time.monotonic() - start < 25
    assert zray.get(sleeps.remote(0), timeout=30) == 0     # the node goes on
