"""Actors: creation, ordered direct calls, options, lifecycle, failures, bad input."""
import asyncio
import os
import signal
import threading
import time

import pytest

import zray
from zray.exceptions import ActorDiedError, GetTimeoutError, RayActorError, RayTaskError


@pytest.fixture(scope="module")
def cluster():
    zray.init(num_cpus=2)
    yield zray.api._runtime()
    zray.shutdown()


@zray.remote
class Counter:
    def __init__(self, start=0):
        self.value = start

    def incr(self, by=1):
        self.value += by
        return self.value

    def get(self):
        return self.value

    def pid(self):
        return os.getpid()

    def fail(self):
        raise KeyError("inside the actor")

    def sleep(self, seconds):
        time.sleep(seconds)
        return seconds


def test_create_call_and_state(cluster):
    c = Counter.remote(10)
    assert zray.get(c.incr.remote()) == 11
    assert zray.get(c.incr.remote(by=5)) == 16
    assert zray.get(c.get.remote()) == 16


def test_calls_from_one_caller_run_in_submission_order(cluster):
    c = Counter.remote()
    refs = [c.incr.remote() for _ in range(200)]
    assert zray.get(refs) == list(range(1, 201))


def test_order_is_kept_when_an_earlier_call_waits_for_an_argument(cluster):
    @zray.remote
    def later(x):
        time.sleep(0.5)
        return x

    @zray.remote
    class Log:
        def __init__(self):
            self.items = []

        def add(self, x):
            self.items.append(x)
            return list(self.items)

    log = Log.remote()
    log.add.remote(later.remote("first"))
    assert zray.get(log.add.remote("second")) == ["first", "second"]


def test_each_actor_has_its_own_process(cluster):
    a, b = Counter.remote(), Counter.remote()
    assert zray.get(a.pid.remote()) != zray.get(b.pid.remote())
    assert zray.get(a.pid.remote()) != os.getpid()


def test_method_exception_is_raised_on_get_and_actor_survives(cluster):
    c = Counter.remote()
    with pytest.raises(KeyError) as info:
        zray.get(c.fail.remote())
    assert isinstance(info.value, RayTaskError)
    assert "inside the actor" in str(info.value)
    assert zray.get(c.incr.remote()) == 1


def test_handles_work_from_tasks_and_other_actors(cluster):
    c = Counter.remote()

    @zray.remote
    def bump(handle, n):
        return zray.get([handle.incr.remote() for _ in range(n)])[-1]

    @zray.remote
    class Proxy:
        def __init__(self, target):
            self.target = target

        def bump(self):
            return zray.get(self.target.incr.remote(100))

    assert zray.get(bump.remote(c, 3)) == 3
    p = Proxy.remote(c)
    assert zray.get(p.bump.remote()) == 103
    assert zray.get(c.get.remote()) == 103


def test_num_returns_per_method(cluster):
    @zray.remote
    class Pair:
        @zray.method(num_returns=2)
        def two(self):
            return 1, 2

        def three(self):
            return 1, 2, 3

    p = Pair.remote()
    a, b = p.two.remote()
    assert zray.get([a, b]) == [1, 2]
    x, y, z = p.three.options(num_returns=3).remote()
    assert zray.get(z) == 3


def test_threaded_actor_runs_calls_concurrently(cluster):
    @zray.remote(max_concurrency=4)
    class Sleeper:
        def nap(self):
            time.sleep(0.5)
            return threading.get_ident()

    s = Sleeper.remote()
    zray.get(s.nap.remote())
    start = time.monotonic()
    idents = zray.get([s.nap.remote() for _ in range(4)])
    assert time.monotonic() - start < 1.5
    assert len(set(idents)) > 1


def test_async_actor_runs_calls_concurrently_on_its_loop(cluster):
    @zray.remote
    class AsyncActor:
        def __init__(self):
            self.running = 0
            self.peak = 0

        async def work(self):
            self.running += 1
            self.peak = max(self.peak, self.running)
            await asyncio.sleep(0.3)
            self.running -= 1
            return "done"

        async def peak_seen(self):
            return self.peak

    a = AsyncActor.remote()
    start = time.monotonic()
    assert zray.get([a.work.remote() for _ in range(50)]) == ["done"] * 50
    assert time.monotonic() - start < 2.5
    assert zray.get(a.peak_seen.remote()) == 50


