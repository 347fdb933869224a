"""The store's index with the real allocator over plain memory: create, pin, spill, restore."""
import pytest

from zray import _native
from zray.exceptions import ObjectLostError, ObjectStoreFullError
from zray.store.object_store import ObjectStore

CAP = 1 << 20


@pytest.fixture
def store(tmp_path):
    memory = bytearray(CAP)
    s = ObjectStore(memoryview(memory), CAP, _native.Allocator(CAP, 64), str(tmp_path))
    yield s
    s.close()


def put(store, oid, size, fill):
    off = store.create(oid, size, "owner", "writer")
    store.view[off:off + size] = bytes([fill]) * size
    store.seal(oid, "writer")
    return off


def test_create_seal_pin_free(store):
    put(store, b"a", 1000, 7)
    off, size = store.pin(b"a", "reader")
    assert size == 1000 and store.view[off] == 7
    store.free(b"a")
    assert store.stats()["num_objects"] == 1     # still pinned
    store.unpin(b"a", "reader")
    assert store.stats()["num_objects"] == 0 and store.stats()["used"] == 0


def test_too_large_object_names_both_sizes(store):
    with pytest.raises(ObjectStoreFullError, match=f"{CAP + 1} bytes.*{CAP} bytes"):
        store.create(b"big", CAP + 1, "o", "c")


def test_spill_least_recently_used_then_restore(store, tmp_path):
    put(store, b"a", 400_000, 1)
    put(store, b"b", 400_000, 2)
    store.unpin(*store.pin(b"a", "r") and (b"a", "r"))   # touch a: b is now the oldest
    put(store, b"c", 400_000, 3)
    assert store.objects[b"b"].offset is None and (tmp_path / b"b".hex()).exists()
    off, size = store.pin(b"b", "r")
    assert store.view[off] == 2 and store.view[off + size - 1] == 2
    assert store.stats()["restore_count"] == 1


def test_pinned_objects_are_never_spilled_and_the_next_one_goes_to_a_file(store, tmp_path):
    put(store, b"a", 600_000, 1)
    store.pin(b"a", "reader")
    off = store.create(b"b", 600_000, "o", "c")          # as Ray: a file-backed allocation
    assert off >> 40 == 1 and store.objects[b"a"].offset < CAP
    store.buffer(off, 600_000)[:] = b"\x02" * 600_000
    store.seal(b"b", "c")
    (path,) = tmp_path.iterdir()
    assert path.name == "fallback-1" and path.read_bytes()[:3] == b"\x02\x02\x02"
    off2, size = store.pin(b"b", "r")
    assert off2 == off and bytes(store.buffer(off2, 3)) == b"\x02\x02\x02"
    stats = store.stats()
    assert stats["num_fallback"] == 1 and stats["fallback_bytes"] == 600_000
    store.unpin(b"b", "r")
    assert b"b" not in store._lru                        # a file-backed object is never spilled
    store.free(b"b")
    assert not list(tmp_path.iterdir()) and store.stats()["num_fallback"] == 0


def test_without_fallback_a_store_full_of_pinned_objects_says_so(tmp_path):
    memory = bytearray(CAP)
    s = ObjectStore(memoryview(memory), CAP, _native.Allocator(CAP, 64), str(tmp_path),
                    fallback=False)
    put(s, b"a", 600_000, 1)
    s.pin(b"a", "reader")
    with pytest.raises(ObjectStoreFullError, match="pinned"):
        s.create(b"b", 600_000, "o", "c")


def test_unknown_object_is_lost(store):
    with pytest.raises(ObjectLostError):
        store.pin(b"nope", "r")


def test_client_gone_drops_its_pins_and_unsealed_objects(store):
    put(store, b"a", 1000, 1)
    store.pin(b"a", "reader")
    store.create(b"half", 1000, "o", "crashed-writer")
    store.client_gone("crashed-writer")
    assert b"half" not in store.objects
    store.free(b"a")
    store.client_gone("reader")
    assert store.stats()["num_objects"] == 0 and store.stats()["used"] == 0


def test_a_retry_finds_its_result_already_stored(store):
    from zray.exceptions import ObjectAlreadyStoredError
    put(store, b"ret", 1000, 5)
    with pytest.raises(ObjectAlreadyStoredError):
        store.create(b"ret", 1000, "owner", "retrying-worker")
    store.create(b"half", 10, "o", "w")
    with pytest.raises(ValueError):
        store.create(b"half", 10, "o", "other")


