"""zray.cancel: queued tasks, running tasks (interrupted or killed), and children."""
import os
import time

import pytest

import zray
from zray.exceptions import RayTaskError, TaskCancelledError

from conftest import wait_for


@zray.remote
def _ping():
    return "pong"


def _cluster_works():
    assert zray.get([_ping.remote() for _ in range(4)], timeout=30) == ["pong"] * 4


def _touch(path, text="x"):
    with open(path, "a") as f:
        f.write(text)


def _count(path):
    try:
        with open(path) as f:
            return len(f.read())
    except FileNotFoundError:
        return 0


@zray.remote
def _sleeper(started, seconds):
    _touch(started)
    time.sleep(seconds)
    return "finished"


def test_cancel_queued_task(ray_start, tmp_path):
    started = str(tmp_path / "started")
    blockers = [_sleeper.remote(started, 1.0) for _ in range(2)]   # both CPUs busy
    assert wait_for(lambda: _count(started) == 2)
    queued_started = str(tmp_path / "queued")
    queued = _sleeper.remote(queued_started, 0)
    zray.cancel(queued)
    with pytest.raises(TaskCancelledError):
        zray.get(queued, timeout=30)
    assert zray.get(blockers, timeout=30) == ["finished"] * 2
    time.sleep(0.2)
    assert _count(queued_started) == 0          # it never ran
    _cluster_works()


def test_cancel_task_waiting_for_its_arguments(shared_cluster, tmp_path):
    started = str(tmp_path / "started")

    @zray.remote
    def consume(x):
        return x

    dep = _sleeper.remote(started, 0.5)
    ref = consume.remote(dep)
    zray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        zray.get(ref, timeout=30)
    assert zray.get(dep, timeout=30) == "finished"
    _cluster_works()


def test_cancel_running_task_interrupts_sleep(shared_cluster, tmp_path):
    started = str(tmp_path / "started")

    @zray.remote
    def long_sleep():
        _touch(started)
        time.sleep(60)
        return os.getpid()

    ref = long_sleep.remote()
    assert wait_for(lambda: _count(started) == 1)
    t0 = time.monotonic()
    zray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        zray.get(ref, timeout=30)
    assert time.monotonic() - t0 < 10
    _cluster_works()


def test_cancelled_task_can_be_caught_and_worker_reused(shared_cluster, tmp_path):
    started = str(tmp_path / "started")

    @zray.remote
    def pid_after_sleep(seconds):
        _touch(started)
        time.sleep(seconds)
        return os.getpid()

    ref = pid_after_sleep.remote(60)
    assert wait_for(lambda: _count(started) == 1)
    zray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        zray.get(ref, timeout=30)
    # A non-forced cancel leaves the worker alive: the cluster keeps its two workers.
    pids = set(zray.get([pid_after_sleep.remote(0.3) for _ in range(4)], timeout=30))
    assert 1 <= len(pids) <= 2


def test_force_cancel_kills_worker_and_is_not_retried(ray_start, tmp_path):
    started = str(tmp_path / "started")

    @zray.remote(max_retries=3)
    def stubborn():
        _touch(started)
        try:
            time.sleep(60)
        except KeyboardInterrupt:
            time.sleep(60)      # ignores the polite interrupt
        return "should not finish"

    ref = stubborn.remote()
    assert wait_for(lambda: _count(started) == 1)
    zray.cancel(ref, force=True)
    with pytest.raises(TaskCancelledError):
        zray.get(ref, timeout=30)
    time.sleep(0.5)
    assert _count(started) == 1                  # not retried
    _cluster_works()


def test_force_cancel_queued_task(ray_start, tmp_path):
    started = str(tmp_path / "started")
    blockers = [_sleeper.remote(started, 0.8) for _ in range(2)]
    assert wait_for(lambda: _count(started) == 2)
    queued = _sleeper.remote(str(tmp_path / "never"), 0)
    zray.cancel(queued, force=True)
    with pytest.raises(TaskCancelledError):
        zray.get(queued, timeout=30)
    assert zray.get(blockers, timeout=30) == ["finished"] * 2
    _cluster_works()


@pytest.mark.parametrize("force", [False, True])
def test_recursive_cancel_stops_children(ray_start, tmp_path, force):
    ticks = str(tmp_path / "ticks")

    @zray.remote
    def child():
        for _ in range(300):
            _touch(ticks)
            time.sleep(0.05)
        return "child finished"

    @zray.remote
    def parent():
        return zray.get(child.remote())

    ref = parent.remote()
    assert wait_for(lambda: _count(ticks) >= 2)
    zray.cancel(ref, force=force)                     # recursive=True is the default
    with pytest.raises(TaskCancelledError):
        zray.get(ref, timeout=30)

    def stopped():
        before = _count(ticks)
        time.sleep(0.4)
        return _count(ticks) == before
    assert wait_for(stopped, timeout=10)
    _cluster_works()


def test_non_recursive_cancel_leaves_children(ray_start, tmp_path):
    done = str(tmp_path / "done")
    started = str(tmp_path / "started")

    @zray.remote
    def child():
        _touch(started)
        time.sleep(0.5)
        _touch(done)

    @zray.remote
    def parent():
        return zray.get(child.remote())

    ref = parent.remote()
    assert wait_for(lambda: _count(started) == 1)
    zray.cancel(ref, recursive=False)
    with pytest.raises(TaskCancelledError):
        zray.get(ref, timeout=30)
    assert wait_for(lambda: _count(done) == 1, timeout=10)
    _cluster_works()


def test_cancel_finished_task_is_a_no_op(shared_cluster):
    ref = _ping.remote()
    assert zray.get(ref) == "pong"
    zray.cancel(ref)
    assert zray.get(ref) == "pong"


def test_cancel_bad_argument(shared_cluster):
    with pytest.raises(TypeError):
        zray.cancel("not a ref")
    _cluster_works()


def test_cancel_catches_as_ray_error_not_task_error(shared_cluster, tmp_path):
    started = str(tmp_path / "started")
    ref = _sleeper.remote(started, 60)
    assert wait_for(lambda: _count(started) == 1)
    zray.cancel(ref)
    with pytest.raises(TaskCancelledError) as info:
        zray.get(ref, timeout=30)
    assert not isinstance(info.value, RayTaskError)
    _cluster_works()


def test_cancel_streaming_generator(shared_cluster, tmp_path):
    @zray.remote
    def endless():
        i = 0
        while True:
            yield i
            i += 1
            time.sleep(0.05)

    gen = endless.remote()
    first = next(gen)
    assert zray.get(first) == 0
    zray.cancel(gen)
    with pytest.raises(TaskCancelledError):
        for ref in gen:
            zray.get(ref, timeout=30)
    _cluster_works()
