"""Whoever waits reads the inbox: a thread blocked in get reads replies itself, a worker's idle
main thread reads its next task. These tests hammer the hand-overs between readers (threads of
one driver, pool threads of an actor, the I/O thread) and a cancel landing while a task's main
thread reads in a nested get. No timing is asserted: a lost message or an inbox left taken
shows as a get that times out."""
import threading
import time

import pytest

import zray
from zray.exceptions import TaskCancelledError

from conftest import wait_for


@zray.remote
def _echo(x):
    return x


@zray.remote
class _Counter:
    def __init__(self):
        self.n = 0

    def add(self, k):
        self.n += k
        return self.n


def test_many_driver_threads_get_at_once(shared_cluster):
    counter = _Counter.remote()
    errors, results = [], {}

    def run(i):
        try:
            got = []
            for j in range(60):
                got.append(zray.get(_echo.remote((i, j)), timeout=60))
                zray.get(counter.add.remote(1), timeout=60)
            results[i] = got
        except BaseException as exc:   # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert {i: results[i] for i in range(6)} == {i: [(i, j) for j in range(60)] for i in range(6)}
    assert zray.get(counter.add.remote(0), timeout=60) == 6 * 60


def test_threaded_actor_pool_threads_get_while_main_reads(shared_cluster):
    @zray.remote
    class Fanout:
        def work(self, n):
            return sum(zray.get([_echo.remote(i) for i in range(n)], timeout=60))

    actor = Fanout.options(max_concurrency=4).remote()
    refs = [actor.work.remote(20) for _ in range(12)]
    assert zray.get(refs, timeout=120) == [sum(range(20))] * 12


def test_sync_calls_interleaved_with_async_batches(shared_cluster):
    counter = _Counter.remote()
    total = 0
    for round_ in range(20):
        batch = [counter.add.remote(1) for _ in range(25)]
        total += 25
        assert zray.get(counter.add.remote(0), timeout=60) == total    # calls keep their order
        assert zray.get(batch, timeout=60)[-1] == total


def test_generator_items_while_the_driver_reads(shared_cluster):
    @zray.remote
    def gen(n):
        for i in range(n):
            yield i

    out = []
    for ref in gen.remote(50):
        out.append(zray.get(ref, timeout=60))
        out.append(zray.get(_echo.remote(-1), timeout=60))
    assert out[::2] == list(range(50))


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.5])
def test_cancel_lands_while_the_task_reads_in_nested_gets(ray_start, tmp_path, delay):
    progress = str(tmp_path / "progress")

    @zray.remote
    def parent():
        n = 0
        while True:            # many short nested gets: the cancel lands anywhere in them
            zray.get(_echo.remote(n), timeout=60)
            n += 1
            if n % 20 == 0:
                with open(progress, "a") as f:
                    f.write("x")

    for _ in range(2):
        ref = parent.remote()
        assert wait_for(lambda: _size(progress) > 0, timeout=30)
        time.sleep(delay)
        zray.cancel(ref)
        with pytest.raises(TaskCancelledError):
            zray.get(ref, timeout=60)
        _truncate(progress)
    # Every worker still reads its inbox: a fresh batch runs everywhere.
    assert zray.get([_echo.remote(i) for i in range(8)], timeout=60) == list(range(8))


def _size(path):
    try:
        with open(path) as f:
            return len(f.read())
    except FileNotFoundError:
        return 0


def _truncate(path):
    with open(path, "w"):
        pass