def test_async_actor_max_concurrency_caps_calls(cluster):
    @zray.remote(max_concurrency=2)
    class Capped:
        def __init__(self):
            self.running = 0
            self.peak = 0

        async def work(self):
            self.running += 1
            self.peak = max(self.peak, self.running)
            await asyncio.sleep(0.1)
            self.running -= 1

        async def peak_seen(self):
            return self.peak

    c = Capped.remote()
    zray.get([c.work.remote() for _ in range(6)])
    assert zray.get(c.peak_seen.remote()) == 2


def test_async_actor_starts_calls_in_arrival_order_on_its_loop(cluster):
    # The loop's thread reads the inbox itself while idle (actor_host.py, _InboxSelector):
    # calls start there in arrival order, also when a blocking get inside a call reads the
    # inbox on that thread, and the loop still wakes for timers and other threads' callbacks.
    @zray.remote
    class Recorder:
        def __init__(self):
            self.seen = []

        async def note(self, i):
            self.seen.append(i)
            return threading.current_thread().name

        async def note_after_get(self, i, inner):
            self.seen.append(i)
            return zray.get(inner.incr.remote())

        async def woken_by_thread(self):
            loop = asyncio.get_running_loop()
            fut = loop.create_future()
            threading.Timer(0.05, loop.call_soon_threadsafe, (fut.set_result, "woken")).start()
            return await asyncio.wait_for(fut, 5)

        async def seen_order(self):
            return self.seen

    r = Recorder.remote()
    inner = Counter.remote()
    refs = []
    for i in range(300):
        refs.append(r.note.remote(i) if i % 50 else r.note_after_get.remote(i, inner))
    names = zray.get(refs, timeout=60)
    assert {n for i, n in enumerate(names) if i % 50} == {"zray-actor-loop-_default"}
    assert zray.get(r.seen_order.remote(), timeout=30) == list(range(300))
    assert zray.get(r.woken_by_thread.remote(), timeout=30) == "woken"
    assert zray.get(inner.get.remote(), timeout=30) == 6


def test_concurrency_groups(cluster):
    @zray.remote(concurrency_groups={"io": 2, "compute": 1})
    class Grouped:
        @zray.method(concurrency_group="io")
        def io(self):
            time.sleep(0.4)
            return "io"

        @zray.method(concurrency_group="compute")
        def compute(self):
            return "compute"

    g = Grouped.remote()
    zray.get(g.compute.remote())
    start = time.monotonic()
    refs = [g.io.remote(), g.io.remote(), g.compute.remote()]
    assert zray.get(refs) == ["io", "io", "compute"]
    assert time.monotonic() - start < 0.75


def test_named_actor_get_actor_and_get_if_exists(cluster):
    c = Counter.options(name="named-counter").remote(5)
    found = zray.get_actor("named-counter")
    assert zray.get(found.incr.remote()) == 6
    with pytest.raises(ValueError, match="named-counter"):
        Counter.options(name="named-counter").remote()
    same = Counter.options(name="named-counter", get_if_exists=True).remote()
    assert zray.get(same.get.remote()) == 6
    with pytest.raises(ValueError):
        zray.get_actor("no-such-actor")
    other_ns = Counter.options(name="named-counter", namespace="elsewhere").remote(100)
    assert zray.get(zray.get_actor("named-counter", namespace="elsewhere").get.remote()) == 100
    del other_ns


def test_resources_default_one_cpu_to_place_none_held(cluster):
    actors = [Counter.remote() for _ in range(4)]     # more actors than CPUs
    assert zray.get([a.incr.remote() for a in actors]) == [1, 1, 1, 1]
    assert zray.available_resources().get("CPU") == 2.0

    @zray.remote(num_cpus=1)
    class Holder:
        def ping(self):
            return "pong"
    h = Holder.remote()
    assert zray.get(h.ping.remote()) == "pong"
    assert zray.available_resources().get("CPU") == 1.0
    zray.kill(h)
    deadline = time.monotonic() + 10
    while zray.available_resources().get("CPU") != 2.0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert zray.available_resources().get("CPU") == 2.0


