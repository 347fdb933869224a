"""zray.util.multiprocessing.Pool beyond the drop-in basics (test_util.py): imap iterators with
next(timeout=), the initializer at creation, maxtasksperchild, and the CPU bound."""
import os
import time

import pytest

import zray
from zray.util.multiprocessing import Pool, TimeoutError


@pytest.fixture(scope="module")
def cluster():
    zray.init(num_cpus=2)
    yield
    zray.shutdown()


def _mark_started(directory):
    with open(os.path.join(directory, str(os.getpid())), "w"):
        pass


def _fail_init():
    raise RuntimeError("initializer broke")


def _pid(_):
    return os.getpid()


def _sleepy(x):
    time.sleep(x)
    return x


def _boom(x):
    if x == 2:
        raise KeyError("two")
    return x


# First: the module's cluster is not started yet.
def test_pool_starts_a_cluster_sized_to_it():
    assert not zray.is_initialized()
    try:
        with Pool(processes=3) as pool:
            assert zray.cluster_resources()["CPU"] == 3
            assert pool.map(_sleepy, [0] * 3) == [0] * 3
    finally:
        zray.shutdown()


def test_initializer_runs_when_the_pool_is_created(cluster, tmp_path):
    pool = Pool(processes=2, initializer=_mark_started, initargs=(str(tmp_path),))
    try:
        # No work submitted yet: both processes already ran the initializer.
        started = set(os.listdir(tmp_path))
        assert len(started) == 2
        assert {str(p) for p in pool.map(_pid, range(8), chunksize=1)} == started
    finally:
        pool.terminate()


def test_initializer_that_fails_raises_at_creation_and_the_cluster_lives_on(cluster):
    with pytest.raises(Exception, match="initializer broke"):
        Pool(processes=1, initializer=_fail_init)
    with Pool(processes=1) as pool:
        assert pool.map(_sleepy, [0, 0]) == [0, 0]


def test_imap_next_with_timeout(cluster):
    with Pool(processes=2) as pool:
        it = pool.imap(_sleepy, [1.5, 0])
        with pytest.raises(TimeoutError):
            it.next(timeout=0.1)
        assert it.next(timeout=60) == 1.5
        assert it.next(timeout=60) == 0
        with pytest.raises(StopIteration):
            it.next(timeout=1)


def test_imap_unordered_yields_what_finishes_first(cluster):
    with Pool(processes=2) as pool:
        it = pool.imap_unordered(_sleepy, [2.0, 0])
        assert it.next(timeout=60) == 0
        with pytest.raises(TimeoutError):
            it.next(timeout=0.05)
        assert list(it) == [2.0]


def test_imap_raises_at_the_failed_item(cluster):
    with Pool(processes=2) as pool:
        it = pool.imap(_boom, range(4))
        assert it.next(timeout=60) == 0
        assert it.next(timeout=60) == 1
        with pytest.raises(KeyError):
            it.next(timeout=60)
        assert it.next(timeout=60) == 3


def test_maxtasksperchild_replaces_processes(cluster, tmp_path):
    with Pool(processes=1, maxtasksperchild=2, initializer=_mark_started,
              initargs=(str(tmp_path),)) as pool:
        pids = pool.map(_pid, range(6), chunksize=1)
        assert len(set(pids)) == 3
        assert pids[0] == pids[1] and pids[2] == pids[3] and pids[4] == pids[5]
        # Each replacement ran the initializer too (one more, started after the last chunk,
        # may still be starting).
        assert {str(p) for p in pids} <= set(os.listdir(tmp_path))
        assert len(os.listdir(tmp_path)) in (3, 4)


def test_more_processes_than_cpus_raises(cluster):
    with pytest.raises(ValueError, match="only 2 CPUs"):
        Pool(processes=3)
    with pytest.raises(ValueError):
        Pool(processes=0)
    with pytest.raises(ValueError):
        Pool(processes=1, maxtasksperchild=0)
    with pytest.raises(ValueError):
        with Pool(processes=1) as pool:
            pool.map(_pid, [1], chunksize=0)
    with Pool() as pool:        # default: one process per CPU
        assert len(pool.map(_pid, range(4), chunksize=1)) == 4
