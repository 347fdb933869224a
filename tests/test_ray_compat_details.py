"""Small behaviours Ray programs rely on (issue 13, item 10): wait's edges, get/kill errors, the
driver's runtime context, ActorPool corner cases, init() options on a running cluster."""
import time

import pytest

import zray
from zray import exceptions
from zray.util import ActorPool


@zray.remote
def slow(seconds):
    time.sleep(seconds)
    return seconds


@zray.remote
class Worker:
    def double(self, x):
        return 2 * x

    @zray.method(num_returns=2)
    def pair(self, x):
        return x, -x

    def sleep(self, seconds):
        time.sleep(seconds)
        return seconds


def test_wait_on_nothing_returns_two_empty_lists(shared_cluster):
    assert zray.wait([]) == ([], [])
    assert zray.wait([], num_returns=1, timeout=0) == ([], [])


def test_wait_with_a_timeout_never_returns_before_it(shared_cluster):
    ref = slow.remote(3)
    for timeout in (0.05, 0.2, 0.31):
        start = time.time()
        ready, not_ready = zray.wait([ref], timeout=timeout)
        assert time.time() - start >= timeout
        assert ready == [] and not_ready == [ref]


def test_get_of_something_that_is_not_a_ref_is_a_value_error(shared_cluster):
    with pytest.raises(ValueError, match="ObjectRef"):
        zray.get(1)
    with pytest.raises(ValueError, match="ObjectRef"):
        zray.get([zray.put(1), "x"])
    assert zray.get(zray.put(5)) == 5


def test_kill_of_something_that_is_not_an_actor(shared_cluster):
    with pytest.raises(ValueError, match="only supported for actors"):
        zray.kill("actor")
    ref = zray.put(1)
    with pytest.raises(ValueError, match="cancel"):
        zray.kill(ref)


def test_killed_actor_error_names_ray_kill(shared_cluster):
    a = Worker.remote()
    assert zray.get(a.double.remote(1)) == 2
    zray.kill(a)
    with pytest.raises(exceptions.ActorDiedError, match="killed by `ray.kill`"):
        zray.get(a.double.remote(1))


def test_exited_actor_error_names_exit_actor(shared_cluster):
    a = Worker.remote()
    assert zray.get(a.double.remote(1)) == 2
    a.__ray_terminate__.remote()
    with pytest.raises(exceptions.ActorDiedError, match=r"exit_actor\(\)"):
        zray.get(a.double.remote(1), timeout=30)


def test_driver_runtime_context_has_rays_keys(shared_cluster):
    context = zray.get_runtime_context().get()
    assert set(context) == {"job_id", "node_id", "namespace"}
    assert context["job_id"] == zray.get_runtime_context().get_job_id()

    @zray.remote
    def inside():
        return zray.get_runtime_context().get()
    in_task = zray.get(inside.remote())
    assert set(in_task) == {"job_id", "node_id", "namespace", "task_id"}
    assert in_task["job_id"] == context["job_id"]


def test_actor_pool_map_after_a_pending_submit(shared_cluster):
    pool = ActorPool([Worker.remote(), Worker.remote()])
    pool.submit(lambda a, v: a.double.remote(v), 100)
    # The unread result of the submit is dropped, as Ray does; map gives only its own.
    assert list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3])) == [2, 4, 6]
    assert not pool.has_next()
    pool.submit(lambda a, v: a.sleep.remote(v), 0.5)
    assert sorted(pool.map_unordered(lambda a, v: a.double.remote(v), [4, 5])) == [8, 10]


def test_actor_pool_over_a_method_with_two_returns(shared_cluster):
    pool = ActorPool([Worker.remote()])
    assert list(pool.map(lambda a, v: a.pair.remote(v), [1, 2])) == [[1, -1], [2, -2]]
    assert sorted(pool.map_unordered(lambda a, v: a.pair.remote(v), [3])) == [[3, -3]]


def test_actor_pool_rejects_a_function_that_returns_no_ref(shared_cluster):
    pool = ActorPool([Worker.remote()])
    with pytest.raises(TypeError, match="ObjectRef"):
        pool.submit(lambda a, v: v, 1)


def test_actor_pool_ignore_if_timedout_skips_the_late_result(shared_cluster):
    pool = ActorPool([Worker.remote()])
    pool.submit(lambda a, v: a.sleep.remote(v), 2)
    pool.submit(lambda a, v: a.double.remote(v), 7)
    with pytest.raises(TimeoutError, match="ignored"):
        pool.get_next(timeout=0.05, ignore_if_timedout=True)
    assert pool.get_next(timeout=30) == 14
    assert not pool.has_next()


def test_system_config_when_connecting_to_a_cluster_is_refused(shared_cluster):
    zray.shutdown()
    with pytest.raises(ValueError, match="_system_config"):
        zray.init(address="auto", _system_config={"x": 1})
    assert not zray.is_initialized()


def test_actors_keeping_large_constructor_arguments_do_not_fill_the_store(zray_cluster):
    import numpy as np
    zray_cluster(num_cpus=2, object_store_memory=100 << 20)

    @zray.remote(num_cpus=0)
    class Keeper:
        def __init__(self, data):
            self.data = data           # kept for the actor's life

        def total(self):
            return int(self.data[:10].sum()), self.data.nbytes

    # Five 30 MiB arguments, all kept, through a 100 MiB store: they are copied into the
    # actors, so the store spills or frees them instead of staying full of pins.
    keepers = [Keeper.remote(np.ones(30 << 20, dtype=np.uint8)) for _ in range(5)]
    assert zray.get([k.total.remote() for k in keepers], timeout=120) == [(10, 30 << 20)] * 5


def test_an_actor_keeping_large_method_arguments_overflows_to_files(zray_cluster):
    """Method arguments stay zero-copy views (pinned); past the store's size new objects get
    file-backed allocations (as Ray's fallback) instead of ObjectStorePinnedFullError."""
    import numpy as np
    zray_cluster(num_cpus=1, object_store_memory=100 << 20)

    @zray.remote
    class Keeper:
        def __init__(self):
            self.kept = []

        def keep(self, data):
            self.kept.append(data)
            return sum(int(a[0]) for a in self.kept), sum(a.nbytes for a in self.kept)

    keeper = Keeper.remote()
    for i in range(6):         # 180 MiB kept through a 100 MiB store
        out = zray.get(keeper.keep.remote(np.full(30 << 20, i + 1, dtype=np.uint8)), timeout=120)
        assert out == (sum(range(1, i + 2)), (i + 1) * (30 << 20))
