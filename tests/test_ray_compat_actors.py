"""Actor semantics Ray programs rely on (issue 13, items 5, 8 and 9): how actors end, what the
decorator refuses, namespaces inside tasks, auto-connect, and concurrency groups."""
import os
import subprocess
import sys
import threading
import time

import pytest

import zray
from zray import exceptions
from zray.util.queue import Queue


# -- item 5: actor exit ---------------------------------------------------------------------------
def test_exit_actor_fails_the_calls_queued_behind_it(shared_cluster):
    @zray.remote
    class Leaver:
        def leave(self):
            time.sleep(0.2)
            zray.actor.exit_actor()

        def ping(self):
            return 1

    a = Leaver.remote()
    assert zray.get(a.ping.remote()) == 1
    leave, queued = a.leave.remote(), [a.ping.remote() for _ in range(3)]
    for ref in [leave] + queued:
        with pytest.raises(exceptions.RayActorError, match="exit_actor"):
            zray.get(ref, timeout=30)


def test_exit_actor_in_an_async_method_raises_there(shared_cluster):
    @zray.remote
    class AsyncLeaver:
        def __init__(self):
            self.after = False

        async def leave(self):
            zray.actor.exit_actor()
            self.after = True      # never reached: exit_actor raises

        async def ping(self):
            return self.after

    a = AsyncLeaver.remote()
    assert zray.get(a.ping.remote()) is False
    with pytest.raises(exceptions.ActorDiedError):
        zray.get(a.leave.remote(), timeout=30)
    with pytest.raises(exceptions.RayActorError):
        zray.get(a.ping.remote(), timeout=30)


def test_exit_actor_outside_an_actor_is_a_type_error(shared_cluster):
    with pytest.raises(TypeError, match="inside an actor"):
        zray.actor.exit_actor()

    @zray.remote
    def in_a_task():
        try:
            zray.actor.exit_actor()
        except TypeError as exc:
            return str(exc)
    assert "inside an actor" in zray.get(in_a_task.remote())


def test_dropping_the_last_handle_lets_calls_in_flight_finish(shared_cluster):
    @zray.remote
    class Slow:
        def work(self, seconds):
            time.sleep(seconds)
            return seconds

    a = Slow.remote()          # not yet created when the handle goes
    refs = [a.work.remote(0.3), a.work.remote(0.1)]
    del a
    assert zray.get(refs, timeout=60) == [0.3, 0.1]


def test_queue_shutdown_ends_its_actor(shared_cluster):
    q = Queue()
    q.put(1)
    actor = q.actor
    q.shutdown()
    with pytest.raises(exceptions.RayActorError):
        zray.get(actor.qsize.remote(), timeout=30)
    q2 = Queue()
    actor = q2.actor
    q2.shutdown(force=True)
    with pytest.raises(exceptions.RayActorError):
        zray.get(actor.qsize.remote(), timeout=30)
    q2.shutdown()     # twice is harmless


# -- item 8: actor classes and the decorator ----------------------------------------------------
@zray.remote
class WithClassMembers:
    LIMIT = 5

    @staticmethod
    def double(x):
        return 2 * x

    @classmethod
    def name(cls):
        return cls.__name__

    def use(self):
        return WithClassMembers.LIMIT, WithClassMembers.double(4), WithClassMembers.name()


def test_class_attributes_and_static_methods_through_the_class(shared_cluster):
    assert zray.get(WithClassMembers.remote().use.remote()) == (5, 8, "WithClassMembers")
    assert WithClassMembers.LIMIT == 5 and WithClassMembers.double(1) == 2
    with pytest.raises(AttributeError):
        WithClassMembers.no_such_member


def test_the_decorator_refuses_what_ray_refuses():
    with pytest.raises(AssertionError):        # Ray's type; it is a TypeError too
        zray.remote()(lambda: 1)
    with pytest.raises(TypeError, match="keyword options"):
        zray.remote(1, 2)

    async def coroutine():
        return 1
    with pytest.raises(ValueError, match="async def"):
        zray.remote(coroutine)
    with pytest.raises(exceptions.ActorClassInheritanceException, match="derive"):
        class Derived(WithClassMembers):
            pass
    assert issubclass(exceptions.ActorClassInheritanceException, TypeError)


def test_a_huge_closure_is_refused_at_the_call(shared_cluster):
    import numpy as np
    big = np.ones(96 << 20, dtype=np.uint8)

    @zray.remote
    def uses_big():
        return int(big[0])

    @zray.remote
    class UsesBig:
        def f(self):
            return int(big[0])
    with pytest.raises(ValueError, match="too large"):
        uses_big.remote()
    with pytest.raises(ValueError, match="too large"):
        UsesBig.remote()
    assert zray.get(zray.put(1)) == 1     # and the cluster keeps working


def test_tasks_and_actors_run_in_their_jobs_namespace(shared_cluster):
    namespace = zray.get_runtime_context().namespace
    assert namespace    # an anonymous job has a fresh namespace of its own, as in Ray

    @zray.remote
    class Named:
        def namespace(self):
            return zray.get_runtime_context().namespace

    keep = Named.options(name="named-in-job").remote()

    @zray.remote
    def look_up():
        return zray.get(zray.get_actor("named-in-job").namespace.remote()), \
            zray.get_runtime_context().namespace
    assert zray.get(look_up.remote()) == (namespace, namespace)
    assert zray.get(keep.namespace.remote()) == namespace


_NO_AUTO_CONNECT = """
import zray
try:
    zray.put(1)
except zray.exceptions.RaySystemError as exc:
    print("refused:", exc)
@zray.remote
def f():
    return 1
try:
    f.remote()
except zray.exceptions.RaySystemError:
    print("refused remote")
print("initialized:", zray.is_initialized())
"""


def test_auto_connect_can_be_turned_off(tmp_path):
    env = dict(os.environ, RAY_ENABLE_AUTO_CONNECT="0", ZRAY_TMPDIR=str(tmp_path),
               PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(zray.__file__))))
    out = subprocess.run([sys.executable, "-c", _NO_AUTO_CONNECT], env=env, capture_output=True,
                         text=True, timeout=120)
    assert "refused: zray is not initialized" in out.stdout, out.stderr
    assert "refused remote" in out.stdout and "initialized: False" in out.stdout


# -- item 9: concurrency groups -----------------------------------------------------------------
@zray.remote(concurrency_groups={"io": 1, "compute": 2})
class AsyncGroups:
    @zray.method(concurrency_group="io")
    async def block(self, seconds):
        time.sleep(seconds)        # blocks its loop: only the io group's
        return threading.current_thread().name

    @zray.method(concurrency_group="compute")
    async def compute(self):
        return threading.current_thread().name

    async def default(self):
        return threading.current_thread().name


@zray.remote(concurrency_groups={"io": 1})
class ThreadedGroups:
    @zray.method(concurrency_group="io")
    def block(self, seconds):
        time.sleep(seconds)
        return threading.current_thread().name

    def default(self):
        return threading.current_thread().name


@pytest.mark.parametrize("actor_class", [AsyncGroups, ThreadedGroups])
def test_a_blocked_group_does_not_block_the_others(shared_cluster, actor_class):
    a = actor_class.remote()
    others = [a.default] + ([a.compute] if actor_class is AsyncGroups else [])
    zray.get([m.remote() for m in others])
    blocked = a.block.remote(3)
    time.sleep(0.2)
    names = zray.get([m.remote() for m in others], timeout=2)   # long before the block ends
    assert zray.wait([blocked], timeout=0)[0] == []
    io_thread = zray.get(blocked, timeout=30)
    assert io_thread not in names and len(set(names)) == len(names)