def test_kill_makes_calls_raise_actor_died(cluster):
    c = Counter.remote()
    assert zray.get(c.incr.remote()) == 1
    zray.kill(c)
    with pytest.raises(ActorDiedError):
        zray.get(c.incr.remote(), timeout=30)
    assert isinstance(ActorDiedError(), RayActorError)


def test_kill_9_of_the_worker_without_restarts(cluster):
    c = Counter.remote()
    pid = zray.get(c.pid.remote())
    pending = c.sleep.remote(30)
    time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ActorDiedError):
        zray.get(pending, timeout=30)
    with pytest.raises(ActorDiedError):
        zray.get(c.incr.remote(), timeout=30)


def test_kill_9_with_restarts_reruns_the_constructor_and_retries(cluster):
    c = Counter.options(max_restarts=2, max_task_retries=-1).remote(7)
    pid = zray.get(c.pid.remote())
    zray.get(c.incr.remote())
    pending = c.sleep.remote(2)
    time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)
    assert zray.get(pending, timeout=60) == 2         # retried on the new incarnation
    assert zray.get(c.get.remote(), timeout=30) == 7   # the constructor ran again
    assert zray.get(c.pid.remote()) != pid


def test_restart_without_task_retries_fails_the_call_in_flight(cluster):
    c = Counter.options(max_restarts=1).remote()
    pid = zray.get(c.pid.remote())
    pending = c.sleep.remote(30)
    time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(RayActorError):
        zray.get(pending, timeout=30)
    assert zray.get(c.incr.remote(), timeout=30) == 1


def test_constructor_error_makes_every_call_raise_with_the_cause(cluster):
    @zray.remote
    class Broken:
        def __init__(self):
            raise ZeroDivisionError("bad constructor")

        def ping(self):
            return 1

    b = Broken.remote()
    for _ in range(2):
        with pytest.raises(RayActorError) as info:
            zray.get(b.ping.remote(), timeout=30)
        assert "bad constructor" in str(info.value)


def test_ray_terminate_ends_after_queued_calls(cluster):
    c = Counter.remote()
    refs = [c.incr.remote() for _ in range(5)]
    c.__ray_terminate__.remote()
    assert zray.get(refs) == [1, 2, 3, 4, 5]
    with pytest.raises(RayActorError):
        zray.get(c.incr.remote(), timeout=30)


def test_exit_actor_from_inside(cluster):
    @zray.remote
    class Quitter:
        def quit(self):
            zray.actor.exit_actor()

        def ping(self):
            return 1

    q = Quitter.remote()
    assert zray.get(q.ping.remote()) == 1
    q.quit.remote()
    with pytest.raises(RayActorError):
        zray.get(q.ping.remote(), timeout=30)


def test_actor_ends_when_no_handle_remains(cluster):
    c = Counter.remote()
    pid = zray.get(c.pid.remote())
    del c
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the actor's process outlived its last handle")


def test_bad_input(cluster):
    c = Counter.remote()
    with pytest.raises(AttributeError):
        c.no_such_method.remote()
    with pytest.raises(TypeError, match="remote"):
        c.incr()
    with pytest.raises(TypeError, match="remote"):
        Counter()
    with pytest.raises(ValueError):
        Counter.options(max_concurrency=0).remote()
    with pytest.raises(TypeError):
        Counter.options(not_an_option=1).remote()
    with pytest.raises(ValueError):
        Counter.options(lifetime="forever").remote()
    with pytest.raises(ValueError, match="only supported for actors"):   # Ray's type and words
        zray.kill("not a handle")
    assert zray.get(c.incr.remote()) == 1


def test_get_timeout_on_a_slow_method(cluster):
    c = Counter.remote()
    with pytest.raises(GetTimeoutError):
        zray.get(c.sleep.remote(2), timeout=0.2)


def test_runtime_context_in_an_actor(cluster):
    @zray.remote
    class Who:
        def ids(self):
            ctx = zray.get_runtime_context()
            return ctx.get_actor_id(), ctx.get_job_id()

    w = Who.remote()
    actor_id, job_id = zray.get(w.ids.remote())
    assert actor_id == w._actor_id.hex()
    assert job_id == zray.get_runtime_context().get_job_id()
