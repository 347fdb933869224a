"""put/get/wait, ObjectRef behaviour, zero-copy reads and reference counting."""
import ctypes
import os
import gc
import time

import numpy as np
import pytest

import zray
from zray.exceptions import GetTimeoutError, ObjectStoreFullError


@pytest.fixture(scope="module")
def cluster():
    zray.init(num_cpus=2, object_store_memory=256 << 20)
    yield zray.api._runtime()
    zray.shutdown()


def wait_store_used(core, expected, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        gc.collect()
        used = core.store_stats()["used"]
        if used == expected or time.monotonic() > deadline:
            return used
        time.sleep(0.02)


@zray.remote
def identity(x):
    return x


@zray.remote
def slow(seconds, value=None):
    time.sleep(seconds)
    return value


@zray.remote
def big_array(n):
    return np.ones(n, dtype=np.uint8)


def test_put_get_roundtrip(cluster):
    values = [1, "two", 3.0, None, {"a": [1, 2]}, (1, 2), b"bytes", set([1]), np.arange(5)]
    for v in values:
        got = zray.get(zray.put(v))
        if isinstance(v, np.ndarray):
            assert np.array_equal(got, v)
        else:
            assert got == v


def test_get_list_keeps_order(cluster):
    refs = [zray.put(i) for i in range(50)] + [identity.remote(i) for i in range(50, 60)]
    assert zray.get(refs) == list(range(60))
    assert zray.get(tuple(refs[:3])) == [0, 1, 2]


def test_get_timeout_raises_get_timeout_error(cluster):
    ref = slow.remote(2)
    with pytest.raises(GetTimeoutError) as info:
        zray.get(ref, timeout=0.1)
    assert isinstance(info.value, TimeoutError)
    assert zray.get(ref) is None    # the value still arrives after a timed-out get


def test_get_rejects_bad_input(cluster):
    with pytest.raises(ValueError):     # as Ray (issue 10)
        zray.get(3)
    with pytest.raises(ValueError):
        zray.get([zray.put(1), 2])
    with pytest.raises(ValueError):
        zray.get(zray.put(1), timeout=-1)
    assert zray.get(zray.put(1)) == 1


def test_put_of_an_object_ref_is_an_error(cluster):
    with pytest.raises(TypeError):
        zray.put(zray.put(1))


def test_object_ref_is_hashable_and_comparable(cluster):
    a = zray.put(1)
    b = zray.put(1)
    assert a != b and a == a
    assert len({a, b, a}) == 2
    assert {a: 1}[a] == 1
    assert sorted([b, a]) in ([a, b], [b, a])
    assert len(a.hex()) == 32 and a.binary() == bytes.fromhex(a.hex())


def test_wait_order_num_returns_and_timeout(cluster):
    fast = [identity.remote(i) for i in range(3)]
    slow_ref = slow.remote(3)
    zray.get(fast)
    refs = [slow_ref] + fast
    ready, not_ready = zray.wait(refs, num_returns=3, timeout=5)
    assert ready == fast and not_ready == [slow_ref]
    ready, not_ready = zray.wait(refs, num_returns=4, timeout=0.1)
    assert ready == fast and not_ready == [slow_ref]
    ready, not_ready = zray.wait(refs, num_returns=1)
    assert len(ready) == 1 and len(not_ready) == 3
    ready, not_ready = zray.wait(refs, num_returns=4, timeout=10, fetch_local=False)
    assert ready == refs and not_ready == []


def test_wait_rejects_bad_input(cluster):
    r = zray.put(1)
    with pytest.raises(TypeError):
        zray.wait(r)
    with pytest.raises(ValueError):
        zray.wait([r, r])
    with pytest.raises(ValueError):
        zray.wait([r], num_returns=2)
    with pytest.raises(ValueError):
        zray.wait([r], num_returns=0)
    assert zray.wait([r]) == ([r], [])


def _address_of(array):
    return array.__array_interface__["data"][0]


def test_get_of_large_array_is_zero_copy_and_read_only(cluster):
    data = np.random.rand(2_000_000)          # 16 MB: goes to the store
    ref = zray.put(data)
    got = zray.get(ref)
    again = zray.get(ref)
    assert np.array_equal(got, data)
    assert not got.flags.writeable
    with pytest.raises(ValueError):
        got[0] = 1.0
    region = cluster.store.region
    start = ctypes.addressof(ctypes.c_char.from_buffer(region.mmap))
    assert start <= _address_of(got) < start + region.size
    assert _address_of(got) == _address_of(again)     # both reads see the same memory


def test_small_values_travel_inline(cluster):
    wait_store_used(cluster, 0)      # earlier tests' objects are freed asynchronously
    ref = zray.put(np.zeros(1000))
    assert cluster.store_stats()["num_objects"] == 0
    assert zray.get(identity.remote(ref)).sum() == 0


def test_store_usage_back_to_baseline_after_del(cluster):
    base = wait_store_used(cluster, 0)
    assert base == 0
    ref = zray.put(np.ones(10 << 20, dtype=np.uint8))
    task_ref = big_array.remote(5 << 20)
    assert zray.get(task_ref).sum() == 5 << 20
    assert cluster.store_stats()["used"] >= 15 << 20
    del ref, task_ref
    assert wait_store_used(cluster, 0) == 0


def test_zero_copy_value_keeps_object_alive_until_released(cluster):
    ref = zray.put(np.arange(3_000_000, dtype=np.int64))
    arr = zray.get(ref)
    del ref
    gc.collect()
    time.sleep(0.1)
    assert arr[-1] == 2_999_999               # still valid: our view pins it
    assert cluster.store_stats()["num_objects"] >= 1
    del arr
    assert wait_store_used(cluster, 0) == 0


def test_large_task_argument_is_stored_once_and_freed(cluster):
    data = np.ones(4 << 20, dtype=np.uint8)

    @zray.remote
    def total(x):
        return int(x.sum())
    assert zray.get([total.remote(data) for _ in range(3)]) == [4 << 20] * 3
    assert wait_store_used(cluster, 0) == 0


def test_nested_refs_stay_alive_while_their_container_lives(cluster):
    inner = zray.put(np.ones(2 << 20, dtype=np.uint8))
    inner_id = inner.binary()
    outer = zray.put({"inner": inner})
    del inner
    gc.collect()
    got = zray.get(outer)["inner"]
    assert isinstance(got, zray.ObjectRef) and got.binary() == inner_id
    assert zray.get(got).sum() == 2 << 20
    del got, outer
    assert wait_store_used(cluster, 0) == 0


def test_refs_returned_from_tasks_are_counted(cluster):
    @zray.remote
    def make_and_return():
        return [zray.put(np.ones(3 << 20, dtype=np.uint8))]

    @zray.remote
    def passthrough(box):
        return box

    outer = make_and_return.remote()
    inner = zray.get(outer)[0]
    assert zray.get(inner).sum() == 3 << 20
    again = zray.get(passthrough.remote([inner]))[0]
    assert again == inner
    del outer, inner, again
    assert wait_store_used(cluster, 0) == 0


def test_object_larger_than_the_store_errors_and_cluster_keeps_working(cluster):
    with pytest.raises(ObjectStoreFullError) as info:
        zray.put(np.zeros(300 << 20, dtype=np.uint8))
    msg = str(info.value)
    assert str(300 << 20) in msg.replace(",", "") or "314572" in msg
    assert str(256 << 20) in msg
    assert zray.get(identity.remote(7)) == 7
    assert zray.get(zray.put(np.ones(1 << 20))).sum() == 1 << 20


def test_full_store_spills_to_disk_and_restores(cluster):
    chunk = 100 << 20
    refs = [zray.put(np.full(chunk, i, dtype=np.uint8)) for i in range(4)]   # 400 MB > 256 MB
    stats = cluster.store_stats()
    assert stats["num_spilled"] >= 2
    for i, ref in enumerate(refs):
        arr = zray.get(ref)
        assert arr[0] == i and arr[-1] == i
        del arr
    assert cluster.store_stats()["restore_count"] >= 2
    del refs, ref
    assert wait_store_used(cluster, 0) == 0
    # A spilled copy holds no store memory: its release can land after `used` reached 0
    # (a CI run saw one object left at that moment); it must still go, within the timeout.
    deadline = time.monotonic() + 10
    while cluster.store_stats()["num_objects"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert cluster.store_stats()["num_objects"] == 0


def test_a_store_full_of_pinned_objects_falls_back_to_a_file_at_once(cluster):
    """Issue 10, defect 6: as Ray, a put with every object pinned goes to a file-backed
    allocation instead of failing after ~1 s; workers read it; its file goes with it."""
    import glob
    session = zray.api._state.session_dir
    held = [zray.get(zray.put(np.full(100 << 20, i, dtype=np.uint8))) for i in range(2)]
    refs = [zray.put(np.full(100 << 20, 7, dtype=np.uint8))]      # 300 MB > 256 MB, all pinned
    t0 = time.monotonic()
    refs.append(zray.put(np.full(60 << 20, 9, dtype=np.uint8)))
    stats = cluster.store_stats()
    assert stats["num_fallback"] >= 1 and stats["fallback_allocations"] >= 1
    files = glob.glob(os.path.join(session, "spill", "fallback-*"))
    assert files
    assert zray.get(identity.remote(refs[-1])).sum() == 9 * (60 << 20)   # a worker maps it
    assert zray.get(refs[0])[-1] == 7
    assert time.monotonic() - t0 < 60       # (a bound against hangs, not a speed check)
    del held, refs
    assert wait_store_used(cluster, 0) == 0
    deadline = time.monotonic() + 10
    while cluster.store_stats()["num_fallback"] and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.05)
    assert cluster.store_stats()["num_fallback"] == 0
    assert not glob.glob(os.path.join(session, "spill", "fallback-*"))


def test_dropping_a_ref_inside_the_runtimes_own_locks_does_not_deadlock(cluster):
    """Finalizers run wherever the garbage collector runs them, even inside zray's locks (seen
    as a hang in CI: an ObjectRef.__del__ during submit_task). They must only queue."""
    ref = zray.put(np.ones(1 << 20, dtype=np.uint8))
    arr = zray.get(ref)
    with cluster.objects.lock, cluster.table.lock, cluster.refs._lock:
        del ref          # ObjectRef.__del__ runs here, in this thread, with both locks held
        del arr          # and the store pin's finalizer too
    assert wait_store_used(cluster, 0) == 0
    gen_ref = identity.remote(1)
    with cluster.objects.lock, cluster.table.lock:
        del gen_ref
    assert zray.get(identity.remote(2)) == 2


def test_polling_wait_and_get_leave_no_callbacks_behind(cluster):
    ref = slow.remote(3)
    for _ in range(2000):
        zray.wait([ref], timeout=0)
    for _ in range(3):
        with pytest.raises(GetTimeoutError):
            zray.get(ref, timeout=0.01)
        zray.wait([ref], timeout=0.01)
    assert not cluster.objects.entries[ref.binary()].callbacks
    assert zray.get(ref) is None
