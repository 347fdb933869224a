"""Public names Ray programs import (issue 13, items 1 and 2): util helpers, JobConfig, the
runtime context module, ObjectRef futures, built-in actor methods, argument checks at .remote()."""
import asyncio
import os
import time

import pytest

import zray
from zray import exceptions
from zray.job_config import JobConfig


@zray.remote
def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


def test_as_completed_yields_values_in_finishing_order(shared_cluster):
    refs = [sleep_then.remote(s, s) for s in (1.0, 0.0, 0.5)]
    assert list(zray.util.as_completed(refs, chunk_size=1)) == [0.0, 0.5, 1.0]
    refs = [sleep_then.remote(0, i) for i in range(5)]
    got = list(zray.util.as_completed(refs, chunk_size=2, yield_obj_refs=True))
    assert sorted(zray.get(got)) == list(range(5)) and all(isinstance(r, zray.ObjectRef) for r in got)


def test_as_completed_bad_arguments(shared_cluster):
    with pytest.raises(ValueError, match="chunk_size"):
        list(zray.util.as_completed([], chunk_size=0))
    with pytest.raises(ValueError, match="num_returns"):
        list(zray.util.as_completed([zray.put(1)], num_returns=1))
    with pytest.raises(TimeoutError):
        list(zray.util.as_completed([sleep_then.remote(5, 1)], timeout=0.1))


def test_map_unordered_bounds_the_tasks_in_flight(shared_cluster):
    @zray.remote
    def square(x):
        return x * x
    assert sorted(zray.util.map_unordered(square, range(12), backpressure_size=3, chunk_size=2)) \
        == [x * x for x in range(12)]
    assert sorted(zray.util.map_unordered(square, [2, 3], backpressure_size=None)) == [4, 9]
    with pytest.raises(ValueError, match="backpressure_size"):
        list(zray.util.map_unordered(square, [1], backpressure_size=0))
    with pytest.raises(TypeError, match="remote function"):
        list(zray.util.map_unordered(lambda x: x, [1]))


def test_get_node_ip_address(shared_cluster):
    ip = zray.util.get_node_ip_address()
    assert ip == zray.nodes()[0]["NodeManagerAddress"]


def test_object_id_is_object_ref_and_futures(shared_cluster):
    assert zray.ObjectID is zray.ObjectRef
    ref = sleep_then.remote(0.1, "v")
    assert ref.future().result(timeout=30) == "v"

    async def both():
        return await ref, await ref.as_future()
    assert asyncio.run(both()) == ("v", "v")


def test_runtime_context_module_and_reconstruction(shared_cluster):
    from zray.runtime_context import get_runtime_context
    assert get_runtime_context().get_job_id() == zray.get_runtime_context().get_job_id()
    with pytest.raises(RuntimeError):
        get_runtime_context().was_current_actor_reconstructed()

    @zray.remote(max_restarts=1)
    class Phoenix:
        def reconstructed(self):
            return zray.get_runtime_context().was_current_actor_reconstructed()

        def die(self):
            os._exit(1)

    p = Phoenix.remote()
    assert zray.get(p.reconstructed.remote()) is False
    p.die.remote()
    deadline = time.monotonic() + 30
    while True:
        try:
            assert zray.get(p.reconstructed.remote(), timeout=30) is True
            break
        except exceptions.RayActorError:    # the restart is still under way
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_ray_ready_is_built_in(shared_cluster):
    @zray.remote
    class Slow:
        def __init__(self):
            time.sleep(0.3)

    @zray.remote
    class Async:
        async def f(self):
            return 1
    assert zray.get([Slow.remote().__ray_ready__.remote(), Async.remote().__ray_ready__.remote()],
                    timeout=60) == [True, True]
    with pytest.raises(TypeError):
        Slow.remote().__ray_ready__.remote(1)


def test_ray_shutdown_hook_and_atexit_on_graceful_ends(shared_cluster, tmp_path):
    folder = str(tmp_path)

    @zray.remote
    class Tidy:
        def __init__(self, tag):
            import atexit
            self.tag = tag
            atexit.register(lambda: open(os.path.join(folder, tag + ".atexit"), "w").close())

        def __ray_shutdown__(self):
            open(os.path.join(folder, self.tag + ".hook"), "w").close()

        def bye(self):
            zray.actor.exit_actor()

        def ping(self):
            return 1

    ended = []
    for tag in ("exit", "terminate", "scope", "kill"):
        a = Tidy.remote(tag)
        assert zray.get(a.ping.remote()) == 1
        if tag == "exit":
            with pytest.raises(exceptions.ActorDiedError):
                zray.get(a.bye.remote())
        elif tag == "terminate":
            with pytest.raises(exceptions.ActorDiedError):
                zray.get(a.__ray_terminate__.remote())
        elif tag == "kill":
            zray.kill(a)      # a forced end: no hook, no atexit (Ray documents the same)
        ended.append(tag)
        del a
    expected = {f"{t}.{kind}" for t in ("exit", "terminate", "scope") for kind in ("hook", "atexit")}
    deadline = time.monotonic() + 30
    while set(os.listdir(folder)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(os.listdir(folder)) == expected


def test_job_config_namespace_and_default_lifetime(zray_cluster):
    with pytest.raises(ValueError):
        JobConfig(default_actor_lifetime="forever")
    zray.shutdown()      # the module's shared cluster, if it runs
    with pytest.raises(TypeError):
        zray.init(job_config={"ray_namespace": "x"})
    assert not zray.is_initialized()
    zray_cluster(job_config=JobConfig(ray_namespace="from-config", default_actor_lifetime="detached"))
    assert zray.get_runtime_context().namespace == "from-config"

    @zray.remote
    class Box:
        def where(self):
            return zray.get_runtime_context().namespace
    box = Box.options(name="box").remote()
    assert zray.get(box.where.remote()) == "from-config"
    del box      # detached by the job's default: dropping every handle does not end it
    time.sleep(0.5)
    again = zray.get_actor("box")
    assert zray.get(again.where.remote()) == "from-config"
    zray.kill(again)


def test_arguments_are_checked_at_remote_for_every_kind_of_method(shared_cluster):
    @zray.remote
    class Kinds:
        async def coro(self, x):
            return x

        def gen(self, n):
            yield n

        @classmethod
        def klass(cls, x):
            return x

        def __call__(self, y):
            return y

    @zray.remote
    def gen_task(n):
        yield n

    k = Kinds.remote()
    for call, words in [(lambda: k.coro.remote(), "missing 1 required positional"),
                        (lambda: k.gen.remote(1, 2), "takes 1 positional argument but 2"),
                        (lambda: k.klass.remote(), "missing 1 required positional"),
                        (lambda: k.__call__.remote(), "missing 1 required positional"),
                        (lambda: gen_task.remote(n=1, m=2), "unexpected keyword argument 'm'"),
                        (lambda: Kinds.options(name="k2").remote(1), "takes 0 positional")]:
        with pytest.raises(TypeError, match=words):
            call()
    assert zray.get(k.klass.remote(3)) == 3


def test_ray_shutdown_hook_runs_when_the_job_ends(zray_cluster, tmp_path):
    zray_cluster(num_cpus=1)
    folder = str(tmp_path)

    @zray.remote
    class Tidy:
        def __ray_shutdown__(self):
            open(os.path.join(folder, "hook"), "w").close()

        def ping(self):
            return 1

    @zray.remote
    class Plain:
        def ping(self):
            return 1
    keep = [Tidy.remote(), Plain.remote()]
    assert zray.get([a.ping.remote() for a in keep]) == [1, 1]
    zray.shutdown()
    assert os.listdir(folder) == ["hook"]