def test_a_full_disk_loses_nothing_and_spilling_resumes_when_space_returns(store, tmp_path,
                                                                         monkeypatch):
    """Issue 10, defect 6: OutOfDiskError naming the directory and the bytes, no partial file,
    the object stays a spill candidate, and a later allocation spills once there is room."""
    import builtins
    import errno
    from zray.exceptions import OutOfDiskError
    from zray.store import spill
    half = CAP // 2 + 1024
    put(store, b"a", half, 1)
    real_open = builtins.open

    class FullDisk:
        def __init__(self, path, mode):
            self.f = real_open(path, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(bytes(data[:100]))     # a partial write, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(spill, "open", FullDisk, raising=False)
    with pytest.raises(OutOfDiskError, match=f"{tmp_path}.*{half} bytes"):
        store.create(b"b", half, "owner", "writer")
    assert list(tmp_path.iterdir()) == []                  # no partial spill file
    off, size = store.pin(b"a", "reader")                  # nothing lost
    assert size == half and store.view[off] == 1
    store.unpin(b"a", "reader")
    monkeypatch.undo()                                      # space is back
    put(store, b"b", half, 2)
    assert store.stats()["spill_count"] == 1
    off, _ = store.pin(b"a", "reader")                     # restored from disk, intact
    assert store.view[off] == 1 and store.view[off + half - 1] == 1


# -- spills on the spiller's thread (the daemon's case) ------------------------------------------------
class HeldSpiller:
    """Takes spill submissions and writes them only when the test says so."""

    def __init__(self):
        self.submitted = []

    def submit(self, object_id, view, path):
        self.submitted.append((object_id, bytes(view), path))

    def finish(self, store, error=None):
        from zray.store.spill import write_file
        for object_id, data, path in self.submitted:
            store.handle_spilled(object_id, path, error or write_file(path, data))
        self.submitted = []

    def close(self):
        pass


@pytest.fixture
def async_store(tmp_path):
    memory = bytearray(CAP)
    spiller = HeldSpiller()
    s = ObjectStore(memoryview(memory), CAP, _native.Allocator(CAP, 64), str(tmp_path),
                    spiller=spiller)
    yield s, spiller
    s.close()


def test_a_create_waits_for_the_spill_it_started_and_the_store_serves_meanwhile(async_store,
                                                                                tmp_path):
    from zray.store.object_store import SpillPending
    store, spiller = async_store
    put(store, b"a", 400_000, 1)
    put(store, b"b", 400_000, 2)
    with pytest.raises(SpillPending):
        store.create(b"c", 400_000, "o", "w", can_wait=True)
    assert [s[0] for s in spiller.submitted] == [b"a"]          # handed off, not written here
    assert store.stats()["spills_in_progress"] == 1
    # Meanwhile the store serves: the object being spilled is still readable from memory...
    off, _ = store.pin(b"b", "r")
    assert store.view[off] == 2
    store.unpin(b"b", "r")
    spiller.finish(store)
    assert store.objects[b"a"].offset is None and (tmp_path / b"a".hex()).exists()
    off = store.create(b"c", 400_000, "o", "w", can_wait=True)   # ...and now there is room
    assert off < CAP and store.stats()["spill_count"] == 1
    store.seal(b"c", "w")
    off, _ = store.pin(b"a", "r")     # restored intact (to a file: memory is full meanwhile)
    assert off >> 40 >= 1 and bytes(store.buffer(off, 400_000)) == b"\x01" * 400_000
    assert [s[0] for s in spiller.submitted] == [b"b"]          # room for later is on its way


def test_an_object_read_or_freed_during_its_spill_stays_or_goes_and_no_file_is_left(async_store,
                                                                                    tmp_path):
    from zray.store.object_store import SpillPending
    store, spiller = async_store
    put(store, b"a", 400_000, 1)
    put(store, b"b", 400_000, 2)
    with pytest.raises(SpillPending):
        store.create(b"c", 400_000, "o", "w", can_wait=True)
    store.pin(b"a", "reader")                    # read while being written
    spiller.finish(store)
    assert store.objects[b"a"].offset is not None and not list(tmp_path.iterdir())
    store.unpin(b"a", "reader")
    assert b"a" in store._lru                    # a candidate again
    with pytest.raises(SpillPending):
        store.create(b"c", 400_000, "o", "w", can_wait=True)
    assert [s[0] for s in spiller.submitted] == [b"b"]   # b is the oldest now
    store.free(b"b")                              # freed while being written
    assert b"b" in store.objects
    spiller.finish(store)
    assert b"b" not in store.objects and not list(tmp_path.iterdir())
    assert store.create(b"c", 400_000, "o", "w", can_wait=True) < CAP


def test_a_failed_spill_gives_out_of_disk_to_the_waiting_create_and_loses_nothing(async_store,
                                                                                 tmp_path):
    import errno
    from zray.exceptions import OutOfDiskError
    from zray.store.object_store import SpillPending
    store, spiller = async_store
    put(store, b"a", 600_000, 1)
    with pytest.raises(SpillPending):
        store.create(b"c", 600_000, "o", "w", can_wait=True)
    spiller.finish(store, error=OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(OutOfDiskError, match=str(tmp_path)):
        store.create(b"c", 600_000, "o", "w", can_wait=True)
    off, _ = store.pin(b"a", "r")
    assert store.view[off] == 1 and not list(tmp_path.iterdir())
    store.unpin(b"a", "r")
    with pytest.raises(SpillPending):             # space is back: it is tried again
        store.create(b"c", 600_000, "o", "w", can_wait=True)
    spiller.finish(store)
    assert store.create(b"c", 600_000, "o", "w", can_wait=True) < CAP


def test_a_caller_that_cannot_wait_gets_a_file_while_spills_make_room(async_store, tmp_path):
    store, spiller = async_store
    put(store, b"a", 600_000, 1)
    off = store.create(b"copy", 600_000, None, "pull#1", copy_from="n" * 28)
    assert off >> 40 >= 1 and [s[0] for s in spiller.submitted] == [b"a"]
    store.abort(b"copy", "pull#1")
    spiller.finish(store)
    assert sorted(p.name for p in tmp_path.iterdir()) == [b"a".hex()]


def test_the_spill_worker_writes_on_its_thread_and_reports(tmp_path):
    import select
    from zray.store.spill import SpillWorker
    worker = SpillWorker()
    try:
        data = memoryview(bytearray(b"z" * 100_000))
        worker.submit(b"x", data, str(tmp_path / "x"))
        worker.submit(b"y", data, str(tmp_path / "missing-dir" / "y"))
        done = []
        while len(done) < 2:
            assert select.select([worker.wake_fd], [], [], 10)[0], "no report"
            done += worker.take_done()
        (x,), (y,) = [d for d in done if d[0] == b"x"], [d for d in done if d[0] == b"y"]
        assert x[2] is None and (tmp_path / "x").read_bytes() == b"z" * 100_000
        assert isinstance(y[2], OSError) and not (tmp_path / "missing-dir").exists()
    finally:
        worker.close()
