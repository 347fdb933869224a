"""Tasks that submit tasks: returned refs, recursion, borrowed refs, no deadlock."""
import os
import time

import pytest

import zray
from zray import ObjectRef


def test_task_returns_a_ref_of_its_child(shared_cluster):
    @zray.remote
    def g():
        return "from g"

    @zray.remote
    def f():
        return g.remote()

    outer = zray.get(f.remote())
    assert isinstance(outer, ObjectRef)
    assert zray.get(outer) == "from g"
    assert zray.get(zray.get(f.remote())) == "from g"


def test_ref_outlives_the_task_that_made_it(shared_cluster):
    @zray.remote
    def slow_child():
        time.sleep(0.3)
        return list(range(5))

    @zray.remote
    def parent():
        return [slow_child.remote(), zray.put("put in a worker")]

    child_ref, put_ref = zray.get(parent.remote())
    time.sleep(0.1)          # the parent has finished; its refs are still readable
    assert zray.get(child_ref) == [0, 1, 2, 3, 4]
    assert zray.get(put_ref) == "put in a worker"


@pytest.mark.timeout(60)
def test_recursive_fib_does_not_deadlock(shared_cluster):
    @zray.remote
    def fib(n):
        if n < 2:
            return n
        return sum(zray.get([fib.remote(n - 1), fib.remote(n - 2)]))

    assert zray.get(fib.remote(10), timeout=50) == 55


@pytest.mark.timeout(60)
def test_deep_chain_of_blocked_parents(shared_cluster):
    @zray.remote
    def depth(n):
        if n == 0:
            return os.getpid()
        return zray.get(depth.remote(n - 1))

    # Eight tasks wait on each other on a 2-CPU node: each lends its CPU while blocked.
    assert zray.get(depth.remote(8), timeout=50) > 0


def test_parent_passes_refs_to_children(shared_cluster):
    @zray.remote
    def make(x):
        return x * 2

    @zray.remote
    def add(a, b):
        return a + b

    @zray.remote
    def parent(n):
        refs = [make.remote(i) for i in range(n)]
        total = refs[0]
        for r in refs[1:]:
            total = add.remote(total, r)
        return zray.get(total)

    assert zray.get(parent.remote(6)) == sum(i * 2 for i in range(6))


def test_driver_ref_borrowed_by_nested_tasks(shared_cluster):
    @zray.remote
    def leaf(container):
        return zray.get(container[0]) + 1

    @zray.remote
    def middle(container):
        return zray.get(leaf.remote(container))

    ref = zray.put(41)
    assert zray.get(middle.remote([ref])) == 42


def test_nested_wait(shared_cluster):
    @zray.remote
    def sleepy(t):
        time.sleep(t)
        return t

    @zray.remote
    def waiter():
        refs = [sleepy.remote(0.05), sleepy.remote(5)]
        ready, not_ready = zray.wait(refs, num_returns=1, timeout=3)
        zray.cancel(not_ready[0], force=True)
        return zray.get(ready)

    assert zray.get(waiter.remote(), timeout=30) == [0.05]


def test_many_small_nested_tasks(shared_cluster):
    @zray.remote
    def square(x):
        return x * x

    @zray.remote
    def fan_out(n):
        return sum(zray.get([square.remote(i) for i in range(n)]))

    assert zray.get([fan_out.remote(20) for _ in range(3)]) == [sum(i * i for i in range(20))] * 3


def test_nested_runtime_context_task_ids_differ(shared_cluster):
    @zray.remote
    def child():
        return zray.get_runtime_context().get_task_id()

    @zray.remote
    def parent():
        return zray.get_runtime_context().get_task_id(), zray.get(child.remote())

    mine, childs = zray.get(parent.remote())
    assert mine and childs and mine != childs


@pytest.mark.timeout(90)
def test_blocked_workers_do_not_count_against_the_worker_cap(ray_start):
    @zray.remote
    def depth(n):
        if n == 0:
            return "bottom"
        return zray.get(depth.remote(n - 1))

    # 70 nested waits need 71 workers at once, more than the node's cap of 64 busy ones.
    assert zray.get(depth.remote(70), timeout=80) == "bottom"
